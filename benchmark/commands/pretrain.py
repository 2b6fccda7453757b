"""`maebench pretrain`: MAE-style pre-training of a card's encoder into a new card."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("pretrain")
    def pretrain(
        objective: str = typer.Option(..., "--objective", help="mlm, condenser, cocondenser, retromae, "
                                      "dupmae, cotmae, bowpred, simlm; or your own: "
                                      "path/to/file.py:ClassName, or an installed "
                                      "maebench.objectives entry point"),
        init: str = typer.Option(..., "--init", help="card whose encoder is the starting point"),
        corpus: str = typer.Option(..., "--corpus", help="task name(s), comma-separated, or a BEIR "
                                   "corpus.jsonl file"),
        budget: str = typer.Option(..., "--budget", help="'300steps' or tokens: '2M', '1.5M tokens'"),
        name: str = typer.Option(..., "--name", help="name of the new card"),
        seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1),
        recipe: Path | None = typer.Option(None, "--recipe", help="a recipe file instead of the "
                                           "objective's bundled one"),
        set_: list[str] = typer.Option([], "--set", help="recipe override key=value (repeatable)"),
        data_dir: Path | None = typer.Option(None, "--data-dir", envvar="MAEBENCH_DATA_DIR"),
        device: str | None = typer.Option(None, "--device"),
        precision: str | None = typer.Option(None, "--precision", help="no, fp16, bf16 (default: "
                                             "the recipe's on a GPU, no on CPU)"),
        accumulation: int = typer.Option(1, "--accumulation", min=1),
        generator: str | None = typer.Option(None, "--generator", help="simlm: the ELECTRA "
                                             "generator checkpoint"),
        resume: bool = typer.Option(False, "--resume", help="continue an interrupted run"),
        overwrite: bool = typer.Option(False, "--overwrite"),
        models: Path | None = typer.Option(None, "--models-dir", help="where the card goes"),
        holdout: float = typer.Option(0.0, "--holdout", min=0.0, max=0.5, help="share of the "
                                      "corpus's documents never trained on; their spans' loss terms "
                                      "are measured during the run (card: heldout_start/_end)"),
        evaluations: int = typer.Option(10, "--evaluations", min=1, max=1000, help="held-out "
                                        "measurements after step 0"),
        processes: int | None = typer.Option(None, "--processes", min=1, max=64, help="CPU "
                                             "training processes, one thread each, sharing every "
                                             "step's batch (default: one per core for a run of 1M+ "
                                             "positions whose loss splits over the batch, else 1)"),
        micro_batch_positions: int | None = typer.Option(
            None, "--micro-batch-positions", min=1, help="most positions per forward pass: each "
            "process's share of a step is cut into micro-batches this size, one optimizer step "
            "(default: 2048 on a CPU, where smaller activations fit the caches; whole on a GPU)"),
    ) -> None:
        """Pre-train with one MAE objective; writes weights under the maebench home and a card."""
        from benchmark.training.finetune import passive_thread_wait

        passive_thread_wait()  # training: OpenMP threads sleep, not spin (before torch loads)
        from benchmark.catalog.registry import get_card
        from benchmark.core.progress import progress_log
        from benchmark.training.objectives import check_objective
        from benchmark.training.pretrain import PretrainOptions, pretrain_card
        from benchmark.training.recipes import parse_overrides

        objective = check_objective(objective)  # a plugin's card name: file.py:ClassName
        overrides = parse_overrides(set_)
        with progress_log("benchmark.training"):
            card = pretrain_card(get_card(init), PretrainOptions(
                objective=objective, corpus=corpus, budget=budget, name=name, seed=seed,
                recipe_path=recipe, overrides=overrides, data_dir=data_dir, device=device,
                precision=precision, accumulation=accumulation, resume=resume, overwrite=overwrite,
                models_dir=models, generator=generator, holdout=holdout, evaluations=evaluations,
                processes=processes, micro_batch_positions=micro_batch_positions,
            ))
        typer.echo(f"wrote {card}")
