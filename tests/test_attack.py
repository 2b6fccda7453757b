"""Seeded attack suite: hostile input of every class found in review (issue 11) must end in a
clean refusal: non-zero exit, exactly one `error:` line, no traceback, no signal, and the
results/ and models/ trees unchanged.

Classes: 1 deep YAML, 2 size/decompression bombs, 3 check-vs-commit, 4 float extremes,
5 paths and modules from untrusted fields, 6 usage errors, 7 interrupts, 8 I/O faults,
9 unusable ids, 10 ill-typed MTEB JSON and devices, 11 inconsistent stored pairs,
12 empty lists and concurrent claims. All cases run in one subprocess (tests/attack_driver.py)
so the suite stays fast; a native crash shows up as a signal exit of that process.
Set MAEBENCH_ATTACK_REPORT=<file> to write the per-case outcomes (counts for the issue note).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SEED = 11


# --------------------------------------------------------------------------- workspace


def _tree(*folders: Path) -> dict[str, str]:
    """path -> sha256 of every file and folder (the store's git-ignored locks excluded)."""
    found = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if rel.parts[0] == ".maebench":
                continue
            data = path.read_bytes() if path.is_file() else b"<dir>"
            found[f"{folder.name}/{rel}"] = hashlib.sha256(data).hexdigest()
    return found


def _card_text(name: str) -> str:
    text = (REPO / "models" / "bm25.yaml").read_text()
    return text.replace("name: bm25\n", f"name: {name}\n", 1)


def _dense_card(name: str, **fields: str) -> str:
    lines = [
        f"name: {name}", "display_name: Evil", "family: contrastive", "description: x", "source: x",
        "retriever:", "  kind: dense", "  encoder: shared",
        f"  checkpoint: {fields.get('checkpoint', 'org/model')}",
    ]
    for key in ("revision", "local_package"):
        if key in fields:
            lines.append(f"  {key}: {fields[key]}")
    lines += [
        "  pooling: mean", "  normalize: true", "  similarity: cosine", '  query_prefix: ""',
        '  passage_prefix: ""', "  query_max_length: 32", "  passage_max_length: 32",
        "  title: prepend", '  title_separator: " "', "  dtype: float32", "  batch_size: 8",
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    """results/ (one real tiny result, a copy of reported/), models/ (bm25) and a valid bundle."""
    from benchmark.registry import parse_card
    from benchmark.runner import RunOptions, run_task
    from benchmark.tasks import get_task

    root = tmp_path_factory.mktemp("attack")
    results, models = root / "results", root / "models"
    models.mkdir()
    shutil.copy(REPO / "models" / "bm25.yaml", models)
    shutil.copy(REPO / "models" / "all-minilm-l6-v2.yaml", models)
    shutil.copytree(REPO / "results" / "reported", results / "reported")
    card = parse_card(_card_text("attacker"), "attacker.yaml")
    scratch = root / "scratch"
    run_task(card, get_task("tiny"), RunOptions(results_dir=scratch))
    from benchmark.registry import get_card

    run_task(get_card("bm25", models), get_task("tiny"), RunOptions(results_dir=results))
    bundle = root / "bundle"
    bundle.mkdir()
    shutil.copy(scratch / "attacker" / "tiny.json", bundle)
    shutil.copy(scratch / "attacker" / "tiny.run.gz", bundle)
    (bundle / "attacker.yaml").write_text(_card_text("attacker"))
    return {"root": root, "results": results, "models": models, "bundle": bundle}


class Cases:
    """Builds the case list; each hostile bundle/file is written under `root/cases/<id>`."""

    def __init__(self, ws: dict) -> None:
        self.ws = ws
        self.root = ws["root"] / "cases"
        self.root.mkdir(exist_ok=True)
        self.rng = random.Random(SEED)
        self.cases: list[dict] = []

    def add(self, cls: int, name: str, argv: list[str], fault: str | None = None) -> None:
        self.cases.append({"id": f"c{cls:02d}-{name}", "cls": cls, "argv": argv, "fault": fault})

    def folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def bundle(self, name: str, card: str | None = None, result=None, run: bytes | None = None) -> Path:
        """A copy of the valid bundle with the card text, the result JSON (a function of the
        raw dict) or the run file bytes replaced (the JSON's sha256 follows the run)."""
        out = self.root / name
        shutil.copytree(self.ws["bundle"], out)
        if card is not None:
            (out / "attacker.yaml").write_text(card)
        raw = json.loads((out / "tiny.json").read_text())
        if run is not None:
            (out / "tiny.run.gz").write_bytes(run)
            raw["run"]["sha256"] = hashlib.sha256(run).hexdigest()
        if result is not None:
            raw = result(raw) or raw
        (out / "tiny.json").write_text(raw if isinstance(raw, str) else json.dumps(raw))
        return out

    def submit(self, cls: int, name: str, bundle: Path, check: bool | None = None) -> None:
        check = self.rng.random() < 0.5 if check is None else check
        self.add(cls, name, ["submit", str(bundle), *(["--check"] if check else [])])


def _gzip_stream(chunk: bytes, repeats: int) -> bytes:
    import io

    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0) as gz:
        for _ in range(repeats):
            gz.write(chunk)
    return buffer.getvalue()


def _nested(depth: int, leaf="x"):
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def _nested_dict(depth: int):
    value: dict = {"x": 1}
    for _ in range(depth):
        value = {"k": value}
    return value


def build_cases(ws: dict) -> list[dict]:
    c = Cases(ws)
    rng = c.rng
    bundle_card = _card_text("attacker")

    # 1. deep YAML (block, flow, mapping) in a card, a reported file, a spec
    for style in ("block", "flow", "mapping", "block-in-field"):
        depth = rng.choice([30_000, 50_000, 5_000])
        if style == "block":
            text = "- " * depth + "x\n"
        elif style == "flow":
            text = "[" * depth + "]" * depth + "\n"
        elif style == "mapping":
            text = "".join(" " * i + "k:\n" for i in range(min(depth, 3000))) + " " * 3000 + "x\n"
        else:
            text = bundle_card + "description: " + "- " * depth + "x\n"
        c.submit(1, f"card-{style}", c.bundle(f"yaml-{style}", card=text))
    for style in ("block", "flow"):
        reported = c.folder(f"reported-{style}")
        shutil.copytree(ws["results"], reported / "results")
        text = ("- " * 40_000 + "x\n") if style == "block" else ("{a: " * 20_000 + "1" + "}" * 20_000)
        (reported / "results" / "reported" / "evil.yaml").write_text(text)
        where = str(reported / "results")
        c.add(1, f"site-reported-{style}", ["site", "--results-dir", where, "--models-dir",
                                              str(ws["models"]), "--out", str(reported / "site")])
        specs = reported / "results" / "reproductions" / "specs"
        specs.mkdir(parents=True)
        shutil.copy(REPO / "results" / "reproductions" / "specs" / "bm25-beir.yaml", specs)
        c.add(1, f"reproduce-reported-{style}",
              ["reproduce", "bm25-beir", "--no-run", "--results-dir", where])
    models = c.folder("models-deep")
    (models / "deep.yaml").write_text("- " * 30_000 + "x\n")
    c.add(1, "models-deep", ["run", "--model", "deep", "--results-dir", str(ws["results"])])

    # 2. size and decompression bombs in run files
    bombs = {  # (chunk, repeats): streamed into gzip, never held whole
        "one-line": (b"a" * (1 << 20), 300),
        "newlines": (b"\n" * (1 << 20), 300),
        "columns": (b"q Q0 d 1 1.0 t " + b"x " * (1 << 19) + b"\n", 64),
        "many-lines": (b"1 Q0 d1 1 1.0 t\n" * 65536, 48),
    }
    for name, (chunk, repeats) in bombs.items():
        c.submit(2, f"run-{name}", c.bundle(f"bomb-{name}", run=_gzip_stream(chunk, repeats)))
    c.submit(2, "json-huge-string", c.bundle("bomb-json", result=lambda r: r["provenance"].update(
        command="x" * (70 << 20))))

    # 3. check and commit run the same validation (deep fields that only serialisation hit)
    for depth in (300, 500, 800):
        c.submit(3, f"nested-runtime-{depth}", c.bundle(f"nest-{depth}", result=lambda r, d=depth:
                 r["provenance"].update(runtime={"deep": _nested(d)})), check=False)
    c.submit(3, "nested-hardware", c.bundle("nest-hw", result=lambda r:
             r["provenance"].update(hardware=_nested_dict(400))), check=False)

    # 4. float extremes a page would format
    extremes = {
        "tiny-timing": lambda r: r["provenance"]["timings"].update(search=3.5e-305),
        "huge-timing": lambda r: r["provenance"]["timings"].update(search=1e308),
        "negative-timing": lambda r: r["provenance"]["timings"].update(search=-1.0),
        "inf-timing": lambda r: r["provenance"]["timings"].update(search=float("inf")),
        "huge-hardware": lambda r: r["provenance"]["hardware"].update(cpu_count=1e300),
    }
    for name, change in extremes.items():
        c.submit(4, name, c.bundle(f"float-{name}", result=change), check=False)
    for name, value in (("params-inf", "1.0e+400"), ("params-huge", "1" + "0" * 40), ("dim-huge", "1e400")):
        field = "embedding_dim" if name.startswith("dim") else "parameters"
        c.submit(4, f"card-{name}", c.bundle(f"card-{name}", card=bundle_card + f"{field}: {value}\n"))

    # 5. paths and modules from untrusted fields (submitted dense cards)
    for name, fields in {
        "local-path": {"checkpoint": "/etc", "revision": "a" * 40},
        "relative-path": {"checkpoint": "../../models", "revision": "a" * 40},
        "local-package": {"checkpoint": "org/model", "revision": "a" * 40, "local_package": "this"},
        "revision-path": {"checkpoint": "org/model", "revision": "../../../tmp/evil"},
        "no-revision": {"checkpoint": "org/model"},
    }.items():
        c.submit(5, f"card-{name}", c.bundle(f"path-{name}", card=_dense_card("attacker", **fields)))

    # 6. usage errors
    for name, argv in {
        "top-k-zero": ["run", "--top-k", "0"],
        "top-k-text": ["run", "--top-k", "many"],
        "unknown-command": ["frobnicate"],
        "missing-argument": ["submit"],
        "missing-option-value": ["run", "--model"],
        "unknown-option": ["compare", "--colour", "red"],
    }.items():
        c.add(6, name, argv)

    # 7. interrupts at several points
    c.add(7, "run", ["run", "--model", "bm25", "--task", "tiny", "--results-dir", str(ws["results"]),
                     "--overwrite"], fault="interrupt-run")
    c.add(7, "submit", ["submit", str(ws["bundle"])], fault="interrupt-submit")
    c.add(7, "commit", ["submit", str(ws["bundle"])], fault="interrupt-commit")
    c.add(7, "site", ["site", "--out", str(c.root / "site-int")], fault="interrupt-site")
    c.add(7, "compare", ["compare"], fault="interrupt-site")

    # 8. I/O faults
    blocker = c.root / "a-file"
    blocker.write_text("x")
    c.add(8, "results-is-file", ["run", "--task", "tiny", "--results-dir", str(blocker)])
    c.add(8, "results-under-file", ["run", "--task", "tiny", "--results-dir", str(blocker / "r")])
    c.add(8, "results-in-proc", ["run", "--task", "tiny", "--results-dir", "/proc/maebench-results"])
    c.add(8, "disk-full", ["run", "--task", "tiny", "--results-dir", str(c.folder("full")), ], fault="enospc")
    c.add(8, "site-out-is-file", ["site", "--out", str(blocker)])
    c.add(8, "site-out-in-proc", ["site", "--out", "/proc/maebench-site"])
    c.add(8, "bundle-out-in-proc", ["bundle", "--model", "bm25", "--out", "/proc/maebench-bundle"])
    c.add(8, "read-eio", ["compare", "--results-dir", str(ws["results"])], fault="eio-read")

    # 9. ids that cannot round-trip through a run file
    tiny = REPO / "benchmark" / "data" / "tiny"
    for name, bad in {"space": "d 1", "tab": "d\t1", "surrogate": "\ud800x", "newline": "d\n1",
                      "empty": ""}.items():
        data = c.folder(f"ids-{name}") / "scifact"  # a catalog task read from --data-dir
        shutil.copytree(tiny, data)
        lines = (data / "corpus.jsonl").read_text().splitlines()
        row = json.loads(lines[0])
        row["_id"] = bad
        lines[rng.randrange(len(lines))] = json.dumps(row)
        (data / "corpus.jsonl").write_text("\n".join(lines) + "\n")
        c.add(9, f"corpus-{name}", ["run", "--task", "scifact", "--data-dir", str(data.parent),
                                    "--results-dir", str(c.folder(f"ids-out-{name}"))])
    data = c.folder("ids-query") / "scifact"
    shutil.copytree(tiny, data)
    lines = (data / "queries.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    row["_id"] = "q 1"
    lines[0] = json.dumps(row)
    (data / "queries.jsonl").write_text("\n".join(lines) + "\n")
    c.add(9, "query-space", ["run", "--task", "scifact", "--data-dir", str(data.parent),
                             "--results-dir", str(c.folder("ids-out-query"))])

    # 10. import-mteb on hostile JSON; unusable devices
    for name, payload in {
        "deep": "[" * 100_000 + "]" * 100_000,
        "deep-dict": '{"a":' * 50_000 + "1" + "}" * 50_000,
        "list": "[1, 2, 3]",
        "ill-typed": json.dumps({"task_name": 5, "scores": "no"}),
        "scores-wrong": json.dumps({"task_name": "SciFact", "scores": {"test": [{"ndcg_at_10": "high"}]}}),
        "nan": '{"task_name": "SciFact", "scores": {"test": [{"ndcg_at_10": NaN}]}}',
    }.items():
        path = c.folder("mteb") / f"{name}.json"
        path.write_text(payload)
        c.add(10, f"import-{name}", ["import-mteb", str(path), "--model", "bm25", "--name", "evil",
                                     "--results-dir", str(ws["results"])])
    import torch

    devices = ["cuda:99", "tpu", "gpu0"]  # unusable on any machine; the others where absent
    devices += [] if torch.cuda.is_available() else ["cuda"]
    devices += [] if torch.backends.mps.is_available() else ["mps"]
    for device in devices:
        c.add(10, f"device-{device}", ["run", "--model", "all-minilm-l6-v2", "--task", "tiny",
                                       "--device", device, "--results-dir", str(c.folder(f"dev-{device}"))])

    # 11. a JSON next to another run's file (an interrupted old-style write)
    for name, command in (("site", "site"), ("compare", "compare"), ("export", "export-mteb")):
        mixed = c.folder(f"mixed-{name}") / "results"
        shutil.copytree(ws["results"], mixed)
        run = mixed / "bm25" / "tiny.run.gz"
        run.write_bytes(gzip.compress(b"q1 Q0 d1 1 1.0 t\n", mtime=0))
        argv = [command, "--results-dir", str(mixed)]
        if command in ("site", "export-mteb"):
            argv += ["--out", str(c.root / f"mixed-out-{name}")]
        if command == "site":
            argv += ["--models-dir", str(ws["models"])]
        c.add(11, name, argv)

    # 12. empty model / task lists
    for name, argv in {
        "empty-model": ["run", "--model", "", "--task", "tiny"],
        "comma-model": ["run", "--model", ",", "--task", "tiny"],
        "empty-task": ["run", "--model", "bm25", "--task", ""],
        "spaces-task": ["run", "--model", "bm25", "--task", " , "],
    }.items():
        c.add(12, name, [*argv, "--results-dir", str(c.folder(f"empty-{name}"))])
    for extra in ([], ["--overwrite"]):  # a concurrent run of the same result is refused at once
        c.add(12, "concurrent" + "-".join(extra), ["run", "--model", "bm25", "--task", "tiny", *extra],
              fault="claim-held")
        c.cases[-1]["env"] = {"MAEBENCH_RESULTS_DIR": str(c.folder("concurrent" + "-".join(extra)))}
    return c.cases


# --------------------------------------------------------------------------- the test


def _verdict(case: dict, outcome: dict | None) -> str | None:
    """None for a clean rejection, else what went wrong."""
    if outcome is None:
        return "no outcome (the driver process died: a signal?)"
    code, err = outcome["code"], outcome["stderr"]
    if not isinstance(code, int):
        return str(code)
    if code == 0:
        return "accepted (exit 0)"
    if code == 70 or "internal error" in err:
        return f"crash: {err.strip()[-300:]}"
    if "Traceback" in err:
        return "traceback"
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    if len(error_lines) != 1:
        return f"{len(error_lines)} error lines: {err.strip()[-300:]}"
    if case["cls"] == 7 and code != 130:
        return f"interrupt exited {code}: {err.strip()[-300:]}"
    return None


def test_every_attack_is_refused_cleanly(workspace, tmp_path):
    cases = build_cases(workspace)
    file = tmp_path / "cases.json"
    file.write_text(json.dumps(cases))
    before = _tree(workspace["results"], workspace["models"])
    env = {**os.environ, "MAEBENCH_RESULTS_DIR": str(workspace["results"]),
           "MAEBENCH_MODELS_DIR": str(workspace["models"]), "HF_HUB_OFFLINE": "1",
           "MAEBENCH_DATA_DIR": str(tmp_path / "no-data")}
    env.pop("MAEBENCH_DEBUG", None)
    outcomes: dict[str, dict] = {}
    remaining = list(cases)
    driver_exits = []
    while remaining:  # a case that kills the driver (a signal) is recorded, the rest go on
        file.write_text(json.dumps(remaining))
        proc = subprocess.run(
            [sys.executable, "-m", "tests.attack_driver", str(file)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
        )
        driver_exits.append(proc.returncode)
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                outcomes[row["id"]] = row
        remaining = [c for c in remaining if c["id"] not in outcomes]
        if remaining:
            outcomes[remaining[0]["id"]] = {"code": f"driver killed by signal {-proc.returncode}",
                                            "stderr": proc.stderr[-500:]}
            remaining = remaining[1:]
    verdicts = {case["id"]: _verdict(case, outcomes.get(case["id"])) for case in cases}
    bad = {k: v for k, v in verdicts.items() if v is not None}
    report = os.environ.get("MAEBENCH_ATTACK_REPORT")
    if report:
        Path(report).write_text(json.dumps({
            "attempts": len(cases), "clean": len(cases) - len(bad), "bad": bad,
            "seconds": {k: v.get("seconds") for k, v in outcomes.items()},
            "outcomes": {k: [v.get("code"), v.get("stderr", "").strip()[-200:]] for k, v in outcomes.items()},
            "driver_exits": driver_exits, "classes": sorted({c["cls"] for c in cases}),
        }, indent=1))
    assert not bad, json.dumps(bad, indent=1)
    after = _tree(workspace["results"], workspace["models"])
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, changed
    per_class = {cls: sum(1 for c in cases if c["cls"] == cls) for cls in range(1, 13)}
    assert all(n >= 3 for cls, n in per_class.items() if cls != 11), per_class
