"""`maebench models` and `maebench tasks`: the registry and the task catalog, one line each."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def models() -> None:
        """List the registry: one model card per line, and whether its weights are here."""
        from rich.console import Console
        from rich.table import Table

        from benchmark.catalog.registry import load_cards, registry_error

        cards, errors = load_cards()
        seen.clear()  # weights come and go between two calls in one process (tests)
        table = Table("name", "family", "kind", "checkpoint", "pooling", "similarity",
                      "weights here", box=None)
        rows = 0
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
                              cfg.similarity, _weights_here(card))
            else:
                table.add_row(card.name, card.family, "bm25",
                              f"{cfg.implementation} {cfg.fields} k1={cfg.k1} b={cfg.b}", "-", "-",
                              "yes (no weights)")
            rows += 1
        Console(width=230).print(table)
        runnable = sum(1 for c in cards.values() if _weights_here(c).startswith("yes"))
        Console(stderr=True, soft_wrap=True).print(
            f"{runnable} of {rows} cards can run here; the others need their weights in the "
            "Hugging Face cache or $MAEBENCH_WEIGHTS_DIR/<org>__<name>/ (no MAE checkpoint "
            "ships with maebench)", highlight=False)
        if errors:  # the valid cards are listed; the broken ones all at once, then exit 2
            raise registry_error(errors)

    def _weights_here(card) -> str:
        """`yes (where)` or `no: why`, for every checkpoint of the card (cached per card)."""
        if card.name in seen:
            return seen[card.name]
        from benchmark.catalog.weights import weights_here

        cfg = card.retriever
        if cfg.kind != "dense":
            answer = "yes (no weights)"
        elif card.weights == "unreleased":
            answer = "no: never released"
        else:
            names = ([cfg.query_checkpoint, cfg.passage_checkpoint] if cfg.encoder == "separate"
                     else [cfg.checkpoint])
            found = [weights_here(n, cfg.local_package, cfg.revision) for n in names]
            missing = [why for ok, why in found if not ok]
            answer = (f"no: {missing[0]}" if missing
                      else f"yes ({', '.join(dict.fromkeys(where for _, where in found))})")
        seen[card.name] = answer
        return answer

    seen: dict[str, str] = {}

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
