"""How long does `maebench site` take on a large leaderboard?

Writes synthetic results for many models x tasks (per-query scores of realistic size, plus a
model card per model so the size plot is drawn) into a temporary folder, builds the site and
prints the wall time of each phase: load (reading result JSON), stats (every paired test,
bootstrap and rank interval), plots, render (Jinja2 + writing files).

    .venv/bin/python bench/bench_site.py                 # 200 models x 20 tasks
    .venv/bin/python bench/bench_site.py --models 50 --tasks 5 --keep /tmp/big-site
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.catalog.tasks import Fingerprints
from benchmark.comparison.compare import StatsOptions
from benchmark.results.result_store import write_result
from benchmark.results.schema import ModelInfo, Provenance, Result, TaskInfo
from benchmark.site.build import SiteOptions, build_site

FAMILIES = ("mae", "contrastive", "sparse", "supervised")
CARD = """name: {name}
display_name: Synthetic {i:03d}
family: {family}
description: synthetic model for bench/bench_site.py
source: generated
parameters: {params}
retriever:
  kind: dense
  encoder: shared
  checkpoint: synthetic/{name}
  pooling: cls
  normalize: false
  similarity: dot
  query_prefix: ""
  passage_prefix: ""
  query_max_length: 64
  passage_max_length: 256
  title: prepend
pretraining:
  objective: synthetic masked auto-encoding
  encoder_mask_ratio: 0.3
"""


def _ndcg_like(rng: np.random.Generator, ability: float, difficulty: np.ndarray) -> np.ndarray:
    """Per-query scores that look like nDCG@10: many exact 0s and 1s, the rest in between."""
    raw = 1 / (1 + np.exp(-(ability - difficulty + rng.normal(0, 1.2, difficulty.size)) * 2))
    raw = np.where(raw < 0.15, 0.0, np.where(raw > 0.9, 1.0, raw))
    return np.round(raw, 4)


def generate(results_dir: Path, models_dir: Path, n_models: int, n_tasks: int,
             q_range: tuple[int, int], seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    models_dir.mkdir(parents=True, exist_ok=True)
    names = [f"synth-{i:03d}" for i in range(n_models)]
    abilities = rng.normal(0, 0.5, n_models)
    speeds = 10 ** rng.uniform(1, 4, n_models)
    written = 0
    for i, name in enumerate(names):
        params = int(10 ** rng.uniform(7, 9.5))
        (models_dir / f"{name}.yaml").write_text(
            CARD.format(name=name, i=i, family=FAMILIES[i % 4], params=params))
    for t in range(n_tasks):
        task = f"task-{t:02d}"
        n = int(rng.integers(q_range[0], q_range[1] + 1))
        difficulty = rng.normal(0, 1, n)
        fps = Fingerprints(corpus=f"{t:064x}", queries=f"{t + 1:064x}", qrels=f"{t + 2:064x}")
        qids = [f"{task}-q{j:05d}" for j in range(n)]
        for i, name in enumerate(names):
            if t >= n_tasks - 2 and i % 10 == 9:
                continue  # some models miss the last tasks: incomplete coverage
            scores = _ndcg_like(rng, abilities[i] + rng.normal(0, 0.1), difficulty)
            per_query = {"nDCG@10": dict(zip(qids, scores.tolist(), strict=True)),
                         "R@100": dict(zip(qids, np.minimum(1, scores + 0.3).tolist(),
                                           strict=True))}
            result = Result(
                model=ModelInfo(name=name, display_name=f"Synthetic {i:03d}",
                                family=FAMILIES[i % 4], kind="dense",
                                checkpoint=f"synthetic/{name}", config={"pooling": "cls"}),
                task=TaskInfo(name=task, split="test", quirks=[], relevance_threshold=1,
                              fingerprints=fps, n_docs=50_000, n_queries=n),
                metrics={m: float(np.mean(list(v.values()))) for m, v in per_query.items()},
                per_query=per_query,
                run=None,
                provenance=Provenance(
                    maebench="0.1.0", versions={}, python="3.11", platform="bench",
                    hardware={"cpu": "synthetic", "cpu_count": 1, "gpu": None}, seed=0,
                    timings={"encode_corpus": 50_000 / speeds[i], "evaluate": 1.0},
                    created_at="2026-01-01T00:00:00+00:00"),
            )
            write_result(results_dir, result, None)
            written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--min-queries", type=int, default=300)
    parser.add_argument("--max-queries", type=int, default=1000)
    parser.add_argument("--permutations", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, help="build the site here and keep it")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="maebench-bench-site-"))
    try:
        start = time.perf_counter()
        n = generate(work / "results", work / "models", args.models, args.tasks,
                     (args.min_queries, args.max_queries))
        print(f"generated {n} results ({args.models} models x {args.tasks} tasks, "
              f"{args.min_queries}-{args.max_queries} queries) in "
              f"{time.perf_counter() - start:.1f}s")
        out = args.keep or work / "site"
        if args.keep and args.keep.exists():
            shutil.rmtree(args.keep)
        start = time.perf_counter()
        report = build_site(SiteOptions(
            results_dir=work / "results", out_dir=out, models_dir=work / "models",
            stats=StatsOptions(n_perm=args.permutations, n_boot=args.permutations)))
        total = time.perf_counter() - start
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        print(f"  {'phase':<7} {'wall':>8} {'cpu':>8}   (cpu: all threads; wall grows with load)")
        for phase, seconds in report.timings.items():
            print(f"  {phase:<7} {seconds:7.2f}s {report.cpu_timings[phase]:7.2f}s")
        where = out if args.keep else "(temporary, deleted)"
        print(f"site: {len(report.pages)} pages, {size / 1e6:.1f} MB, total {total:.2f} s, {where}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
