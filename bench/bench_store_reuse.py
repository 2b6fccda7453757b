"""A second run from the embedding store vs the cold run that filled it, and the cold cost of
the `evaluate` phase.

Part 1 (all-minilm-l6-v2 on one task, each run a fresh `maebench run` process with a fresh
MAEBENCH_HOME for the cold one): wall time of the cold run, of the run from the store, their
ratio (target <= 0.05) and whether the two run files are byte-identical.
Part 2: the `evaluate` phase of fresh BM25 processes (ranx kernels loaded cold) per task.

    nice -n 10 python bench/bench_store_reuse.py --data-dir ../shared/data/beir --task nfcorpus
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args: list[str], env: dict) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one `maebench run` process."""
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: progress bars never block
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "benchmark.cli", "run", *args], env=env,
                                stdout=subprocess.DEVNULL, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            sys.exit(f"failed: {args}\n{err.read()[-3000:]}")
    return wall, usage.ru_maxrss / 1024


def result(results: Path, model: str, task: str) -> tuple[dict, bytes]:
    folder = results / model
    data = json.loads((folder / f"{task}.json").read_text())
    return data, gzip.decompress((folder / f"{task}.run.gz").read_bytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--task", default="nfcorpus")
    parser.add_argument("--model", default="all-minilm-l6-v2")
    parser.add_argument("--evaluate-tasks", default="scifact,nfcorpus")
    parser.add_argument("--skip-reuse", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "MAEBENCH_HOME": f"{tmp}/home"}
        common = ["--model", args.model, "--task", args.task, "--data-dir", str(args.data_dir)]
        if not args.skip_reuse:
            cold_wall, cold_rss = run([*common, "--results-dir", f"{tmp}/cold"], env)
            warm_wall, warm_rss = run([*common, "--results-dir", f"{tmp}/warm"], env)
            cold, cold_run = result(Path(tmp, "cold"), args.model, args.task)
            warm, warm_run = result(Path(tmp, "warm"), args.model, args.task)
            print(f"{args.model} on {args.task}: cold run {cold_wall:.1f}s (phases "
                  f"{cold['provenance']['timings']}), peak RSS {cold_rss:.0f} MiB")
            print(f"  from the store {warm_wall:.2f}s (phases {warm['provenance']['timings']}), "
                  f"peak RSS {warm_rss:.0f} MiB")
            print(f"  ratio store/cold {warm_wall / cold_wall:.3f}; run files byte-identical: "
                  f"{cold_run == warm_run}; nDCG@10 {cold['metrics']['nDCG@10']:.5f} / "
                  f"{warm['metrics']['nDCG@10']:.5f}")
        for task in args.evaluate_tasks.split(","):
            run(["--model", "bm25", "--task", task, "--data-dir", str(args.data_dir),
                 "--results-dir", f"{tmp}/bm25"], env)
            data, _ = result(Path(tmp, "bm25"), "bm25", task)
            print(f"cold evaluate phase, fresh process, bm25 on {task}: "
                  f"{data['provenance']['timings']['evaluate']:.3f}s")


if __name__ == "__main__":
    main()
