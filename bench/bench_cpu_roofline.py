"""How close each CPU inference backend comes to the machine's matrix-multiply peak.

A forward pass cannot run faster than its matrix products, so encoder GFLOP/s divided by the
best GEMM rate the machine reaches bounds what any pipeline can still gain at that dtype. The
peak is the machine's, not one library's: MKL (through torch.mm) does not use its AVX-512
kernels on AMD CPUs, while oneDNN (through OpenVINO) does, so both are measured on the shapes
of a MiniLM layer (tokens x 384 x 384, x 1536, 1536 x 384), each as one multi-threaded product
and as one single-threaded product per core running side by side (the way the encoders run
their batches), and the best of all is the peak. FLOPs are counted from the real token lengths:
the linear layers (2 x 12 d^2 per token per layer) plus attention scores and mixing (4 x L x d
per token).

Backends: torch fp32, torch bf16, OpenVINO fp32 (the converted model from the conversion cache
under $MAEBENCH_HOME, converted first if needed; conversion is not timed). Each encodes the same
passages once untimed (warm-up), then `--repeats` times; the best pass is reported.

    python bench/bench_cpu_roofline.py --data-dir ../shared/data/beir --task nfcorpus --docs 640
    python bench/bench_cpu_roofline.py --data-dir ../shared/data/beir --docs 32 --repeats 1  # smoke
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SHAPES = ((384, 384), (384, 1536), (1536, 384))


def _rate(tokens: int, k: int, n: int, calls: int, seconds: float) -> float:
    return 2 * tokens * k * n * calls / seconds / 1e9


def torch_gemm_gflops(dtype, tokens: int = 4096, repeats: int = 20) -> float:
    """Best GFLOP/s of torch.mm (MKL on CPU) at a MiniLM layer's shapes: one product on all
    threads, and one single-threaded product per thread side by side."""
    import torch

    threads = torch.get_num_threads()
    best = 0.0
    for k, n in SHAPES:
        a, b = torch.randn(tokens, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        for _ in range(3):
            a @ b
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, _rate(tokens, k, n, repeats, time.perf_counter() - start))
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(threads) as pool:
                def work(_, a=a, b=b):
                    # torch.set_num_threads is OpenMP's per-thread setting: a pool thread starts
                    # at the machine's default, and each of its products used every core (a
                    # "single-threaded" rate of 146-162 GFLOP/s on a 2-core EPYC whose one
                    # thread does 71-90)
                    torch.set_num_threads(1)
                    for _ in range(repeats):
                        a @ b
                list(pool.map(work, range(threads)))  # warm-up
                start = time.perf_counter()
                list(pool.map(work, range(threads)))
                best = max(best, _rate(tokens, k, n, repeats * threads, time.perf_counter() - start))
        finally:
            torch.set_num_threads(threads)
    return best


def openvino_gemm_gflops(precision: str, threads: int, tokens: int = 4096, repeats: int = 20) -> float:
    """Best GFLOP/s of an OpenVINO MatMul (oneDNN) at the same shapes: LATENCY (one request on
    all threads) and THROUGHPUT (one single-threaded stream per thread, requests side by side)."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    core = ov.Core()
    best = 0.0
    for k, n in SHAPES:
        x = ops.parameter([tokens, k], ov.Type.f32, name="x")
        w = ops.constant(np.random.default_rng(0).standard_normal((k, n)).astype(np.float32))
        model = ov.Model([ops.matmul(x, w, False, False)], [x], "gemm")
        data = np.random.default_rng(1).standard_normal((tokens, k)).astype(np.float32)
        configs = [
            {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads},
            {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": threads,
             "INFERENCE_NUM_THREADS": threads},
        ]
        for config in configs:
            compiled = core.compile_model(model, "CPU", {**config, "INFERENCE_PRECISION_HINT": precision})
            jobs = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            queue = ov.AsyncInferQueue(compiled, jobs)
            for _ in range(jobs * 2):
                queue.start_async({0: data})
            queue.wait_all()
            start = time.perf_counter()
            for _ in range(repeats * jobs):
                queue.start_async({0: data})
            queue.wait_all()
            best = max(best, _rate(tokens, k, n, repeats * jobs, time.perf_counter() - start))
    return best


def forward_gflop(lengths: list[int], layers: int, hidden: int, inner: int) -> float:
    linear = 2 * (4 * hidden * hidden + 2 * hidden * inner)
    return sum(layers * (n * linear + 4 * n * n * hidden) for n in lengths) / 1e9


def whole_task_floor(corpus: Path, source: str, max_length: int,
                     peaks: dict[str, dict[str, float]]) -> None:
    """The FLOPs of encoding the task's whole corpus, and the least time that takes at each
    dtype's GEMM peak: no pipeline encodes it faster, whatever it does around the forward pass.
    A run's wall time minus this floor is what engineering can still win."""
    from transformers import AutoConfig, AutoTokenizer

    with open(corpus) as f:
        docs = [json.loads(line) for line in f]
    texts = [f"{d.get('title') or ''} {d['text']}".strip() for d in docs]
    tokenizer, conf = AutoTokenizer.from_pretrained(source), AutoConfig.from_pretrained(source)
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    flop = forward_gflop(lengths, conf.num_hidden_layers, conf.hidden_size, conf.intermediate_size)
    floors = ", ".join(f"{dtype} {flop / max(rates.values()):.1f} s" for dtype, rates in peaks.items()
                       if rates)
    print(f"whole {corpus.parent.name} corpus: {len(texts):,} passages, {sum(lengths):,} tokens, "
          f"{flop:,.0f} GFLOP; encoding it takes at least (at the GEMM peak): {floors}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--task", default="nfcorpus")
    parser.add_argument("--docs", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per backend (best)")
    parser.add_argument("--backends", default="torch-float32,torch-bfloat16,openvino-float32",
                        help="comma-separated <backend>-<dtype>")
    args = parser.parse_args()

    import torch

    from benchmark.catalog.registry import get_card
    from benchmark.catalog.weights import resolve_checkpoint
    from benchmark.core.errors import MaebenchError
    from benchmark.core.provenance import cpu_isa, cpu_model, isa_caps
    from benchmark.retrievers.backends.dispatch import load_encoder
    from benchmark.retrievers.dense import DenseRetriever

    card = get_card("all-minilm-l6-v2")
    cfg = card.retriever
    with open(args.data_dir / args.task / "corpus.jsonl") as f:
        docs = [json.loads(line) for line in itertools.islice(f, args.docs)]
    texts = [f"{d.get('title') or ''} {d['text']}".strip() for d in docs]
    source, _ = resolve_checkpoint(cfg.checkpoint, cfg.local_package)
    threads = torch.get_num_threads()
    print(f"CPU {cpu_model()}, ISA {'/'.join(cpu_isa()) or 'none listed'}, ISA caps "
          f"{isa_caps() or 'none'}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{len(texts)} {args.task} passages, all-minilm-l6-v2, max length "
          f"{cfg.passage_max_length}, {threads} threads")

    peaks: dict[str, dict[str, float]] = {"float32": {}, "bfloat16": {}}
    peaks["float32"]["MKL (torch.mm)"] = torch_gemm_gflops(torch.float32)
    peaks["bfloat16"]["MKL (torch.mm)"] = torch_gemm_gflops(torch.bfloat16)
    try:
        peaks["float32"]["oneDNN (OpenVINO)"] = openvino_gemm_gflops("f32", threads)
        peaks["bfloat16"]["oneDNN (OpenVINO)"] = openvino_gemm_gflops("bf16", threads)
    except ImportError:
        print("openvino is not installed: the peak is MKL's only")
    for dtype, rates in peaks.items():
        print(f"GEMM {dtype}: " + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in rates.items()))

    whole_task_floor(args.data_dir / args.task / "corpus.jsonl", source, cfg.passage_max_length,
                     peaks)

    weights = DenseRetriever(cfg, device="cpu", lazy=True)._weights["passage"]
    for spec in args.backends.split(","):
        backend, dtype = spec.strip().split("-")
        config = cfg.model_copy(update={"dtype": dtype})
        try:  # strict: this bench measures the backend named, never auto's choice
            encoder = load_encoder(source, config, "cpu", "passage", backend=backend,
                                   weights=weights, strict=True)
        except MaebenchError as exc:
            print(f"{spec}: cannot run ({exc})")
            continue
        conf = encoder.model_config
        lengths = [len(ids) for ids in encoder.tokenizer(
            texts, truncation=True, max_length=cfg.passage_max_length)["input_ids"]]
        flop = forward_gflop(lengths, conf.num_hidden_layers, conf.hidden_size,
                             conf.intermediate_size)
        encoder.encode(texts[:32], cfg.passage_max_length, cfg.batch_size)  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            encoder.encode(texts, cfg.passage_max_length, cfg.batch_size)
            times.append(time.perf_counter() - start)
        seconds = min(times)
        name, peak = max(peaks[dtype].items(), key=lambda kv: kv[1])
        extra = ""
        if backend == "openvino":
            info = encoder.backend_info
            extra = (f" [compiled precision {info['inference_precision']}, {info['streams']} "
                     f"streams x {info['threads'] // max(info['streams'], 1)} thread]")
        print(f"{spec}: encode {seconds:.2f} s (best of {len(times)}) = {flop / seconds:.1f} "
              f"GFLOP/s = {flop / seconds / peak:.0%} of the machine's {dtype} GEMM peak "
              f"({name}, {peak:.1f} GFLOP/s){extra}")


if __name__ == "__main__":
    main()
