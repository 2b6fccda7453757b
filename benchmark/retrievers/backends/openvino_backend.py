"""The OpenVINO backend: load a converted dense encoder (from the cache, else converted and
checked now) and encode with it, falling back to torch, with the reason, where it cannot.

The conversion and its parity check are .openvino_export's, the cache on disk .openvino_cache's,
the timing against torch that `auto` asks for .measurement's; this module puts them in order
(load_openvino_encoder) and runs the compiled model. The third thing that keeps the vectors
those of torch is here: `INFERENCE_PRECISION_HINT=f32`, since on CPUs with AVX512_BF16 or AMX
OpenVINO otherwise runs in bf16 (here: max diff 1.2e-3 instead of 1.5e-7); after compiling, the
hint AND the runtime precision of every executed node are read back and any bf16/f16 node is a
failure. OpenVINO's compiled blobs go to $MAEBENCH_HOME/openvino/blobs (its CACHE_DIR), which
saves the compile step on later runs.

Inference mirrors the torch CPU path: length-sorted batches of at most CPU_BATCH_CAP texts, one
stream per core with one thread each (a batch is computed by one thread, so its bits do not
depend on the core count), fed through an AsyncInferQueue while the next batch is tokenised.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmark.catalog.registry import DenseConfig
from benchmark.core.errors import ModelLoadError
from benchmark.core.files import sha256_file
from benchmark.retrievers.backends import openvino_cache as cache
from benchmark.retrievers.backends import openvino_export as export
from benchmark.retrievers.backends.torch_backend import (
    EncoderInput,
    HFEncoder,
    Role,
    load_torch_encoder,
    torch_threads,
)

log = logging.getLogger(__name__)

LOW_PRECISIONS = {"bf16", "f16"}

_core = None


# -- compiling and checking precision --------------------------------------------------------


def core():
    """The process's one OpenVINO Core (created on first use: importing openvino costs time)."""
    global _core
    if _core is None:
        import openvino as ov

        _core = ov.Core()
    return _core




def _blob_dir() -> Path:
    """OpenVINO's compiled-blob cache, cleared of anything but regular files first: OpenVINO
    opens `<hash>.blob` for reading without checking what it is, so a FIFO there would block
    the run forever, and a link would be read (or written) outside the cache (issue 27). A
    damaged regular blob is OpenVINO's to detect; it compiles again. One scandir, no opens."""
    blobs = cache.cache_root() / "blobs"
    kind = cache.entry_kind(blobs)
    if kind not in ("dir", "missing"):
        cache.remove_entry(blobs)
    elif kind == "dir":
        try:
            with os.scandir(blobs) as entries:
                strays = [Path(e.path) for e in entries if not e.is_file(follow_symlinks=False)]
        except OSError:
            strays = []
        for stray in strays:
            log.warning("removing %s from OpenVINO's blob cache: not a regular file", stray)
            cache.remove_entry(stray)
    return blobs


def compile_model(xml: Path, threads: int | None = None):
    """Compile for the CPU in fp32, one single-threaded stream per core, with the blob cache;
    then read the precision back (a bf16 node anywhere is an error, never a silent result)."""
    n = threads or torch_threads()  # the tokenizer already imported torch
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
    """The precision hint and every executed node's runtime precision, read back: an error if
    anything runs below fp32; else what a result's provenance records of the compiled model."""
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
        encoded = self.tokenize(batch, max_length, tensors="np")
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
    for name in export.INPUT_NAMES:
        if name in names:
            return name
    raise ModelLoadError(f"the converted model has an unexpected input {sorted(names)}")


def _light_parts(checkpoint: str, config: DenseConfig, role: Role) -> dict:
    """Tokenizer and model class without the weights: a cached model needs nothing more."""
    from transformers import AutoConfig, AutoTokenizer

    from benchmark.catalog.weights import load_failure, resolve_checkpoint
    from benchmark.retrievers.backends.torch_backend import transformers_class

    source, origin = resolve_checkpoint(checkpoint, config.local_package, config.revision)
    revision = config.revision if origin == "hub" else None
    try:
        model_config = AutoConfig.from_pretrained(source, revision=revision)
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
    except (OSError, ValueError) as exc:
        raise load_failure(checkpoint, config.revision, exc) from exc
    return {"config": config, "checkpoint": checkpoint, "origin": origin, "tokenizer": tokenizer,
            "model_config": model_config,
            "model_class": transformers_class(config, model_config.model_type, role)}


def _parts_of(encoder: HFEncoder) -> dict:
    """What an OpenVinoEncoder takes from the torch encoder it was converted from."""
    return {"config": encoder.config, "checkpoint": encoder.checkpoint, "origin": encoder.origin,
            "tokenizer": encoder.tokenizer, "model_class": encoder.model_class,
            "model_config": encoder.model.config}


def _one_line(exc: BaseException) -> str:
    """An exception as the one line a fallback reason holds."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__



def load_openvino_encoder(
    checkpoint: str, config: DenseConfig, role: Role, weights: str, strict: bool = False,
) -> HFEncoder:
    """The OpenVINO encoder from the cache, else converted, checked and cached now; the torch
    encoder (with backend_info["fallback"] saying why) when it does not convert, fails parity
    or, unless `strict`, measures slower than torch on this CPU (.measurement).
    `strict` (an explicit --backend openvino) turns the fallback into an error and skips the
    measurement."""
    encoder, reference = _load_converted(checkpoint, config, role, weights, strict)
    if strict or encoder.backend != "openvino":
        return encoder
    from benchmark.retrievers.backends.measurement import settle_by_measurement

    digest = cache.key_digest(cache.conversion_key(weights, config, role))
    return settle_by_measurement(encoder, checkpoint, config, role, digest, reference)


def _load_converted(
    checkpoint: str, config: DenseConfig, role: Role, weights: str, strict: bool = False,
) -> tuple[HFEncoder, HFEncoder | None]:
    """The OpenVINO encoder (cached, or converted and checked now) or the torch fallback, and
    the torch encoder loaded on the way, if any (the measurement reuses it)."""
    key = cache.conversion_key(weights, config, role)
    digest = cache.key_digest(key)
    root = cache.cache_root() / "models"
    folder = root / digest[:32]
    meta = cache.read_meta(folder, digest)
    rebuilt = None
    if meta is not None and meta.get("failure"):
        return (_fall_back(checkpoint, config, role, meta["failure"], strict), None)
    if meta is not None:
        damage = cache.damage(folder, meta)
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

    reference = load_torch_encoder(checkpoint, config, "cpu", role)
    try:
        tmp = cache.temporary_entry(digest)
    except OSError as exc:  # permissions, a read-only home: not a property of the model
        reason = f"the conversion cache {root} is not usable ({exc.strerror or type(exc).__name__})"
        return _fall_back(checkpoint, config, role, reason, strict, reference), None
    meta = {"digest": digest, "key": key, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        start = time.perf_counter()
        export.convert(reference, tmp / "model.xml")
        seconds = time.perf_counter() - start
        compiled, precision = compile_model(tmp / "model.xml")
        candidate = OpenVinoEncoder(_parts_of(reference), compiled, {})
        check = export.parity(reference, candidate, config, role)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to convert means: stay on torch
        reason = f"conversion failed ({_one_line(exc)})"
        if isinstance(exc, OSError):  # disk full, permissions: not a property of the model
            cache.remove_entry(tmp)
            return (_fall_back(checkpoint, config, role, reason, strict, reference), None)
        return (_record_failure(tmp, folder, meta, reason, checkpoint, config, role, strict,
                                reference), None)
    if not check["passed"]:
        reason = check.get("reason") or (
            f"parity check failed (max abs diff {check['max_abs_diff_normalised']:.2e} of "
            f"normalised vectors, norms {check['max_rel_diff_norm']:.2e}; tolerance "
            f"{export.PARITY_TOLERANCE:g})")
        meta["parity"] = check
        return (_record_failure(tmp, folder, meta, reason, checkpoint, config, role, strict,
                                reference), None)
    meta |= {"files": {n: sha256_file(tmp / n) for n in ("model.xml", "model.bin")},
             "parity": check, "conversion_seconds": round(seconds, 3)}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    cache.publish(tmp, folder)
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
    cache.record_failure(tmp, folder, meta, reason)
    return _fall_back(checkpoint, config, role, reason, strict, reference)


def _fall_back(checkpoint: str, config: DenseConfig, role: Role, reason: str, strict: bool,
               reference: HFEncoder | None = None) -> HFEncoder:
    from benchmark.core.errors import MaebenchError

    if strict:
        raise MaebenchError(f"--backend openvino: {reason}; run with --backend torch")
    encoder = reference or load_torch_encoder(checkpoint, config, "cpu", role)
    encoder.backend_info = {"fallback": reason}
    return encoder
