"""Scale benchmark of the embedding store with a tiny encoder on synthetic BEIR corpora.

For each size (default 0.5M, 1M, 2M documents): a run is killed with SIGKILL once about half of
the corpus shards are committed, then the same run is started again; the script prints the
shards committed before the kill, the shards the re-run encoded (at most the one in flight is
redone: committed + re-encoded == total), the re-run's peak RSS (it scans the whole corpus,
holds every id, encodes the rest and searches all shards) and its encoding throughput. Then
FEVER / Climate-FEVER-style sharing: two tasks over one corpus file, the second encodes no
corpus shard. CPU-heavy: run it niced, in the background.

    nice -n 10 python bench/bench_store_scale.py --work /tmp/maebench-scale --sizes 500000,1000000,2000000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.make_synthetic_beir import VOCAB, write_dataset  # noqa: E402

CHILD = r"""
import sys, yaml
from pathlib import Path
from benchmark.retrievers.options import StoreOptions
from benchmark.catalog.registry import parse_card
from benchmark.pipeline.runner import RunOptions, run_task
from benchmark.catalog.tasks import get_task
ckpt, data_dir, results, task = sys.argv[1:5]
raw = {"name": "tiny-scale", "display_name": "tiny", "family": "supervised", "description": "d",
       "source": "s", "weights": "public",
       "retriever": {"kind": "dense", "encoder": "shared", "checkpoint": ckpt, "pooling": "mean",
                     "normalize": True, "similarity": "cosine", "query_prefix": "",
                     "passage_prefix": "", "query_max_length": 32, "passage_max_length": 32,
                     "title": "prepend", "batch_size": 256}}
card = parse_card(yaml.safe_dump(raw), "tiny-scale")
options = RunOptions(results_dir=Path(results), data_dir=Path(data_dir), device="cpu",
                     overwrite=True, store=StoreOptions())
print(run_task(card, get_task(task), options))
"""


def start(args: list[str], env: dict) -> subprocess.Popen:
    """The child writes to temporary files, never to a pipe nobody reads (its progress bars
    would fill the pipe and block it)."""
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")  # noqa: SIM115 (read in finish)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, *args], env=env, stdout=out,
                            stderr=err, text=True)
    proc.outputs = (out, err)
    return proc


def finish(proc: subprocess.Popen) -> tuple[float, dict]:
    """Peak RSS (MiB) of the child and its result JSON."""
    _, status, usage = os.wait4(proc.pid, 0)
    out, err = proc.outputs
    out.seek(0)
    err.seek(0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"run failed:\n{err.read()[-3000:]}")
    result = json.loads(Path(out.read().strip().splitlines()[-1]).read_text())
    return usage.ru_maxrss / 1024, result


def passage_manifest(home: Path) -> dict | None:
    for key_file in (home / "embeddings").glob("*/key.json"):
        if json.loads(key_file.read_text()).get("role") == "passage":
            manifest = key_file.with_name("manifest.json")
            try:
                return json.loads(manifest.read_text())
            except (OSError, ValueError):
                return None
    return None


def tiny_encoder(folder: Path) -> Path:
    from tests.helpers.checkpoints import tiny_bert

    if not (folder / "config.json").is_file():
        tiny_bert(folder, [" ".join(VOCAB)], hidden=32)
    return folder


def scale(size: int, work: Path, ckpt: Path, env: dict) -> None:
    data = work / f"data-{size}"
    if not (data / "nq" / "corpus.jsonl").is_file():
        t = time.perf_counter()
        write_dataset(data / "nq", size, 200)
        print(f"  generated {size} docs in {time.perf_counter() - t:.0f}s", flush=True)
    home = work / f"home-{size}"
    env = dict(env, MAEBENCH_HOME=str(home))
    args = [str(ckpt), str(data), str(work / f"results-{size}"), "nq"]
    proc = start(args, env)
    total = None
    while proc.poll() is None:
        manifest = passage_manifest(home)
        if manifest:
            total = manifest["shards_total"]
            if len(manifest["shards"]) >= total / 2:
                os.kill(proc.pid, signal.SIGKILL)
                break
        time.sleep(0.2)
    os.wait4(proc.pid, 0)
    committed = len(passage_manifest(home)["shards"])
    t = time.perf_counter()
    rss, result = finish(start(args, env))
    wall = time.perf_counter() - t
    stats = result["provenance"]["runtime"]["embedding_store"]
    timings = result["provenance"]["timings"]
    encoded_rows = stats["shards_encoded"] * stats["shard_rows"]
    print(
        f"{size:>9} docs: shards total {stats['shards_total']}, committed before kill -9 "
        f"{committed}, encoded by the re-run {stats['shards_encoded']}, read from the store "
        f"{stats['shards_from_store']} -> redone after the kill: "
        f"{committed + stats['shards_encoded'] - stats['shards_total']} shard(s) beyond the "
        f"uncommitted ones; re-run peak RSS {rss:.0f} MiB, wall {wall:.0f}s, encode "
        f"~{encoded_rows / max(timings.get('encode_corpus', 1e-9), 1e-9):.0f} docs/s, "
        f"load_data (scan) {timings.get('load_data', 0):.1f}s, search {timings.get('search', 0):.1f}s, "
        f"nDCG@10 {result['metrics']['nDCG@10']:.4f}",
        flush=True,
    )


def sharing(work: Path, ckpt: Path, env: dict) -> None:
    data = work / "data-shared"
    write_dataset(data / "fever", 20_000, 100, seed=1)
    write_dataset(data / "climate-fever", 20_000, 100, seed=2, corpus_from=data / "fever" / "corpus.jsonl")
    env = dict(env, MAEBENCH_HOME=str(work / "home-shared"))
    for task in ("fever", "climate-fever"):
        _, result = finish(start([str(ckpt), str(data), str(work / "results-shared"), task], env))
        stats = result["provenance"]["runtime"]["embedding_store"]
        print(f"sharing: {task}: corpus sha256 {result['task']['fingerprints']['corpus'][:12]} entry "
              f"{stats['entry'][:12]} shards encoded {stats['shards_encoded']} from store "
              f"{stats['shards_from_store']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--sizes", default="500000,1000000,2000000")
    parser.add_argument("--skip-sharing", action="store_true")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    ckpt = tiny_encoder(args.work / "tiny-encoder")
    if not args.skip_sharing:
        sharing(args.work, ckpt, env)
    for size in (int(s) for s in args.sizes.split(",")):
        scale(size, args.work, ckpt, env)


if __name__ == "__main__":
    main()
