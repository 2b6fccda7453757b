"""maebench: reproducible benchmark and leaderboard for MAE-pretrained dense retrievers.

The public API, for a notebook or a script (see README, "Layout" and "Using it from Python"):
five verbs over the layers below, the lookups that name what they take (a model card, a task, a
declared benchmark, as mteb's get_model_meta / get_task / get_benchmark), and the types they
accept and return. Each verb and lookup imports its layer when it is called, and each type when
it is first named (`benchmark.Result`), so `import benchmark` stays instant and loads no torch,
transformers, numpy or ranx.

    import benchmark
    result = benchmark.run("bm25", "tiny")                 # card + task -> stored Result
    report = benchmark.compare(["bm25", "all-minilm-l6-v2"], tasks=["tiny"])
    print(report)                                          # its Markdown tables
    scores = benchmark.evaluate(qrels, run).aggregates    # any run, any qrels
    benchmark.get_task("scifact").fingerprints            # what the catalog declares
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.core.provenance import VERSION

if TYPE_CHECKING:
    from benchmark.catalog.benchmarks import Benchmark
    from benchmark.catalog.registry import ModelCard
    from benchmark.catalog.tasks import TaskSpec
    from benchmark.comparison.compare import StatsOptions
    from benchmark.comparison.report import ComparisonReport
    from benchmark.evaluation.metrics import Evaluation
    from benchmark.reproduction.reproduce import Report as ReproductionReport
    from benchmark.results.schema import Result

__version__ = VERSION

VERBS = ("run", "evaluate", "compare", "load_results", "reproduce")
LOOKUPS = ("get_card", "get_task", "get_benchmark")
# type -> (module, name there): imported on first use (PEP 562), so naming one costs nothing
# until it is used
TYPES = {
    "ModelCard": ("benchmark.catalog.registry", "ModelCard"),
    "TaskSpec": ("benchmark.catalog.tasks", "TaskSpec"),
    "Benchmark": ("benchmark.catalog.benchmarks", "Benchmark"),
    "Result": ("benchmark.results.schema", "Result"),
    "Evaluation": ("benchmark.evaluation.metrics", "Evaluation"),
    "StatsOptions": ("benchmark.comparison.compare", "StatsOptions"),
    "ComparisonReport": ("benchmark.comparison.report", "ComparisonReport"),
    "ReproductionReport": ("benchmark.reproduction.reproduce", "Report"),
}
__all__ = [  # spelled out for readers and linters; tests/test_public_api.py checks it is the above
    "run", "evaluate", "compare", "load_results", "reproduce",
    "get_card", "get_task", "get_benchmark",
    "ModelCard", "TaskSpec", "Benchmark", "Result", "Evaluation", "StatsOptions",
    "ComparisonReport", "ReproductionReport",
]


def __getattr__(name: str) -> Any:
    if name in TYPES:
        from importlib import import_module

        module, attr = TYPES[name]
        value = getattr(import_module(module), attr)
        globals()[name] = value  # once: later lookups do not come back here
        return value
    raise AttributeError(f"module 'benchmark' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted({*globals(), *TYPES})


def _results_dir(results_dir: str | Path | None) -> Path:
    from benchmark.core.paths import results_dir as default_results_dir

    return Path(results_dir) if results_dir is not None else default_results_dir()


# --------------------------------------------------------------------------- lookups


def get_card(name: str, *, models_dir: str | Path | None = None) -> ModelCard:
    """The model card of this registry name (models/<name>.yaml, or a study's cell), as `run`
    takes it; an unknown name is an error naming the closest ones."""
    from benchmark.catalog.registry import get_card as registry_card

    return registry_card(name, Path(models_dir) if models_dir is not None else None)


def get_task(name: str) -> TaskSpec:
    """The catalog task of this name: split, quirks, relevance threshold, metrics, and the
    dataset fingerprints it declares (benchmark/data/tasks.yaml)."""
    from benchmark.catalog.tasks import get_task as catalog_task

    return catalog_task(name)


def get_benchmark(benchmark_id: str) -> Benchmark:
    """A declared benchmark (benchmark/data/benchmarks.yaml): its tasks, each with its metric."""
    from benchmark.catalog.benchmarks import get_benchmark as declared_benchmark

    return declared_benchmark(benchmark_id)


# --------------------------------------------------------------------------- verbs


def run(
    model: str | ModelCard,
    task: str | TaskSpec,
    *,
    data_dir: str | Path | None = None,
    results_dir: str | Path | None = None,
    device: str | None = None,
    overwrite: bool = False,
) -> Result:
    """Evaluate a model card (registry name or ModelCard) on a catalog task (name or TaskSpec),
    store the result in the results store and return it, as `maebench run` does.

    Data comes from `data_dir` (a folder of BEIR datasets), else $MAEBENCH_DATA_DIR, else the
    cache. A stored result that may stand in for this run (the same card configuration, task
    settings and data: benchmark.results.reuse) is returned without running, as `maebench run`
    skips it; one that may not is an error saying why, unless `overwrite` replaces it."""
    from benchmark.core.errors import ResultError
    from benchmark.pipeline.runner import RunOptions, run_task
    from benchmark.results.result_store import read_result
    from benchmark.results.reuse import stored_stand_in

    card = get_card(model) if isinstance(model, str) else model
    spec = get_task(task) if isinstance(task, str) else task
    root = _results_dir(results_dir)
    data = Path(data_dir) if data_dir is not None else None
    if not overwrite:
        stored = stored_stand_in(root, card, spec, data)
        if stored is not None and stored.stands_in:
            return stored.result
        if stored is not None:
            raise ResultError(f"{stored.path} exists but {stored.why_not}; "
                              "overwrite=True replaces it")
    options = RunOptions(results_dir=root, data_dir=data, overwrite=overwrite, device=device)
    return read_result(run_task(card, spec, options))


def evaluate(
    qrels: dict[str, dict[str, int]],
    run: dict[str, dict[str, float]] | dict[str, list[tuple[str, float]]],
    metrics: Sequence[str] | None = None,
    relevance_threshold: int = 1,
) -> Evaluation:
    """Score any run ({query: {doc: score}}) against qrels ({query: {doc: grade}}) after
    canonical tie-breaking: aggregates and per-query scores (default: the standard metrics,
    nDCG@10, MRR@10, R@100, R@1000, ...). A query absent from the run scores 0."""
    from benchmark.evaluation.metrics import STANDARD_METRICS
    from benchmark.evaluation.metrics import evaluate as evaluate_run

    chosen = tuple(metrics) if metrics is not None else STANDARD_METRICS
    return evaluate_run(qrels, run, chosen, relevance_threshold)


def load_results(
    results_dir: str | Path | None = None, *, model: str | None = None, task: str | None = None,
) -> list[Result]:
    """The stored results (each read and hash-checked), optionally of one model and/or task."""
    from benchmark.results.result_store import iter_results

    return [result for _, result in iter_results(_results_dir(results_dir))
            if (model is None or result.model.name == model)
            and (task is None or result.task.name == task)]


def compare(
    models: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    *,
    baseline: str | None = None,
    results_dir: str | Path | None = None,
    **stats: Any,
) -> ComparisonReport:
    """Paired significance tests between stored results, as `maebench compare`: every pair of
    `models` (default: all) on `tasks` (default: those the models share), corrected together,
    or each model against `baseline` only. `stats` sets StatsOptions (metric, n_perm, n_boot,
    seed, alpha). `print(report)` shows its Markdown tables (`report.to_markdown()`); its
    `comparisons` and `summary` hold the numbers, `as_dict()` the JSON `--format json` writes."""
    from benchmark.comparison.compare import StatsOptions, build_report, load_table

    table = load_table(_results_dir(results_dir))
    return build_report(table, list(tasks) if tasks else None, list(models) if models else None,
                        StatsOptions(**stats), baseline)


def reproduce(
    spec_id: str,
    *,
    results_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    no_run: bool = False,
) -> ReproductionReport:
    """Re-run a paper's table (a spec under results/reproductions/specs/) and judge every cell
    OK / OKish / FAIL / NOT RUN against its published number; `no_run` only compares what is
    stored. The report is returned, not written (`maebench reproduce` writes it); `print` it
    for the table `maebench reproduce` prints."""
    from benchmark.reproduction.reproduce import get_spec
    from benchmark.reproduction.reproduce import reproduce as reproduce_spec

    root = _results_dir(results_dir)
    return reproduce_spec(get_spec(spec_id, root), root,
                          Path(data_dir) if data_dir is not None else None, no_run=no_run)
