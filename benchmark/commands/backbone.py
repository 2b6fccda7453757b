"""`maebench backbone new`: a BERT backbone from scratch (vocabulary, config, seeded weights)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    backbone_app = typer.Typer(help="Backbones trained here from nothing (the MAE lab's starting point).",
                               no_args_is_help=True)
    app.add_typer(backbone_app, name="backbone")

    @backbone_app.command("new")
    def new(
        name: str = typer.Argument(..., help="name of the new card"),
        corpus: str = typer.Option("scifact,nfcorpus", "--corpus", help="task name(s), comma-separated, "
                                   "or a BEIR corpus.jsonl: only corpus documents are read"),
        vocab_size: int = typer.Option(8192, "--vocab-size"),
        layers: int = typer.Option(4, "--layers"),
        hidden: int = typer.Option(256, "--hidden"),
        heads: int = typer.Option(4, "--heads"),
        ffn: int = typer.Option(1024, "--ffn"),
        max_positions: int = typer.Option(512, "--max-positions"),
        min_frequency: int = typer.Option(2, "--min-frequency", min=1),
        seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1),
        data_dir: Path | None = typer.Option(None, "--data-dir", envvar="MAEBENCH_DATA_DIR"),
        models: Path | None = typer.Option(None, "--models-dir", help="where the card goes"),
        overwrite: bool = typer.Option(False, "--overwrite"),
    ) -> None:
        """Train a WordPiece vocabulary on the corpus, draw BERT weights from the seed, write a card."""
        from benchmark.training.backbone import BackboneOptions, BackboneSize, new_backbone

        size = BackboneSize(layers=layers, hidden=hidden, heads=heads, ffn=ffn,
                            max_positions=max_positions, vocab_size=vocab_size)
        card = new_backbone(BackboneOptions(name=name, corpus=corpus, size=size, seed=seed,
                                            min_frequency=min_frequency, data_dir=data_dir,
                                            models_dir=models, overwrite=overwrite))
        typer.echo(f"wrote {card}")
