"""A study's gates (manipulation checks): did the premises of the comparison take?

A study compares objectives on equal terms only if (1) stage 0 learnt more than word
frequencies, (2) each bottleneck arm's own loss term moved, and (3) fine-tuning left the floor.
scratch-mae ran as designed while none of these held (mae-lab-review.md): its contrasts compared
near-copies of one backbone fine-tuned to near chance. So each gate is judged on data the test set
never touches (held-out corpus documents, train queries held out of fine-tuning), before any test
number exists; a failed gate makes the study **uninformative**, and its report withholds the
contrasts (studies.report).

Each judgement is a plain dict (gate, subject, measure, value, threshold, passed, data) so the
CLI, the report JSON and the page state the same numbers. `passed` is None where the stored data
cannot decide (a study run before gates existed kept no held-out documents; a plug-in arm that
declares no bottleneck term); an unjudged gate never makes a study informative.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from benchmark.studies.spec import (
    Cell,
    StudySpec,
    cells,
    init_card_name,
    stage0_card_name,
    study_card,
    study_models_dir,
    study_results_dir,
)

# the loss term that trains each objective's bottleneck (the [CLS] -> decoder or BoW path)
BOTTLENECK_TERMS = {"retromae": "decoder", "dupmae": "decoder", "cotmae": "decoder",
                    "simlm": "decoder", "condenser": "head_mlm", "cocondenser": "head_mlm",
                    "bowpred": "bow"}
CONTROL_OBJECTIVES = ("mlm",)  # continuing the same objective: reported, need not fall
LEGACY_DATA = ("training batches: this study kept no held-out documents (it ran before gates "
               "existed); a training loss is no higher than a held-out one in expectation, so a "
               "failure here is a failure on held-out data too")


def gates_path(study: StudySpec) -> Path:
    return study_results_dir(study) / "gates.json"


def bottleneck_term(objective: str) -> str | None:
    """The term a gate judges: the bundled objectives' from BOTTLENECK_TERMS, a plug-in's from
    its class attribute `bottleneck_term` (None: it declares none, and its gate is unjudged)."""
    if objective in BOTTLENECK_TERMS:
        return BOTTLENECK_TERMS[objective]
    try:
        from benchmark.training.objectives import objective_class

        return getattr(objective_class(objective), "bottleneck_term", None)
    except Exception:  # noqa: BLE001 - an unloadable plug-in leaves its gate unjudged
        return None


# -- stage 0 ------------------------------------------------------------------------------------


def unigram_entropy(texts: list[str], tokenizer) -> float:
    """Entropy (nats) of the content-token distribution of `texts` under `tokenizer`: the loss of
    a model that predicts every masked token from corpus frequencies alone, ignoring context."""
    return unigram_counts(texts, tokenizer)[0]


def unigram_counts(texts: list[str], tokenizer) -> tuple[float, int]:
    """The unigram entropy (nats) and the number of content tokens of `texts` (one pass: the
    calibration also needs the corpus's size, to say how many epochs a projected budget is)."""
    counts: Counter[int] = Counter()
    for start in range(0, len(texts), 1000):
        encoded = tokenizer(texts[start:start + 1000], add_special_tokens=False,
                            return_attention_mask=False, return_token_type_ids=False)
        for ids in encoded["input_ids"]:
            counts.update(ids)
    total = sum(counts.values())
    return -sum(n / total * math.log(n / total) for n in counts.values()), total


def _study_tokenizer(study: StudySpec):
    """The study's tokenizer: from its init (or backbone) card's weights when on this machine,
    else, for a backbone built from nothing, its vocabulary learnt again (deterministic) and
    checked against the card's vocabulary_sha256. None when neither is possible."""
    from benchmark.training.backbone import train_tokenizer, vocabulary_sha256
    from benchmark.training.pretrain import checkpoint_source

    card = study_card(study, init_card_name(study)) if study.backbone is not None else None
    if card is None:
        from benchmark.catalog.registry import get_card

        card = get_card(study.init)
    try:
        source, _ = checkpoint_source(card.retriever.checkpoint, card.retriever.local_package,
                                      card.retriever.revision)
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(source)
    except Exception:  # noqa: BLE001 - weights absent here: learn the vocabulary again below
        pass
    if study.backbone is None or card.pretraining is None or not card.pretraining.vocabulary_sha256:
        return None
    from benchmark.training.corpus import read_texts, resolve_corpus

    spec = study.backbone
    tokenizer = train_tokenizer(read_texts(resolve_corpus(spec.corpus, _data_dir())),
                                spec.vocab_size, spec.min_frequency)
    return tokenizer if vocabulary_sha256(tokenizer) == card.pretraining.vocabulary_sha256 else None


_DATA_DIR: list[Path | None] = [None]


def _data_dir() -> Path | None:
    return _DATA_DIR[0]


def stage0_entropy(study: StudySpec, heldout: bool) -> dict[str, Any] | None:
    """The unigram entropy of stage 0's training documents (held-out ones left out when the run
    held some out), cached in gates.json by vocabulary, corpus fingerprint and held-out share."""
    from benchmark.training.corpus import read_texts, resolve_corpus, split_heldout

    spec0 = study.stage0
    corpus = spec0.corpus or (study.backbone.corpus if study.backbone else study.corpus)
    source = resolve_corpus(corpus, _data_dir())
    share = study.gates.heldout if heldout else 0.0
    key = hashlib.sha256(json.dumps([source.fingerprint(), share, init_card_name(study)]).encode()
                         ).hexdigest()[:16]
    cached = (_read_gates_file(study) or {}).get("entropy") or {}
    if (cached.get("key") == key and isinstance(cached.get("nats"), int | float)
            and isinstance(cached.get("tokens"), int)):
        return cached
    tokenizer = _study_tokenizer(study)
    if tokenizer is None:
        return None
    texts, _ = split_heldout(read_texts(source), share)
    nats, tokens = unigram_counts(texts, tokenizer)
    found = {"key": key, "nats": round(nats, 4), "corpus": source.label, "documents": len(texts),
             "tokens": tokens, "heldout_share": share}
    _write_gates_file(study, {**(_read_gates_file(study) or {}), "entropy": found})
    return found


def judge_stage0(study: StudySpec) -> dict[str, Any] | None:
    name = stage0_card_name(study)
    if name is None:
        return None
    gate = {"gate": "stage 0 learnt more than word frequencies", "subject": name,
            "measure": "MLM loss (nats)", "value": None, "threshold": None, "passed": None}
    path = study_models_dir(study) / f"{name}.yaml"
    if not path.is_file():
        return {**gate, "data": "stage 0 has not run"}
    from benchmark.catalog.registry import load_card

    record = load_card(path).pretraining
    held = (record.heldout_end or {}).get("mlm")
    entropy = stage0_entropy(study, heldout=held is not None)
    value = held if held is not None else record.loss_end
    data = ("held-out documents' spans (never trained on)" if held is not None else LEGACY_DATA)
    if entropy is None:
        return {**gate, "value": value, "data": data + "; the unigram entropy could not be computed "
                "(the study's tokenizer is not on this machine)"}
    threshold = round(entropy["nats"] - study.gates.stage0_below_unigram, 4)
    return {**gate, "value": value, "threshold": threshold, "passed": value <= threshold,
            "rule": (f"at least {study.gates.stage0_below_unigram} nats below the unigram entropy "
                     f"{entropy['nats']:.2f} of its {entropy['documents']:,} training documents"),
            "unigram_entropy": entropy["nats"], "data": data}


# -- arms ---------------------------------------------------------------------------------------


def judge_arms(study: StudySpec) -> list[dict[str, Any]]:
    """One judgement per arm with a pre-training of its own (the first seed's, or the shared one)."""
    from benchmark.catalog.registry import load_card

    out = []
    for arm in study.arms:
        if arm.objective is None:
            continue
        cell = Cell(arm, study.seeds[0], study)
        path = study_models_dir(study) / f"{cell.pretrained}.yaml"
        term = bottleneck_term(arm.objective)
        control = arm.objective in CONTROL_OBJECTIVES
        gate = {"gate": "the arm's own loss moved", "subject": arm.name, "objective": arm.objective,
                "term": "mlm" if control else term, "measure": "fall of its loss term (nats)",
                "value": None, "threshold": None if control else study.gates.arm_drop,
                "passed": None, "control": control}
        if not path.is_file():
            out.append({**gate, "data": "not pre-trained yet"})
            continue
        record = load_card(path).pretraining
        start, end = record.heldout_start or {}, record.heldout_end or {}
        key = gate["term"]
        if key and key in start and key in end:
            terms = {k: [start[k], end[k]] for k in sorted(set(start) & set(end))}
            fall = round(start[key] - end[key], 4)
            out.append({**gate, "value": fall, "start": start[key], "end": end[key], "terms": terms,
                        "passed": None if control else fall >= study.gates.arm_drop,
                        "data": "held-out documents' spans, unweighted terms"})
        elif record.loss_start is not None and arm.objective != "bowpred":
            fall = round(record.loss_start - record.loss_end, 4)
            out.append({**gate, "term": "total", "value": fall, "start": record.loss_start,
                        "end": record.loss_end,
                        "passed": None if control else fall >= study.gates.arm_drop,
                        "data": LEGACY_DATA + "; the terms were not stored, so the total loss "
                        "(means of the first and last 10 steps) stands in"})
        else:
            out.append({**gate, "start": record.loss_start, "end": record.loss_end,
                        "data": "not judgeable from what was stored: the total loss mixes in a "
                        "scheduled weight and the unweighted term was not kept"})
    return out


# -- fine-tuning --------------------------------------------------------------------------------


def _chance(resolved: dict[str, Any]) -> float | None:
    """ln(candidates per query) of in-batch negatives: queries per step x group size."""
    queries = resolved.get("queries_per_step")
    group = resolved.get("group_size") or 1
    if not isinstance(queries, int) or not isinstance(group, int):
        return None
    return math.log(queries * group)


def judge_finetune_loss(study: StudySpec) -> dict[str, Any]:
    """The final fine-tuning loss against the declared share of chance: the gate's own
    fine-tuning when the study ran one (before any cell), else the worst of every cell."""
    from benchmark.catalog.registry import load_card

    gated = (study_models_dir(study) / f"{gate_card_name(study)}.yaml").is_file()
    # the gate's subject: the backbone that continued nothing (stage0-only / finetune-only), whose
    # fine-tuning every arm shares; a collapsed arm is judged by the collapse rule, not here
    plain = [c.finetuned for c in cells(study) if c.arm.objective is None]
    names = [gate_card_name(study)] if gated else (plain or [c.finetuned for c in cells(study)])
    subject = ("the gate's fine-tuning of stage 0" if gated else
               "the cells that continued no pre-training" if plain else "every cell")
    gate = {"gate": "fine-tuning left chance", "subject": subject,
            "measure": "final training loss / chance (ln candidates)", "value": None,
            "threshold": study.gates.finetune_chance_share, "passed": None}
    shares, detail = [], {}
    for name in names:
        path = study_models_dir(study) / f"{name}.yaml"
        if not path.is_file():
            continue
        card = load_card(path)
        record = card.finetuning.record if card.finetuning else None
        if record is None or record.final_loss is None:
            continue
        chance = _chance(record.resolved_recipe)
        if not chance:
            continue
        shares.append(record.final_loss / chance)
        detail[name] = [round(record.final_loss, 4), round(chance, 4)]
    if not shares:
        return {**gate, "data": "no fine-tuned cell yet"}
    worst = max(shares)
    return {**gate, "value": round(worst, 4), "passed": worst < study.gates.finetune_chance_share,
            "cells": detail, "data": "training loss (the worst cell's final loss over chance)"}


def judge_validation(study: StudySpec) -> dict[str, Any]:
    """The stored validation judgement (measure_validation writes it)."""
    stored = (_read_gates_file(study) or {}).get("validation")
    gate = {"gate": "fine-tuning left the floor", "subject": "stage0-only, fine-tuned",
            "measure": f"{study.metric} on validation train queries / BM25's on the same queries",
            "value": None, "threshold": study.gates.finetune_bm25_share, "passed": None}
    if not isinstance(stored, dict) or not isinstance(stored.get("share"), int | float):
        return {**gate, "data": "not measured: " + (
            "this study fine-tuned every cell on all train queries, so none was left out to "
            "validate on" if not _registered(study) else "the gate's fine-tuning has not run")}
    return {**gate, "value": stored["share"], "passed": stored["share"] >= study.gates.finetune_bm25_share,
            "scores": stored.get("scores"), "data": stored.get("data")}


def validation_queries(study: StudySpec, task_name: str, data_dir: Path | None) -> tuple[Any, frozenset[str]]:
    """(train data view, a seeded sample of `gates.validation_queries` train queries): the
    validation set of the fine-tuning gate. Reads the train split only (never the test qrels)."""
    from benchmark.catalog.tasks import get_task
    from benchmark.datasets.beir import load_beir_folder, resolve_folder
    from benchmark.studies.pilot import held_out_queries
    from benchmark.training.negatives import TrainData, train_split_task

    task = get_task(task_name)
    folder = resolve_folder(task, data_dir)
    dataset = load_beir_folder(train_split_task(task), folder)
    judged = {q: d for q, d in dataset.qrels.items()
              if any(g >= task.relevance_threshold for g in d.values())}
    share = min(0.49, study.gates.validation_queries / max(1, len(judged)))
    held = held_out_queries(sorted(judged), share, 23)
    data = TrainData(task, dataset, {q: sorted(judged[q]) for q in judged}, {})
    return data, held


def _bm25_card(get_card):
    """The registry's `bm25` card (MTEB's bm25s baseline), or the same configuration when a
    models folder without it is in use: the gate's reference must not depend on which cards
    a user keeps."""
    from benchmark.catalog.registry import ModelCard
    from benchmark.core.errors import RegistryError

    try:
        return get_card("bm25")
    except RegistryError:
        return ModelCard.model_validate({
            "name": "bm25", "display_name": "BM25 (bm25s, flat)", "family": "sparse",
            "description": "BM25 as the registry's bm25 card", "source": "studies.gates",
            "retriever": {"kind": "bm25", "implementation": "bm25s", "method": "lucene", "k1": 1.5,
                          "b": 0.75, "stemmer": "english", "stopwords": "en", "fields": "flat",
                          "title_separator": "\n"}})


def gate_card_name(study: StudySpec) -> str:
    return f"{study.id}-gate-stage0-only"


def measure_validation(study: StudySpec, options) -> list[str]:
    """Fine-tune stage 0 (or the init) once with the study's recipe, leaving the validation
    queries out, and score it and BM25 on them for each evaluation task with a train split.
    Runs before any test number; its result is stored in gates.json."""
    from benchmark.catalog.registry import get_card
    from benchmark.studies.pilot import finetune_overrides, score_on_queries
    from benchmark.training.finetune import finetune_card

    stored = (_read_gates_file(study) or {}).get("validation")
    if isinstance(stored, dict) and isinstance(stored.get("share"), int | float):
        return []
    _DATA_DIR[0] = options.data_dir
    scores, lines = {}, []
    held_for_finetune = None
    views = {}
    for task in study.evaluate:
        try:
            views[task] = validation_queries(study, task, options.data_dir)
        except Exception as exc:  # noqa: BLE001 - a task without train queries has no validation
            lines.append(f"gate: {task} has no train queries to validate on ({exc})")
    if not views:
        return lines  # no evaluation task has train queries: the gate is judged unmeasured
    if study.finetune.task in views:
        held_for_finetune = views[study.finetune.task][1]
    name = gate_card_name(study)
    cards = study_models_dir(study)
    backbone = study_card(study, stage0_card_name(study) or init_card_name(study))
    if not (cards / f"{name}.yaml").is_file():
        finetune_card(backbone, study.finetune.task, study.finetune.recipe, seed=study.seeds[0],
                      name=name, overrides=finetune_overrides(study) or None,
                      data_dir=options.data_dir, device=options.device, models_dir=cards,
                      progress=False, held_out=held_for_finetune)
        lines.append(f"gate: fine-tuned {name} without the validation queries")
    tuned = study_card(study, name)
    bm25 = _bm25_card(get_card)
    for task, (data, held) in views.items():
        mine = score_on_queries(tuned, data, held, study.metric, options)
        base = score_on_queries(bm25, data, held, study.metric, options)
        scores[task] = {"stage0-only": round(mine, 6), "bm25": round(base, 6), "queries": len(held)}
        lines.append(f"gate: {task} validation {study.metric} {mine:.4f} vs BM25 {base:.4f} "
                     f"({len(held)} train queries)")
    if not scores:
        return lines
    share = min(s["stage0-only"] / s["bm25"] if s["bm25"] else 0.0 for s in scores.values())
    record = {"share": round(share, 4), "scores": scores,
              "data": "train queries held out of every fine-tuning (seeded), over the full corpus; "
                      "the lowest task's share"}
    _write_gates_file(study, {**(_read_gates_file(study) or {}), "validation": record})
    return lines


# -- the verdict --------------------------------------------------------------------------------


def judge(study: StudySpec, data_dir: Path | None = None) -> dict[str, Any]:
    """Every gate and the study's verdict: 'uninformative' when any gate failed, 'informative'
    when every gate passed, 'pending' while one is unjudged and none failed."""
    _DATA_DIR[0] = data_dir
    gates = [g for g in [judge_stage0(study)] if g] + judge_arms(study)
    gates += [judge_finetune_loss(study), judge_validation(study)]
    judged = [g for g in gates if not g.get("control")]
    failed = [g for g in judged if g["passed"] is False]
    if failed:
        verdict = "uninformative"
    elif all(g["passed"] for g in judged):
        verdict = "informative"
    else:
        verdict = "pending"
    continued = (_read_gates_file(study) or {}).get("continued_past") or []
    return {"verdict": verdict, "gates": gates, "failed": [_describe(g) for g in failed],
            "continued_past": [x for x in continued if isinstance(x, str)]}


def _describe(gate: dict[str, Any]) -> str:
    value, threshold = gate.get("value"), gate.get("threshold")
    subject = gate.get("subject")
    if gate["gate"] == "stage 0 learnt more than word frequencies":
        return (f"{gate['gate']} ({subject}): MLM loss {value:.2f} nats against the unigram entropy "
                f"{gate.get('unigram_entropy', float('nan')):.2f}, needed <= {threshold:.2f}")
    if gate["gate"] == "the arm's own loss moved":
        return (f"{gate['gate']} ({subject}, {gate.get('term')}): fell {value:+.2f} nats "
                f"({gate.get('start'):.2f} -> {gate.get('end'):.2f}), needed >= {threshold:.2f}")
    return f"{gate['gate']} ({subject}): {gate['measure']} {value:.3f}, needed {threshold:.3f}"


def describe(gate: dict[str, Any]) -> str:
    """One line for a gate, judged or not (the CLI's and the page's wording)."""
    status = {True: "passed", False: "FAILED", None: "control" if gate.get("control") else "unjudged"}
    if gate.get("value") is None:
        return f"{status[gate['passed']]}: {gate['gate']} ({gate.get('subject')}): {gate.get('data')}"
    if gate["passed"] is None:
        return (f"{status[None]}: {gate['gate']} ({gate.get('subject')}): {gate['measure']} "
                f"{gate['value']:.3f} ({gate.get('data')})")
    return f"{status[gate['passed']]}: {_describe(gate)}"


def record_continued(study: StudySpec, line: str) -> None:
    """A run that went on past a failed gate (--continue-past-gates): the report lists it."""
    found = _read_gates_file(study) or {}
    kept = [x for x in found.get("continued_past") or [] if isinstance(x, str)]
    if line not in kept:
        _write_gates_file(study, {**found, "continued_past": [*kept, line]})


def _registered(study: StudySpec) -> bool:
    return (study_results_dir(study) / "registration.json").is_file()


def _read_gates_file(study: StudySpec) -> dict[str, Any] | None:
    """gates.json (studies.stored.read_json_file: a regular file, bounded, finite numbers); a
    damaged one is one line naming it."""
    from benchmark.studies.stored import read_json_file

    path = gates_path(study)
    if not (path.exists() or path.is_symlink()):
        return None
    value = read_json_file(path, "a study's gates file (remove it to measure the gates again)")
    return value if isinstance(value, dict) else None


def _write_gates_file(study: StudySpec, payload: dict[str, Any]) -> None:
    from benchmark.core.files import atomic_write

    path = gates_path(study)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(payload, indent=1, sort_keys=True) + "\n").encode("utf-8"))
