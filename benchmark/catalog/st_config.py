"""What a checkpoint's own sentence-transformers configuration says about how to encode with it.

A sentence-transformers (ST) folder states its pooling (`1_Pooling/config.json`), whether it
L2-normalises (a `Normalize` module in `modules.json`), its post-pooling layers (`Dense`,
`LayerNorm`), its maximum length (`sentence_bert_config.json`), its prompts and similarity
(`config_sentence_transformers.json`). maebench reads these files itself (plain JSON) instead
of loading sentence_transformers: only the settings are needed, never its model classes, and
the files' format has been stable since ST v2.

Used three ways: to run a checkpoint without a card, to draft a card (`maebench card new`),
and to check a card against the checkpoint it names before every dense run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.core.errors import ModelLoadError

# ST module type (last dotted component) -> our post-pooling head layer name
ST_HEAD_TYPES = {"Dense": "dense", "LayerNorm": "layernorm"}
# ST prompt names that mean "the passage side" (ST and MTEB use all three)
PASSAGE_PROMPTS = ("passage", "document", "corpus")


@dataclass
class Inferred:
    """One setting read from a checkpoint, and the file (and key) it came from."""

    value: Any
    source: str
    stated: bool = True  # False: a default filled in because the file is silent


@dataclass
class STConfig:
    """The settings a checkpoint's ST configuration states; a missing key means "not stated"."""

    checkpoint: str
    has_st: bool  # modules.json exists
    settings: dict[str, Inferred] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # things it states that maebench cannot honour

    def value(self, key: str) -> Any:
        return self.settings[key].value if key in self.settings else None


MAX_CONFIG_BYTES = 4 << 20  # a configuration file is a few hundred bytes


def link_root(folder: Path) -> Path:
    """Where the files of a checkpoint folder may point: the folder itself, or for a Hugging
    Face cache snapshot (<repo>/snapshots/<commit>/, whose files link to <repo>/blobs/) the
    repository folder."""
    return folder.parent.parent if folder.parent.name == "snapshots" else folder


def checkpoint_file(source: str, filename: str, *, allow_root: bool = False) -> str:
    """`filename` (a name from the checkpoint's own files, e.g. a modules.json `path` +
    '/config.json') checked to stay inside the checkpoint (benchmark.core.paths.confine): not
    absolute, no '..', no symlink out of a local folder. Returned relative, as given."""
    from benchmark.core.paths import confine

    local = Path(source)
    root = local if local.is_dir() else Path("/checkpoint")  # a hub id: the name alone is checked
    confine(root, filename, "file", error=ModelLoadError, allow_root=allow_root,
            link_root=link_root(local) if local.is_dir() else None)
    if Path(filename).is_absolute():
        raise ModelLoadError(f"{source}: file {filename!r} is an absolute path")
    return filename


def _fetch(source: str, filename: str, revision: str | None) -> Path | None:
    """A file of a local folder or of a hub checkpoint (cache only when HF_HUB_OFFLINE=1)."""
    checkpoint_file(source, filename)
    local = Path(source)
    if local.is_dir():
        path = local / filename
        # a FIFO, a device or a folder under that name is refused when read, not skipped
        return path if os.path.lexists(path) else None
    from transformers.utils import cached_file

    try:
        found = cached_file(
            source, filename, revision=revision,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
    except OSError:
        return None
    return Path(found) if found else None


def read_json(source: str, filename: str, revision: str | None, kind: type = dict) -> Any:
    """One JSON file of the checkpoint (None when absent), read bounded, and of type `kind`
    (a JSON object or list): a hostile file is one line, never a crash further on."""
    from benchmark.core.paths import load_json_bounded

    path = _fetch(source, filename, revision)
    if path is None:
        return None
    data = load_json_bounded(path, MAX_CONFIG_BYTES, filename, error=ModelLoadError)
    if not isinstance(data, kind):
        what = "an object" if kind is dict else "a list"
        raise ModelLoadError(f"{source}: {filename} is not {what} ({type(data).__name__})")
    return data



def pickle_refused(where: str) -> ModelLoadError:
    """The one-line refusal of a pickle that holds more than tensors (torch.load with
    weights_only=True refuses it; maebench never loads it any other way)."""
    return ModelLoadError(f"{where}: a pickle file (.bin/.pt) holds objects other than plain "
                          "tensors; refused (maebench loads weights only, never code); convert "
                          "the weights to safetensors")


def read_modules(source: str, revision: str | None) -> list[dict] | None:
    """modules.json (None without one): a list of objects, each with a string `type` and a
    `path` that stays inside the checkpoint (checkpoint_file), else one ModelLoadError."""
    modules = read_json(source, "modules.json", revision, list)
    if modules is None:
        return None
    for index, module in enumerate(modules):
        if not (isinstance(module, dict) and isinstance(module.get("type"), str)
                and isinstance(module.get("path", ""), str)):
            raise ModelLoadError(f"{source}: modules.json entry {index} is not an object with a "
                                 "string type and path")
        checkpoint_file(source, module.get("path", ""), allow_root=True)
    return modules


def _pooling(cfg: dict) -> tuple[str | None, str]:
    """Our pooling name for an ST Pooling config (None when maebench has no equivalent)."""
    mode = cfg.get("pooling_mode")  # newer ST writes one string as well as the flags
    flags = [k.removeprefix("pooling_mode_") for k, v in cfg.items()
             if k.startswith("pooling_mode_") and v is True]
    names = [mode] if isinstance(mode, str) else flags
    mapping = {"cls_token": "cls", "cls": "cls", "mean_tokens": "mean", "mean": "mean"}
    if len(names) == 1 and names[0] in mapping:
        return mapping[names[0]], names[0]
    return None, "+".join(names) or "none"


def read_st_config(checkpoint: str, source: str | None = None,
                   revision: str | None = None) -> STConfig:
    """Read the ST configuration of `checkpoint` (found at `source`, default the id itself)."""
    source = source or checkpoint
    modules = read_modules(source, revision)
    out = STConfig(checkpoint, has_st=modules is not None)
    s = out.settings
    model_cfg = read_json(source, "config.json", revision) or {}
    model_type = model_cfg.get("model_type")
    if isinstance(model_type, str) and model_type:
        s["encoder"] = Inferred("t5" if model_type == "t5" else "shared",
                                f"config.json model_type {model_type}")
    if not out.has_st:
        return out
    types = [(m["type"].rsplit(".", 1)[-1], m.get("path", "")) for m in modules]
    pooling_dirs = [path for kind, path in types if kind == "Pooling"]
    if pooling_dirs:
        where = f"{pooling_dirs[0]}/config.json" if pooling_dirs[0] else "config.json"
        cfg = read_json(source, where, revision) or {}
        pooling, raw = _pooling(cfg)
        if pooling is None:
            out.notes.append(f"{where} pools by '{raw}', which maebench does not implement")
        else:
            s["pooling"] = Inferred(pooling, f"{where} pooling_mode_{raw}")
        if cfg.get("include_prompt") is False:
            out.notes.append(f"{where} excludes the prompt from pooling (include_prompt: false), "
                             "which maebench does not implement")
    s["normalize"] = Inferred(
        any(kind == "Normalize" for kind, _ in types),
        "modules.json " + ("lists a Normalize module" if any(k == "Normalize" for k, _ in types)
                           else "has no Normalize module"),
    )
    head = tuple(ST_HEAD_TYPES[kind] for kind, _ in types if kind in ST_HEAD_TYPES)
    s["head"] = Inferred(head, f"modules.json modules {[k for k, _ in types]}")
    sbert = read_json(source, "sentence_bert_config.json", revision) or {}
    if type(sbert.get("max_seq_length")) is int and sbert["max_seq_length"] > 0:
        for side in ("query_max_length", "passage_max_length"):
            s[side] = Inferred(sbert["max_seq_length"], "sentence_bert_config.json max_seq_length")
    st_cfg = read_json(source, "config_sentence_transformers.json", revision) or {}
    prompts = st_cfg.get("prompts") if isinstance(st_cfg.get("prompts"), dict) else {}
    file = "config_sentence_transformers.json"
    for key, prompt in prompts.items():
        if not isinstance(prompt, str):
            raise ModelLoadError(f"{source}: {file} prompts.{key} is not a string")
    s["query_prefix"] = (Inferred(prompts["query"], f"{file} prompts.query") if "query" in prompts
                         else Inferred("", f"{file} has no query prompt", stated=False))
    passage = next((p for p in PASSAGE_PROMPTS if p in prompts), None)
    s["passage_prefix"] = (Inferred(prompts[passage], f"{file} prompts.{passage}") if passage
                           else Inferred("", f"{file} has no passage/document prompt", stated=False))
    similarity = st_cfg.get("similarity_fn_name")
    if similarity in ("cosine", "dot"):
        s["similarity"] = Inferred(similarity, f"{file} similarity_fn_name")
    elif similarity == "dot_product":
        s["similarity"] = Inferred("dot", f"{file} similarity_fn_name")
    elif similarity is None:
        s["similarity"] = Inferred(
            "cosine", f"sentence-transformers' default (no similarity_fn_name in {file})",
            stated=False)
    else:
        out.notes.append(f"{file} similarity_fn_name '{similarity}' is not dot or cosine")
    if "title" not in s:
        # an ST model encodes one string per text; BEIR and MTEB join title + " " + text for it
        s["title"] = Inferred("prepend", "one text per passage (ST); BEIR/MTEB join title + ' ' + text")
        s["title_separator"] = Inferred(" ", "BEIR/MTEB title separator")
    return out


def card_disagreements(config: Any, st: STConfig) -> list[str]:
    """One sentence per card setting that contradicts what the checkpoint's own ST
    configuration states (pooling, normalisation / similarity, prompts). Settings the files
    are silent about are not compared: a checkpoint without prompts may still need a prefix
    its paper documents (E5), and older ST folders do not name their similarity."""
    if not st.has_st:
        return []
    found = []

    def differs(key: str, card_value: Any, stated: Inferred) -> None:
        found.append(f"card says {key}: {card_value!r} but checkpoint {st.checkpoint} says "
                     f"{stated.value!r} ({stated.source})")

    pooling = st.settings.get("pooling")
    if pooling is not None and config.pooling != pooling.value:
        differs("pooling", config.pooling, pooling)
    for key in ("query_prefix", "passage_prefix"):
        stated = st.settings.get(key)
        if stated is not None and stated.stated and getattr(config, key) != stated.value:
            differs(key, getattr(config, key), stated)
    card_unit_length = config.normalize or config.similarity == "cosine"
    normalize, similarity = st.settings.get("normalize"), st.settings.get("similarity")
    if normalize is not None and normalize.value and not card_unit_length:
        differs("normalize", config.normalize, normalize)
    elif similarity is not None and similarity.stated:
        st_unit_length = similarity.value == "cosine" or bool(normalize and normalize.value)
        if st_unit_length != card_unit_length:
            differs("similarity", config.similarity, similarity)
    return found
