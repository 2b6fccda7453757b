"""`maebench models` and `maebench tasks`: the registry and the task catalog, one line each."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def models() -> None:
        """List the registry: one model card per line."""
        from rich.console import Console
        from rich.table import Table

        from benchmark.catalog.registry import load_cards, registry_error

        cards, errors = load_cards()
        table = Table("name", "family", "kind", "checkpoint", "pooling", "similarity", box=None)
        for card in cards.values():
            cfg = card.retriever
            if cfg.kind == "dense":
                if card.weights == "unreleased":
                    checkpoint = "(weights unreleased)"
                elif cfg.encoder == "separate":
                    checkpoint = f"{cfg.query_checkpoint} | {cfg.passage_checkpoint}"
                else:
                    checkpoint = cfg.checkpoint
                table.add_row(card.name, card.family, cfg.encoder, checkpoint, cfg.pooling,
                              cfg.similarity)
            else:
                table.add_row(card.name, card.family, "bm25",
                              f"{cfg.implementation} {cfg.fields} k1={cfg.k1} b={cfg.b}", "-", "-")
        Console(width=200).print(table)
        if errors:  # the valid cards are listed; the broken ones all at once, then exit 2
            raise registry_error(errors)

    @app.command()
    def tasks(all_: bool = typer.Option(False, "--all", help="Include CQADupStack forums.")) -> None:
        """List the task catalog: split, main metric, quirks."""
        from rich.console import Console
        from rich.table import Table

        from benchmark.catalog.tasks import all_tasks

        table = Table("name", "split", "main metric", "docs", "queries", "mteb", "quirks", box=None)
        for spec in all_tasks():
            if spec.part_of and not all_:
                continue
            stats = spec.beir_stats
            table.add_row(
                spec.name, spec.split, spec.main_metric,
                f"{stats.n_docs:,}" if stats else "?", f"{stats.n_queries:,}" if stats else "?",
                spec.mteb.name if spec.mteb else "-", ", ".join(spec.quirks) or "-",
            )
        Console(width=200).print(table)
