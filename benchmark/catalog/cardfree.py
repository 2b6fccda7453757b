"""Cards for checkpoints that have none: inferred for a card-free run, or drafted as YAML.

Every encoding setting comes either from the checkpoint's own sentence-transformers
configuration (benchmark.catalog.st_config), from an explicit command-line value, or it is missing, and
a missing one is an error naming exactly the flags to give: no setting is guessed silently.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from benchmark.catalog.registry import ModelCard
from benchmark.catalog.st_config import Inferred, STConfig, read_st_config
from benchmark.core.errors import MaebenchError, RegistryError
from benchmark.core.paths import check_name

# dense card fields that have no default, with the flag that gives each one card-free
REQUIRED = {
    "pooling": "--pooling cls|mean",
    "normalize": "--normalize/--no-normalize",
    "similarity": "--similarity dot|cosine",
    "query_prefix": "--query-prefix TEXT",
    "passage_prefix": "--passage-prefix TEXT",
    "query_max_length": "--max-length N",
    "passage_max_length": "--max-length N",
    "title": "--title prepend|none|pair",
}
FLAG_FIELDS = {"max_length": ("query_max_length", "passage_max_length")}


def default_name(checkpoint: str) -> str:
    """A registry-safe name from a folder or hub id: its last component, lower-cased."""
    last = Path(checkpoint.rstrip("/")).name or checkpoint
    name = re.sub(r"[^a-z0-9._\-]+", "-", last.lower()).strip("-._")
    return name[:80] or "checkpoint"


def _source(checkpoint: str) -> str:
    from benchmark.catalog.weights import resolve_checkpoint

    return resolve_checkpoint(checkpoint)[0]


def _weights_revision(checkpoint: str) -> Inferred | None:
    """`sha256:<digest of the weights>` when they are in a local folder: the pinned revision a
    submitted card needs (a checkpoint from the hub cache is pinned by its commit instead)."""
    from benchmark.catalog.weights import weights_sha256

    folder = Path(_source(checkpoint))
    if not folder.is_dir():
        return None
    try:
        digest = weights_sha256(folder)
    except MaebenchError:
        return None
    return Inferred(f"sha256:{digest}", "sha256 of the weights files")


def infer(checkpoint: str, overrides: dict[str, Any]) -> tuple[dict[str, Inferred], STConfig]:
    """The checkpoint's stated settings with the explicit `overrides` (None = not given) on top."""
    st = read_st_config(checkpoint, _source(checkpoint))
    if "encoder" not in st.settings:
        raise MaebenchError(
            f"cannot read checkpoint {checkpoint}: not a local folder with config.json and not in "
            "the Hugging Face cache (HF_HUB_OFFLINE=1?)"
        )
    settings = dict(st.settings)
    revision = _weights_revision(checkpoint)
    if revision is not None:
        settings["revision"] = revision
    for key, value in overrides.items():
        if value is None:
            continue
        for field in FLAG_FIELDS.get(key, (key,)):
            settings[field] = Inferred(value, "given on the command line")
    return settings, st


def count_parameters(checkpoint: str, encoder: str) -> Inferred | None:
    """The encoder's parameter count (what a card's `parameters` states: the model class the
    encoder kind loads, its pooler and embeddings included, as in the registry's cards), built
    on torch's meta device from config.json alone: no weights are read. None when the config
    cannot be built (the card then leaves the field out, as before)."""
    try:
        import torch
        import transformers
    except ImportError:
        return None
    classes = {"t5": transformers.T5EncoderModel, "dupmae": transformers.AutoModelForMaskedLM}
    try:
        config = transformers.AutoConfig.from_pretrained(_source(checkpoint))
        with torch.device("meta"):
            model = classes.get(encoder, transformers.AutoModel).from_config(config)
    except Exception:  # any unreadable or unknown config: no count, never a failed draft
        return None
    count = sum(p.numel() for p in model.parameters())
    return Inferred(count, f"counted from config.json ({type(model).__name__}, "
                           f"{count / 1e6:.1f}M)") if count else None


def missing(settings: dict[str, Inferred]) -> list[str]:
    return [f for f in REQUIRED if f not in settings]


def card_free(checkpoint: str, name: str | None, overrides: dict[str, Any],
              family: str | None = None) -> tuple[ModelCard, dict[str, Inferred]]:
    """The card a card-free run uses; an error lists every setting that must still be given."""
    settings, st = infer(checkpoint, overrides)
    lacking = missing(settings)
    if lacking:
        flags = " ".join(dict.fromkeys(REQUIRED[f] for f in lacking))
        why = ("its sentence-transformers configuration does not state them" if st.has_st
               else "it has no sentence-transformers configuration (modules.json)")
        raise MaebenchError(
            f"cannot run {checkpoint} without a card: {', '.join(lacking)} unknown ({why}); "
            f"give {flags}, or write a card: maebench card new {checkpoint} --name <name>"
        )
    name = name or default_name(checkpoint)
    retriever = {"kind": "dense", "checkpoint": checkpoint,
                 **{k: v.value for k, v in settings.items()}}
    raw = {
        "name": name,
        "display_name": name,
        "family": family or "contrastive",
        "description": f"card-free run of {checkpoint}",
        "source": "inferred by maebench from the checkpoint: " + "; ".join(
            f"{k} from {v.source}" for k, v in sorted(settings.items())),
        "retriever": retriever,
        "notes": None if family else "family not given (--family); contrastive assumed",
    }
    from pydantic import ValidationError

    from benchmark.core.validation import first_error

    try:
        return ModelCard.model_validate(raw), settings
    except ValidationError as exc:
        raise RegistryError(f"card-free {checkpoint}: {first_error(exc)}") from exc


# --------------------------------------------------------------------------- card new


_CHOICES = {
    "pooling": "cls | mean | pooler",
    "normalize": "true | false",
    "similarity": "dot | cosine",
    "query_prefix": 'text prepended to every query, "" for none',
    "passage_prefix": 'text prepended to every passage, "" for none',
    "query_max_length": "tokens",
    "passage_max_length": "tokens",
    "title": "prepend | none | pair",
}


def _yaml_value(value: Any) -> str:
    """One value as a YAML flow scalar or sequence: JSON text with every non-ASCII character
    escaped (JSON is valid YAML flow), so no value can end its line or open another key."""
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if value is not None and not isinstance(value, str | bool | int | float):
        raise MaebenchError(f"cannot write a {type(value).__name__} into a card")
    return json.dumps(value, ensure_ascii=True)


def _comment(text: str) -> str:
    """Text that came from outside (a checkpoint's files, a folder name) made safe for a YAML
    comment: one line, every control or non-ASCII character escaped (YAML also ends a line at
    NEL, LS and PS), so it can never start a key of its own."""
    return str(text).encode("unicode_escape").decode("ascii")


def card_yaml(checkpoint: str, name: str, settings: dict[str, Inferred], st: STConfig,
              family: str | None = None, description: str | None = None) -> str:
    """A draft card: inferred fields commented with their origin, unknown ones left blank and
    marked REQUIRED (a blank fails validation, so the card cannot be used until filled in).

    Every value is written as escaped JSON and every comment escaped to one line (_yaml_value,
    _comment); the text is then parsed back and must give exactly the keys and values meant,
    so text from a checkpoint can never add or change a key."""
    check_name(name, "--name", MaebenchError)
    meant: dict[str, Any] = {}

    def line(key: str, value: Any, comment: str, indent: str = "") -> str:
        (meant.setdefault("retriever", {}) if indent else meant)[key] = (
            list(value) if isinstance(value, tuple) else value)
        text = f"{indent}{key}: {'' if value is None else _yaml_value(value)}"
        return f"{text:<44} # {_comment(comment)}" if comment else text

    def required(key: str, choices: str, indent: str = "") -> str:
        return line(key, None, f"REQUIRED ({choices})", indent)

    origin = ("its sentence-transformers configuration" if st.has_st
              else "config.json only (no sentence-transformers configuration)")
    lines = [
        f"# Drafted by `maebench card new` from {_comment(checkpoint)} ({origin}).",
        "# Fill in every REQUIRED blank; check each inferred value against the paper.",
        line("name", name, "must match the file name"),
        line("display_name", name, "shown on the leaderboard"),
        line("family", family, "given") if family
        else required("family", "mae | contrastive | sparse | supervised"),
        line("description", description, "given") if description
        else required("description", "one or two sentences"),
        line("source", f"{checkpoint} (settings drafted by maebench card new)",
             "where the encoding settings come from"),
        *([line("parameters", settings["parameters"].value, settings["parameters"].source)]
          if "parameters" in settings else []),
        *(["# pretraining: {objective: ..., encoder_mask_ratio: ...}  # needed for family mae"]
          if family in (None, "mae") else []),
        "retriever:",
        line("kind", "dense", "", "  "),
        line("encoder", settings["encoder"].value, settings["encoder"].source, "  "),
        line("checkpoint", checkpoint,
             "a local folder: a submitted card names a hub id (org/name; the weights can stay "
             "in $MAEBENCH_WEIGHTS_DIR/org__name/)" if Path(checkpoint).is_dir()
             else "hub id", "  "),
        line("revision", settings["revision"].value, settings["revision"].source, "  ")
        if "revision" in settings
        else '  # revision: "<40-hex commit>"                # REQUIRED to submit: pin the weights',
    ]
    for key in ("pooling", "normalize", "similarity", "query_prefix", "passage_prefix",
                "query_max_length", "passage_max_length", "title"):
        if key in settings:
            lines.append(line(key, settings[key].value, settings[key].source, "  "))
        else:
            lines.append(required(key, _CHOICES[key], "  "))
    if "title_separator" in settings:
        s = settings["title_separator"]
        lines.append(line("title_separator", s.value, s.source, "  "))
    head = settings.get("head")
    if head is not None and head.value:
        lines.append(line("head", list(head.value), head.source, "  "))
    lines.append(line("dtype", "float32", "scores are computed in fp32 whatever this is", "  "))
    for note in st.notes:
        lines.append(f"# WARNING: {_comment(note)}")
    text = "\n".join(lines) + "\n"
    _check_round_trip(text, meant)
    return text


def _check_round_trip(text: str, meant: dict[str, Any]) -> None:
    import yaml

    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MaebenchError(f"the drafted card is not valid YAML ({type(exc).__name__})") from exc
    if parsed != meant:
        raise MaebenchError("the drafted card does not read back as written; refusing to write it")
