"""Data-parallel pre-training on a CPU: one single-threaded process per core instead of one
process whose two threads split every small matrix product.

Why: at the MAE lab's shapes (a 5M-parameter BERT, 32-64 spans of 128-256 tokens) a step's
matrix products are too small for two threads to share well, and every element-wise op
(dropout, GELU, LayerNorm, the optimizer) pays a thread hand-off. One thread per process gets
~1.5x more real tokens per CPU-second (bench/bench_pretrain_steps.py), and two such processes,
each taking its own half of a step's batch and averaging gradients (DistributedDataParallel over
gloo, as `accelerate launch --multi_cpu` would set it up), keep both cores busy.

The launcher is written here rather than taken from torchrun / `accelerate launch` for one
reason: those start their workers in a new session, so a `kill -9` of the command leaves
workers training and writing on as orphans. Here each worker asks the kernel to SIGKILL it when
its parent dies (PR_SET_PDEATHSIG), and stays in the command's process group, so Ctrl-C and a
kill of the group reach it. Workers run `python -m <module>` (pre-training's own module) with
the environment accelerate reads (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR/PORT).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmark.core.errors import MaebenchError

# below this many positions a run is over before two workers have started (~5 s each: torch,
# transformers, the corpus): one process. 1M positions is ~8 CPU-minutes at the study's shapes.
MIN_POSITIONS_FOR_WORKERS = 1_000_000
MAX_PROCESSES = 64
# most positions per forward pass on a CPU: real tokens per CPU-second of one single-threaded
# process on the study's backbone rose from 1,855 (8,192 positions) to 2,139 (2,048) for MLM at
# 256 tokens as activations fit the caches (RetroMAE at 128: 1,305 at 4,096, 1,253 at 2,048)
CPU_MICRO_POSITIONS = 2048
PAYLOAD_ENV = "MAEBENCH_PRETRAIN_PAYLOAD"
ERROR_FILE_ENV = "MAEBENCH_WORKER_ERROR_FILE"


def physical_cores() -> int:
    """Cores, not hardware threads: two workers on one core's SMT siblings share its FMA units."""
    try:
        import psutil

        count = psutil.cpu_count(logical=False)
    except ImportError:  # psutil comes with accelerate; a bare count is the fallback
        count = None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(count or usable or 1, usable or 1))


def world_size() -> int:
    """Processes of the data-parallel group this process belongs to (1 outside one)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def in_worker() -> bool:
    return PAYLOAD_ENV in os.environ


def resolve_processes(requested: int | None, device: str, data_parallel: bool,
                      positions: int) -> tuple[int, str]:
    """(processes, why). `requested` None = auto: one process per physical core on a CPU when the
    objective's loss splits over its batch and the run is long enough to repay starting them."""
    if requested is not None:
        if requested < 1 or requested > MAX_PROCESSES:
            raise MaebenchError(f"--processes {requested}: give 1 to {MAX_PROCESSES}")
        if requested > 1 and device != "cpu":
            raise MaebenchError(f"--processes {requested} runs single-threaded CPU workers; on "
                                f"{device} use `accelerate launch` (one process per GPU)")
        if requested > 1 and not data_parallel:
            raise MaebenchError(f"--processes {requested}: this objective's loss compares examples "
                                "across the whole batch (in-batch negatives), so splitting the batch "
                                "over processes would change it; use --processes 1")
        return requested, "asked for"
    if device != "cpu":
        return 1, f"device {device}"
    if not data_parallel:
        return 1, "the loss compares examples across the batch"
    cores = physical_cores()
    if cores < 2:
        return 1, "one core"
    if positions < MIN_POSITIONS_FOR_WORKERS:
        return 1, f"{positions:,} positions: too short to repay starting workers"
    return cores, f"one single-threaded process per core ({cores} cores)"


def micro_batches(requested: int | None, device: str, positions: int, max_length: int) -> int:
    """How many micro-batches a process's `positions` per step are cut into: enough that none
    exceeds `requested` (None: CPU_MICRO_POSITIONS on a CPU, no cut on a GPU), never so many that
    one could not hold a pair of spans of `max_length`."""
    cap = requested if requested is not None else (CPU_MICRO_POSITIONS if device == "cpu" else None)
    if cap is not None and cap < 1:
        raise MaebenchError(f"--micro-batch-positions {cap}: give a positive number of positions")
    if cap is None or positions <= cap:
        return 1
    most = max(1, positions // (2 * max_length))
    return max(1, min(-(-positions // cap), most))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    """PR_SET_PDEATHSIG: the kernel SIGKILLs this worker when the process that started it dies,
    so a kill -9 of `maebench pretrain` cannot leave a worker writing checkpoints alone."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: Ctrl-C still reaches the process group
        pass


def launch_workers(payload: dict, processes: int, module: str) -> None:
    """Run `processes` single-threaded workers (`python -m module`, reading `payload`) and wait
    for all of them. A worker's failure stops the others and is raised here as its one line
    (rank 0's when several fail)."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="maebench-workers-") as tmp:
        workers: list[subprocess.Popen] = []
        logs = []
        try:
            for rank in range(processes):
                env = dict(os.environ)
                env.update({
                    PAYLOAD_ENV: json.dumps(payload), ERROR_FILE_ENV: str(Path(tmp) / f"error-{rank}"),
                    "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(processes),
                    "LOCAL_WORLD_SIZE": str(processes), "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                    "OMP_WAIT_POLICY": "PASSIVE",
                })
                # rank 0 speaks for the run; the others' output is kept for when they fail alone
                log = None if rank == 0 else open(Path(tmp) / f"log-{rank}", "wb")  # noqa: SIM115
                logs.append(log)
                workers.append(subprocess.Popen(
                    [sys.executable, "-m", module], env=env,
                    stdout=log, stderr=log, preexec_fn=_die_with_parent))
            failed = _wait(workers)
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
            for log in logs:
                if log is not None:
                    log.close()
        if failed is not None:
            raise MaebenchError(_failure_line(Path(tmp), failed, workers[failed].returncode))


def _wait(workers: list[subprocess.Popen]) -> int | None:
    """Wait for every worker; at the first failure, stop the rest. Returns the rank to report."""
    while True:
        codes = [worker.poll() for worker in workers]
        bad = [rank for rank, code in enumerate(codes) if code not in (None, 0)]
        if bad:
            time.sleep(0.5)  # a peer failing on the same input reports its own line too
            for worker in workers:
                if worker.poll() is None:
                    worker.terminate()
            for worker in workers:
                try:
                    worker.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    worker.kill()
            own = [rank for rank in range(len(workers)) if workers[rank].returncode not in (0, None)
                   and workers[rank].returncode != -signal.SIGTERM]
            return min(own or bad)
        if all(code == 0 for code in codes):
            return None
        time.sleep(0.2)


def _failure_line(tmp: Path, rank: int, code: int | None) -> str:
    error = tmp / f"error-{rank}"
    if error.is_file() and error.read_text().strip():
        return error.read_text().strip().splitlines()[0]
    tail = ""
    log = tmp / f"log-{rank}"
    if log.is_file():
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        tail = f": {lines[-1][:300]}" if lines else ""
    return f"pre-training worker {rank} stopped (exit code {code}){tail}"


def report_failure(message: str) -> None:
    """A worker's one-line error, for the launcher to raise (workers print nothing themselves)."""
    path = os.environ.get(ERROR_FILE_ENV)
    if path:
        Path(path).write_text(message + "\n")
    else:
        print(f"error: {message}", file=sys.stderr)
