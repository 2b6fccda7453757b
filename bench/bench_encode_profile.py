"""Where a cold corpus encode's time goes on this CPU (OpenVINO fp32, all-minilm-l6-v2).

bench_run_vs_beir.py says how fast a cold run is; this says why, so a change to the encoder is
aimed at the part that costs time rather than guessed at (issue 26). It prints, for one task:
1. the corpus: real tokens at the card's max length, the padded positions of the encoder's own
   length-sorted batches (characters sorted) and of batches sorted by token count, and the CPU
   seconds of tokenising it;
2. one batch (the encoder's batch size x max length, one single-threaded stream as the encoder
   runs it) per OpenVINO node type (PERF_COUNT), grouped into matrix products, attention and the
   rest, with each group's GFLOP/s;
3. tokens per second of one stream alone and of one stream per core side by side, on the same
   full-length batches (what running the cores together costs each of them);
4. the machine's fp32 GEMM peak (bench_cpu_roofline's oneDNN measurement), the fraction of it
   the batch reaches, and the corpus's encode time at the measured rates against the time with
   no padding and attention at the matrix products' rate: the most a change to the forward pass
   or the batching could still win at fp32.

    python bench/bench_encode_profile.py --data-dir ../shared/data/beir --task nfcorpus
"""

from __future__ import annotations

import argparse
import collections
import os
import time
from pathlib import Path

import numpy as np
from bench_cpu_roofline import openvino_gemm_gflops  # same folder: python bench/<this file>


def _inputs(compiled, batch: int, length: int) -> dict:
    """A full-length batch of ordinary token ids (the cost does not depend on which ids)."""
    ids = np.random.default_rng(0).integers(1000, 30000, (batch, length)).astype(np.int64)
    fields = {"input_ids": ids, "attention_mask": np.ones_like(ids),
              "token_type_ids": np.zeros_like(ids)}
    inputs = {}
    for port in compiled.inputs:
        name = next(n for n in fields if n in port.get_names())
        inputs[port.get_any_name()] = fields[name]
    return inputs


def _streams_rate(core, xml: str, streams: int, batch: int, length: int, batches: int) -> float:
    """Tokens per second of `streams` single-threaded streams fed `batches` batches at once."""
    import openvino as ov

    compiled = core.compile_model(core.read_model(xml), "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "THROUGHPUT",
        "NUM_STREAMS": streams, "INFERENCE_NUM_THREADS": streams})
    inputs = _inputs(compiled, batch, length)
    queue = ov.AsyncInferQueue(compiled, streams + 1)
    for _ in range(streams):  # warm-up: primitives created, memory allocated
        queue.start_async(inputs)
    queue.wait_all()
    start = time.perf_counter()
    for _ in range(batches):
        queue.start_async(inputs)
    queue.wait_all()
    return batches * batch * length / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--task", default="nfcorpus")
    parser.add_argument("--batches", type=int, default=8, help="batches per stream timing")
    args = parser.parse_args()

    import openvino as ov
    import torch

    from benchmark.catalog.registry import get_card
    from benchmark.catalog.weights import resolve_checkpoint
    from benchmark.core.provenance import cpu_isa, cpu_model, isa_caps
    from benchmark.datasets.beir import load_corpus
    from benchmark.retrievers.backends.dispatch import load_encoder
    from benchmark.retrievers.backends.torch_backend import length_order
    from benchmark.retrievers.base import document_text
    from benchmark.retrievers.dense import DenseRetriever

    cfg = get_card("all-minilm-l6-v2").retriever
    source, _ = resolve_checkpoint(cfg.checkpoint, cfg.local_package)
    weights = DenseRetriever(cfg, device="cpu", lazy=True)._weights["passage"]
    encoder = load_encoder(source, cfg, "cpu", "passage", backend="openvino", weights=weights,
                           strict=True)
    threads, length = torch.get_num_threads(), cfg.passage_max_length
    batch = encoder.batch_size(cfg.batch_size)
    conf = encoder.model_config
    layers, hidden, inner = conf.num_hidden_layers, conf.hidden_size, conf.intermediate_size
    print(f"CPU {cpu_model()}, ISA {'/'.join(cpu_isa()) or 'none listed'}, ISA caps "
          f"{isa_caps() or 'none'}, {threads} threads, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    # 1. the corpus: real and padded positions, tokenising
    docs = load_corpus(args.data_dir / args.task / "corpus.jsonl").values()
    texts = [document_text(d, cfg.title, cfg.title_separator) for d in docs]
    order = length_order(texts)
    lengths = np.zeros(len(texts), dtype=np.int64)
    cpu = time.process_time()
    for start in range(0, len(order), batch):
        rows = order[start:start + batch]
        mask = encoder.tokenize([texts[i] for i in rows], length, tensors="np")["attention_mask"]
        lengths[rows] = np.asarray(mask).sum(axis=1)
    tokenise_cpu = time.process_time() - cpu
    real = int(lengths.sum())

    def padded(rows: list[int]) -> int:
        return sum(int(lengths[rows[i:i + batch]].max()) * len(rows[i:i + batch])
                   for i in range(0, len(rows), batch))

    by_chars = padded(order)
    by_tokens = padded([int(i) for i in np.argsort(-lengths, kind="stable")])
    print(f"{args.task}: {len(texts):,} passages, {real:,} real tokens at max length {length} "
          f"({int((lengths == length).sum()):,} truncated); batches of {batch}: "
          f"{by_chars:,} positions sorted by characters ({1 - real / by_chars:.1%} padding), "
          f"{by_tokens:,} sorted by tokens ({1 - real / by_tokens:.1%}); tokenising "
          f"{tokenise_cpu:.1f} CPU s")

    # 2. one batch, one thread, per node type
    xml = str(Path(encoder.backend_info["model"]) / "model.xml")
    core = ov.Core()
    compiled = core.compile_model(core.read_model(xml), "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": 1,
        "PERF_COUNT": True})
    request = compiled.create_infer_request()
    inputs = _inputs(compiled, batch, length)
    request.infer(inputs)
    best, times = float("inf"), collections.Counter()
    for _ in range(3):
        start = time.perf_counter()
        request.infer(inputs)
        seconds = time.perf_counter() - start
        if seconds < best:
            best, times = seconds, collections.Counter()
            for node in request.profiling_info:
                times[node.node_type] += node.real_time.total_seconds()
    tokens = batch * length
    groups = {"matrix products (FullyConnected)": times["FullyConnected"] + times["MatMul"],
              "attention (fused Subgraph / Softmax)": times["Subgraph"] + times["Softmax"]}
    groups["everything else"] = sum(times.values()) - sum(groups.values())
    flops = {"matrix products (FullyConnected)": 2 * tokens * layers * (4 * hidden**2 + 2 * hidden * inner),
             "attention (fused Subgraph / Softmax)": 4 * tokens * length * hidden * layers}
    total = sum(times.values())
    print(f"one batch {batch} x {length}, one thread: {best * 1e3:.0f} ms, {tokens / best:,.0f} "
          f"tokens/s, {sum(flops.values()) / best / 1e9:.1f} GFLOP/s")
    for name, seconds in groups.items():
        rate = f", {flops[name] / seconds / 1e9:.1f} GFLOP/s" if name in flops else ""
        print(f"  {name}: {seconds * 1e3:.0f} ms ({seconds / total:.1%}){rate}")
    print("  by node type: " + ", ".join(f"{k} {v / total:.1%}" for k, v in times.most_common(6)))

    # 3. one stream alone vs one per core
    alone = _streams_rate(core, xml, 1, batch, length, args.batches)
    together = _streams_rate(core, xml, threads, batch, length, args.batches * threads)
    print(f"streams at {batch} x {length}: one alone {alone:,.0f} tokens/s; {threads} side by "
          f"side {together:,.0f} ({together / threads:,.0f} each, {together / threads / alone:.0%} "
          "of alone)")

    # 4. against the GEMM peak, and what is left to win
    peak = openvino_gemm_gflops("f32", threads)
    fc_rate = flops["matrix products (FullyConnected)"] / groups["matrix products (FullyConnected)"]
    contention = threads * alone / together  # how much slower a core is beside the others
    attention = "attention (fused Subgraph / Softmax)"
    excess = groups[attention] - flops[attention] / fc_rate  # attention's time above FC rate
    now = by_chars * best / tokens * contention / threads
    ideal = by_tokens * (best - excess) / tokens * contention / threads
    print(f"fp32 GEMM peak (oneDNN, bench_cpu_roofline): {peak:.1f} GFLOP/s on {threads} "
          f"threads; the batch reaches {sum(flops.values()) / best / 1e9 / (peak / threads):.0%} "
          f"of a core's share alone, its matrix products {fc_rate / 1e9 / (peak / threads):.0%}")
    print(f"corpus forward pass at these rates: {now:.0f} s; with no padding and attention at "
          f"the matrix products' rate: {ideal:.0f} s ({1 - ideal / now:.0%} less)")


if __name__ == "__main__":
    main()
