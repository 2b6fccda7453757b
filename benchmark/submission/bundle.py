"""Submission bundles: the card and the stored results of one model, as `maebench submit`
takes them (<model>.yaml, <task>.json, <task>.run.gz in one flat folder).

Files are copied byte for byte (the result JSON names its run file's sha256, so nothing may be
re-encoded); a result computed with another configuration than the card's is refused, since
the leaderboard would show it under a card that did not produce it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from benchmark.catalog.registry import ModelCard, get_card
from benchmark.core.errors import MaebenchError
from benchmark.results.result_store import read_result, result_path, run_path, stored_tasks


def _card_text(model: str, results: list, models_dir: Path) -> tuple[ModelCard | None, str]:
    """The registry card's file, else the inferred card a card-free run recorded."""
    path = models_dir / f"{model}.yaml"
    if path.is_file():
        from benchmark.core.validation import read_yaml_text

        return get_card(model, models_dir), read_yaml_text(path, MaebenchError)
    for result in results:
        card = result.provenance.runtime.get("card_free", {}).get("card")
        if card:
            from benchmark.catalog.registry import ModelCard

            return ModelCard.model_validate(card), yaml.safe_dump(
                card, sort_keys=False, allow_unicode=True)
    raise MaebenchError(f"no card models/{model}.yaml and no card-free result to take one from")


def write_bundle(model: str, tasks: list[str] | None, results_dir: Path, models_dir: Path,
                 out: Path) -> list[Path]:
    """Copy `model`'s card and results (all its tasks, or `tasks`) into the new folder `out`."""
    from benchmark.results.identity import same_config
    from benchmark.results.schema import ModelInfo

    names = tasks or stored_tasks(results_dir, model)
    if not names:
        raise MaebenchError(f"no results for model '{model}' in {results_dir}")
    paths = [result_path(results_dir, model, t) for t in names]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise MaebenchError(f"no result {missing[0]}")
    results = [read_result(p) for p in paths]
    card, text = _card_text(model, results, models_dir)
    config = ModelInfo.from_card(card).config
    for path, result in zip(paths, results, strict=True):
        if result.run is None:
            raise MaebenchError(f"{path} has no run file (an aggregate); bundle its subtasks")
        if not same_config(result.model.config, config):
            raise MaebenchError(f"{path} was computed with another configuration than the card")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MaebenchError(f"--out {out} exists and is not an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    written = [out / f"{model}.yaml"]
    written[0].write_text(text, encoding="utf-8")
    for path in paths:
        for source in (path, run_path(path)):
            shutil.copyfile(source, out / source.name)
            written.append(out / source.name)
    return written
