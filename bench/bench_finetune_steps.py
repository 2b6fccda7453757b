"""Fine-tuning steps per CPU-second at a study cell's shape: the code of 1d80994 against today's,
interleaved in one process on the same machine (issue 26, item 2).

The cell: the scratch-mae study's fine-tuning, i.e. a 5.4M-parameter BERT (L4-H256-A4, FFN 1024,
a WordPiece vocabulary of 8192 learnt on the task's corpus, random weights) trained with the
`scratch-cosine` recipe (64 queries per step, group 2, query 48 / passage 128 tokens, cosine at
temperature 0.02, a checkpoint every 6 steps) on the task's real train split with BM25 negatives.
The old path is `git show <rev>:benchmark/training/finetune.py` loaded as a module of its own;
both paths train one stage from the same backbone, negatives and seed, alternating which goes
first in each round. CPU seconds are the process's (every thread's) user + system time, so a
busy machine inflates wall time far more than them; still, rerun on a quiet machine for the
number to quote.

  HF_HUB_OFFLINE=1 python bench/bench_finetune_steps.py --data-dir ../shared/data/beir \\
      --task scifact --steps 12 --rounds 2
  ... --old-threads passive   # both paths with the new thread policy: the code's own gain

Prints, per run, steps per CPU-second of the training loop (after its first step, which pays
one-off allocations; checkpoint saves included) and of the whole stage (model load, data
preparation, training, final save), then the new/old ratios, the CPU model, its ISA flags and
the load average.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def cpu_description() -> str:
    """CPU model, the ISA flags that decide the kernels (avx2 / avx512f / amx), cores, load."""
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = ([f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
           or ["none of avx2/avx512f"])
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"CPU: {model}; ISA: {' '.join(isa)}; {cores} cores available; "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def old_module(rev: str):
    """benchmark/training/finetune.py as of `rev`, importable beside today's."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:benchmark/training/finetune.py"],
                            check=True, capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader("old_finetune", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__file__ = f"{rev}:benchmark/training/finetune.py"
    sys.modules["old_finetune"] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - our own git history
    return module


def build_backbone(folder: Path, corpus: Path, seed: int = 0) -> Path:
    """The study's backbone shape with random weights; the vocabulary is learnt by tokenizers'
    own WordPiece trainer (seconds; maebench's deterministic learner takes a minute and only
    the token lengths matter here)."""
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    if (folder / "config.json").is_file():
        return folder
    texts = []
    with corpus.open(encoding="utf-8") as handle:
        for line in handle:
            doc = json.loads(line)
            texts.append(f"{doc.get('title', '')} {doc.get('text', '')}")
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(texts, vocab_size=8192, min_frequency=2,
                                  special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tokenizer = BertTokenizerFast(tokenizer_object=wordpiece._tokenizer, do_lower_case=True,
                                  unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                                  cls_token="[CLS]", mask_token="[MASK]")
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=256, num_hidden_layers=4,
                        num_attention_heads=4, intermediate_size=1024, max_position_embeddings=512,
                        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = BertForMaskedLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def card_text(checkpoint: Path) -> str:
    from tests.helpers.cards import backbone_card

    return backbone_card(str(checkpoint), "bench-backbone",
                         display_name="bench backbone (L4-H256, random)",
                         description="the scratch-mae study's backbone shape with random weights",
                         source="bench/bench_finetune_steps.py", pooling="cls",
                         passage_max_length=256, title_separator=" ", batch_size=64)


def Timer():  # noqa: N802 - a class built lazily (transformers)
    from transformers import TrainerCallback

    class _Timer(TrainerCallback):
        def __init__(self) -> None:
            self.marks: dict[str, float] = {}
            self.steps = 0

        def on_step_end(self, args, state, control, **kwargs):
            self.steps = state.global_step
            if state.global_step == 1:
                self.marks["after_first"] = time.process_time()

        def on_train_end(self, args, state, control, **kwargs):
            self.marks["end"] = time.process_time()

    return _Timer()


def child(args) -> None:
    """One timed stage in this process: `old` with 1d80994's code and the process defaults it
    ran with, `new` with today's, including its thread policy (set before torch is imported)."""
    if args.child == "new" or args.old_threads == "passive":
        from benchmark.training.finetune import passive_thread_wait

        passive_thread_wait()
    _quiet()
    import benchmark.training.finetune as new
    from benchmark.catalog.registry import get_card
    from benchmark.catalog.tasks import get_task
    from benchmark.training.negatives import load_train_data
    from benchmark.training.recipes import load_recipe

    module = old_module(args.old) if args.child == "old" else new
    work = args.work
    backbone = get_card("bench-backbone", work / "models")
    recipe = load_recipe(args.recipe, {"max_steps": str(args.steps)})
    config = new._check_backbone(backbone, recipe)
    data = load_train_data(get_task(args.task), args.data_dir)
    pools = new._bm25_negatives(data, recipe, work / "negatives")  # cached by the parent
    stage_dir = work / f"run-{args.child}-{args.round}"
    shutil.rmtree(stage_dir, ignore_errors=True)  # a finished stage would be loaded, not trained
    stage_dir.mkdir(parents=True)
    timer = Timer()
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    # today's loop lives in benchmark.training.finetune_trainer (re-exported as train_stage)
    train_stage = module._train_stage if args.child == "old" else module.train_stage
    train_stage(1, str(work / "backbone"), config, data, pools, recipe, 0, stage_dir, "cpu",
                False, [timer])
    import torch

    print(json.dumps({
        "steps": timer.steps, "stage_cpu": time.process_time() - start_cpu,
        "wall": time.perf_counter() - start_wall,
        "loop_cpu": timer.marks["end"] - timer.marks["after_first"],
        "threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }))


def _quiet() -> None:
    import logging

    logging.disable(logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--task", default="scifact")
    parser.add_argument("--recipe", default="scratch-cosine")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per run (>= 2)")
    parser.add_argument("--rounds", type=int, default=2, help="old/new pairs, order alternating")
    parser.add_argument("--old", default="1d80994", help="git revision of the old path")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--old-threads", choices=["default", "passive"], default="default",
                        help="passive: the old path also gets the new OpenMP wait policy, which "
                             "isolates the gain of the code itself")
    parser.add_argument("--child", choices=["old", "new"], help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is not timed)")

    work = args.work = (args.work or Path(tempfile.mkdtemp(prefix="bench-ft-"))).resolve()
    os.environ["MAEBENCH_HOME"] = str(work / "home")
    os.environ["MAEBENCH_MODELS_DIR"] = str(work / "models")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child:
        child(args)
        return

    # the parent prepares what both paths share (and never imports torch before the children)
    from benchmark.catalog.tasks import get_task
    from benchmark.datasets.beir import resolve_folder
    from benchmark.training.negatives import load_train_data
    from benchmark.training.recipes import load_recipe

    spec = get_task(args.task)
    folder = resolve_folder(spec, args.data_dir)
    build_backbone(work / "backbone", folder / "corpus.jsonl")
    models = work / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / "bench-backbone.yaml").write_text(card_text(work / "backbone"))
    (models / "bm25.yaml").write_text((REPO / "models" / "bm25.yaml").read_text())
    recipe = load_recipe(args.recipe, {"max_steps": str(args.steps)})
    data = load_train_data(spec, args.data_dir)
    import benchmark.training.finetune as new

    (work / "negatives").mkdir(exist_ok=True)
    new._bm25_negatives(data, recipe, work / "negatives")
    print(cpu_description())
    print(f"cell: {args.task} train ({len(data.positives)} queries), recipe {recipe.name}: "
          f"{recipe.queries_per_step} queries x group {recipe.group_size}, q{recipe.query_max_length}/"
          f"p{recipe.passage_max_length}, {recipe.similarity} t={recipe.temperature}, "
          f"{args.steps} steps per run, checkpoint every {recipe.save_steps}; old = {args.old}; "
          "each run in a fresh process")

    results: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
    for round_ in range(args.rounds):
        order = ("old", "new") if round_ % 2 == 0 else ("new", "old")
        for which in order:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", which, "--round", str(round_),
                   "--work", str(work), "--task", args.task, "--recipe", args.recipe,
                   "--steps", str(args.steps), "--old", args.old, "--old-threads", args.old_threads]
            if args.data_dir:
                cmd += ["--data-dir", str(args.data_dir)]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{\"steps\"")]
            if proc.returncode or not lines:
                sys.exit(f"{which} run failed:\n{proc.stderr[-3000:]}")
            r = json.loads(lines[-1])
            loop = (r["steps"] - 1) / r["loop_cpu"]
            whole = r["steps"] / r["stage_cpu"]
            results[which].append((loop, whole))
            print(f"round {round_ + 1} {which}: {r['steps']} steps; loop {loop:.4f} steps/CPU-s "
                  f"({r['loop_cpu'] / (r['steps'] - 1):.2f} CPU-s/step); whole stage {whole:.4f} "
                  f"steps/CPU-s ({r['stage_cpu']:.1f} CPU-s, {r['wall']:.1f} s wall; threads "
                  f"{r['threads']}, OMP_WAIT_POLICY {r['omp_wait_policy']})", flush=True)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    loop_ratio = mean([n for n, _ in results["new"]]) / mean([o for o, _ in results["old"]])
    whole_ratio = mean([n for _, n in results["new"]]) / mean([o for _, o in results["old"]])
    print(f"new/old steps per CPU-second: training loop {loop_ratio:.2f}x, whole stage {whole_ratio:.2f}x")
    print(cpu_description())


if __name__ == "__main__":
    main()
