"""Pre-training throughput at the MAE lab's shapes: the old code path against the new, interleaved.

Old (commit 1d80994): `batch_size` spans per step padded to the longest, a document cut into full
spans and a short tail, masking done between steps, the for-loop AdamW. New: packed steps of
batch_size x max_length positions filled with real tokens (balanced spans, length-sorted windows:
training.corpus.PackedPairStream), the next batch masked in a prefetch thread, fused AdamW. The
objectives' code is the same in both (unchanged since 1d80994). Both loops train the same
freshly drawn backbone (the study's BERT-mini: L4-H256-A4-FFN1024, an 8,192-token WordPiece
learnt from the corpus) from the same weights, alternating rounds of `--steps` steps so that load
on the machine falls on both alike.

Printed per objective and path: real tokens per CPU-second (process CPU time, all threads),
the padding share, GFLOP/s per CPU-second (FLOPs of one step counted by torch's FlopCounterMode:
matrix products forward and backward) against the machine's GEMM peak per core
(bench_cpu_roofline.torch_gemm_gflops, single-threaded products, the same run), and new/old.

  HF_HUB_OFFLINE=1 python bench/bench_pretrain_steps.py --data-dir ../shared/data/beir
  HF_HUB_OFFLINE=1 python bench/bench_pretrain_steps.py --data-dir ../shared/data/beir \
      --objectives mlm --rounds 1 --steps 2        # smoke
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

# (objective, max_length, spans per step): the study's stage 0 and its arms
SHAPES = {"mlm@256": ("mlm", 256, 32), "mlm": ("mlm", 128, 64), "retromae": ("retromae", 128, 64),
          "bowpred": ("bowpred", 128, 64), "cotmae": ("cotmae", 128, 64),
          "condenser": ("condenser", 128, 64), "dupmae": ("dupmae", 128, 64)}


def _cpu() -> str:
    from benchmark.core.provenance import cpu_model

    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{cpu_model()} ({isa}{', AMX' if 'amx_tile' in flags else ''})"


def _gemm_peak_per_core() -> float:
    here = Path(__file__).with_name("bench_cpu_roofline.py")
    spec = importlib.util.spec_from_file_location("roofline", here)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return module.torch_gemm_gflops(torch.float32, repeats=10)
    finally:
        torch.set_num_threads(threads)


class Path_:
    """One code path's state for one objective: its stream, objective, optimizer."""

    def __init__(self, new: bool, name: str, length: int, spans: int, backbone: Path, pairs) -> None:
        import torch
        from transformers import AutoTokenizer, BertForMaskedLM

        from benchmark.training.corpus import PackedPairStream, PairStream
        from benchmark.training.objectives import objective_class
        from benchmark.training.pretrain import _grouped_parameters
        from benchmark.training.pretrain_recipe import apply_overrides, load_recipe

        torch.manual_seed(0)
        tokenizer = AutoTokenizer.from_pretrained(backbone)
        model = BertForMaskedLM.from_pretrained(backbone)
        mask = "0.15" if length == 256 else None
        recipe = apply_overrides(load_recipe(name), {"encoder_mask": mask} if mask else None)
        self.objective = objective_class(name)(model.bert, model.cls, tokenizer, recipe.model_dump()).train()
        groups = _grouped_parameters(self.objective, 0.01)
        self.optimizer = torch.optim.AdamW(groups, lr=1e-4, fused=new)
        self.stream = PackedPairStream(pairs, spans * length, 0) if new else PairStream(pairs, spans // 2, 0)
        self.new = new
        self.step = 0
        self.pool = None
        if new:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=1)
            self.upcoming = self.pool.submit(self._corrupt, 0)

    def _corrupt(self, step: int):
        import numpy as np

        return self.objective.corrupt(self.stream.batch(step), np.random.default_rng([0, 11, step]))

    def batch(self):
        if not self.new:
            batch = self._corrupt(self.step)
        else:
            batch = self.upcoming.result()
            self.upcoming = self.pool.submit(self._corrupt, self.step + 1)
        self.step += 1
        return batch

    def train(self, steps: int) -> tuple[float, int, int]:
        """(CPU seconds, real tokens, positions) over `steps` optimizer steps."""
        real = positions = 0
        began = time.process_time()
        for _ in range(steps):
            batch = self.batch()
            real += int(batch["attention_mask"].sum())
            positions += int(batch["attention_mask"].numel())
            loss, _ = self.objective(batch)
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad()
        return time.process_time() - began, real, positions

    def flops_per_real_token(self) -> float:
        from torch.utils.flop_counter import FlopCounterMode

        batch = self.batch()
        with FlopCounterMode(display=False) as counter:
            loss, _ = self.objective(batch)
            loss.backward()
        self.optimizer.zero_grad()
        return counter.get_total_flops() / int(batch["attention_mask"].sum())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--corpus", default="scifact,nfcorpus")
    parser.add_argument("--objectives", default=",".join(SHAPES))
    parser.add_argument("--rounds", type=int, default=3, help="interleaved old/new rounds")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round and path")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for both paths (default: torch's, one per core)")
    parser.add_argument("--backbone", type=Path, default=None,
                        help="a saved backbone folder to reuse (default: learnt here, ~40 s)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from benchmark.training.backbone import BackboneSize, build_backbone
    from benchmark.training.corpus import build_pairs, read_texts, resolve_corpus

    texts = read_texts(resolve_corpus(args.corpus, args.data_dir))
    backbone = args.backbone
    if backbone is None or not (backbone / "config.json").is_file():
        backbone = backbone or Path(tempfile.mkdtemp(prefix="bench-backbone-"))
        model, tokenizer = build_backbone(texts, BackboneSize(), seed=0)
        model.save_pretrained(backbone)
        tokenizer.save_pretrained(backbone)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(backbone)
    peak = _gemm_peak_per_core()
    print(f"CPU: {_cpu()}; torch threads {torch.get_num_threads()}; GEMM peak {peak:.1f} GFLOP/s "
          f"per core (fp32, torch.mm single-threaded); {args.rounds} rounds x {args.steps} steps "
          "per path, interleaved", flush=True)
    pairs_cache: dict[tuple[int, bool], list] = {}
    header = (f"{'shape':10s} {'path':4s} {'tok/CPU-s':>10s} {'padding':>8s} {'GFLOP/CPU-s':>12s} "
              f"{'of peak':>8s} {'new/old':>8s}")
    print(header)
    for key in args.objectives.split(","):
        name, length, spans = SHAPES[key]
        runs = {}
        for new in (False, True):
            if (length, new) not in pairs_cache:
                pairs_cache[(length, new)] = build_pairs(texts, tokenizer, length, balanced=new)
            runs[new] = Path_(new, name, length, spans, backbone, pairs_cache[(length, new)])
            runs[new].train(1)  # warm-up: one-off allocations
        rates: dict[bool, list[float]] = {False: [], True: []}
        totals = {False: [0, 0], True: [0, 0]}
        for _ in range(args.rounds):
            for new in (False, True):
                cpu, real, positions = runs[new].train(args.steps)
                rates[new].append(real / cpu)
                totals[new][0] += real
                totals[new][1] += positions
        medians = {new: statistics.median(rates[new]) for new in rates}
        for new in (False, True):
            flops = runs[new].flops_per_real_token()
            gflops = medians[new] * flops / 1e9
            pad = 1 - totals[new][0] / totals[new][1]
            ratio = f"{medians[True] / medians[False]:.2f}x" if new else ""
            print(f"{key:10s} {'new' if new else 'old':4s} {medians[new]:10.0f} {pad:8.1%} "
                  f"{gflops:12.1f} {gflops / peak:8.0%} {ratio:>8s}", flush=True)
            if runs[new].pool:
                runs[new].pool.shutdown(wait=True)
        del runs


if __name__ == "__main__":
    sys.exit(main())
