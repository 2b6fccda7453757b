"""Pre-training throughput at the MAE lab's shapes: the old code path against the new, interleaved.

Old (commit 1d80994): `batch_size` spans per step padded to the longest, a document cut into full
spans and a short tail, masking done between steps, the for-loop AdamW, one process with torch's
default threads (one per core) and OpenMP's default wait policy, in this process. New: packed
steps of batch_size x max_length positions filled with real tokens (balanced spans, length-sorted
windows: training.corpus.PackedPairStream), the next batch masked in a prefetch thread, fused
AdamW, and what `maebench pretrain` does on a CPU by default for a long run: one single-threaded
worker process per core (OpenMP waits passive), each taking its share of every step's positions
in micro-batches of at most 2,048 (training.processes.micro_batches), gradients summed over them
and averaged over processes by DistributedDataParallel over gloo, one optimizer step. The objectives'
code is the same in both (unchanged since 1d80994). Both paths train the same freshly drawn
backbone (the study's BERT-mini: L4-H256-A4-FFN1024, an 8,192-token WordPiece learnt from the
corpus) from the same weights, alternating rounds of `--steps` steps so that load on the machine
falls on both alike; the workers wait on a pipe (no CPU) while the old path runs.

Printed per objective and path: processes x threads, real tokens per CPU-second (CPU time of every
process and thread of the path), real tokens per wall-second, the padding share, GFLOP/s per
CPU-second (FLOPs of one step counted by torch's FlopCounterMode: matrix products forward and
backward) against one core's GEMM peak (bench_cpu_roofline.torch_gemm_gflops on one thread,
single-threaded products, the same run), and new/old per CPU-second and per wall-second.

  HF_HUB_OFFLINE=1 python bench/bench_pretrain_steps.py --data-dir ../shared/data/beir
  HF_HUB_OFFLINE=1 python bench/bench_pretrain_steps.py --data-dir ../shared/data/beir \
      --objectives mlm --rounds 1 --steps 2        # smoke
  ... --new-processes 1     # the new code path alone, in this process, at torch's threads
"""

from __future__ import annotations

import argparse
import importlib.util
import os
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

    def __init__(self, new: bool, name: str, length: int, spans: int, backbone: Path, pairs,
                 world: int = 1, rank: int = 0, micro: int = 1) -> None:
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
        self.model = self.objective
        if world > 1:  # as accelerate prepares it in a `maebench pretrain` worker
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(self.objective, find_unused_parameters=True)
        groups = _grouped_parameters(self.objective, 0.01)
        self.optimizer = torch.optim.AdamW(groups, lr=1e-4, fused=new)
        self.stream = (PackedPairStream(pairs, spans * length // (world * micro), 0) if new
                       else PairStream(pairs, spans // 2, 0))
        self.world, self.rank, self.micro = world, rank, micro
        self.new = new
        self.step = 0
        self.pool = None
        if new:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=1)
            self.upcoming = self.pool.submit(self._corrupt, 0)

    def _corrupt(self, step: int):
        import numpy as np

        batch = self.stream.batch(step * self.world + self.rank)  # this process's share
        return self.objective.corrupt(batch, np.random.default_rng([0, 11, step, self.rank]))

    def batch(self):
        if not self.new:
            batch = self._corrupt(self.step)
        else:
            batch = self.upcoming.result()
            self.upcoming = self.pool.submit(self._corrupt, self.step + 1)
        self.step += 1
        return batch

    def train(self, steps: int) -> tuple[float, int, int, float]:
        """(CPU seconds, real tokens, positions, wall seconds) over `steps` optimizer steps."""
        real = positions = 0
        began, wall = time.process_time(), time.perf_counter()
        for _ in range(steps):
            for micro in range(self.micro):  # the trainer's micro-batches: one optimizer step
                batch = self.batch()
                real += int(batch["attention_mask"].sum())
                positions += int(batch["attention_mask"].numel())
                if micro < self.micro - 1 and self.world > 1:
                    with self.model.no_sync():  # gradients exchanged once per step, as accelerate
                        loss, _ = self.model(batch)
                        (loss / self.micro).backward()
                else:
                    loss, _ = self.model(batch)
                    (loss / self.micro).backward()
            self.optimizer.step()
            self.optimizer.zero_grad()
        return time.process_time() - began, real, positions, time.perf_counter() - wall

    def flops_per_real_token(self) -> float:
        """Counted on the unwrapped objective: no gradient exchange, so one process may count."""
        from torch.utils.flop_counter import FlopCounterMode

        batch = self.batch()
        with FlopCounterMode(display=False) as counter:
            loss, _ = self.objective(batch)
            loss.backward()
        self.optimizer.zero_grad()
        return counter.get_total_flops() / int(batch["attention_mask"].sum())


def _worker(rank: int, world: int, port: int, conn, key: str, backbone: Path, pairs) -> None:
    """One new-path worker: single-threaded, OpenMP waiting passive (set before torch loads, as
    training.processes sets it), in a gloo group; trains `steps` on request, reports its CPU."""
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    import torch

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                         world_size=world)
    from benchmark.training.processes import micro_batches

    name, length, spans = SHAPES[key]
    micro = micro_batches(None, "cpu", spans * length // world, length)
    path = Path_(True, name, length, spans, backbone, pairs, world, rank, micro)
    path.train(1)  # warm-up: one-off allocations
    conn.send("ready")
    while True:
        command, argument = conn.recv()
        if command == "train":
            conn.send(path.train(argument))
        elif command == "flops":
            conn.send(path.flops_per_real_token() if rank == 0 else None)
        else:
            break
    path.pool.shutdown(wait=True)
    torch.distributed.destroy_process_group()
    conn.send("stopped")


class Workers:
    """The new path as `maebench pretrain` runs it on a CPU: `world` single-threaded processes."""

    def __init__(self, world: int, key: str, backbone: Path, pairs) -> None:
        import multiprocessing
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        context = multiprocessing.get_context("spawn")
        self.conns, self.procs = [], []
        for rank in range(world):
            parent, child = context.Pipe()
            proc = context.Process(target=_worker, args=(rank, world, port, child, key, backbone, pairs))
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        for conn in self.conns:
            if conn.recv() != "ready":
                raise RuntimeError("a worker did not start")
        self.new, self.pool, self.world = True, None, world

    def train(self, steps: int) -> tuple[float, int, int, float]:
        began = time.perf_counter()
        for conn in self.conns:
            conn.send(("train", steps))
        parts = [conn.recv() for conn in self.conns]
        wall = time.perf_counter() - began
        return (sum(p[0] for p in parts), sum(p[1] for p in parts), sum(p[2] for p in parts), wall)

    def flops_per_real_token(self) -> float:
        for conn in self.conns:
            conn.send(("flops", None))
        return [conn.recv() for conn in self.conns][0]

    def stop(self) -> None:
        for conn in self.conns:
            conn.send(("stop", None))
        for conn, proc in zip(self.conns, self.procs, strict=True):
            conn.recv()
            proc.join(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--corpus", default="scifact,nfcorpus")
    parser.add_argument("--objectives", default=",".join(SHAPES))
    parser.add_argument("--rounds", type=int, default=3, help="interleaved old/new rounds")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round and path")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of this process: the old path's, and the new one's "
                             "with --new-processes 1 (default: torch's, one per core)")
    parser.add_argument("--new-processes", type=int, default=None,
                        help="worker processes of the new path, one thread each (default: what "
                             "maebench pretrain picks for a long run: one per physical core); "
                             "1 runs the new code path in this process instead")
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
    from benchmark.training.processes import CPU_MICRO_POSITIONS, physical_cores

    workers = args.new_processes or physical_cores()
    peak = _gemm_peak_per_core()
    threads = torch.get_num_threads()
    print(f"CPU: {_cpu()}; {physical_cores()} physical cores; old: 1 process x {threads} threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}; new: "
          + (f"{workers} processes x 1 thread (passive), micro-batches of at most "
             f"{CPU_MICRO_POSITIONS} positions" if workers > 1 else
             f"1 process x {threads} threads (this process)")
          + f"; GEMM peak {peak:.1f} GFLOP/s per core (fp32, torch.mm single-threaded); "
          f"{args.rounds} rounds x {args.steps} steps per path, interleaved", flush=True)
    pairs_cache: dict[tuple[int, bool], list] = {}
    header = (f"{'shape':10s} {'path':4s} {'procs':>6s} {'tok/CPU-s':>10s} {'tok/s':>7s} "
              f"{'padding':>8s} {'GFLOP/CPU-s':>12s} {'of peak':>8s} {'new/old CPU':>12s} "
              f"{'new/old wall':>13s}")
    print(header)
    for key in args.objectives.split(","):
        name, length, spans = SHAPES[key]
        runs = {}
        for new in (False, True):
            if (length, new) not in pairs_cache:
                pairs_cache[(length, new)] = build_pairs(texts, tokenizer, length, balanced=new)
            if new and workers > 1:
                runs[new] = Workers(workers, key, backbone, pairs_cache[(length, new)])
            else:
                runs[new] = Path_(new, name, length, spans, backbone, pairs_cache[(length, new)])
                runs[new].train(1)  # warm-up: one-off allocations
        rates: dict[bool, list[float]] = {False: [], True: []}
        walls: dict[bool, list[float]] = {False: [], True: []}
        totals = {False: [0, 0], True: [0, 0]}
        for _ in range(args.rounds):
            for new in (False, True):
                cpu, real, positions, wall = runs[new].train(args.steps)
                rates[new].append(real / cpu)
                walls[new].append(real / wall)
                totals[new][0] += real
                totals[new][1] += positions
        medians = {new: statistics.median(rates[new]) for new in rates}
        per_wall = {new: statistics.median(walls[new]) for new in walls}
        for new in (False, True):
            flops = runs[new].flops_per_real_token()
            gflops = medians[new] * flops / 1e9
            pad = 1 - totals[new][0] / totals[new][1]
            cpu_ratio = f"{medians[True] / medians[False]:.2f}x" if new else ""
            wall_ratio = f"{per_wall[True] / per_wall[False]:.2f}x" if new else ""
            procs = f"{workers}x1" if new and workers > 1 else f"1x{threads}"
            print(f"{key:10s} {'new' if new else 'old':4s} {procs:>6s} {medians[new]:10.0f} "
                  f"{per_wall[new]:7.0f} {pad:8.1%} {gflops:12.1f} {gflops / peak:8.0%} "
                  f"{cpu_ratio:>12s} {wall_ratio:>13s}", flush=True)
            if isinstance(runs[new], Workers):
                runs[new].stop()
            elif runs[new].pool:
                runs[new].pool.shutdown(wait=True)
        del runs


if __name__ == "__main__":
    sys.exit(main())
