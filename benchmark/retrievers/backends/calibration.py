"""The measured choice between torch and OpenVINO, kept on disk: one small file per model,
machine and version set, so later runs read the answer instead of measuring again.

The first `auto` run of a card on a machine encodes a fixed calibration sample (real passages
of the embedded tiny task, every one truncated at the card's max length: the length most of a
real corpus's tokens are encoded at) with both exact backends, after a warm-up
(benchmark.retrievers.backends.measurement), and keeps the measured tokens per second in
$MAEBENCH_HOME/openvino/calibration/<key>.json. The key names what decides the speeds: the
converted model's identity (weights, encoder settings, openvino, torch and transformers
versions), the CPU model and ISA flags (with any ISA caps set in the environment), the CPUs this
process may use and the thread settings, the max length and batch size, and the sample's
format. Later runs read the choice from that file (one small file, no torch import), so a warm
run served from the store stays cheap and keeps its store key.

Its own module, below both the policy and the OpenVINO cache: the policy reads a stored
choice without loading anything, the measurement writes one.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchmark.catalog.registry import DenseConfig
    from benchmark.retrievers.backends.torch_backend import Role

CALIBRATION_FORMAT = 1  # bump when the sample or the measurement changes
CALIBRATION_LIMIT = 64 * 1024  # bytes: a calibration file is ~1 KB; anything larger is not ours
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def machine_identity() -> dict:
    """What, besides the model, decides which backend is faster: CPU model, ISA flags and caps,
    and the CPUs and thread settings this process runs with (torch's thread count follows them;
    read without importing torch)."""
    from benchmark.core.provenance import cpu_isa, cpu_model, isa_caps

    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    threads = {name: os.environ[name] for name in THREAD_VARIABLES if os.environ.get(name)}
    return {"cpu": cpu_model(), "isa": cpu_isa(), "isa_caps": isa_caps(), "cpus": cpus,
            "threads": threads}


def calibration_key(conversion_digest: str, max_length: int, batch_size: int) -> dict:
    return {"format": CALIBRATION_FORMAT, "conversion": conversion_digest,
            "machine": machine_identity(), "max_length": max_length, "batch_size": batch_size}


def _key_digest(key: dict) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def calibration_path(key: dict):
    from benchmark.core.paths import home_dir

    return home_dir() / "openvino" / "calibration" / f"{_key_digest(key)[:32]}.json"


def _calibration_model():
    """The calibration file's schema (built on first use: pydantic is not needed to decide
    anything when the backend is forced)."""
    import math

    from pydantic import BaseModel, ConfigDict, Field, model_validator

    class Calibration(BaseModel):
        """One measurement: tokens per second of each exact backend, and the faster one."""

        model_config = ConfigDict(extra="forbid", strict=True)
        digest: str = Field(pattern=r"^[0-9a-f]{64}$")
        key: dict
        tokens_per_second: dict[str, float]
        seconds: dict[str, list[float]]
        cpu_seconds: dict[str, list[float]]
        load_average: list[float] = Field(max_length=3)
        choice: str
        texts: int = Field(gt=0, le=100_000)
        tokens: int = Field(gt=0, le=100_000_000)
        calibration_seconds: float = Field(ge=0, le=1e6)
        measured_at: str = Field(max_length=64)

        @model_validator(mode="after")
        def _consistent(self):
            speeds = self.tokens_per_second
            if set(speeds) != {"torch", "openvino"} or not (
                    set(self.seconds) == set(self.cpu_seconds) == set(speeds)):
                raise ValueError("needs torch and openvino speeds")
            if not all(math.isfinite(v) and v > 0 for v in speeds.values()):
                raise ValueError("speeds must be finite and positive")
            if not all(len(v) <= 100 and all(math.isfinite(x) and x > 0 for x in v)
                       for v in (*self.seconds.values(), *self.cpu_seconds.values())):
                raise ValueError("seconds must be finite and positive")
            if not all(math.isfinite(x) and x >= 0 for x in self.load_average):
                raise ValueError("the load average must be finite")
            if self.choice != max(speeds, key=lambda name: (speeds[name], name == "openvino")):
                raise ValueError("the choice is not the faster backend")
            if _key_digest(self.key) != self.digest:
                raise ValueError("the digest does not match the key")
            return self

    return Calibration


def read_calibration(key: dict) -> dict | None:
    """The stored measurement for `key`, or None when there is none or it is damaged (a FIFO, a
    link, too large, not JSON, wrong types, a choice that is not the faster backend, another
    key's file): the caller measures again and writes over it. Never blocks: the file is
    checked with lstat and opened non-blocking."""
    import json
    import stat

    from benchmark.core.errors import MaebenchError
    from benchmark.core.paths import read_bounded

    path = calibration_path(key)
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size > CALIBRATION_LIMIT:
        return None
    try:
        raw = json.loads(read_bounded(path, CALIBRATION_LIMIT, "calibration"))
        record = _calibration_model().model_validate(raw)
    except (MaebenchError, ValueError, RecursionError):  # pydantic's ValidationError is one
        return None
    if record.digest != _key_digest(key):
        return None
    return record.model_dump()


def write_calibration(key: dict, speeds: dict[str, float], seconds: dict[str, list[float]],
                      cpu_seconds: dict[str, list[float]], texts: int, tokens: int,
                      calibration_seconds: float) -> dict:
    """Record a measurement (atomically; a damaged or foreign file at its path, a FIFO or link
    included, is replaced, never opened). A cache that cannot be written (read-only home) costs
    only a new measurement next time, so it is a warning, not an error."""
    import json
    import logging
    import time

    from benchmark.core.files import atomic_write

    record = {
        "digest": _key_digest(key), "key": key,
        "tokens_per_second": {k: round(float(v), 1) for k, v in speeds.items()},
        "seconds": {k: [round(float(x), 4) for x in v] for k, v in seconds.items()},
        "cpu_seconds": {k: [round(float(x), 4) for x in v] for k, v in cpu_seconds.items()},
        "load_average": [round(x, 2) for x in _load_average()],
        "choice": "", "texts": texts, "tokens": tokens,
        "calibration_seconds": round(float(calibration_seconds), 3),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    rounded = record["tokens_per_second"]
    record["choice"] = max(rounded, key=lambda name: (rounded[name], name == "openvino"))
    record = _calibration_model().model_validate(record).model_dump()
    path = calibration_path(key)
    try:
        _remove_non_file(path)
        atomic_write(path, json.dumps(record, indent=1, sort_keys=True).encode())
    except OSError as exc:
        logging.getLogger(__name__).warning("could not keep the backend calibration in %s (%s)",
                                            path, exc.strerror or type(exc).__name__)
    return record


def _load_average() -> list[float]:
    """The machine's load (1, 5, 15 minutes) when it was measured: a speed taken while other
    work shared the cores is weaker evidence; [] where the platform has none."""
    try:
        return [float(x) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return []


def _remove_non_file(path) -> None:
    """Remove whatever is at `path` unless it is a regular file (os.replace would put a file in
    place of a link or FIFO, but not of a folder), without following or opening it."""
    import shutil
    import stat

    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)
    elif not stat.S_ISREG(info.st_mode):
        os.unlink(path)


def calibration_reason(record: dict) -> str:
    """Why auto chose torch, in one line with the measured numbers and the machine."""
    speeds, machine = record["tokens_per_second"], record["key"]["machine"]
    isa = "/".join(machine["isa"]) or "no listed ISA flags"
    caps = "".join(f", {k}={v}" for k, v in machine["isa_caps"].items())
    return (f"torch measured faster on this CPU ({machine['cpu']}, {isa}{caps}, "
            f"{machine['cpus']} CPUs: {speeds['torch']:.0f} against OpenVINO's "
            f"{speeds['openvino']:.0f} tokens/s at {record['key']['max_length']} tokens, load "
            f"average {record['load_average'][0] if record['load_average'] else 'unknown'})")


def calibration_shape(config: DenseConfig, role: Role) -> tuple[int, int]:
    """(max length, batch size) the calibration runs at: the passage side's for a shared
    encoder (the corpus is where the time goes), the role's own for separate encoders; the
    CPU batch as HFEncoder.batch_size caps it. Public: the measurement runs at this shape and
    the OpenVINO cache looks a stored choice up by it."""
    from benchmark.retrievers.backends.torch_backend import CPU_BATCH_CAP

    max_length = (config.query_max_length if config.encoder == "separate" and role == "query"
                  else config.passage_max_length)
    return max_length, max(1, min(config.batch_size, CPU_BATCH_CAP))


def stored_calibration(digest: str, config: DenseConfig, role: Role) -> dict | None:
    """The stored measurement of the converted model `digest` for this card and role, if any
    (the OpenVINO cache's recorded_failure asks it, so `auto` knows torch won without measuring)."""
    return read_calibration(calibration_key(digest, *calibration_shape(config, role)))

