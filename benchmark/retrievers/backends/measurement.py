"""`auto` on CPU: measure torch against OpenVINO on this machine, once, and keep the faster.

Which backend is faster depends on the CPU (benchmark.retrievers.backends.policy), so the
first `auto` run of a converted card times both exact backends on the same real passages,
through their real encode paths, and records the numbers (benchmark.retrievers.backends
.calibration); later runs read the choice. Either way the encoder that is kept carries the
measurement in backend_info, so a result's provenance says what was measured on which CPU.

Its own module: the OpenVINO backend calls it after loading a converted model, and it needs
nothing of OpenVINO but an encoder to time.
"""

from __future__ import annotations

import time

import numpy as np

from benchmark.catalog.registry import DenseConfig
from benchmark.retrievers.backends import calibration
from benchmark.retrievers.backends.torch_backend import (
    EncoderInput,
    HFEncoder,
    Role,
    load_torch_encoder,
    torch_threads,
)


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
    mask = first.tokenize(texts, max_length, tensors="np")["attention_mask"]
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


def settle_by_measurement(encoder: HFEncoder, checkpoint: str, config: DenseConfig, role: Role,
                          digest: str, reference: HFEncoder | None) -> HFEncoder:
    """`auto` on CPU: the faster exact backend for this model on this machine, measured once
    (benchmark.retrievers.backends.calibration keeps it) and recorded in backend_info either
    way, so the result's provenance says what was measured on which CPU and ISA."""
    max_length, batch = calibration.calibration_shape(config, role)
    key = calibration.calibration_key(digest, max_length, batch)
    record = calibration.read_calibration(key)
    measured = record is None
    if measured:
        started = time.perf_counter()
        # converted just now: both encoders ran the parity check, already warm at this shape
        warm = reference is not None and encoder.backend_info.get("cache") == "converted"
        reference = reference or load_torch_encoder(checkpoint, config, "cpu", role)
        workers = max(2, torch_threads(), int(encoder.requests))
        texts = calibration_sample(config, role, batch * workers)
        speeds, seconds, cpu, tokens = measure_backends(
            {"openvino": encoder, "torch": reference}, texts, max_length, batch,
            warm_up=not warm)
        record = calibration.write_calibration(key, speeds, seconds, cpu, len(texts), tokens,
                                               time.perf_counter() - started)
    summary = _summary(record) | {"measured_now": measured}
    if record["choice"] == "openvino":
        encoder.backend_info["calibration"] = summary
        return encoder
    chosen = reference or load_torch_encoder(checkpoint, config, "cpu", role)
    chosen.backend_info = {"fallback": calibration.calibration_reason(record),
                           "calibration": summary}
    return chosen
