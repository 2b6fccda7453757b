"""The per-query page's data: every model's per-query scores, and (where the task's data is
here without a download) each query's text, the best models' top 10 from their stored runs and
the judged relevance of those documents."""

from __future__ import annotations

from benchmark.core.errors import MaebenchError
from benchmark.site.options import SiteOptions
from benchmark.site.views import TaskView

TOP_SHOWN = 10  # documents per model and query on the per-query page
SNIPPET = 140  # characters of a document shown there
TOP_MODELS = 12  # models whose top-10 lists the page carries (the best ones and the baseline):
# 40 models x 7,000 MS MARCO queries x 10 ids would make a page of tens of megabytes


def _dataset_for(task: str, options: SiteOptions):
    """The task's data (query texts, judgements, documents) when it is here without a
    download (embedded, --data-dir / MAEBENCH_DATA_DIR, cache); None otherwise."""
    from benchmark.catalog.tasks import get_task
    from benchmark.datasets.beir import load_beir_folder, resolve_folder

    try:
        spec = get_task(task)
        return load_beir_folder(spec, resolve_folder(spec, options.data_dir, download=False))
    except MaebenchError:
        return None


def per_query_data(view: TaskView, options: SiteOptions) -> dict:
    """Per-query scores of every model, and (where the data is here) each query's text, each
    model's top 10 from its stored run and the judged relevance of those documents."""
    from benchmark.results.result_store import read_run, result_path

    scores = view.scores
    qids = sorted(view.results[0].per_query[scores.metric])
    dataset = _dataset_for(view.name, options)
    models = []
    shown: set[str] = set()
    carried = {r.model.name for r in view.results[:TOP_MODELS]} | {options.baseline}
    for r in view.results:
        top: list[list[str]] | None = None
        if r.run is not None and r.model.name in carried:
            try:
                run = read_run(result_path(options.results_dir, r.model.name, r.task.name), r)
            except MaebenchError:
                run = None
            if run is not None:
                top = [[d for d, _ in run.get(q, [])[:TOP_SHOWN]] for q in qids]
                shown.update(d for docs in top for d in docs)
        models.append({"name": r.model.name, "display": r.model.display_name,
                       "scores": [round(r.per_query[scores.metric][q], 4) for q in qids],
                       "top": top})
    data: dict = {"metric": scores.metric, "qids": qids, "models": models,
                  "queries": None, "qrels": None, "docs": None}
    if dataset is not None:
        data["queries"] = [dataset.queries.get(q, "") for q in qids]
        data["qrels"] = [{d: g for d, g in sorted(dataset.qrels.get(q, {}).items()) if g > 0}
                         for q in qids]
        docs = {}
        for d in sorted(shown):
            doc = dataset.corpus.get(d)
            if doc is not None:
                text = (doc.title + ": " if doc.title else "") + doc.text
                docs[d] = text[:SNIPPET] + ("…" if len(text) > SNIPPET else "")
        data["docs"] = docs
    return data


def per_query_rows(view: TaskView, data: dict) -> list[dict]:
    """The task's query pair (best vs baseline, or the two best) query by query, the largest
    gain first: where one model wins is where a reader looks for why."""
    if view.query_pair is None:
        return []
    a, b = (view.results[[r.model.name for r in view.results].index(n)] for n in view.query_pair)
    metric = view.scores.metric
    texts = dict(zip(data["qids"], data["queries"] or [], strict=False))
    rows = []
    for q in sorted(a.per_query[metric]):
        va, vb = round(a.per_query[metric][q], 4), round(b.per_query[metric][q], 4)
        rows.append({"qid": q, "text": texts.get(q, ""), "a": va, "b": vb,
                     "diff": round(va - vb, 4)})
    return sorted(rows, key=lambda r: (-r["diff"], r["qid"]))
