"""`maebench run`: evaluate retrievers on catalog tasks and store the results.

--model takes registry names, or a checkpoint (local folder or hub id) to run without a card:
its settings then come from the checkpoint's own sentence-transformers configuration and the
flags below. Every dense run checks the card against that configuration (a wrong pooling must
not give wrong numbers quietly). Tasks that already have a result for the same evaluation are
skipped (said per task) and the others run; --overwrite redoes them.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer


def _split(value: str) -> list[str]:
    """Comma-separated names; an empty list is an error (it used to exit 0 having done nothing)."""
    from benchmark.core.errors import MaebenchError

    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise MaebenchError(f"no name in '{value}': give at least one (comma-separated)")
    return names


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        model: str = typer.Option(
            "bm25", "--model", "-m",
            help="Registry name(s), comma-separated, or a checkpoint folder / hub id (card-free).",
        ),
        task: str = typer.Option("tiny", "--task", "-t", help="Task name(s), comma-separated."),
        data_dir: Path | None = typer.Option(
            None, help="Folder of BEIR datasets (<dir>/<task>/corpus.jsonl); env MAEBENCH_DATA_DIR."
        ),
        results_dir: Path | None = typer.Option(None, help="Results database (default results/)."),
        overwrite: bool = typer.Option(False, help="Redo tasks that already have a result."),
        strict: bool = typer.Option(
            False, help="A card that contradicts its checkpoint's configuration is an error."
        ),
        device: str | None = typer.Option(None, help="torch device (default: cuda if available)."),
        top_k: int = typer.Option(
            1000, min=1000, help="Ranking depth used for evaluation (at least R@1000's cutoff)."
        ),
        name: str | None = typer.Option(
            None, help="Card-free: the name results are stored under (default: folder name)."
        ),
        family: str | None = typer.Option(
            None, help="Card-free: mae, contrastive, sparse or supervised (default contrastive)."
        ),
        pooling: str | None = typer.Option(None, help="Card-free: cls, mean or pooler."),
        normalize: bool | None = typer.Option(
            None, "--normalize/--no-normalize", help="Card-free: L2-normalise embeddings."
        ),
        similarity: str | None = typer.Option(None, help="Card-free: dot or cosine."),
        query_prefix: str | None = typer.Option(None, help="Card-free: text before each query."),
        passage_prefix: str | None = typer.Option(None, help="Card-free: text before each passage."),
        max_length: int | None = typer.Option(None, min=1, help="Card-free: max tokens per text."),
        title: str | None = typer.Option(None, help="Card-free: prepend, none or pair."),
        store: bool = typer.Option(
            True, help="Dense: keep/reuse vectors in the embedding store ($MAEBENCH_HOME/embeddings)."
        ),
        store_dtype: str = typer.Option("float32", help="Dense: stored vectors, float32 or float16."),
        engine: str = typer.Option("local", help="Dense: encode engine, local or ray."),
        ray_address: str | None = typer.Option(None, help="--engine ray: cluster address (e.g. auto)."),
        ray_workers: int | None = typer.Option(None, min=1, help="--engine ray: encoder actors."),
        max_memory: str = typer.Option("8GB", help="Dense: memory bound (sizes corpus shards)."),
        search: str = typer.Option(
            "exact", help="Dense: exact, or approximate hnsw / ivf (labelled, recall measured)."
        ),
        dtype: str | None = typer.Option(
            None, help="Dense: float32, float16 or bfloat16 forward pass (default: the card's); "
            "recorded, and a new evaluation.",
        ),
        backend: str | None = typer.Option(
            None, help="Dense: inference backend, auto (OpenVINO on CPU where it converts and "
            "passes the parity check, else torch), torch or openvino; default $MAEBENCH_BACKEND "
            "or auto. Recorded; the same evaluation.",
        ),
    ) -> None:
        """Evaluate MODEL on TASK (defaults: BM25 on the embedded tiny task) and store the result."""
        from rich.console import Console

        from benchmark.catalog.tasks import find_task
        from benchmark.core.errors import MaebenchError
        from benchmark.core.paths import results_dir as default_results_dir
        from benchmark.pipeline.runner import RunOptions
        from benchmark.retrievers.options import store_options

        console = Console(stderr=True, soft_wrap=True)  # long paths stay on one line
        overrides = {"pooling": pooling, "normalize": normalize, "similarity": similarity,
                     "query_prefix": query_prefix, "passage_prefix": passage_prefix,
                     "max_length": max_length, "title": title}
        names = _split(model)
        if len(names) > 1 and (name or any(v is not None for v in overrides.values())):
            raise MaebenchError("--name and the card-free settings go with one --model only")
        cards = [_resolve(n, name, family, overrides, console) for n in names]
        if dtype is not None:
            cards = [(_with_dtype(card, dtype, device, console), inferred)
                     for card, inferred in cards]
        tasks = list({spec.name: spec for spec in map(find_task, _split(task))}.values())
        options = RunOptions(
            results_dir=results_dir or default_results_dir(),
            data_dir=data_dir,
            overwrite=overwrite,
            device=device,
            top_k=top_k,
            command=shlex.join(["maebench", *sys.argv[1:]]),
            store=store_options(store, store_dtype, engine, ray_address, ray_workers, max_memory,
                                search, backend),
        )
        failed: list[tuple[str, str]] = []
        alone = len(cards) * len(tasks) == 1  # its failure is the error line, said once
        try:
            for card, inferred in cards:
                record = {"card_warnings": _check_card(card, strict, console)}
                if inferred is not None:
                    record["card_free"] = {"inferred_from": card.retriever.checkpoint,
                                           "card": card.model_dump(mode="json")}
                for spec in tasks:
                    why = _run_one(card, spec, options, record, console, alone)
                    if why is not None:
                        failed.append((f"{card.name} on {spec.name}", why))
        except KeyboardInterrupt as exc:  # typer would drop an encode's note of what it kept
            from benchmark.core.errors import Interrupted

            raise Interrupted(str(exc)) from exc
        if alone and failed:
            raise MaebenchError(failed[0][1])
        if failed:  # each reason was printed once, as its task failed; the total, not them again
            raise MaebenchError(
                f"{len(failed)} of {len(cards) * len(tasks)} runs failed "
                f"({', '.join(what for what, _ in failed)}); each reason is printed above")


def _resolve(value: str, name: str | None, family: str | None, overrides: dict, console):
    """(card, inferred settings or None): a registry card, else a card-free checkpoint."""
    from benchmark.catalog.registry import find_card
    from benchmark.core.errors import RegistryError

    given = any(v is not None for v in overrides.values())
    if not given and name is None:
        try:
            return find_card(value), None
        except RegistryError as exc:
            if not _looks_like_checkpoint(value):
                raise
            wraps = "wraps that checkpoint" in str(exc)
            if wraps:  # a card states this checkpoint's settings with their sources: prefer it
                raise RegistryError(
                    f"{str(exc).split(' (known')[0]}; run that card, or pass --name to run "
                    "the checkpoint card-free"
                ) from exc
    from benchmark.catalog.cardfree import card_free
    from benchmark.catalog.registry import models_dir

    card, settings = card_free(value, name, overrides, family)
    if (models_dir() / f"{card.name}.yaml").exists():
        raise RegistryError(
            f"'{card.name}' is a registry card; pass --name to store the card-free run apart"
        )
    console.print(f"[bold]{card.name}[/]: card-free run of {value}")
    for key, item in sorted(settings.items()):
        console.print(f"  {key} = {item.value!r}  [dim]({item.source})[/]")
    return card, settings


def _with_dtype(card, dtype: str, device: str | None, console):
    """The card with its forward-pass dtype replaced. The dtype is part of the card's config, so
    the result is a new evaluation (its config hash differs) and the store keys it apart."""
    from typing import get_args

    from benchmark.catalog.registry import ModelDtype
    from benchmark.core.errors import MaebenchError

    choices = get_args(ModelDtype)
    if dtype not in choices:
        raise MaebenchError(f"unknown --dtype '{dtype}' (choose from {', '.join(choices)})")
    if card.retriever.kind != "dense":
        raise MaebenchError(f"--dtype applies to dense models; '{card.name}' is {card.retriever.kind}")
    from benchmark.core.devices import pick_device

    if dtype == "float16" and pick_device(device).startswith("cpu"):
        console.print("[yellow]note[/] float16 on CPU is emulated and slow; CPUs with "
                      "avx512_bf16 or AMX run bfloat16 natively")
    retriever = card.retriever.model_copy(update={"dtype": dtype})
    return card.model_copy(update={"retriever": retriever})


def _looks_like_checkpoint(value: str) -> bool:
    return Path(value).is_dir() or "/" in value


def _check_card(card, strict: bool, console) -> list[str]:
    """Warnings where a dense card contradicts its checkpoint's own ST configuration."""
    if card.retriever.kind != "dense" or not card.retriever.checkpoint:
        return []
    from benchmark.catalog.st_config import card_disagreements, read_st_config
    from benchmark.catalog.weights import resolve_checkpoint
    from benchmark.core.errors import RegistryError

    cfg = card.retriever
    source, origin = resolve_checkpoint(cfg.checkpoint, cfg.local_package)
    st = read_st_config(cfg.checkpoint, source, cfg.revision if origin == "hub" else None)
    warnings = card_disagreements(cfg, st)
    if warnings and strict:
        raise RegistryError(f"{card.name}: " + "; ".join(warnings) + " (--strict)")
    for text in warnings:
        console.print(f"[bold red]WARNING[/] {card.name}: {text}; the result records this")
    return warnings


def _run_one(card, spec, options, record: dict, console, alone: bool = False) -> str | None:
    """Run one (model, task); the reason when it could not run (the others still go on).
    The reason is printed here when other runs follow; `alone`, the caller's error line says it."""
    from rich.markup import escape

    from benchmark.core.errors import MaebenchError
    from benchmark.core.progress import phase_spinner
    from benchmark.pipeline.runner import run_task
    from benchmark.results.result_store import read_result
    from benchmark.results.reuse import stored_stand_in

    stored = (None if options.overwrite
              else stored_stand_in(options.results_dir, card, spec, options.data_dir))
    if stored is not None:
        if stored.stands_in:
            console.print(f"[dim]skip {card.name} on {spec.name}: already stored for the same "
                          f"evaluation ({stored.path}); --overwrite redoes it[/]")
            return None
        why = f"{stored.path} exists but {stored.why_not}; --overwrite replaces it"
        if not alone:
            console.print(f"[red]not run[/] {card.name} on {spec.name}: {escape(why)}",
                          highlight=False)
        return why
    console.print(f"[bold]{card.name}[/] on [bold]{spec.name}[/] ...")
    note = cpu_cost_note(card, spec, options.device, options.store.backend)
    if note:
        console.print(f"[yellow]note[/] {note}")
    from dataclasses import replace

    with phase_spinner(console, f"{card.name} on {spec.name}"):
        try:
            path = run_task(card, spec, replace(options, record=record))
        except MaebenchError as exc:  # this task cannot run here; the others still do
            if not alone:
                console.print(f"[red]not run[/] {card.name} on {spec.name}: "
                              f"{escape(' '.join(str(exc).split()))}", highlight=False)
            return str(exc)
    result = read_result(path)
    metrics = "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    typer.echo(f"{card.name}\t{spec.name}\t{metrics}")
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in result.provenance.timings.items())
    console.print(f"  stored {path}  ({timings})")
    return None


# CPU-seconds per nominal FLOP (2 x parameters x the passage max length per document), from
# bench/bench_cpu_roofline.py here (AMD EPYC Zen 4, 2 cores, 2026-12-03, 640 NFCorpus passages,
# all-MiniLM-L6-v2 fp32): OpenVINO ~160e9 and torch ~119e9 nominal FLOP per CPU-second on a quiet
# machine, a whole NFCorpus run with OpenVINO ~156e9 beside other jobs. Rounded down by a quarter
# for a shared machine; a card's parameter count includes its embeddings, which cost no FLOPs,
# hence "nominal".
CPU_FLOPS = {"openvino": 120e9, "torch": 90e9}
NOTE_ABOVE_S = 120


def cpu_cost_note(card, spec, device: str | None, backend: str = "auto") -> str | None:
    """A line saying what a dense run on a big corpus costs on CPU, before it starts (the
    README's SciFact step takes minutes here), at the rate of the backend the policy picks;
    None when it is quick or not on CPU."""
    n_docs = spec.beir_stats.n_docs if spec.beir_stats else None
    if card.retriever.kind != "dense" or not n_docs or n_docs < 1000:
        return None  # (the embedded task's 80 short documents take seconds)
    from benchmark.core.devices import pick_device

    if not pick_device(device).startswith("cpu"):
        return None
    from benchmark.core.errors import MaebenchError
    from benchmark.retrievers.backends.policy import choose_backend

    tokens = card.retriever.passage_max_length
    params = card.parameters
    try:
        engine = choose_backend(backend, device, card.retriever.dtype).name
    except MaebenchError:
        engine = "torch"  # the run itself says why --backend openvino cannot run here
    if params:
        seconds = n_docs * tokens * 2 * params / CPU_FLOPS[engine]
        if seconds < NOTE_ABOVE_S:
            return None
        amount = (f"{seconds / 60:,.0f} CPU-minutes" if seconds < 7200
                  else f"{seconds / 3600:,.0f} CPU-hours")
        cost = (f"about {amount} with {engine} for {params / 1e6:,.1f}M parameters (estimated "
                "from this machine's measured rate: 2 cores, fp32)")
    elif n_docs >= 2000:
        cost = "tens of CPU-minutes or more (the card states no parameter count to estimate from)"
    else:
        return None
    return (f"encoding {n_docs:,} documents of up to {tokens} tokens on CPU: {cost}, less where "
            "its vectors are already in the embedding store; Ctrl-C stops it, finished shards "
            "are kept and the same command resumes")

