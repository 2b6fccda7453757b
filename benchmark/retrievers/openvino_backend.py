"""The OpenVINO backend: convert a dense encoder once, check parity, cache it, encode with it.

What is converted is the whole text -> vector function of one encoder: the transformer forward
pass plus the card's pooling, post-pooling head and L2 normalisation, traced from the very
torch code the torch backend runs (HFEncoder._forward / pool / head), so every encoder kind
converts the same way: shared BERT-like and DPR encoders, T5 with its Dense head, DupMAE's
[CLS] ++ top-k vocabulary vector. Tokenisation stays with the Hugging Face tokenizer.

Three things keep the vectors those of torch, checked rather than assumed:
- `save_model(..., compress_to_fp16=False)`: the default stores fp16 weights;
- `INFERENCE_PRECISION_HINT=f32`: on CPUs with AVX512_BF16 or AMX OpenVINO otherwise runs in
  bf16 (here: max diff 1.2e-3 instead of 1.5e-7); after compiling, the hint AND the runtime
  precision of every executed node are read back and any bf16/f16 node is a failure;
- parity on first conversion: a fixed sample (the embedded tiny task's queries and passages,
  plus passages long enough to be truncated) is encoded by both backends, and the L2-normalised
  vectors must agree within PARITY_TOLERANCE (and the norms in relative terms), else the card
  stays on torch and the reason is cached, so the next run does not convert again to learn it.

Cache: $MAEBENCH_HOME/openvino/models/<key>/ holds model.xml, model.bin and meta.json (sha256
of both files, parity numbers, conversion seconds). The key covers the weights identity (hub id +
revision, or the sha256 of every file of a local checkpoint), everything of the card that is
inside the graph (encoder kind, role for separate encoders, pooling, head, normalisation,
DupMAE settings, dtype) and the converter (openvino, torch and transformers versions, and
CONVERTER_FORMAT). A folder is written under a temporary name and renamed into place, and read
only after both files match meta.json's sha256: a truncated or damaged model is rebuilt, never
used. OpenVINO's compiled blobs go to $MAEBENCH_HOME/openvino/blobs (its CACHE_DIR), which
saves the compile step on later runs.

Inference mirrors the torch CPU path: length-sorted batches of at most CPU_BATCH_CAP texts, one
stream per core with one thread each (a batch is computed by one thread, so its bits do not
depend on the core count), fed through an AsyncInferQueue while the next batch is tokenised.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np

from benchmark.catalog.registry import DenseConfig
from benchmark.core.errors import ModelLoadError
from benchmark.core.files import sha256_file
from benchmark.retrievers.encoders import EncoderInput, HFEncoder, Role

log = logging.getLogger(__name__)

CONVERTER_FORMAT = 1  # bump when the converted graph changes for the same inputs
PARITY_TOLERANCE = 1e-5  # max abs diff of L2-normalised vectors, torch vs OpenVINO
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
LOW_PRECISIONS = {"bf16", "f16"}

_core = None


def cache_root() -> Path:
    from benchmark.core.paths import home_dir

    return home_dir() / "openvino"


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in ("openvino", "torch", "transformers"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def conversion_key(weights: str, config: DenseConfig, role: Role) -> dict:
    """Everything that changes the converted graph (see the module docstring)."""
    return {
        "format": CONVERTER_FORMAT,
        "weights": weights,
        "encoder": config.encoder,
        "role": role if config.encoder == "separate" else "any",
        "pooling": config.pooling,
        "head": list(config.head),
        "normalize": config.normalize,
        "dupmae": [config.dupmae_sparse_weight, config.dupmae_sparse_top_k],
        "dtype": config.dtype,
        "versions": _versions(),
    }


def _digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def model_folder(weights: str, config: DenseConfig, role: Role) -> Path:
    return cache_root() / "models" / _digest(conversion_key(weights, config, role))[:32]


META_LIMIT = 1 << 20  # bytes: meta.json is ~2 KB; a larger one is not ours


def _meta_model():
    """meta.json's schema (issue 27): built on first use, so importing this module stays light.
    Every field the backend reads is typed; sha256 digests are 64 hex digits; an entry is a
    model (`files` names exactly model.xml and model.bin) or a recorded failure, never both."""
    import math

    from pydantic import BaseModel, ConfigDict, Field, model_validator

    sha256 = Field(pattern=r"^[0-9a-f]{64}$")

    class Parity(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        passed: bool
        reason: str | None = Field(default=None, max_length=2000)
        max_abs_diff_normalised: float | None = None
        max_rel_diff_norm: float | None = None
        tolerance: float | None = None
        texts: int | None = Field(default=None, ge=0)

    class Meta(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        digest: str = sha256
        key: dict
        created: str = Field(max_length=64)
        files: dict[str, str] | None = None
        failure: str | None = Field(default=None, min_length=1, max_length=2000)
        parity: Parity | None = None
        conversion_seconds: float | None = Field(default=None, ge=0, le=1e7)

        @model_validator(mode="after")
        def _one_kind(self):
            if (self.files is None) == (self.failure is None):
                raise ValueError("an entry holds either files or a failure")
            if self.files is not None:
                if set(self.files) != {"model.xml", "model.bin"}:
                    raise ValueError("files must name model.xml and model.bin")
                if not all(len(v) == 64 and all(c in "0123456789abcdef" for c in v)
                           for v in self.files.values()):
                    raise ValueError("files' digests must be sha256")
            for value in (self.conversion_seconds, *(
                    (self.parity.max_abs_diff_normalised, self.parity.max_rel_diff_norm,
                     self.parity.tolerance) if self.parity else ())):
                if value is not None and not math.isfinite(value):
                    raise ValueError("numbers must be finite")
            if _digest(self.key) != self.digest:
                raise ValueError("the digest does not match the key")
            return self

    return Meta


def _lstat_kind(path: Path) -> str:
    """'missing', 'dir', 'file' or 'other' (a link, FIFO, socket, device), without following
    links or opening anything: a FIFO opened for reading waits for a writer forever."""
    import stat

    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError:  # ENOTDIR: a parent is not a folder; EACCES
        return "other"
    if stat.S_ISDIR(mode):
        return "dir"
    return "file" if stat.S_ISREG(mode) else "other"


def _remove_entry(path: Path) -> None:
    """Remove a cache entry or temporary folder, whatever it is, without opening it:
    shutil.rmtree opens its argument to list it, which blocks on a FIFO and follows nothing
    useful on a link, so only a real folder is handed to it."""
    kind = _lstat_kind(path)
    if kind == "dir":
        shutil.rmtree(path, ignore_errors=True)
    elif kind != "missing":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _read_meta(folder: Path, digest: str) -> dict | None:
    """The entry's validated meta.json, or None when the entry is missing or damaged: not a
    real folder (a link, a FIFO), meta.json not a regular file, too large, not JSON, wrong
    types (issue 27: a list as `files` or `failure`), or another key's. Never blocks."""
    from benchmark.core.errors import MaebenchError
    from benchmark.core.paths import read_bounded

    if _lstat_kind(folder) != "dir" or _lstat_kind(folder / "meta.json") != "file":
        return None
    try:
        raw = json.loads(read_bounded(folder / "meta.json", META_LIMIT, "meta.json"))
        meta = _meta_model().model_validate(raw)
    except (MaebenchError, ValueError, RecursionError):  # pydantic's ValidationError included
        return None
    if meta.digest != digest:
        return None
    return meta.model_dump(exclude_none=True)


def recorded_failure(weights: str, config: DenseConfig, role: Role) -> str | None:
    """Why this encoder did not convert (or failed parity) with this converter, if it was tried
    before: cheap (one small file), so the backend choice needs no conversion to know it."""
    key = conversion_key(weights, config, role)
    digest = _digest(key)
    meta = _read_meta(model_folder(weights, config, role), digest)
    if meta is not None and meta.get("failure"):
        return meta["failure"]
    record = _stored_calibration(digest, config, role)
    if record is not None and record["choice"] == "torch":
        from benchmark.retrievers.backend import calibration_reason

        return calibration_reason(record)
    return None


def _damage(folder: Path, meta: dict) -> str | None:
    """What is wrong with a cached model's files (None: both match meta.json's sha256)."""
    for name, expected in (meta.get("files") or {}).items():
        path = folder / name
        kind = _lstat_kind(path)
        if kind != "file":
            return f"{name} is missing" if kind == "missing" else f"{name} is not a regular file"
        if sha256_file(path) != expected:
            return f"{name} does not match its sha256"
    if set(meta.get("files") or {}) != {"model.xml", "model.bin"}:
        return "meta.json lists the wrong files"
    return None


def _publish(tmp: Path, folder: Path) -> None:
    """Rename a finished temporary folder into place (atomic: a reader sees all or nothing). If
    another process published first, keep its copy when it is sound, else replace it."""
    digest = json.loads((tmp / "meta.json").read_text(encoding="utf-8"))["digest"]
    for _ in range(3):  # a concurrent writer may publish between our rmtree and rename
        try:
            os.rename(tmp, folder)
            return
        except OSError:
            pass
        meta = _read_meta(folder, digest)
        if meta is not None and (meta.get("failure") or _damage(folder, meta) is None):
            _remove_entry(tmp)
            return
        _remove_entry(folder)  # a damaged entry, or a link or FIFO in its place
    os.rename(tmp, folder)


def _clean_stale(root: Path) -> None:
    """Temporary folders of conversions whose process died (kill -9 mid-conversion)."""
    for tmp in root.glob(".*.tmp"):
        try:
            pid = int(tmp.name.rsplit(".", 2)[-2])
            os.kill(pid, 0)
        except ProcessLookupError:
            _remove_entry(tmp)
        except (ValueError, IndexError, PermissionError):
            continue


# -- compiling and checking precision --------------------------------------------------------


def core():
    global _core
    if _core is None:
        import openvino as ov

        _core = ov.Core()
    return _core


def _threads() -> int:
    import torch  # the tokenizer already imported it; its thread count is the user's setting

    return max(1, torch.get_num_threads())


def _blob_dir() -> Path:
    """OpenVINO's compiled-blob cache, cleared of anything but regular files first: OpenVINO
    opens `<hash>.blob` for reading without checking what it is, so a FIFO there would block
    the run forever, and a link would be read (or written) outside the cache (issue 27). A
    damaged regular blob is OpenVINO's to detect; it compiles again. One scandir, no opens."""
    blobs = cache_root() / "blobs"
    kind = _lstat_kind(blobs)
    if kind not in ("dir", "missing"):
        _remove_entry(blobs)
    elif kind == "dir":
        try:
            with os.scandir(blobs) as entries:
                strays = [Path(e.path) for e in entries if not e.is_file(follow_symlinks=False)]
        except OSError:
            strays = []
        for stray in strays:
            log.warning("removing %s from OpenVINO's blob cache: not a regular file", stray)
            _remove_entry(stray)
    return blobs


def compile_model(xml: Path, threads: int | None = None):
    """Compile for the CPU in fp32, one single-threaded stream per core, with the blob cache;
    then read the precision back (a bf16 node anywhere is an error, never a silent result)."""
    n = threads or _threads()
    config = {
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "THROUGHPUT",
        "NUM_STREAMS": n,
        "INFERENCE_NUM_THREADS": n,
        "CACHE_DIR": str(_blob_dir()),
    }
    # compiled from the model object, not the path: OpenVINO's blob cache then hashes the
    # model's content, so a rebuilt model at the same path never imports a stale blob
    compiled = core().compile_model(core().read_model(str(xml)), "CPU", config)
    return compiled, verify_precision(compiled)


def verify_precision(compiled) -> dict:
    import openvino as ov

    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    precisions: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ops():
        rt = op.get_rt_info()
        if "runtimePrecision" in rt:
            value = rt["runtimePrecision"].astype(str)
            precisions[value] = precisions.get(value, 0) + 1
    low = sorted(LOW_PRECISIONS & set(precisions))
    if hint != ov.Type.f32 or low:
        raise ModelLoadError(
            f"OpenVINO compiled the encoder with precision hint {hint} and {low or 'no'} "
            "low-precision nodes; fp32 was asked for"
        )
    return {"inference_precision": "f32", "node_precisions": dict(sorted(precisions.items())),
            "streams": int(compiled.get_property("NUM_STREAMS")),
            "threads": int(compiled.get_property("INFERENCE_NUM_THREADS"))}


# -- the encoder -----------------------------------------------------------------------------


class OpenVinoEncoder(HFEncoder):
    """HFEncoder's batching and ordering (encode), with the forward pass, pooling, head and
    normalisation running as one compiled OpenVINO model."""

    backend = "openvino"

    def __init__(self, parts: dict, compiled, info: dict) -> None:  # noqa: D107 - no torch load
        import threading

        self.config = parts["config"]
        self.device = "cpu"
        self.checkpoint = parts["checkpoint"]
        self.origin = parts["origin"]
        self.tokenizer = parts["tokenizer"]
        self.model_class = parts["model_class"]
        self._model_config = parts["model_config"]
        self._tokenizer_lock = threading.Lock()
        self.head = []  # inside the compiled graph
        self.model = None
        self.compiled = compiled
        self.input_names = [_input_name(port) for port in compiled.inputs]
        self.requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.backend_info = info

    @property
    def dtype(self) -> str:
        return "float32"

    @property
    def model_config(self):
        return self._model_config

    def _inputs(self, batch: list[EncoderInput], max_length: int) -> dict:
        encoded = self._tokenize(batch, max_length, tensors="np")
        return {name: np.ascontiguousarray(encoded[name], dtype=np.int64)
                for name in self.input_names}

    def embed_batch(self, batch: list[EncoderInput], max_length: int) -> np.ndarray:
        return np.array(self.compiled(self._inputs(batch, max_length))[0], dtype=np.float32)

    def _embed_batches(self, batches: list[list[EncoderInput]], max_length: int,
                       done: Callable[[int], object]) -> list[np.ndarray]:
        import openvino as ov

        results: list[np.ndarray | None] = [None] * len(batches)

        def finished(request, index: int) -> None:
            # the request's output buffer is reused by its next batch: copy it out now
            results[index] = np.array(request.get_output_tensor(0).data, dtype=np.float32)
            done(1)

        # one request more than there are streams: a batch tokenised while every stream is busy
        # then waits in OpenVINO's queue, so a stream that finishes starts the next batch at once
        # instead of idling until this thread has tokenised it (tokenising is ~2.5% of the CPU
        # time of a cold SciFact encode on AVX2; each batch still runs on one single-thread
        # stream, so the vectors' bits do not change)
        queue = ov.AsyncInferQueue(self.compiled, max(1, self.requests) + 1)
        queue.set_callback(finished)
        for index, batch in enumerate(batches):
            queue.start_async(self._inputs(batch, max_length), userdata=index)
        queue.wait_all()
        if any(r is None for r in results):
            raise ModelLoadError("OpenVINO returned no vectors for some batches")
        return results  # type: ignore[return-value]


def _input_name(port) -> str:
    """The tokenizer field an input takes (a traced input may carry extra tensor names, e.g.
    '35' beside 'attention_mask', and get_any_name() may return either)."""
    names = set(port.get_names())
    for name in INPUT_NAMES:
        if name in names:
            return name
    raise ModelLoadError(f"the converted model has an unexpected input {sorted(names)}")


def _light_parts(checkpoint: str, config: DenseConfig, role: Role) -> dict:
    """Tokenizer and model class without the weights: a cached model needs nothing more."""
    from transformers import AutoConfig, AutoTokenizer

    from benchmark.catalog.weights import load_failure, resolve_checkpoint
    from benchmark.retrievers.encoders import _model_class

    source, origin = resolve_checkpoint(checkpoint, config.local_package, config.revision)
    revision = config.revision if origin == "hub" else None
    try:
        model_config = AutoConfig.from_pretrained(source, revision=revision)
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
    except (OSError, ValueError) as exc:
        raise load_failure(checkpoint, config.revision, exc) from exc
    return {"config": config, "checkpoint": checkpoint, "origin": origin, "tokenizer": tokenizer,
            "model_config": model_config,
            "model_class": _model_class(config, model_config.model_type, role)}


def _parts_of(encoder: HFEncoder) -> dict:
    return {"config": encoder.config, "checkpoint": encoder.checkpoint, "origin": encoder.origin,
            "tokenizer": encoder.tokenizer, "model_class": encoder.model_class,
            "model_config": encoder.model.config}


# -- parity ----------------------------------------------------------------------------------


def parity_sample(config: DenseConfig, role: Role) -> list[tuple[list[EncoderInput], int]]:
    """Fixed texts in the card's format, grouped by max length: 12 of the embedded tiny task's
    queries (query role) and every 4th of its passages (passage role; both for one shared
    encoder), plus two passages long enough to be truncated at the card's passage max length.
    Mixed lengths make padded batches; a wrong graph or precision shows on any of them, and the
    sample stays small because a first-ever run pays for it (twice: torch and OpenVINO)."""
    from benchmark.core.paths import EMBEDDED_DATA_DIR
    from benchmark.datasets.beir import load_corpus, load_queries
    from benchmark.retrievers.base import document_text

    tiny = EMBEDDED_DATA_DIR / "tiny"
    groups: list[tuple[list[EncoderInput], int]] = []
    roles = {role} if config.encoder == "separate" else {"query", "passage"}
    if "query" in roles:
        queries = list(load_queries(tiny / "queries.jsonl").values())[:12]
        groups.append(([config.query_prefix + q for q in queries], config.query_max_length))
    if "passage" in roles:
        corpus = list(load_corpus(tiny / "corpus.jsonl").values())
        long_text = " ".join(d.text for d in corpus)
        docs = corpus[::4] + [type(corpus[0])(d.title, long_text) for d in corpus[:2]]
        if config.title == "pair":
            passages: list[EncoderInput] = [(config.passage_prefix + d.title, d.text) for d in docs]
        else:
            passages = [config.passage_prefix + document_text(d, config.title, config.title_separator)
                        for d in docs]
        groups.append((passages, config.passage_max_length))
    return groups


def parity(reference: HFEncoder, candidate: HFEncoder, config: DenseConfig, role: Role) -> dict:
    """Max abs diff of the L2-normalised vectors and max relative diff of their norms."""
    worst, worst_norm, count = 0.0, 0.0, 0
    for texts, max_length in parity_sample(config, role):
        a = reference.encode(texts, max_length, config.batch_size, "parity").astype(np.float64)
        b = candidate.encode(texts, max_length, config.batch_size, "parity").astype(np.float64)
        if a.shape != b.shape:
            return {"passed": False, "reason": f"shapes differ ({a.shape} vs {b.shape})"}
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        diff = np.abs(a / np.maximum(na, 1e-12)[:, None] - b / np.maximum(nb, 1e-12)[:, None])
        worst = max(worst, float(diff.max()))
        worst_norm = max(worst_norm, float(np.max(np.abs(nb - na) / np.maximum(na, 1e-12))))
        count += len(texts)
    passed = worst <= PARITY_TOLERANCE and worst_norm <= PARITY_TOLERANCE
    return {"passed": passed, "max_abs_diff_normalised": worst,
            "max_rel_diff_norm": worst_norm, "tolerance": PARITY_TOLERANCE, "texts": count}


# -- conversion ------------------------------------------------------------------------------


def _graph_module(encoder: HFEncoder):
    """The encoder's text -> vector function as one torch module, for tracing."""
    import torch

    class EncoderGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = encoder.model
            self.head = torch.nn.ModuleList([layer.module for layer in encoder.head])

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                inputs["token_type_ids"] = token_type_ids
            pooled = encoder.pool(encoder._forward(inputs), attention_mask).float()
            for layer in self.head:
                pooled = layer(pooled).float()
            if encoder.config.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
            return pooled

    return EncoderGraph().eval()


def convert(encoder: HFEncoder, xml: Path) -> None:
    """Trace and save the encoder (fp32 weights kept: compress_to_fp16=False)."""
    import openvino as ov
    import torch

    texts = ["an example text to trace the encoder", "a shorter one"]
    if encoder.config.title == "pair":
        texts = [("a title", texts[0]), ("title", texts[1])]
    example = encoder._tokenize(texts, 32, tensors="pt")
    example = {name: example[name] for name in INPUT_NAMES if name in example}
    from transformers.utils import logging as hf_logging

    # tracing reads every attribute of the model, `loss_function` too, and transformers then
    # logs "`loss_type=None` was set in the config but it is unrecognized ... ForCausalLMLoss":
    # noise about training, which a conversion never does
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about shape-dependent Python values
            model = ov.convert_model(_graph_module(encoder), example_input=example)
    finally:
        hf_logging.set_verbosity(verbosity)
    ov.save_model(model, str(xml), compress_to_fp16=False)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


# -- choosing by measurement (backend policy: benchmark.retrievers.backend) ------------------


def _calibration_shape(config: DenseConfig, role: Role) -> tuple[int, int]:
    """(max length, batch size) the calibration runs at: the passage side's for a shared
    encoder (the corpus is where the time goes), the role's own for separate encoders; the
    CPU batch as HFEncoder.batch_size caps it."""
    from benchmark.retrievers.encoders import CPU_BATCH_CAP

    max_length = (config.query_max_length if config.encoder == "separate" and role == "query"
                  else config.passage_max_length)
    return max_length, max(1, min(config.batch_size, CPU_BATCH_CAP))


def _stored_calibration(digest: str, config: DenseConfig, role: Role) -> dict | None:
    from benchmark.retrievers.backend import calibration_key, read_calibration

    return read_calibration(calibration_key(digest, *_calibration_shape(config, role)))


def calibration_sample(config: DenseConfig, role: Role, count: int) -> list[EncoderInput]:
    """`count` real passages, every one long enough to be truncated at any max length up to
    512: windows of the embedded tiny task's corpus, each starting at another document, in the
    card's format (prefix, title mode). Fixed, so every machine measures the same texts."""
    from benchmark.core.paths import EMBEDDED_DATA_DIR
    from benchmark.datasets.beir import load_corpus
    from benchmark.retrievers.base import document_text

    docs = list(load_corpus(EMBEDDED_DATA_DIR / "tiny" / "corpus.jsonl").values())
    prefix = config.query_prefix if config.encoder == "separate" and role == "query" else (
        config.passage_prefix)
    texts: list[EncoderInput] = []
    for i in range(count):
        start, body = i % len(docs), ""
        for doc in docs[start:] + docs[:start]:
            body += " " + doc.text
            if len(body) > 6 * 512:  # ~4 characters a token: truncated at any max length
                break
        title = docs[start].title
        if config.title == "pair" and not (config.encoder == "separate" and role == "query"):
            texts.append((prefix + title, body.strip()))
        else:
            kind = type(docs[start])
            texts.append(prefix + document_text(kind(title, body.strip()), config.title,
                                                config.title_separator))
    return texts


def measure_backends(
    encoders: dict[str, HFEncoder], texts: list[EncoderInput], max_length: int, batch_size: int,
    rounds: int = 2, warm_up: bool = True,
) -> tuple[dict[str, float], dict[str, list[float]], dict[str, list[float]], int]:
    """Tokens per second of each encoder on `texts`, through its real encode path (batching,
    threads, async requests): one untimed warm-up pass each (allocations, oneDNN primitives,
    first-inference set-up; skipped with `warm_up=False` when both just ran the parity check,
    whose first passage batch has this very shape), then `rounds` timed passes, interleaved and
    alternating in order so a slow moment of a shared machine does not land on one backend only; the best pass
    counts. Returns (tokens per wall second, every pass's wall seconds, every pass's CPU seconds
    (all threads of this process: on a busy machine wall time also counts waiting for a core,
    CPU time does not, so a reader can tell a loaded measurement), real tokens per pass)."""
    first = next(iter(encoders.values()))
    mask = first._tokenize(texts, max_length, tensors="np")["attention_mask"]
    tokens = int(np.asarray(mask).sum())
    for encoder in encoders.values() if warm_up else ():
        encoder.encode(texts, max_length, batch_size, "calibration")
    seconds: dict[str, list[float]] = {name: [] for name in encoders}
    cpu: dict[str, list[float]] = {name: [] for name in encoders}
    names = list(encoders)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            start, start_cpu = time.perf_counter(), time.process_time()
            encoders[name].encode(texts, max_length, batch_size, "calibration")
            seconds[name].append(time.perf_counter() - start)
            cpu[name].append(max(time.process_time() - start_cpu, 1e-6))
    speeds = {name: tokens / min(times) for name, times in seconds.items()}
    return speeds, seconds, cpu, tokens


def _summary(record: dict) -> dict:
    """What a result's provenance keeps of a calibration: the numbers, the machine, the choice."""
    key = record["key"]
    return {"choice": record["choice"], "tokens_per_second": dict(record["tokens_per_second"]),
            "seconds": {k: list(v) for k, v in record["seconds"].items()},
            "cpu_seconds": {k: list(v) for k, v in record["cpu_seconds"].items()},
            "load_average": list(record["load_average"]),
            "texts": record["texts"], "tokens": record["tokens"],
            "max_length": key["max_length"], "batch_size": key["batch_size"],
            "cpu": key["machine"]["cpu"], "cpu_isa": list(key["machine"]["isa"]),
            "isa_caps": dict(key["machine"]["isa_caps"]), "cpus": key["machine"]["cpus"],
            "measured_at": record["measured_at"],
            "calibration_seconds": record["calibration_seconds"]}


def _settle_by_measurement(encoder: HFEncoder, checkpoint: str, config: DenseConfig, role: Role,
                           digest: str, reference: HFEncoder | None) -> HFEncoder:
    """`auto` on CPU: the faster exact backend for this model on this machine, measured once
    (benchmark.retrievers.backend keeps the measurement) and recorded in backend_info either
    way, so the result's provenance says what was measured on which CPU and ISA."""
    from benchmark.retrievers import backend as policy
    from benchmark.retrievers.encoders import load_torch_encoder

    max_length, batch = _calibration_shape(config, role)
    key = policy.calibration_key(digest, max_length, batch)
    record = policy.read_calibration(key)
    measured = record is None
    if measured:
        started = time.perf_counter()
        # converted just now: both encoders ran the parity check, already warm at this shape
        warm = reference is not None and encoder.backend_info.get("cache") == "converted"
        reference = reference or load_torch_encoder(checkpoint, config, "cpu", role)
        workers = max(2, _threads(), int(encoder.requests))
        texts = calibration_sample(config, role, batch * workers)
        speeds, seconds, cpu, tokens = measure_backends(
            {"openvino": encoder, "torch": reference}, texts, max_length, batch,
            warm_up=not warm)
        record = policy.write_calibration(key, speeds, seconds, cpu, len(texts), tokens,
                                          time.perf_counter() - started)
    summary = _summary(record) | {"measured_now": measured}
    if record["choice"] == "openvino":
        encoder.backend_info["calibration"] = summary
        return encoder
    chosen = reference or load_torch_encoder(checkpoint, config, "cpu", role)
    chosen.backend_info = {"fallback": policy.calibration_reason(record), "calibration": summary}
    return chosen


def load_openvino_encoder(
    checkpoint: str, config: DenseConfig, role: Role, weights: str, strict: bool = False,
) -> HFEncoder:
    """The OpenVINO encoder from the cache, else converted, checked and cached now; the torch
    encoder (with backend_info["fallback"] saying why) when it does not convert, fails parity
    or, unless `strict`, measures slower than torch on this CPU (_settle_by_measurement).
    `strict` (an explicit --backend openvino) turns the fallback into an error and skips the
    measurement."""
    encoder, reference = _load_converted(checkpoint, config, role, weights, strict)
    if strict or encoder.backend != "openvino":
        return encoder
    digest = _digest(conversion_key(weights, config, role))
    return _settle_by_measurement(encoder, checkpoint, config, role, digest, reference)


def _load_converted(
    checkpoint: str, config: DenseConfig, role: Role, weights: str, strict: bool = False,
) -> tuple[HFEncoder, HFEncoder | None]:
    """The OpenVINO encoder (cached, or converted and checked now) or the torch fallback, and
    the torch encoder loaded on the way, if any (the measurement reuses it)."""
    from benchmark.retrievers.encoders import load_torch_encoder as load_encoder

    key = conversion_key(weights, config, role)
    digest = _digest(key)
    root = cache_root() / "models"
    folder = root / digest[:32]
    meta = _read_meta(folder, digest)
    rebuilt = None
    if meta is not None and meta.get("failure"):
        return (_fall_back(checkpoint, config, role, meta["failure"], strict), None)
    if meta is not None:
        damage = _damage(folder, meta)
        if damage is None:
            try:
                compiled, precision = compile_model(folder / "model.xml")
            except ModelLoadError as exc:  # compiled in low precision here: not the model's fault
                return (_fall_back(checkpoint, config, role, str(exc), strict), None)
            except Exception as exc:  # an unreadable model is as good as a corrupt one
                damage = f"unreadable ({_one_line(exc)})"
            else:
                info = {"cache": "hit", "model": str(folder), **precision,
                        "parity": meta.get("parity"), "openvino": key["versions"]["openvino"]}
                parts = _light_parts(checkpoint, config, role)
                return OpenVinoEncoder(parts, compiled, info), None
        log.warning("cached OpenVINO model %s is damaged (%s); converting it again", folder, damage)
        rebuilt = damage
    elif os.path.lexists(folder):
        rebuilt = "meta.json missing, unreadable or invalid"
        log.warning("cached OpenVINO model %s has no valid meta.json; converting it again", folder)

    reference = load_encoder(checkpoint, config, "cpu", role)
    tmp = root / f".{digest[:32]}.{os.getpid()}.tmp"
    try:
        for folder_of_ours in (cache_root(), root):  # a FIFO, file or link in their place
            if _lstat_kind(folder_of_ours) not in ("dir", "missing"):
                _remove_entry(folder_of_ours)
        root.mkdir(parents=True, exist_ok=True)
        _clean_stale(root)
        _remove_entry(tmp)
        tmp.mkdir()
    except OSError as exc:  # permissions, a read-only home: not a property of the model
        reason = f"the conversion cache {root} is not usable ({exc.strerror or type(exc).__name__})"
        return _fall_back(checkpoint, config, role, reason, strict, reference), None
    meta = {"digest": digest, "key": key, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        start = time.perf_counter()
        convert(reference, tmp / "model.xml")
        seconds = time.perf_counter() - start
        compiled, precision = compile_model(tmp / "model.xml")
        candidate = OpenVinoEncoder(_parts_of(reference), compiled, {})
        check = parity(reference, candidate, config, role)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to convert means: stay on torch
        reason = f"conversion failed ({_one_line(exc)})"
        if isinstance(exc, OSError):  # disk full, permissions: not a property of the model
            _remove_entry(tmp)
            return (_fall_back(checkpoint, config, role, reason, strict, reference), None)
        return (_record_failure(tmp, folder, meta, reason, checkpoint, config, role, strict,
                                reference), None)
    if not check["passed"]:
        reason = check.get("reason") or (
            f"parity check failed (max abs diff {check['max_abs_diff_normalised']:.2e} of "
            f"normalised vectors, norms {check['max_rel_diff_norm']:.2e}; tolerance "
            f"{PARITY_TOLERANCE:g})")
        meta["parity"] = check
        return (_record_failure(tmp, folder, meta, reason, checkpoint, config, role, strict,
                                reference), None)
    meta |= {"files": {n: sha256_file(tmp / n) for n in ("model.xml", "model.bin")},
             "parity": check, "conversion_seconds": round(seconds, 3)}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    _publish(tmp, folder)
    candidate.backend_info = {
        "cache": "converted", "conversion_seconds": round(seconds, 3), "model": str(folder),
        **precision, "parity": check, "openvino": key["versions"]["openvino"],
    }
    if rebuilt:
        candidate.backend_info["rebuilt_because"] = rebuilt
    return candidate, reference


def _record_failure(tmp: Path, folder: Path, meta: dict, reason: str, checkpoint: str,
                    config: DenseConfig, role: Role, strict: bool, reference: HFEncoder):
    """Cache the reason (a folder with meta.json only), then fall back to torch."""
    for name in ("model.xml", "model.bin"):
        (tmp / name).unlink(missing_ok=True)
    meta["failure"] = reason
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    _publish(tmp, folder)
    return _fall_back(checkpoint, config, role, reason, strict, reference)


def _fall_back(checkpoint: str, config: DenseConfig, role: Role, reason: str, strict: bool,
               reference: HFEncoder | None = None) -> HFEncoder:
    from benchmark.core.errors import MaebenchError
    from benchmark.retrievers.encoders import load_torch_encoder as load_encoder

    if strict:
        raise MaebenchError(f"--backend openvino: {reason}; run with --backend torch")
    encoder = reference or load_encoder(checkpoint, config, "cpu", role)
    encoder.backend_info = {"fallback": reason}
    return encoder
