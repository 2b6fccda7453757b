"""Per-step cost of each pre-training objective at a study's shape, on this machine.

Prints wall and CPU seconds per optimizer step (after one warm-up step) for each objective on
the init card and corpus given, plus each objective's cost relative to plain MLM. CPU seconds
are the number to plan a budget with on a shared machine (wall time depends on the other jobs).

  HF_HUB_OFFLINE=1 python bench/bench_pretrain_steps.py --init all-minilm-l6-v2 --corpus scifact \
      --data-dir ../shared/data/beir --batch-size 8 --max-length 64 --steps 5
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--init", default="all-minilm-l6-v2")
    parser.add_argument("--corpus", default="scifact")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--objectives", default="mlm,condenser,cocondenser,retromae,dupmae,cotmae,bowpred")
    args = parser.parse_args()

    import numpy as np
    import torch
    from accelerate.utils import set_seed

    from benchmark.catalog.registry import get_card
    from benchmark.training.corpus import build_pairs, read_texts, resolve_corpus
    from benchmark.training.objectives import objective_class
    from benchmark.training.pretrain import load_init
    from benchmark.training.pretrain_recipe import apply_overrides, load_recipe

    card = get_card(args.init)
    _, _, tokenizer, _ = load_init(card)
    pairs = build_pairs(read_texts(resolve_corpus(args.corpus, args.data_dir)), tokenizer, args.max_length)
    overrides = {"batch_size": str(args.batch_size), "max_length": str(args.max_length)}
    rows = []
    for name in args.objectives.split(","):
        set_seed(0)
        encoder, head, tokenizer, _ = load_init(card)
        recipe = apply_overrides(load_recipe(name), overrides)
        objective = objective_class(name)(encoder, head, tokenizer, recipe.model_dump()).train()
        optimizer = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=1e-5)
        walls, cpus = [], []
        for step in range(args.steps + 1):
            w, c = time.perf_counter(), time.process_time()
            batch = objective.corrupt(pairs[step * args.batch_size // 2:(step + 1) * args.batch_size // 2],
                                      np.random.default_rng(step))
            loss, _ = objective(batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if step:  # the first step pays one-off allocation costs
                walls.append(time.perf_counter() - w)
                cpus.append(time.process_time() - c)
        rows.append((name, float(np.mean(walls)), float(np.mean(cpus))))
        del objective, optimizer
    base = dict((n, c) for n, _, c in rows).get("mlm")
    print(f"{'objective':12s} {'wall s/step':>12s} {'CPU s/step':>11s} {'CPU vs mlm':>11s}"
          f"   ({args.batch_size} spans x {args.max_length} tokens, torch threads {torch.get_num_threads()})")
    for name, wall, cpu in rows:
        rel = f"{cpu / base:.2f}x" if base else ""
        print(f"{name:12s} {wall:12.2f} {cpu:11.2f} {rel:>11s}")


if __name__ == "__main__":
    main()
