"""Seeded attack suite: hostile input of every class found in review (issue 11) must end in a
clean refusal: non-zero exit, exactly one `error:` line, no traceback, no signal, and the
results/ and models/ trees unchanged.

Classes: 1 deep YAML, 2 size/decompression bombs, 3 check-vs-commit, 4 float extremes,
5 paths and modules from untrusted fields, 6 usage errors, 7 interrupts, 8 I/O faults,
9 unusable ids, 10 ill-typed MTEB JSON and devices, 11 inconsistent stored pairs,
12 empty lists and concurrent claims. Round 2 (issue 19): 13 damaged or hostile embedding-store
manifests and entries, 14 `store rm` on paths and links, 15 results-store journals it did not
write, 16 names that are not names, 17 hostile checkpoint folders (drafted-card injection,
sentence-transformers files, module paths, pickles), 18 files that are not regular files or
are too big, 19 seeds and study specs out of range.

Most cases must be refused (one `error:` line, non-zero exit). Some damaged input is
recoverable and must give the right result instead: a damaged manifest (`recover`: exit 0 and
a run file byte-identical to a clean run's) and a journal this store did not write (`warn`:
moved aside with a WARNING line, nothing applied); a card drafted from a hostile checkpoint
(`draft`) must hold exactly the keys maebench meant. No case changes anything outside its
intended tree (a shared `victims/` folder the hostile paths point at is checked at the end),
and a refused case leaves nothing behind (`absent`, `unchanged`).
All cases run in one subprocess (tests/attack_driver.py) so the suite stays fast; a native
crash shows up as a signal exit of that process.
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
    from benchmark.catalog.registry import parse_card
    from benchmark.catalog.tasks import get_task
    from benchmark.pipeline.runner import RunOptions, run_task

    root = tmp_path_factory.mktemp("attack")
    results, models = root / "results", root / "models"
    models.mkdir()
    shutil.copy(REPO / "models" / "bm25.yaml", models)
    shutil.copy(REPO / "models" / "all-minilm-l6-v2.yaml", models)
    shutil.copytree(REPO / "results" / "reported", results / "reported")
    card = parse_card(_card_text("attacker"), "attacker.yaml")
    scratch = root / "scratch"
    run_task(card, get_task("tiny"), RunOptions(results_dir=scratch))
    from benchmark.catalog.registry import get_card

    run_task(get_card("bm25", models), get_task("tiny"), RunOptions(results_dir=results))
    bundle = root / "bundle"
    bundle.mkdir()
    shutil.copy(scratch / "attacker" / "tiny.json", bundle)
    shutil.copy(scratch / "attacker" / "tiny.run.gz", bundle)
    (bundle / "attacker.yaml").write_text(_card_text("attacker"))
    ws = {"root": root, "results": results, "models": models, "bundle": bundle}
    ws.update(_dense_workspace(root))
    victims = root / "victims"  # what hostile paths point at: must never change
    (victims / "victim-dir" / "sub").mkdir(parents=True)
    (victims / "victim-file").write_text("precious")
    (victims / "victim-dir" / "sub" / "f").write_text("precious too")
    ws["victims"] = victims
    return ws


def _dense_workspace(root: Path) -> dict:
    """A tiny sentence-transformers checkpoint, and a clean card-free run of it on `tiny`
    (its run file, and the embedding store it filled: the pristine store cases damage)."""
    from tests.helpers.checkpoints import make_st, tiny_bert

    tiny = REPO / "benchmark" / "data" / "tiny"
    texts = [json.loads(line)["text"] for line in (tiny / "corpus.jsonl").read_text().splitlines()]
    texts += [json.loads(line)["text"] for line in (tiny / "queries.jsonl").read_text().splitlines()]
    ckpt = make_st(tiny_bert(root / "st-ckpt", texts, initializer_range=1.0))
    home, clean = root / "pristine-home", root / "clean-results"
    env = {**os.environ, "MAEBENCH_HOME": str(home), "HF_HUB_OFFLINE": "1",
           "MAEBENCH_BACKEND": "torch"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark.cli", "run", "--model", str(ckpt), "--name", "tinyst",
         "--task", "tiny", "--results-dir", str(clean)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {"st_ckpt": ckpt, "pristine_home": home, "clean_run": clean / "tinyst" / "tiny.run.gz"}


class Cases:
    """Builds the case list; each hostile bundle/file is written under `root/cases/<id>`."""

    def __init__(self, ws: dict) -> None:
        self.ws = ws
        self.root = ws["root"] / "cases"
        self.root.mkdir(exist_ok=True)
        self.rng = random.Random(SEED)
        self.cases: list[dict] = []

    def add(self, cls: int, name: str, argv: list[str], fault: str | None = None, *,
            expect: str = "refuse", env: dict | None = None, **checks) -> None:
        """One case; `expect` refuse | recover | warn | draft (see the module docstring);
        `checks`: run_file (recover), card (draft), absent (paths that must not exist after),
        unchanged (folders that must be byte-identical after)."""
        case = {"id": f"c{cls:02d}-{name}", "cls": cls, "argv": argv, "fault": fault,
                "expect": expect}
        for key, value in checks.items():
            case[key] = [str(v) for v in value] if isinstance(value, list) else str(value)
        if env:
            case["env"] = {k: str(v) for k, v in env.items()}
        self.cases.append(case)

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
    build_round_two(c, ws)
    return c.cases


# --------------------------------------------------------------------------- round 2 (issue 19)


def _passage_entry(home: Path) -> Path:
    for key in sorted((home / "embeddings").glob("*/key.json")):
        if json.loads(key.read_text()).get("role") == "passage":
            return key.parent
    raise AssertionError(f"no passage entry in {home}")


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def build_round_two(c: Cases, ws: dict) -> None:
    rng = c.rng
    victims = ws["victims"]
    ckpt = str(ws["st_ckpt"])
    dense_run = ["run", "--model", ckpt, "--name", "tinyst", "--task", "tiny"]

    # 13. embedding-store manifests and entries: recovered (that shard re-encoded, the run file
    # equals a clean run's), or refused where the entry itself leads out of the store
    def store_case(name: str, damage) -> None:
        home = c.root / f"store-{name}"
        shutil.copytree(ws["pristine_home"], home)
        entry = _passage_entry(home)
        damage(entry, entry / "manifest.json")
        out = c.folder(f"store-out-{name}")
        c.add(13, f"manifest-{name}", [*dense_run, "--results-dir", str(out)], expect="recover",
              env={"MAEBENCH_HOME": home}, run_file=out / "tinyst" / "tiny.run.gz")

    def edit(change):
        def damage(entry: Path, manifest: Path) -> None:
            data = json.loads(manifest.read_text())
            change(data, entry)
            manifest.write_text(json.dumps(data))
        return damage

    # a foreign shard: the same rows in another order, and a record naming it with its sha256
    # (read, it would change the ranking; the run file must still equal a clean run's)
    foreign = _foreign_shard(_passage_entry(ws["pristine_home"]) / "shard-000000.npy")
    outside = victims / "victim-shard.npy"
    outside.write_bytes(foreign)
    named = {"sha256": hashlib.sha256(foreign).hexdigest()}
    store_case("absolute-file", edit(lambda d, e: d["shards"]["0"].update(file=str(outside), **named)))
    store_case("dotdot-file", edit(lambda d, e: d["shards"]["0"].update(
        file="../../../../victims/victim-shard.npy", **named)))

    def other_shard(d, e):  # a record naming another shard's file (with that file's sha256)
        (e / "shard-000001.npy").write_bytes(foreign)
        d["shards"]["0"].update(file="shard-000001.npy", **named)

    store_case("other-shards-file", edit(other_shard))
    store_case("empty-shards", edit(lambda d, e: d.update(shards=[])))
    bad_file = rng.choice([5, None, ["shard-000000.npy"], {"a": 1}])
    store_case("non-string-file", edit(lambda d, e: d["shards"]["0"].update(file=bad_file)))
    store_case("shards-a-string", edit(lambda d, e: d.update(shards="shard-000000.npy")))
    store_case("manifest-a-list", lambda e, m: m.write_text("[1, 2]"))
    depth = rng.choice([10, 50_000])
    store_case("manifest-not-json", lambda e, m: m.write_text('{"key": ' + "[" * depth))

    def manifest_fifo(entry: Path, manifest: Path) -> None:
        manifest.unlink()
        _fifo(manifest)

    store_case("manifest-fifo", manifest_fifo)

    def shard_dev_zero(entry: Path, manifest: Path) -> None:
        (entry / "shard-000000.npy").unlink()
        (entry / "shard-000000.npy").symlink_to("/dev/zero")

    store_case("shard-links-dev-zero", shard_dev_zero)
    home = c.root / "store-entry-link"
    shutil.copytree(ws["pristine_home"], home)
    entry = _passage_entry(home)
    shutil.rmtree(entry)
    entry.symlink_to(victims / "victim-dir")
    c.add(13, "entry-links-out", [*dense_run, "--results-dir", str(c.folder("store-out-link"))],
          env={"MAEBENCH_HOME": home})

    # 14. store rm: entry ids only; never deletes or touches anything outside the store
    root = c.root / "rm-store"
    shutil.copytree(ws["pristine_home"] / "embeddings", root)
    real_id = _passage_entry(ws["pristine_home"]).name
    link = root / ("f" * 32)
    link.symlink_to(victims / "victim-dir")
    for name, target in {"dotdot": "../../victims/victim-dir", "absolute": "/tmp", "parent": "..",
                         "glob": "*", "newline": real_id + "\n", "link-entry": link.name,
                         "link-prefix": "fff", "empty": ""}.items():
        c.add(14, f"rm-{name}", ["store", "rm", target, "--root", str(root)], unchanged=[root])
    (root / real_id / ".lock").unlink(missing_ok=True)
    (root / real_id / ".lock").symlink_to(victims / "victim-file")
    c.add(14, "rm-lock-links-out", ["store", "rm", real_id[:8], "--root", str(root)],
          unchanged=[root])

    # 15. journals the store did not write: quarantined with a warning, never applied
    def journal_case(name: str, commit, link_to: Path | None = None) -> None:
        results = c.folder(f"journal-{name}") / "results"
        shutil.copytree(ws["results"], results)
        txn = results / ".maebench" / "txn-20260101T000000-1-evil"
        if link_to is not None:
            txn.parent.mkdir(parents=True, exist_ok=True)
            txn.symlink_to(link_to)
        else:
            txn.mkdir(parents=True)
            (txn / "0-tiny.json").write_text("{}")
            commit(txn)
        c.add(15, name, ["export-mteb", "--results-dir", str(results), "--out",
                         str(c.root / f"journal-out-{name}")], expect="warn", unchanged=[results])

    def write(text: str):
        return lambda txn: (txn / "COMMIT").write_text(
            text.replace("{victims}", str(victims)).replace("{txn}", str(txn)))

    journal_case("not-json", write("{not json"))
    journal_case("a-list", write("[1, 2]"))
    journal_case("renames-a-number", write('{"renames": 5, "side": null}'))
    journal_case("v1-moves-a-victim", write(
        '{"renames": [["{victims}/victim-file", "{victims}/moved"]], "side": null}'))
    journal_case("v1-moves-into-results", write(
        '{"renames": [["{victims}/victim-file", "' + str(c.root) + '/x/bm25/tiny.json"]], "side": null}'))
    journal_case("v1-side-deletes-a-folder", write(
        '{"renames": [], "side": "{victims}/victim-dir"}'))
    journal_case("v2-staged-dotdot", write(
        '{"version": 2, "renames": [{"staged": "../../../../../victims/victim-file", "tree": "results",'
        ' "final": "bm25/x.json"}]}'))
    journal_case("v2-final-outside", write(
        '{"version": 2, "renames": [{"staged": "0-tiny.json", "tree": "results", '
        '"final": "{victims}/victim-file"}]}'))
    journal_case("v2-into-store-meta", write(
        '{"version": 2, "renames": [{"staged": "0-tiny.json", "tree": "results", '
        '"final": ".maebench/lock"}]}'))
    journal_case("commit-fifo", lambda txn: _fifo(txn / "COMMIT"))
    journal_case("commit-dev-zero", lambda txn: (txn / "COMMIT").symlink_to("/dev/zero"))
    evil_txn = c.folder("evil-txn")
    (evil_txn / "0-tiny.json").write_text("{}")
    (evil_txn / "COMMIT").write_text(json.dumps({"version": 2, "renames": [
        {"staged": "0-tiny.json", "tree": "results", "final": "bm25/tiny.json"}]}))
    journal_case("txn-links-out", None, link_to=evil_txn)

    # 16. names that are not names, wherever a name becomes a file
    home = c.folder("names-home")
    no_training = {"env": {"MAEBENCH_HOME": home}, "absent": [home / "checkpoints"]}
    for suffix, bad in (("newline", rng.choice(["x\n", "tinyst\n"])), ("dotdot", "../evil"),
                        ("upper", "Evil")):
        c.add(16, f"finetune-{suffix}", ["finetune", "--model", "all-minilm-l6-v2", "--task",
                                         "scifact", "--name", bad], **no_training)
        c.add(16, f"pretrain-{suffix}", ["pretrain", "--objective", "mlm", "--init",
                                         "all-minilm-l6-v2", "--corpus", "tiny", "--budget",
                                         "2steps", "--name", bad], **no_training)
    c.add(16, "card-new-newline", ["card", "new", ckpt, "--name", "x\n"])
    mteb = c.folder("names-mteb") / "scifact.json"
    mteb.write_text(json.dumps({"task_name": "SciFact", "scores": {"test": [{"ndcg_at_10": 0.5}]}}))
    c.add(16, "import-mteb-newline", ["import-mteb", str(mteb), "--model", "bm25", "--name", "y\n"])
    c.add(16, "card-free-newline", [*dense_run[:3], "--name", "x\n", "--task", "tiny",
                                    "--results-dir", str(c.folder("names-out"))])
    bundle = c.bundle("names-bundle")
    (bundle / "tiny.json").rename(bundle / "tiny.json\n")
    c.submit(16, "bundle-file-newline", bundle)

    # 17. hostile checkpoint folders: drafted cards, sentence-transformers files, pickles
    def checkpoint(name: str, change=None) -> Path:
        folder = c.root / f"ckpt-{name}"
        shutil.copytree(ws["st_ckpt"], folder, symlinks=True)
        if change is not None:
            change(folder)
        return folder

    injection = rng.choice(["\\nlocal_package: os\\nlicense: evil", "\\n\\u2028name: evil"])

    def inject(folder: Path) -> None:
        (folder / "config_sentence_transformers.json").write_text(
            '{"similarity_fn_name": "x' + injection + '"}')
        (folder / "1_Pooling" / "config.json").write_text(
            '{"pooling_mode_mean_tokens": true, "pooling_mode_x' + injection + '": true}')

    for name, folder in (("injected-config", checkpoint("inject", inject)),
                         ("injected-folder-name", Path(shutil.copytree(
                             ws["st_ckpt"], c.root / "a\nlicense: evil")))):
        out = c.root / f"drafted-{name}.yaml"
        c.add(17, f"card-new-{name}", ["card", "new", str(folder), "--name", "drafted",
                                       "--out", str(out)], expect="draft", card=out)

    def module_path(path: str):
        def change(folder: Path) -> None:
            modules = json.loads((folder / "modules.json").read_text())
            modules[1]["path"] = path
            (folder / "modules.json").write_text(json.dumps(modules))
        return change

    def link_pooling_out(folder: Path) -> None:
        shutil.rmtree(folder / "1_Pooling")
        (folder / "1_Pooling").symlink_to(victims / "victim-dir")

    def replace(file: str, text: str):
        return lambda folder: (folder / file).write_text(text)

    def fifo(file: str):
        def change(folder: Path) -> None:
            (folder / file).unlink()
            _fifo(folder / file)
        return change

    hostile = {
        "module-path-absolute": module_path(str(victims / "victim-dir")),
        "module-path-dotdot": module_path("../../victims/victim-dir"),
        "module-dir-links-out": link_pooling_out,
        "modules-an-object": replace("modules.json", '{"0": {"type": "Pooling"}}'),
        "modules-ints": replace("modules.json", "[1, 2, 3]"),
        "modules-fifo": fifo("modules.json"),
        "sbert-config-a-list": replace("sentence_bert_config.json", "[64]"),
        "pooling-config-a-string": replace("1_Pooling/config.json", '"cls"'),
        "prompt-a-list": replace("config_sentence_transformers.json",
                                 '{"prompts": {"query": ["q"]}}'),
    }
    for name, change in hostile.items():
        c.add(17, f"card-new-{name}", ["card", "new", str(checkpoint(name, change)), "--name",
                                       "drafted", "--out", str(c.root / f"never-{name}.yaml")],
              absent=[c.root / f"never-{name}.yaml"])

    def dense_head(config: dict, weights: str):
        def change(folder: Path) -> None:
            import torch

            modules = json.loads((folder / "modules.json").read_text())
            modules.insert(2, {"idx": 3, "name": "3", "path": "2_Dense",
                               "type": "sentence_transformers.models.Dense"})
            (folder / "modules.json").write_text(json.dumps(modules))
            (folder / "2_Dense").mkdir()
            (folder / "2_Dense" / "config.json").write_text(json.dumps(config))
            if weights == "pickle":
                (folder / "2_Dense" / "pytorch_model.bin").write_bytes(_pickle_payload(victims))
            else:
                torch.save({"linear.weight": torch.zeros(8, 32)},
                           folder / "2_Dense" / "pytorch_model.bin")
        return change

    def pickled_model(folder: Path) -> None:
        (folder / "model.safetensors").unlink()
        (folder / "pytorch_model.bin").write_bytes(_pickle_payload(victims))

    for name, change in {
        "dense-without-in-features": dense_head({"out_features": 8}, "tensors"),
        "dense-head-pickle": dense_head({"in_features": 32, "out_features": 8}, "pickle"),
        "model-pickle": pickled_model,
    }.items():
        c.add(17, f"run-{name}", ["run", "--model", str(checkpoint(name, change)), "--name", "evil",
                                   "--task", "tiny", "--results-dir", str(c.folder(f"out-{name}"))],
              env={"MAEBENCH_HOME": c.folder(f"home-{name}")})

    # 18. files that are not regular files, or too big: refused at once, never read whole
    big = c.root / "big.json"
    with big.open("wb") as handle:
        handle.truncate((16 << 20) + rng.randrange(1, 1 << 20))
    for name, path in {"dev-zero": Path("/dev/zero"), "fifo": _fifo(c.root / "mteb-fifo.json"),
                       "folder": c.folder("mteb-folder"), "too-big": big}.items():
        c.add(18, f"import-mteb-{name}", ["import-mteb", str(path), "--model", "bm25", "--name",
                                          "evil"], absent=[ws["results"] / "reported" / "evil.yaml"])

    def dev_zero_link(path: Path) -> None:
        path.symlink_to("/dev/zero")

    for name, make in {"fifo": _fifo, "dev-zero": dev_zero_link}.items():
        models = c.folder(f"models-{name}")
        shutil.copy(REPO / "models" / "bm25.yaml", models)
        make(models / "evil.yaml")
        c.add(18, f"card-{name}", ["run", "--model", "evil", "--task", "tiny", "--results-dir",
                                   str(c.folder(f"out-card-{name}"))],
              env={"MAEBENCH_MODELS_DIR": models})
    reported = c.folder("reported-fifo") / "results"
    shutil.copytree(ws["results"], reported)
    _fifo(reported / "reported" / "evil.yaml")
    specs = reported / "reproductions" / "specs"
    specs.mkdir(parents=True)
    shutil.copy(REPO / "results" / "reproductions" / "specs" / "bm25-beir.yaml", specs)
    c.add(18, "reported-fifo", ["reproduce", "bm25-beir", "--no-run", "--results-dir", str(reported)])
    c.add(18, "study-spec-fifo", ["study", str(_fifo(c.root / "spec-fifo.yaml")), "--report-only"])
    for name, make in {"result-json-fifo": ("tiny.json", _fifo),
                       "run-file-dev-zero": ("tiny.run.gz", dev_zero_link)}.items():
        stored = c.folder(f"stored-{name}") / "results"
        shutil.copytree(ws["results"], stored)
        (stored / "bm25" / make[0]).unlink()
        make[1](stored / "bm25" / make[0])
        c.add(18, name, ["compare", "--task", "tiny", "--results-dir", str(stored)])
    models = c.folder("bundle-card-fifo")
    _fifo(models / "bm25.yaml")
    c.add(18, "bundle-card-fifo", ["bundle", "--model", "bm25", "--out", str(c.root / "bundle-out"),
                                   "--models-dir", str(models)], absent=[c.root / "bundle-out"])
    c.add(18, "recipe-dev-zero", ["pretrain", "--objective", "mlm", "--init", "all-minilm-l6-v2",
                                  "--corpus", "tiny", "--budget", "2steps", "--name", "evil",
                                  "--recipe", "/dev/zero"], **no_training)

    # 19. seeds out of range and study-spec fields checked before use
    huge = str(2 ** rng.choice([32, 64, 70]))
    for name, argv in {
        "finetune-negative": ["finetune", "--model", "all-minilm-l6-v2", "--task", "scifact",
                              "--seed", "-1"],
        "finetune-huge": ["finetune", "--model", "all-minilm-l6-v2", "--task", "scifact",
                          "--seed", huge],
        "pretrain-negative": ["pretrain", "--objective", "mlm", "--init", "all-minilm-l6-v2",
                              "--corpus", "tiny", "--budget", "2steps", "--name", "evil",
                              "--seed", "-1"],
        "compare-negative": ["compare", "--task", "tiny", "--seed", "-1"],
        "site-huge": ["site", "--out", str(c.root / "site-seed"), "--seed", huge],
        "study-seed-negative": ["study", "scifact-dapt", "--set", "id=evil", "--set",
                                "seeds=[-1]", "--report-only"],
        "study-seed-huge": ["study", "scifact-dapt", "--set", "id=evil", "--set",
                            f"seeds=[{huge}]", "--report-only"],
        "study-metric-markup": ["study", "scifact-dapt", "--set", "id=evil", "--set",
                                "metric=x<script>", "--report-only"],
        "study-metric-unknown": ["study", "scifact-dapt", "--set", "id=evil", "--set",
                                 "metric=nDCG@11", "--report-only"],
    }.items():
        c.add(19, name, argv, **no_training)


def _foreign_shard(shard: Path) -> bytes:
    """Another valid shard of the same shape: the rows of `shard` in reverse order."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.load(shard)[::-1].copy(), allow_pickle=False)
    return buffer.getvalue()


def _pickle_payload(victims: Path) -> bytes:
    """A pickle that would delete a victim file if it were ever unpickled."""
    import pickle

    return pickle.dumps(_Payload(str(victims / "victim-file")))


class _Payload:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.remove, (self.path,))


# --------------------------------------------------------------------------- the test


def _verdict(case: dict, outcome: dict | None) -> str | None:
    """None for a clean rejection (or, for `recover` / `warn` / `draft` cases, for the right
    result), else what went wrong."""
    if outcome is None:
        return "no outcome (the driver process died: a signal?)"
    code, err = outcome["code"], outcome["stderr"]
    if not isinstance(code, int):
        return str(code)
    if "Traceback" in err:
        return "traceback"
    expect = case.get("expect", "refuse")
    if expect != "refuse":
        return _recovered(case, code, err)
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


def _recovered(case: dict, code: int, err: str) -> str | None:
    if code == 70 or "internal error" in err:
        return f"crash: {err.strip()[-300:]}"
    if case["expect"] == "recover":
        if code != 0:
            return f"not recovered (exit {code}): {err.strip()[-300:]}"
        produced = Path(case["run_file"])
        if not produced.is_file() or produced.read_bytes() != Path(case["clean_run"]).read_bytes():
            return "recovered, but the run file differs from a clean run's"
    elif case["expect"] == "warn":
        if code != 0 or "not applied" not in err:
            return f"journal not set aside with a warning (exit {code}): {err.strip()[-300:]}"
    elif case["expect"] == "draft":
        import yaml

        if code != 0:
            return f"no card drafted (exit {code}): {err.strip()[-300:]}"
        card = yaml.safe_load(Path(case["card"]).read_text())
        # `parameters` is counted by card new from the config (issue 28): an int, nothing else
        keys = {"name", "display_name", "family", "description", "source", "retriever", "parameters"}
        if set(card) - {"parameters"} != keys - {"parameters"} or card["name"] != "drafted" or (
                "parameters" in card and type(card["parameters"]) is not int) or not {
            "local_package", "license", "name"}.isdisjoint(card["retriever"]):
            return f"the drafted card holds keys nobody meant: {sorted(card)}"
    return None


def _after_checks(case: dict, trees: dict) -> str | None:
    for path in case.get("absent", []):
        if os.path.lexists(path):
            return f"left {path} behind"
    for folder in case.get("unchanged", []):
        if _tree(Path(folder)) != trees[folder]:
            return f"changed {folder}"
    return None


@pytest.mark.slow
def test_every_attack_is_refused_cleanly(workspace, tmp_path):
    cases = build_cases(workspace)
    for case in cases:
        if case.get("expect") == "recover":
            case["clean_run"] = str(workspace["clean_run"])
    file = tmp_path / "cases.json"
    file.write_text(json.dumps(cases))
    before = _tree(workspace["results"], workspace["models"])
    victims_before = _tree(workspace["victims"])
    trees = {folder: _tree(Path(folder)) for case in cases for folder in case.get("unchanged", [])}
    env = {**os.environ, "MAEBENCH_RESULTS_DIR": str(workspace["results"]),
           "MAEBENCH_MODELS_DIR": str(workspace["models"]), "HF_HUB_OFFLINE": "1",
           "MAEBENCH_DATA_DIR": str(tmp_path / "no-data"), "MAEBENCH_BACKEND": "torch"}
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
    verdicts = {case["id"]: _verdict(case, outcomes.get(case["id"])) or _after_checks(case, trees)
                for case in cases}
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
    assert _tree(workspace["victims"]) == victims_before, "a file outside maebench's trees changed"
    assert not list(workspace["victims"].rglob(".lock"))
    per_class = {cls: sum(1 for c in cases if c["cls"] == cls) for cls in range(1, 20)}
    assert all(n >= 3 for cls, n in per_class.items() if cls != 11), per_class
