"""kill -9 at random moments of training, then resume: the final weights must equal those of an
uninterrupted run (issue 19).

For each job (a short `maebench finetune` on a tiny random BERT; a short pre-training, killed
and then resumed with --resume) this script runs it once uninterrupted for the reference
weights, then, per trial: starts it, sends SIGKILL at a seeded random moment, starts it again
(a resume) and kills that one too at another random moment, then lets a last resume finish, and
compares the weights' sha256 with the reference. A moment is either a random time in the
training part of the run (after the run's first checkpoint, within the reference's training
time) or, half of the time, the instant a random (1st-8th) new checkpoint folder of the run
appears, i.e. while the trainer is writing it (a checkpoint is saved every step). After
each kill the work folder is inspected and the torn checkpoints it left (folders without their
commit record) are counted.

    python bench/bench_kill_resume.py                    # 10 trials each of finetune and pretrain
    python bench/bench_kill_resume.py --jobs finetune --trials 3 --seed 7
    python bench/bench_kill_resume.py --jobs study       # a 2-arm study: every cell's weights
                                                         # and run files compared at the end
    python bench/bench_kill_resume.py --jobs pretrain2   # pre-training in 2 data-parallel processes
    python bench/bench_kill_resume.py --jobs pretrain-micro  # each step in 2 micro-batches

Prints one line per trial and a summary per job, e.g. `finetune: 10/10 resumed to the reference
weights (20 kills, 6 inside a save)`. Everything runs offline on CPU in a temporary folder
(--work keeps it). The pre-training job runs through this script's own `--child pretrain` mode
(pretrain_card with a save every step; the CLI has no flag for that), in a process of its own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FINETUNE_SET = {"queries_per_step": "2", "group_size": "2", "query_max_length": "16",
                "passage_max_length": "32", "max_steps": "16", "save_steps": "1",
                "negatives_depth": "5", "lr": "1e-3"}
PRETRAIN_STEPS = 16


# --------------------------------------------------------------------------- workspace


def make_workspace(root: Path) -> dict:
    """A tiny BERT, a synthetic BEIR folder named scifact (train + test), a models folder."""
    from tests.helpers.scifact import make_workspace as scifact_workspace

    workspace = scifact_workspace(root)
    return {"root": root, "data": workspace["data"], "models": workspace["models"]}


def study_spec(ws: dict) -> Path:
    """A two-arm study (fine-tune only, MLM) of one seed on the synthetic scifact folder."""
    import yaml

    from benchmark.core.paths import EMBEDDED_DATA_DIR

    path = ws["root"] / "study.yaml"
    if not path.is_file():
        path.write_text(yaml.safe_dump({
            "id": "killed", "description": "kill -9 bench", "init": "tiny-backbone",
            "corpus": str(EMBEDDED_DATA_DIR / "tiny" / "corpus.jsonl"), "budget_tokens": 1024,
            "pretrain_overrides": {"batch_size": 4, "max_length": 32},
            "arms": [{"name": "base", "objective": None}, {"name": "mlm", "objective": "mlm"}],
            "seeds": [0], "finetune": {"task": "scifact", "recipe": "standard-cpu",
                                       "overrides": dict(FINETUNE_SET)},
            "evaluate": ["scifact"], "baseline_arm": "base",
            "collapse_cosine": 1.0, "collapse_overlap": 1.0,
        }))
    return path


def command(job: str, ws: dict, resume: bool) -> list[str]:
    if job == "study":
        return [sys.executable, "-m", "benchmark.cli", "study", str(study_spec(ws)),
                "--data-dir", str(ws["data"]), "--device", "cpu"]
    if job == "finetune":
        sets = [arg for key, value in FINETUNE_SET.items() for arg in ("--set", f"{key}={value}")]
        return [sys.executable, "-m", "benchmark.cli", "finetune", "--model", "tiny-backbone",
                "--task", "scifact", "--recipe", "standard-cpu", "--name", "killed",
                "--device", "cpu", "--data-dir", str(ws["data"]), *sets]
    # pretrain2: the same run in two single-threaded data-parallel processes (its own
    # reference: another process count is another data order); the group kill reaches them.
    # pretrain-micro: one process, each step's 128 positions in two micro-batches of 64 (the
    # CPU default of 2,048 never cuts these tiny steps), so a kill can land between them
    return [sys.executable, str(Path(__file__).resolve()), "--child", "pretrain",
            "--child-data", str(ws["data"]), *(["--child-resume"] if resume else []),
            "--child-processes", "2" if job == "pretrain2" else "1",
            *(["--child-micro", "64"] if job == "pretrain-micro" else [])]


def environment(home: Path, models: Path) -> dict:
    env = {**os.environ, "MAEBENCH_HOME": str(home), "MAEBENCH_MODELS_DIR": str(models),
           "MAEBENCH_RESULTS_DIR": str(models.parent / "results"), "MAEBENCH_BACKEND": "torch",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    env.pop("MAEBENCH_DEBUG", None)
    return env


def card_weights(models: Path) -> str | None:
    """The finished run's outcome: the new card's weights (finetune, pretrain), or for a study,
    once its report exists, every cell card's weights and every cell result's run sha256."""
    import yaml

    card = models / "killed.yaml"
    if card.is_file():
        return yaml.safe_load(card.read_text())["retriever"]["revision"]
    results = models.parent / "results" / "studies"
    if not (results / "killed.json").is_file():
        return None
    cards = {p.stem: yaml.safe_load(p.read_text())["retriever"]["revision"]
             for p in sorted((models / "studies" / "killed").glob("*.yaml"))}
    runs = {f"{p.parent.name}/{p.stem}": json.loads(p.read_text())["run"]["sha256"]
            for p in sorted((results / "killed").glob("*/*.json"))}
    digest = hashlib.sha256(json.dumps([cards, runs], sort_keys=True).encode()).hexdigest()
    return f"sha256:{digest} ({len(cards)} cards, {len(runs)} results)"


def torn_checkpoints(home: Path) -> int:
    """Checkpoint / state folders without a commit record: a save the kill interrupted."""
    from benchmark.training.checkpoints import COMMIT_FILE

    return sum(1 for folder in checkpoint_folders(home) if not (Path(folder) / COMMIT_FILE).is_file())


def first_save_moment(proc: subprocess.Popen, home: Path, started: float) -> float | None:
    """Seconds from start until the first checkpoint folder appears (polled)."""
    while proc.poll() is None:
        if checkpoint_folders(home):
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def checkpoint_folders(home: Path) -> set[str]:
    """Checkpoint / state folders below home/checkpoints (os.walk: folders vanish while the
    trainers rotate them, which it tolerates)."""
    found = set()
    for top, dirs, _ in os.walk(home / "checkpoints"):
        for name in dirs:
            if name.split("-")[0] in ("checkpoint", "state") and name.split("-")[-1].isdigit():
                found.add(os.path.join(top, name))
    return found


def run(cmd: list[str], env: dict, kill: tuple[str, float] | None) -> tuple[int, float, float | None]:
    """Exit status, seconds, and (uninterrupted runs) when the first checkpoint appeared.
    `kill` ("save", N): SIGKILL the instant the N-th new checkpoint folder of this run appears,
    while the trainer is writing into it; ("after", s): SIGKILL s seconds after the first new
    checkpoint folder appears (the start-up before it varies with the machine's load)."""
    started = time.monotonic()
    home = Path(env["MAEBENCH_HOME"])
    before = checkpoint_folders(home)
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    first_save = None
    if kill is not None:
        seen: set[str] = set()  # older folders are rotated away: count every one ever seen
        deadline = None
        while proc.poll() is None:
            seen |= checkpoint_folders(home) - before
            if deadline is None and seen and kill[0] == "after":
                deadline = time.monotonic() + kill[1]
            if (kill[0] == "save" and len(seen) >= kill[1]) or (
                deadline is not None and time.monotonic() >= deadline
            ):
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.002)
    else:
        first_save = first_save_moment(proc, Path(env["MAEBENCH_HOME"]), started)
    _, err = proc.communicate()
    if proc.returncode not in (0, -signal.SIGKILL):
        lines = err.decode(errors="replace").strip().splitlines()
        print(f"    exit {proc.returncode}: {lines[-1] if lines else ''}", flush=True)
    return proc.returncode, time.monotonic() - started, first_save


def bench_job(job: str, ws: dict, trials: int, rng: random.Random) -> tuple[int, int, int, int]:
    ref_home, ref_models = ws["root"] / f"{job}-ref" / "home", ws["root"] / f"{job}-ref" / "models"
    shutil.copytree(ws["models"], ref_models)
    code, seconds, first_save = run(command(job, ws, resume=False),
                                    environment(ref_home, ref_models), None)
    reference = card_weights(ref_models)
    if code != 0 or reference is None:
        raise SystemExit(f"{job}: the uninterrupted reference run failed (exit {code})")
    # most of a tiny run is start-up (imports, BM25): kills are drawn from the training part
    training = seconds - (first_save or 0.0)
    print(f"{job}: reference {reference[:19]}... in {seconds:.1f}s (first checkpoint at "
          f"{first_save or 0:.1f}s, training {training:.1f}s)", flush=True)
    same = kills = torn = 0
    for trial in range(trials):
        home, models = ws["root"] / f"{job}-{trial}" / "home", ws["root"] / f"{job}-{trial}" / "models"
        shutil.copytree(ws["models"], models)
        env = environment(home, models)
        moments, torn_here = [], 0
        for attempt in range(2):  # the first run, then a resume, each killed at a random moment:
            # a random time in the training part, or the instant a random save starts writing
            if rng.random() < 0.5:
                kill = ("save", rng.randint(1, 8))
                what = f"save #{kill[1]}"
            else:
                kill = ("after", rng.uniform(0.0, 0.7 * training))
                what = f"{kill[1]:.1f}s after the first save"
            if card_weights(models) is not None:
                break  # the previous kill came after the card was written: nothing to resume
            code, _, _ = run(command(job, ws, resume=attempt > 0), env, kill)
            if code == -signal.SIGKILL:
                kills += 1
                moments.append(what)
                torn_here += torn_checkpoints(home)
            else:
                moments.append(f"{what} (had finished)")
                break
        torn += torn_here
        if card_weights(models) is None:
            run(command(job, ws, resume=True), env, None)
        weights = card_weights(models)
        ok = weights == reference
        same += ok
        print(f"  trial {trial + 1}: killed at {', '.join(moments)}; torn checkpoints left: "
              f"{torn_here}; final weights {'== reference' if ok else f'DIFFER ({weights})'}",
              flush=True)
    return same, trials, kills, torn


# --------------------------------------------------------------------------- child: pretrain


def child_pretrain(data: Path, resume: bool, processes: int = 1, micro: int | None = None) -> None:
    from benchmark.catalog.registry import get_card
    from benchmark.core.errors import MaebenchError
    from benchmark.core.paths import EMBEDDED_DATA_DIR
    from benchmark.training.pretrain import PretrainOptions, pretrain_card

    init = get_card("tiny-backbone")
    options = PretrainOptions(  # the embedded tiny corpus: its passages are long enough for spans
        objective="mlm", corpus=str(EMBEDDED_DATA_DIR / "tiny" / "corpus.jsonl"),
        data_dir=data, budget=f"{PRETRAIN_STEPS}steps",
        name="killed", seed=0, overrides={"batch_size": "4", "max_length": "32"}, device="cpu",
        resume=resume, save_every=1, processes=processes, micro_batch_positions=micro,
    )
    try:
        pretrain_card(init, options)
    except MaebenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default="finetune,pretrain")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--work", type=Path, default=None, help="keep the workspace here")
    parser.add_argument("--child", choices=["pretrain"], help=argparse.SUPPRESS)
    parser.add_argument("--child-data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-resume", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--child-micro", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "pretrain":
        child_pretrain(args.child_data, args.child_resume, args.child_processes, args.child_micro)
        return
    root = args.work or Path(tempfile.mkdtemp(prefix="maebench-kill-"))
    ws = make_workspace(root / "ws")
    rng = random.Random(args.seed)
    summary = {}
    for job in [j.strip() for j in args.jobs.split(",") if j.strip()]:
        same, trials, kills, torn = bench_job(job, ws, args.trials, rng)
        summary[job] = {"resumed_to_reference": same, "trials": trials, "kills": kills,
                        "kills_leaving_a_torn_checkpoint": torn}
        print(f"{job}: {same}/{trials} resumed to the reference weights ({kills} kills, "
              f"{torn} left a torn checkpoint)", flush=True)
    print(json.dumps(summary))
    if args.work is None:
        shutil.rmtree(root, ignore_errors=True)
    if any(v["resumed_to_reference"] != v["trials"] for v in summary.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
