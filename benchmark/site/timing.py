"""How fast each result indexed its corpus, and whether that speed is plausible.

A recorded speed is shown on the task pages and the models' pages, so it must not pass off a
loaded machine or a read-back from the embedding store as a property of the model: a dense
encoding's implied FLOP rate is checked against the other dense results on the same hardware,
and against other results of the same weights doing the same work."""

from __future__ import annotations

from typing import Any

from benchmark.results.schema import Result


def throughput(result: Result) -> float | None:
    """Corpus documents indexed per second (encode_corpus for dense, index for BM25); None when
    the vectors (some or all) were read from the embedding store: that time is not an encoding."""
    timings = result.provenance.timings
    seconds = timings.get("encode_corpus", timings.get("index"))
    if not seconds or not result.task.n_docs:
        return None
    store = (result.provenance.runtime or {}).get("embedding_store") or {}
    if store.get("shards_from_store"):
        return None
    return result.task.n_docs / seconds


# A dense encoding's implied compute rate (2 x parameters x max tokens x documents / second, an
# upper bound on the work) is compared with the median of the other dense results on the same
# hardware: this many times slower or faster is marked as implausible (a loaded machine, a
# broken timing), since the same machine does the same work at about the same rate.
IMPLAUSIBLE_FACTOR = 4.0


def _hardware_key(result: Result) -> tuple:
    hw = result.provenance.hardware
    return (hw.get("cpu"), hw.get("cpu_count"), hw.get("gpu"))


# The same weights, settings, backend, task and hardware do the same work: speeds this many times
# apart cannot both describe the model (3.3 and 9.6 documents/s for one checkpoint on SciFact,
# once under a training job and once on a quieter machine, used to stand side by side unmarked).
SAME_WORK_FACTOR = 2.0


def _same_work_key(result: Result) -> tuple | None:
    """What fixes a dense encoding's work: the passage weights' identity (their sha256, whatever
    the card's name), the settings that change the cost, the backend, the task and the hardware.
    None when the result records no weights identity (nothing says two cards share weights)."""
    runtime = result.provenance.runtime or {}
    weights = (runtime.get("weights_identity") or {}).get("passage")
    if not weights:
        return None
    cfg = result.model.config or {}
    return (weights, cfg.get("passage_max_length"), cfg.get("batch_size"), cfg.get("dtype"),
            runtime.get("backend", "torch"), result.task.name, _hardware_key(result))


def _same_work_flags(results: list[tuple[Result, float]]) -> dict[tuple[str, str], str]:
    """(model, task) -> why, for a speed SAME_WORK_FACTOR x off the median of the other results
    doing the same work (_same_work_key): with two, both are marked, since nothing says which
    of them ran on the loaded machine."""
    groups: dict[tuple, list[tuple[Result, float]]] = {}
    for r, speed in results:
        key = _same_work_key(r)
        if key is not None:
            groups.setdefault(key, []).append((r, speed))
    flags: dict[tuple[str, str], str] = {}
    for group in groups.values():
        for r, speed in group:
            others = sorted(s for o, s in group if o is not r)
            if not others:
                continue
            median = others[len(others) // 2]
            ratio = max(speed / median, median / speed)
            if ratio >= SAME_WORK_FACTOR:
                names = ", ".join(f"{o.model.name} {s:,.1f}" for o, s in
                                  sorted(group, key=lambda item: item[0].model.name) if o is not r)
                flags[(r.model.name, r.task.name)] = (
                    f"implausible: {speed:,.1f} docs/s, while the same weights with the same "
                    f"settings on the same task and hardware ran at {names} docs/s ({ratio:.1f}x "
                    "apart for the same work): the machine's load, not the model, set these "
                    "speeds")
    return flags


def timing_flags(results: list[Result], cards: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(model, task) -> why its indexing speed is implausible, for dense results whose implied
    FLOP rate is IMPLAUSIBLE_FACTOR x off the median of the dense results on the same hardware
    (at least three of them), whose speed is SAME_WORK_FACTOR x off another result of the same
    weights doing the same work, or read back from the embedding store."""
    measured: list[tuple[Result, float]] = []
    rates: dict[tuple, list[tuple[Result, float]]] = {}
    flags: dict[tuple[str, str], str] = {}
    for r in results:
        if r.model.kind != "dense":
            continue
        store = (r.provenance.runtime or {}).get("embedding_store") or {}
        if store.get("shards_from_store"):
            flags[(r.model.name, r.task.name)] = (
                "vectors read from the embedding store: no encoding time to show")
            continue
        speed = throughput(r)
        if speed is not None:
            measured.append((r, speed))
        card = cards.get(r.model.name)
        params = getattr(card, "parameters", None) if card else None
        length = (r.model.config or {}).get("passage_max_length")
        if speed is None or not params or not length:
            continue
        rates.setdefault(_hardware_key(r), []).append((r, 2 * params * length * speed))
    for group in rates.values():
        if len(group) < 3:
            continue
        median = sorted(rate for _, rate in group)[len(group) // 2]
        for r, rate in group:
            ratio = rate / median
            if ratio < 1 / IMPLAUSIBLE_FACTOR or ratio > IMPLAUSIBLE_FACTOR:
                flags[(r.model.name, r.task.name)] = (
                    f"implausible: {rate / 1e9:,.1f} GFLOP/s against a median of "
                    f"{median / 1e9:,.1f} for the dense results on the same hardware "
                    f"({'slower' if ratio < 1 else 'faster'} by {max(ratio, 1 / ratio):.0f}x: a "
                    "loaded machine or a broken timing)")
    for key, why in _same_work_flags(measured).items():
        flags[key] = f"{flags[key]}; {why}" if key in flags else why
    return flags


def hardware_summary(results: list[Result]) -> list[tuple[str, int]]:
    """(hardware label, number of results) for a page's caption, commonest first."""
    counts: dict[str, int] = {}
    for r in results:
        label = hardware_label(r)
        counts[label] = counts.get(label, 0) + 1
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def hardware_label(result: Result) -> str:
    hw = result.provenance.hardware
    gpu = hw.get("gpu")
    return str(gpu) if gpu else f"{hw.get('cpu', '?')} ({hw.get('cpu_count', '?')} CPUs)"
