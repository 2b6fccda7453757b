"""A study spec (`maebench study <spec>`) and the names of what it makes: arms x seeds, each
cell [pretrain ->] finetune -> run, after an optional backbone built from nothing and a shared
stage 0. Running it: studies.runner; its report: studies.report.

Layout (so a study never floods the main leaderboard or registry):
  models/studies/<id>/<card>.yaml              the cells' cards (pre-trained and fine-tuned)
  results/studies/<id>/<card>/<task>.json      the cells' results (runner format)
  results/studies/<id>.json                    the study report
Weights live under the maebench home like every trained checkpoint.

Every step of a cell is skipped when its output exists (a card is written only after its
weights, a result only after its run), and an interrupted step resumes from its own staging
folder (pretrain: accelerate state + progress.json; finetune: its work folder), so killing the
study at any point (kill -9 included) and starting it again redoes at most the unfinished step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from benchmark.core.errors import MaebenchError
from benchmark.core.paths import EMBEDDED_DATA_DIR, models_dir
from benchmark.core.validation import StrictFinite
from benchmark.results.result_store import studies_dir
from benchmark.training.backbone import BackboneSize

_DEFAULT_SIZE = BackboneSize()

log = logging.getLogger(__name__)
STUDIES_DIR = EMBEDDED_DATA_DIR / "studies"


def _finite(value: Any) -> Any:
    """An override that is YAML's .inf or .nan is refused by name (the union below would
    otherwise report that it is not a string, the first of the types it tried)."""
    if isinstance(value, float) and (value != value or abs(value) == float("inf")):
        raise ValueError("not a finite number")
    return value


Scalar = Annotated[str | int | float | bool, BeforeValidator(_finite)]


class StudyError(MaebenchError):
    """A study spec is malformed or names something unknown."""


# bounds that keep every product of budgets and scales a finite float (a 400-digit budget_tokens
# overflowed float()); the runner's steps are bounded again by pretrain_recipe.MAX_STEPS
MAX_BUDGET_TOKENS = 10**15
MAX_SCALE = 10**6


class Arm(StrictFinite):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]{0,20}$")
    objective: str | None = Field(description="a pre-training objective, or null: no pre-training "
                                  "of its own (fine-tunes the stage-0 weights, or the init)")
    overrides: dict[str, Scalar] = Field(default_factory=dict,
                                         description="this arm's pre-training recipe settings")


class BackboneSpec(StrictFinite):
    """A backbone built from nothing as the study's first step (`maebench backbone new`); the
    size defaults are the command's (training.backbone.BackboneSize)."""

    corpus: str = Field(description="task name(s) whose corpora train the vocabulary")
    vocab_size: int = _DEFAULT_SIZE.vocab_size
    layers: int = _DEFAULT_SIZE.layers
    hidden: int = _DEFAULT_SIZE.hidden
    heads: int = _DEFAULT_SIZE.heads
    ffn: int = _DEFAULT_SIZE.ffn
    max_positions: int = _DEFAULT_SIZE.max_positions
    min_frequency: int = Field(default=2, ge=1)
    seed: int = Field(default=0, ge=0, lt=2**32)

    def size(self) -> BackboneSize:
        return BackboneSize(layers=self.layers, hidden=self.hidden, heads=self.heads, ffn=self.ffn,
                            max_positions=self.max_positions, vocab_size=self.vocab_size)


class Stage0Spec(StrictFinite):
    """One shared pre-training every arm continues from (head included)."""

    objective: str = "mlm"
    corpus: str | None = Field(default=None, description="default: the backbone's corpus")
    budget_tokens: int = Field(gt=0, le=MAX_BUDGET_TOKENS)
    overrides: dict[str, Scalar] = Field(default_factory=dict)
    seed: int = Field(default=0, ge=0, lt=2**32)


class PilotSpec(StrictFinite):
    """The fine-tuning learning rate, chosen before any test number exists: each candidate
    fine-tunes one arm's backbone on the train split minus a held-out share of its queries, and
    the best score on those held-out train queries wins (ties: the smaller rate)."""

    arm: str
    learning_rates: tuple[float, ...] = Field(min_length=2)
    holdout: float = Field(default=0.1, gt=0, lt=0.5)
    seed: int = Field(default=0, ge=0, lt=2**32)


class FinetuneSpec(StrictFinite):
    """What every cell fine-tunes on, with one recipe: a task's train queries and qrels (`task:
    scifact`), or the title -> text pairs of task corpora with no query or qrels read (`source:
    titles, corpus: scifact,nfcorpus`; training.title_pairs), which is stored as the task
    `titles:nfcorpus,scifact`, the name `maebench finetune --task` takes. Normalised so: the
    runner, the gates and calibration pass `task` on unchanged, and a spec in the `task` form
    hashes (spec_digest) as it did before the pairs existed."""

    task: str
    recipe: str
    overrides: dict[str, Scalar] = Field(default_factory=dict)
    pilot: PilotSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _source(cls, raw: Any) -> Any:
        from benchmark.training.title_pairs import PREFIX, pairs_task

        if not isinstance(raw, dict):
            return raw
        task = raw.get("task")
        if isinstance(task, str) and task.startswith(f"{PREFIX}:") and "source" not in raw:
            try:  # titles:scifact,nfcorpus is titles:nfcorpus,scifact (one study, one hash)
                return {**raw, "task": pairs_task(task.split(":", 1)[1])}
            except MaebenchError:
                return raw  # check_spec names it as an unknown task
        if "source" not in raw and "corpus" not in raw:
            return raw
        raw = dict(raw)
        source, corpus = raw.pop("source", None), raw.pop("corpus", None)
        if "task" in raw:
            raise ValueError("give task (train queries and qrels) or source and corpus (pairs), not both")
        if source != PREFIX:
            raise ValueError(f"source {source!r}: the one pairs source is '{PREFIX}' (corpus: task names)")
        names = corpus.split(",") if isinstance(corpus, str) else corpus
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not any(
                n.strip() for n in names):
            raise ValueError(f"source {PREFIX} needs corpus: task names, e.g. scifact,nfcorpus")
        raw["task"] = pairs_task(corpus)
        return raw

    @model_validator(mode="after")
    def _pilot_reads_queries(self) -> FinetuneSpec:
        if self.pilot is not None and self.pairs_corpora:
            raise ValueError("a pilot holds out train queries of the fine-tuning task; the titles source "
                             "reads none: choose the rate by calibration (calibrate.finetune_learning_rates)")
        return self

    @property
    def pairs_corpora(self) -> tuple[str, ...]:
        """The corpora of a `titles:` source (empty for a task)."""
        from benchmark.training.title_pairs import parse_source

        try:
            source = parse_source(self.task)
        except MaebenchError:
            return ()
        return source.corpora if source else ()

    @property
    def tasks(self) -> tuple[str, ...]:
        """The catalog tasks it reads: the task, or the corpora of its pairs."""
        return self.pairs_corpora or (self.task,)


class GatesSpec(StrictFinite):
    """Manipulation checks (studies.gates), each judged on data the test set never touches before
    any test number of the study is computed. A failed gate makes the study uninformative: its
    contrasts are not findings. The defaults are the floor; a spec may only tighten them."""

    stage0_below_unigram: float = Field(
        default=1.5, ge=1.5, le=20, description="stage 0's held-out MLM loss must be at least this "
        "many nats below the unigram entropy of its training corpus under the study's vocabulary")
    arm_drop: float = Field(default=0.3, ge=0.3, le=20, description="each bottleneck arm's own "
                            "loss term (unweighted) must fall by at least this many nats on held-out "
                            "spans from the start of its continuation to its end")
    finetune_bm25_share: float = Field(default=0.25, ge=0.25, le=1, description="the fine-tuned "
                                       "stage0-only backbone must score at least this share of BM25 "
                                       "on validation train queries (never test)")
    finetune_chance_share: float = Field(default=0.6, gt=0, le=0.6, description="the final "
                                         "fine-tuning loss must be below this share of chance, "
                                         "ln(candidates per query)")
    heldout: float = Field(default=0.02, gt=0, le=0.2, description="share of the pre-training "
                           "corpus's documents held out (by text hash) for the pre-training gates")
    validation_queries: int = Field(default=200, ge=20, le=100_000, description="train queries per "
                                    "evaluation task held out as the fine-tuning gate's validation set")


class Stage0Probe(StrictFinite):
    """A further set of stage-0 probes with their own recipe settings (batch, schedule) and length,
    for when the first probes leave the question open (scratch-mae-gated: 183 steps of 64x128
    never left the unigram plateau, so the next probes ask whether more, smaller steps do)."""

    tag: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]{0,15}$", description="in the probes' card names")
    tokens: int = Field(gt=0, le=MAX_BUDGET_TOKENS)
    learning_rates: tuple[float, ...] = Field(min_length=1)
    overrides: dict[str, Scalar] = Field(default_factory=dict,
                                         description="on top of stage 0's own overrides")


class CalibrationSpec(StrictFinite):
    """The calibration run (`maebench study <spec> --calibrate`, studies.calibrate): short probes
    on train and held-out data only, before the design's rates and budgets are fixed."""

    stage0_learning_rates: tuple[float, ...] = Field(default=(5e-4, 1e-3, 2e-3), min_length=1)
    stage0_tokens: int = Field(default=1_500_000, gt=0, le=MAX_BUDGET_TOKENS)
    stage0_probes: tuple[Stage0Probe, ...] = Field(default=(), description="further stage-0 probes")
    arm_learning_rates: tuple[float, ...] = Field(default=(2e-4, 1e-3), min_length=1)
    arm_tokens: int = Field(default=250_000, gt=0, le=MAX_BUDGET_TOKENS)
    finetune_learning_rates: tuple[float, ...] = Field(default=(1e-3, 3e-3), min_length=1)
    evaluations: int = Field(default=6, ge=2, le=100)
    stage0_cpu_hours: float = Field(default=25.0, gt=0, le=10_000, description=(
        "the most CPU-hours stage 0 may take: a projected budget beyond it means the stage-0 gate "
        "cannot be passed within the study's means, and the study is not run"))


class Deviation(StrictFinite):
    """A change to the design after its registration, or a post-hoc decision, as the page lists it."""

    what: str
    when: str = Field(description="a date or commit")
    why: str


class StudySpec(StrictFinite):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]{0,30}$")
    description: str
    question: str | None = Field(default=None, description="what the study asks (site page)")
    can_say: str | None = Field(default=None, description="what its result can say (site page)")
    cannot_say: str | None = Field(default=None, description="what it cannot say (site page)")
    confounds: tuple[str, ...] = Field(default=(), description="known design flaws, listed on its page")
    init: str | None = Field(default=None, description="the card every arm starts from")
    backbone: BackboneSpec | None = Field(default=None, description="or: a backbone built from "
                                          "nothing as the first step (instead of init)")
    stage0: Stage0Spec | None = None
    corpus: str = Field(description="pre-training corpus: task name(s) or a BEIR corpus.jsonl")
    budget_tokens: int = Field(gt=0, le=MAX_BUDGET_TOKENS,
                               description="pre-training tokens per arm at scale 1")
    scale: float = Field(default=1.0, gt=0, le=MAX_SCALE,
                         description="multiplies budget_tokens (the GPU knob)")
    pretrain_overrides: dict[str, Scalar] = Field(default_factory=dict)
    pretrain_seed: int | None = Field(
        default=None, ge=0, lt=2**32, description="one pre-training per arm with this seed, shared "
        "by the arm's fine-tuning seeds; null: each cell pre-trains with its own seed")
    arms: tuple[Arm, ...]
    seeds: tuple[int, ...] = Field(min_length=1)
    finetune: FinetuneSpec
    evaluate: tuple[str, ...] = Field(min_length=1)
    zero_shot: bool = Field(default=False, description="also score every backbone without fine-tuning")
    baseline_arm: str
    primary: tuple[tuple[str, str], ...] = Field(
        default=(), description="the pre-declared primary family of contrasts (arm, against), Holm "
        "over it; empty: every arm against baseline_arm")
    # collapse thresholds (studies.collapse). For the mean top-10 overlap between queries,
    # healthy SciFact runs measure 0.002-0.04 and the collapsed scifact-dapt bowpred cells
    # 0.51 / 0.82, so 0.3 is far from both; documents differing in fewer than 1.1 directions lie on
    # a line. The audit's 0.98 for the raw mean pairwise cosine of document [CLS] vectors (a
    # healthy MiniLM: 0.70; collapsed BoW prediction: 0.99) marks a backbone anisotropic, not
    # failed: a dot-product ranking ignores a vector shared by every document.
    collapse_cosine: float = Field(default=0.98, gt=0, le=1)
    collapse_overlap: float = Field(default=0.3, gt=0, le=1)
    collapse_dimensions: float = Field(default=1.1, ge=0, description="documents in fewer "
                                       "directions lie on a line: judged only without a run's overlap")

    def collapse_thresholds(self) -> dict[str, float]:
        """Keyword arguments of studies.collapse.judge / collapse_diagnostics."""
        return {"cosine_threshold": self.collapse_cosine, "overlap_threshold": self.collapse_overlap,
                "min_dimensions": self.collapse_dimensions}
    metric: str = "nDCG@10"
    exploratory_metrics: tuple[str, ...] = Field(
        default=(), description="other metrics reported beside `metric` with the primary family's "
        "contrasts, Holm within each metric, labelled exploratory: never the study's answer (e.g. "
        "a deeper cutoff where the primary metric sits at its floor)")
    notes: str | None = None
    gates: GatesSpec = Field(default_factory=GatesSpec)
    calibrate: CalibrationSpec = Field(default_factory=CalibrationSpec)
    deviations: tuple[Deviation, ...] = Field(
        default=(), description="declared changes after registration and post-hoc decisions (what, "
        "when, why); an undeclared change of the registered design is listed automatically")
    calibration: str | None = Field(default=None, description="the calibration record the design's "
                                    "rates and budgets come from (results/studies/<id>/calibration.json)")
    profiles: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="named scale profiles: the same study at another scale (`--profile`), each "
        "with its own id so that its cells never mix with the default ones",
    )

    @model_validator(mode="after")
    def _arms(self) -> StudySpec:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError("arm names must be unique")
        if self.baseline_arm not in names:
            raise ValueError(f"baseline_arm '{self.baseline_arm}' is not an arm")
        if (self.init is None) == (self.backbone is None):
            raise ValueError("give exactly one of init (a card) and backbone (built from nothing)")
        for pair in self.primary:
            for arm in pair:
                if arm not in names:
                    raise ValueError(f"primary contrast {list(pair)}: '{arm}' is not an arm")
            if pair[0] == pair[1]:
                raise ValueError(f"primary contrast {list(pair)} compares an arm with itself")
        if self.finetune.pilot and self.finetune.pilot.arm not in names:
            raise ValueError(f"pilot arm '{self.finetune.pilot.arm}' is not an arm")
        if len(set(self.seeds)) != len(self.seeds) or any(not 0 <= s < 2**32 for s in self.seeds):
            raise ValueError("seeds must be distinct integers in [0, 2**32)")
        return self

    @property
    def budget(self) -> str:
        return f"{int(round(self.budget_tokens * self.scale))} tokens"

    @property
    def stage0_budget(self) -> str | None:
        return None if self.stage0 is None else f"{int(round(self.stage0.budget_tokens * self.scale))} tokens"

    @property
    def contrasts(self) -> tuple[tuple[str, str], ...]:
        """The primary family: as declared, else every arm against the baseline arm."""
        if self.primary:
            return self.primary
        return tuple((a.name, self.baseline_arm) for a in self.arms if a.name != self.baseline_arm)


# what a profile may change: everything but the arms (the objectives are the study's question);
# its own description says what it is for, or the studies index shows two studies as one
_PROFILE_FIELDS = frozenset(StudySpec.model_fields) - {"arms", "profiles"}


def apply_profile(raw: dict[str, Any], profile: str, origin: str) -> None:
    """Merge the spec's named profile into it: the one switch between the CPU study and the same
    study at GPU scale (finetune, stage0 and pretrain_overrides merge key by key, the rest
    replaces; null removes)."""
    profiles = raw.get("profiles") or {}
    if not isinstance(profiles, dict) or profile not in profiles:
        known = ", ".join(sorted(profiles)) if isinstance(profiles, dict) and profiles else "none"
        raise StudyError(f"{origin}: no profile '{profile}' (this spec has: {known})")
    values = profiles[profile]
    if not isinstance(values, dict) or "id" not in values:
        raise StudyError(f"{origin}: profile '{profile}' must be a mapping with its own id")
    for key, value in values.items():
        if key not in _PROFILE_FIELDS:
            raise StudyError(f"{origin}: profile '{profile}' cannot set '{key}'")
        if key in ("finetune", "pretrain_overrides", "stage0") and isinstance(value, dict):
            raw[key] = {**(raw.get(key) or {}), **value}
        else:
            raw[key] = value


def looks_like_path(spec: str) -> bool:
    """A spec argument that names a file: it has a folder separator or a YAML suffix. Anything
    else is a bundled spec's name, never a file in the current directory: a file there called
    `scratch-mae` must not replace the bundled study (and run the plug-in code it names)."""
    return "/" in spec or spec.endswith((".yaml", ".yml"))


def spec_path(spec: str) -> Path:
    """The file a spec argument names: a path as given (see looks_like_path), else the bundled
    spec of that name (benchmark/data/studies/<name>.yaml); a one-line error for neither."""
    known = ", ".join(sorted(p.stem for p in STUDIES_DIR.glob("*.yaml")))
    if looks_like_path(spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise StudyError(f"no study spec file {spec!r} (bundled specs: {known})")
        return path
    path = STUDIES_DIR / f"{spec}.yaml"
    if "\x00" in spec or not path.is_file():
        hint = f"; a spec file is named by a path, e.g. ./{spec}.yaml" if spec else ""
        raise StudyError(f"no study spec {spec!r} among the bundled ones ({known}){hint}")
    return path


def _yaml_override(key: str, value: str) -> Any:
    """A `--set` value that is YAML (a list or a mapping: `seeds=[0,1]`), parsed bounded in size
    and nesting; one that is not YAML (`seeds=[0`) is a one-line error, not a parser traceback."""
    import yaml

    from benchmark.core.validation import _check_nesting

    origin = f"--set {key}={_cut(value)}"
    _check_nesting(value, origin, StudyError)
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise StudyError(f"{origin}: not a YAML value ({type(exc).__name__}; e.g. "
                         f"{key}=[0,1,2])") from None


def _cut(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[:limit] + "..."


def load_spec(
    spec: str, overrides: dict[str, str] | None = None, profile: str | None = None
) -> StudySpec:
    """A spec file path, or the name of a bundled spec (benchmark/data/studies/<name>.yaml; a
    bare name is always the bundled one, see spec_path); `profile` applies one of the spec's
    named profiles, then `overrides` set top-level fields (`scale=100`, `corpus=msmarco`, ...);
    the result is validated."""
    from benchmark.core.validation import load_yaml_mapping, read_yaml_text, validate

    path = spec_path(spec)
    raw = load_yaml_mapping(read_yaml_text(path, StudyError), str(path), StudyError, "a study spec")
    if profile:
        apply_profile(raw, profile, str(path))
    if overrides and "id" not in overrides:
        raise StudyError(
            "a study with changed settings is another study: add --set id=<new id> so that its "
            "cells do not mix with those of '" + str(raw.get("id")) + "'"
        )
    for key, value in (overrides or {}).items():
        if key not in StudySpec.model_fields or key in ("arms", "finetune"):
            if key.startswith("finetune."):
                sub = key.split(".", 1)[1]
                if not isinstance(raw.setdefault("finetune", {}), dict):
                    raise StudyError(f"{path}: finetune must be a mapping to --set {key}")
                raw["finetune"][sub] = _yaml_override(key, value) if sub in ("overrides", "pilot") else value
                continue
            raise StudyError(f"cannot set '{key}' on a study spec")
        raw[key] = _yaml_override(key, value) if key in ("evaluate", "seeds", "pretrain_overrides") else value
    study = validate(raw, StudySpec, str(path), StudyError)
    check_spec(study, str(path))
    return study


def check_spec(study: StudySpec, origin: str) -> None:
    """Unknown tasks, recipes or objectives are one-line errors before any work."""
    from benchmark.catalog.tasks import all_tasks
    from benchmark.training.objectives import check_objective
    from benchmark.training.recipes import available_recipes

    tasks = {t.name for t in all_tasks()}
    for task in (*study.finetune.tasks, *study.evaluate):
        if task not in tasks:
            raise StudyError(f"{origin}: unknown task '{task}' (known: {', '.join(sorted(tasks))})")
    if study.finetune.recipe not in available_recipes():
        raise StudyError(f"{origin}: unknown fine-tuning recipe '{study.finetune.recipe}' "
                         f"(known: {', '.join(available_recipes())})")
    for arm in study.arms:
        if arm.objective is not None:  # a built-in, or a plugin (file.py:Class, entry point)
            try:
                check_objective(arm.objective)
            except MaebenchError as exc:
                raise StudyError(f"{origin}: arm '{arm.name}': {exc}") from None
    if study.stage0:
        try:
            check_objective(study.stage0.objective)
        except MaebenchError as exc:
            raise StudyError(f"{origin}: stage0: {exc}") from None
    by_name = {t.name: t for t in all_tasks()}
    for task in study.evaluate:
        known = by_name[task].evaluation_metrics
        for metric in (study.metric, *study.exploratory_metrics):
            if metric not in known:
                raise StudyError(f"{origin}: metric {metric!r} is not evaluated on '{task}' "
                                 f"(known: {', '.join(known)})")
    check_numbers(study, origin)


def check_numbers(study: StudySpec, origin: str) -> None:
    """Every value a step will use, checked before the first step starts: each arm's pre-training
    recipe with the spec's and the arm's overrides (type, range, finite: an arm with
    `learning_rate: .inf`, or a plug-in whose own recipe says so, would otherwise be found
    after the backbone and stage 0 ran, and train to NaN), the budgets in optimizer steps, the
    fine-tuning recipe with its overrides, and the backbone's size."""
    from benchmark.training.pretrain_recipe import apply_overrides, load_recipe, resolve_steps
    from benchmark.training.recipes import load_recipe as finetune_recipe

    def text(values: dict[str, Scalar]) -> dict[str, str]:
        return {k: str(v) for k, v in values.items()}  # as the runner passes them

    steps = [(f"arm '{arm.name}'", arm.objective, {**study.pretrain_overrides, **arm.overrides},
              study.budget) for arm in study.arms if arm.objective is not None]
    if study.stage0 is not None:
        steps.append(("stage0", study.stage0.objective, study.stage0.overrides, study.stage0_budget))
    try:
        if study.backbone is not None:
            study.backbone.size().check()
        for where, objective, overrides, budget in steps:
            try:
                resolve_steps(budget, apply_overrides(load_recipe(objective), text(overrides)))
            except MaebenchError as exc:
                raise MaebenchError(f"{where}: {exc}") from None
        resolved = finetune_recipe(study.finetune.recipe, text(study.finetune.overrides))
        if study.finetune.pairs_corpora:  # title pairs: in-batch negatives only, one stage
            from benchmark.training.title_pairs import check_recipe, parse_source

            check_recipe(parse_source(study.finetune.task), resolved)
        for rate in study.finetune.pilot.learning_rates if study.finetune.pilot else ():
            try:  # each candidate is a fine-tuning with lr set to it
                finetune_recipe(study.finetune.recipe, {**text(study.finetune.overrides), "lr": str(rate)})
            except MaebenchError as exc:
                raise MaebenchError(f"pilot learning rate {rate}: {exc}") from None
    except MaebenchError as exc:
        raise StudyError(f"{origin}: {exc}") from None


# --------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    arm: Arm
    seed: int
    study: StudySpec

    @property
    def pretrained(self) -> str | None:
        """The arm's own pre-trained card (None: the arm pre-trains nothing of its own)."""
        if self.arm.objective is None:
            return None
        if self.study.pretrain_seed is not None:  # one pre-training per arm, every seed shares it
            return f"{self.study.id}-{self.arm.name}-pt"
        return f"{self.study.id}-{self.arm.name}-s{self.seed}-pt"

    @property
    def pretrain_seed(self) -> int:
        return self.seed if self.study.pretrain_seed is None else self.study.pretrain_seed

    @property
    def backbone(self) -> str:
        """The card this cell fine-tunes."""
        return self.pretrained or stage0_card_name(self.study) or init_card_name(self.study)

    @property
    def finetuned(self) -> str:
        return f"{self.study.id}-{self.arm.name}-s{self.seed}"


def init_card_name(study: StudySpec) -> str:
    """The card stage 0 (or, without one, every arm) starts from."""
    return study.init if study.init is not None else f"{study.id}-backbone"


def stage0_card_name(study: StudySpec) -> str | None:
    return f"{study.id}-stage0" if study.stage0 is not None else None


def study_models_dir(study: StudySpec) -> Path:
    return models_dir() / "studies" / study.id


def study_results_dir(study: StudySpec) -> Path:
    return studies_dir() / study.id


def report_path(study: StudySpec) -> Path:
    return studies_dir() / f"{study.id}.json"


def cells(study: StudySpec) -> list[Cell]:
    """Seed-major order: every arm's first seed finishes before any second seed starts, so an
    interrupted study still has one complete replicate of the comparison."""
    return [Cell(arm, seed, study) for seed in study.seeds for arm in study.arms]


def backbones(study: StudySpec) -> list[str]:
    """Every card that is fine-tuned by some cell, in order (each scored zero-shot)."""
    names: list[str] = []
    for cell in cells(study):
        if cell.backbone not in names:
            names.append(cell.backbone)
    return names


@dataclass
class StudyOptions:
    data_dir: Path | None = None
    device: str | None = None
    only: str | None = None  # "pretrain": run only the pre-training steps
    max_cells: int | None = None
    continue_past_gates: bool = False  # spend the next stage's budget after a failed gate (recorded)


# what the registration hashes: the design, without what is declared after it (deviations),
# other scales (profiles: each has its own id and its own registration) and prose
UNHASHED_FIELDS = {"deviations", "profiles", "notes", "description", "can_say", "cannot_say",
                   "confounds", "calibration", "calibrate"}


def spec_digest(study: StudySpec) -> str:
    """sha256 of the study's design as canonical JSON (UNHASHED_FIELDS left out): what its
    registration records before its first test number, and what every cell's result carries."""
    import hashlib
    import json

    design = study.model_dump(mode="json", exclude=UNHASHED_FIELDS)
    return hashlib.sha256(json.dumps(design, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _load(name: str, folder: Path):
    from benchmark.catalog.registry import load_card

    return load_card(folder / f"{name}.yaml")


def study_card(study: StudySpec, name: str):
    """A study card by name: the study's own folder first, then the registry (the init)."""
    path = study_models_dir(study) / f"{name}.yaml"
    if path.is_file():
        return _load(name, study_models_dir(study))
    from benchmark.catalog.registry import get_card

    return get_card(name)


def evaluate_card(study: StudySpec, card, options: StudyOptions) -> list[str]:
    """Run `card` on the study's evaluation tasks that it has no result for yet."""
    from benchmark.catalog.tasks import get_task
    from benchmark.pipeline.runner import RunOptions, run_task
    from benchmark.results.result_store import result_path

    done = []
    for task in study.evaluate:
        target = result_path(study_results_dir(study), card.name, task)
        if target.is_file():
            continue
        run_task(card, get_task(task), RunOptions(
            results_dir=study_results_dir(study), data_dir=options.data_dir, device=options.device,
            command=f"maebench study {study.id} (spec sha256:{spec_digest(study)})"))
        done.append(f"run {card.name} on {task}")
    return done
