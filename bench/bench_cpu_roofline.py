"""How close maebench's CPU encoder is to the machine's matrix-multiply peak, fp32 and bf16.

The peer here is torch's own GEMM on the shapes of a MiniLM layer (tokens x 384 x 384 and
tokens x 384 x 1536), measured in the same process: a forward pass cannot run faster than its
matrix products, so encoder GFLOP/s / GEMM GFLOP/s bounds what any pipeline (maebench, beir,
mteb) can still gain at that dtype. FLOPs are counted from the real token lengths: the linear
layers (2 x 12 d^2 per token per layer) plus attention scores and mixing (4 x L x d per token).

    python bench/bench_cpu_roofline.py --data-dir ../shared/data/beir --task nfcorpus --docs 320
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path


def gemm_gflops(dtype, tokens: int = 4096, repeats: int = 30) -> float:
    """Best-shape GFLOP/s of torch.mm at a MiniLM layer's shapes (the encoder's ceiling)."""
    import torch

    best = 0.0
    for k, n in ((384, 384), (384, 1536), (1536, 384)):
        a, b = torch.randn(tokens, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        for _ in range(3):
            a @ b
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * tokens * k * n * repeats / (time.perf_counter() - start) / 1e9)
    return best


def forward_gflop(lengths: list[int], layers: int, hidden: int, inner: int) -> float:
    linear = 2 * (4 * hidden * hidden + 2 * hidden * inner)
    return sum(layers * (n * linear + 4 * n * n * hidden) for n in lengths) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--task", default="nfcorpus")
    parser.add_argument("--docs", type=int, default=320)
    args = parser.parse_args()

    import torch

    from benchmark.registry import get_card
    from benchmark.retrievers.encoders import load_encoder
    from benchmark.retrievers.weights import resolve_checkpoint

    card = get_card("all-minilm-l6-v2")
    cfg = card.retriever
    with open(args.data_dir / args.task / "corpus.jsonl") as f:
        docs = [json.loads(line) for line in itertools.islice(f, args.docs)]
    texts = [f"{d.get('title') or ''} {d['text']}".strip() for d in docs]
    source, _ = resolve_checkpoint(cfg.checkpoint, cfg.local_package)
    print(f"{args.docs} {args.task} passages, all-minilm-l6-v2, max length "
          f"{cfg.passage_max_length}, {torch.get_num_threads()} threads")
    for dtype in ("float32", "bfloat16"):
        encoder = load_encoder(source, cfg.model_copy(update={"dtype": dtype}), "cpu", "passage")
        lengths = [len(ids) for ids in encoder.tokenizer(
            texts, truncation=True, max_length=cfg.passage_max_length)["input_ids"]]
        conf = encoder.model.config
        flop = forward_gflop(lengths, conf.num_hidden_layers, conf.hidden_size,
                             conf.intermediate_size)
        start = time.perf_counter()
        encoder.encode(texts, cfg.passage_max_length, cfg.batch_size)
        seconds = time.perf_counter() - start
        peak = gemm_gflops(getattr(torch, dtype))
        print(f"{dtype}: encode {seconds:.2f} s = {flop / seconds:.1f} GFLOP/s; GEMM peak "
              f"{peak:.1f} GFLOP/s; ratio encoder / GEMM {flop / seconds / peak:.2f}")


if __name__ == "__main__":
    main()
