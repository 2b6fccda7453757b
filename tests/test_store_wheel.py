"""The package works installed from a wheel, without a checkout: templates and static files are
package data, and models/ and results/ come from the current directory (or the environment).

Builds a wheel from a copy of the sources (the checkout is not touched), installs it without
dependencies into a fresh venv that borrows this environment's installed libraries (no
network, no second torch), then runs, and builds a site, from a folder outside the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.helpers.paths import REPO


def _run(argv: list, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{argv}: {proc.stdout[-1500:]} {proc.stderr[-1500:]}"
    return proc


@pytest.mark.slow
def test_wheel_installs_and_builds_a_site_outside_the_checkout(tmp_path: Path):
    if not (REPO / "benchmark" / "site" / "assets").is_symlink():
        pytest.skip("not a checkout")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src)
    shutil.copytree(REPO / "site", src / "site", ignore=shutil.ignore_patterns("_build"))
    shutil.copytree(REPO / "benchmark", src / "benchmark", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", src, "--no-deps", "--no-build-isolation", "-q",
          "-w", dist], cwd=tmp_path)
    [wheel] = dist.glob("maebench-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    site_packages = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              cwd=tmp_path).stdout.strip())
    # borrow this environment's libraries (torch, ranx, ...) without its editable maebench
    (site_packages / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q",
          wheel], cwd=tmp_path)

    project = tmp_path / "project"  # a user's folder: models/ here, results/ created here
    (project / "models").mkdir(parents=True)
    shutil.copy(REPO / "models" / "bm25.yaml", project / "models")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAEBENCH_") or k == "MAEBENCH_HOME"}
    env["HF_HUB_OFFLINE"] = "1"
    where = _run([python, "-c", "import benchmark, benchmark.core.paths as p; print(benchmark.__file__); "
                  "print(p.site_dir()); print(p.results_dir())"], cwd=project, env=env).stdout.split()
    assert where[0].startswith(str(site_packages)), where  # the wheel, not the checkout
    assert where[1].startswith(str(site_packages)) and where[2] == str(project / "results")

    maebench = venv / "bin" / "maebench"
    _run([maebench, "run", "--model", "bm25", "--task", "tiny"], cwd=project, env=env)
    assert (project / "results" / "bm25" / "tiny.json").is_file()
    _run([maebench, "site", "--out", project / "site"], cwd=project, env=env)
    index = (project / "site" / "index.html").read_text()
    assert "BM25" in index
    assert (project / "site" / "benchmarks.html").is_file()
    assert list((project / "site").rglob("*.css")), "static files missing from the built site"
