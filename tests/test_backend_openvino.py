"""The OpenVINO backend (issue 18), on tiny random checkpoints of every encoder kind, CPU only.

Parity is checked against the torch backend on the same retriever inputs; the fallback, the
conversion cache (hit, corrupt -> rebuilt, cached failure) and the store keys are exercised
with a fresh $MAEBENCH_HOME per test so that no test sees another's cache.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from benchmark.core.errors import MaebenchError
from benchmark.core.paths import EMBEDDED_DATA_DIR
from benchmark.datasets.beir import load_corpus
from benchmark.embeddings.key import StoreKey
from benchmark.retrievers.backends import measurement, openvino_backend, openvino_export
from benchmark.retrievers.backends.policy import choose_backend
from benchmark.retrievers.dense import DenseRetriever
from benchmark.retrievers.options import StoreOptions
from tests.helpers import checkpoints
from tests.helpers.cards import make_card
from tests.helpers.checkpoints import TEXTS

pytest.importorskip("openvino")

OPENVINO = StoreOptions(backend="openvino")
_REAL_MEASURE = measurement.measure_backends  # before any test pins it
TORCH = StoreOptions(backend="torch")


def _measured(openvino: float, torch: float):
    """A stand-in for measure_backends with fixed speeds (tokens/s)."""

    def measure(*args, **kwargs):
        return ({"openvino": openvino, "torch": torch},
                {"openvino": [200 / openvino], "torch": [200 / torch]},
                {"openvino": [400 / openvino], "torch": [400 / torch]}, 200)

    return measure


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh maebench home: an empty conversion cache and embedding store. `auto` measures
    both backends on a tiny random model, where either may win by noise; these tests are about
    conversion, parity and the cache, so OpenVINO is pinned as the faster one (the calibration
    tests below set their own speeds, and one measures for real)."""
    monkeypatch.setenv("MAEBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MAEBENCH_BACKEND", raising=False)
    monkeypatch.setattr(measurement, "measure_backends", _measured(2000.0, 1000.0))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def kinds(tmp_path_factory, tiny_texts, tiny_bert_dir):
    """One card per encoder kind of the registry (and each post-pooling head)."""
    mk = tmp_path_factory.mktemp
    mlm = checkpoints.tiny_bert_mlm(mk("mlm"), tiny_texts)
    q_dir = checkpoints.tiny_dpr(mk("dpr-q"), tiny_texts, "query", seed=1)
    p_dir = checkpoints.tiny_dpr(mk("dpr-p"), tiny_texts, "passage", seed=2)
    t5 = checkpoints.add_st_head(checkpoints.tiny_t5(mk("t5"), tiny_texts), ["dense"], dim=32,
                                 out_dim=16)
    ance = checkpoints.add_st_head(checkpoints.tiny_bert(mk("ance"), tiny_texts, seed=3),
                                   ["dense", "layernorm"], dim=32)
    # words matter at this range (cosines 0.4-0.99); at 1.0 activations are so large that fp32
    # rounding alone reaches 1.6e-5 and the parity check (rightly) keeps that model on torch
    spread = checkpoints.tiny_bert(mk("spread"), tiny_texts, initializer_range=0.3)
    return {
        "shared-cls": make_card(spread),
        "shared-mean-normalised": make_card(tiny_bert_dir, pooling="mean", normalize=True,
                                            similarity="cosine", query_prefix="query: ",
                                            passage_prefix="passage: "),
        "separate-dpr-pooler-pair": make_card(
            encoder="separate", query_checkpoint=str(q_dir), passage_checkpoint=str(p_dir),
            pooling="pooler", title="pair"),
        "t5-dense-head": make_card(t5, encoder="t5", pooling="mean", head=["dense"],
                                   normalize=True, similarity="cosine"),
        "shared-dense-layernorm-head": make_card(ance, head=["dense", "layernorm"]),
        "dupmae": make_card(mlm, encoder="dupmae", dupmae_sparse_top_k=8,
                            dupmae_sparse_weight=0.5),
    }


def _docs():
    return list(load_corpus(EMBEDDED_DATA_DIR / "tiny" / "corpus.jsonl").values())


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


KINDS = ["shared-cls", "shared-mean-normalised", "separate-dpr-pooler-pair", "t5-dense-head",
         "shared-dense-layernorm-head", "dupmae"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_every_encoder_kind_converts_with_fp32_parity(kinds, kind, home):
    card = kinds[kind]
    ov = DenseRetriever(card.retriever, device="cpu", store=OPENVINO, name=kind)
    ref = DenseRetriever(card.retriever, device="cpu", store=TORCH, name=kind)
    assert ov.backend_of("query") == ov.backend_of("passage") == "openvino"
    docs = _docs()
    got = np.concatenate([ov.encode_queries(TEXTS), ov.encode_passages(docs)])
    want = np.concatenate([ref.encode_queries(TEXTS), ref.encode_passages(docs)])
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.abs(_normalised(got) - _normalised(want)).max() <= openvino_export.PARITY_TOLERANCE
    info = ov.describe()
    assert info["backend"] == "openvino" and "backend_note" not in info
    details = info["openvino"]
    for facts in (details["query"], details["passage"]) if "query" in details else (details,):
        assert facts["inference_precision"] == "f32"  # read back from the compiled model
        assert not {"bf16", "f16"} & set(facts["node_precisions"])
        assert "f32" in facts["node_precisions"]
        assert facts["parity"]["passed"]
        assert facts["parity"]["max_abs_diff_normalised"] <= openvino_export.PARITY_TOLERANCE
        assert facts["cache"] == "converted" and facts["conversion_seconds"] > 0


def test_the_default_is_openvino_on_cpu_and_torch_on_gpu_or_low_precision(monkeypatch):
    monkeypatch.delenv("MAEBENCH_BACKEND", raising=False)
    assert StoreOptions().backend == "auto"
    assert choose_backend("auto", "cpu", "float32").name == "openvino"
    gpu = choose_backend("auto", "cuda:0", "float32")
    assert gpu.name == "torch" and "GPU" in gpu.reason
    assert choose_backend("auto", "cpu", "bfloat16").name == "torch"
    assert choose_backend("auto", "cpu", "float32", engine="ray").name == "torch"
    assert choose_backend("torch", "cpu", "float32").name == "torch"
    with pytest.raises(MaebenchError, match="openvino cannot run here"):
        choose_backend("openvino", "cuda", "float32")
    monkeypatch.setenv("MAEBENCH_BACKEND", "torch")
    assert StoreOptions().backend == "torch"  # how finetune / study / mteb are forced to torch


@pytest.mark.slow
def test_a_cached_model_is_reused_without_converting(kinds, home, monkeypatch):
    card = kinds["shared-cls"]
    first = DenseRetriever(card.retriever, device="cpu", name="a").encode_queries(TEXTS)

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again although the cache holds the model")

    monkeypatch.setattr(openvino_export, "convert", no_conversion)
    again = DenseRetriever(card.retriever, device="cpu", name="a")
    assert again.describe()["openvino"]["cache"] == "hit"
    assert "conversion_seconds" not in again.describe()["openvino"]
    np.testing.assert_array_equal(again.encode_queries(TEXTS), first)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["flip-bin", "truncate-xml", "drop-meta"])
def test_a_corrupt_cached_model_is_detected_and_rebuilt(kinds, home, damage, caplog):
    card = kinds["shared-cls"]
    first = DenseRetriever(card.retriever, device="cpu").encode_queries(TEXTS)
    folder = next((home / "openvino" / "models").iterdir())
    if damage == "flip-bin":
        data = bytearray((folder / "model.bin").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (folder / "model.bin").write_bytes(bytes(data))
    elif damage == "truncate-xml":
        (folder / "model.xml").write_text((folder / "model.xml").read_text()[:200])
    else:
        (folder / "meta.json").unlink()
    with caplog.at_level(logging.WARNING):
        rebuilt = DenseRetriever(card.retriever, device="cpu")
    facts = rebuilt.describe()["openvino"]
    assert facts["cache"] == "converted" and facts["rebuilt_because"]
    assert "converting it again" in caplog.text
    np.testing.assert_array_equal(rebuilt.encode_queries(TEXTS), first)
    assert DenseRetriever(card.retriever, device="cpu").describe()["openvino"]["cache"] == "hit"


def test_a_failed_conversion_falls_back_to_torch_once_and_says_why(kinds, home, monkeypatch,
                                                                   caplog):
    card = kinds["shared-cls"]

    def broken(encoder, xml):
        raise RuntimeError("Cannot convert aten::made_up_op\nsecond line of detail")

    monkeypatch.setattr(openvino_export, "convert", broken)
    with caplog.at_level(logging.WARNING):
        fallen = DenseRetriever(card.retriever, device="cpu", name="tiny")
    info = fallen.describe()
    assert info["backend"] == "torch" and info["backend_requested"] == "auto"
    assert info["backend_note"] == "conversion failed (RuntimeError: Cannot convert aten::made_up_op)"
    warnings = [r.getMessage() for r in caplog.records if "not OpenVINO" in r.getMessage()]
    assert warnings == ["tiny: encoding with torch, not OpenVINO: " + info["backend_note"]]
    torch_vectors = DenseRetriever(card.retriever, device="cpu", store=TORCH).encode_queries(TEXTS)
    np.testing.assert_array_equal(fallen.encode_queries(TEXTS), torch_vectors)
    # the reason is cached with the converter's version: the next run goes straight to torch
    monkeypatch.setattr(openvino_export, "convert", lambda *a: pytest.fail("converted again"))
    lazy = DenseRetriever(card.retriever, device="cpu", lazy=True)
    assert lazy.backend_of("passage") == "torch"
    assert "made_up_op" in lazy.describe()["backend_note"]
    # an explicit --backend openvino is refused with the reason instead of a silent torch run
    with pytest.raises(MaebenchError, match="--backend openvino: conversion failed"):
        DenseRetriever(card.retriever, device="cpu", store=OPENVINO)


@pytest.mark.slow
def test_failed_parity_falls_back_to_torch(kinds, home, monkeypatch):
    monkeypatch.setattr(openvino_export, "PARITY_TOLERANCE", 0.0)  # nothing is that exact
    retriever = DenseRetriever(kinds["shared-cls"].retriever, device="cpu")
    assert retriever.describe()["backend"] == "torch"
    assert retriever.describe()["backend_note"].startswith("parity check failed (max abs diff")


@pytest.mark.slow
def test_bf16_compilation_is_caught(kinds, home):
    """OpenVINO's default on AVX512_BF16 / AMX CPUs is bf16: verify_precision must see it."""
    import openvino as ov

    DenseRetriever(kinds["shared-cls"].retriever, device="cpu", store=OPENVINO)
    folder = next((home / "openvino" / "models").iterdir())
    core = openvino_backend.core()
    compiled = core.compile_model(core.read_model(str(folder / "model.xml")), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "bf16"})
    if compiled.get_property("INFERENCE_PRECISION_HINT") != ov.Type.bf16:
        pytest.skip("this CPU has no bf16 path")
    with pytest.raises(MaebenchError, match="fp32 was asked for"):
        openvino_backend.verify_precision(compiled)


def test_store_keys_differ_by_backend_and_torch_keys_stay_as_they_were():
    base = dict(role="passage", weights="sha256:" + "a" * 64, encoder="shared", pooling="cls",
                head=(), normalize=False, similarity="dot", prefix="", title="prepend",
                title_separator=" ", max_length=512, model_dtype="float32",
                store_dtype="float32", texts="c" * 64, shard_rows=1000)
    torch_key = StoreKey(**base)
    assert torch_key.backend == "torch"
    assert StoreKey(**base, backend="openvino").digest() != torch_key.digest()
    import hashlib
    import json

    legacy = json.dumps(torch_key.model_dump(mode="json", exclude={"backend"}), sort_keys=True,
                        separators=(",", ":"))
    assert torch_key.digest() == hashlib.sha256(legacy.encode()).hexdigest()


@pytest.mark.slow
def test_a_run_records_its_backend_outside_the_evaluation_identity(kinds, home, tmp_path):
    """torch and OpenVINO: separate store entries, the same evaluation (EvalKey) and scores."""
    from benchmark.catalog.tasks import get_task
    from benchmark.pipeline.runner import RunOptions, run_task
    from benchmark.results.identity import EvalKey
    from benchmark.results.result_store import read_result

    card = kinds["shared-cls"]
    results = {}
    for backend in ("torch", "auto"):
        options = RunOptions(results_dir=tmp_path / backend, device="cpu",
                             store=StoreOptions(root=tmp_path / "store", backend=backend))
        results[backend] = read_result(run_task(card, get_task("tiny"), options))
    torch_run, ov_run = results["torch"].provenance.runtime, results["auto"].provenance.runtime
    assert torch_run["backend"] == "torch" and ov_run["backend"] == "openvino"
    assert ov_run["openvino"]["inference_precision"] == "f32"
    assert torch_run["embedding_store"]["entry"] != ov_run["embedding_store"]["entry"]
    assert EvalKey.of(results["torch"]) == EvalKey.of(results["auto"])
    for metric, value in results["torch"].metrics.items():
        assert results["auto"].metrics[metric] == pytest.approx(value, abs=1e-6), metric
    # a warm run reads the OpenVINO entry back without loading any model
    options = RunOptions(results_dir=tmp_path / "warm", device="cpu",
                         store=StoreOptions(root=tmp_path / "store"))
    warm = read_result(run_task(card, get_task("tiny"), options)).provenance.runtime
    assert warm["device"].startswith("none") and warm["backend"] == "openvino"
    assert warm["embedding_store"]["entry"] == ov_run["embedding_store"]["entry"]
    assert warm["embedding_store"]["shards_from_store"] == 1


def test_a_fallback_rekeys_the_store_entry_before_writing(kinds, home, tmp_path, monkeypatch):
    """A lazy run predicts OpenVINO; when the conversion then fails, the vectors go to the torch
    entry, never under the OpenVINO key."""
    from benchmark.catalog.tasks import get_task
    from benchmark.pipeline.runner import RunOptions, run_task
    from benchmark.results.result_store import read_result

    monkeypatch.setattr(openvino_export, "convert",
                        lambda *a: (_ for _ in ()).throw(RuntimeError("unsupported op")))
    card = kinds["shared-cls"]
    store = StoreOptions(root=tmp_path / "store")
    runtime = read_result(run_task(card, get_task("tiny"), RunOptions(
        results_dir=tmp_path / "r", device="cpu", store=store))).provenance.runtime
    assert runtime["backend"] == "torch" and "unsupported op" in runtime["backend_note"]
    torch_runtime = read_result(run_task(card, get_task("tiny"), RunOptions(
        results_dir=tmp_path / "t", device="cpu",
        store=StoreOptions(root=tmp_path / "store", backend="torch")))).provenance.runtime
    assert runtime["embedding_store"]["entry"] == torch_runtime["embedding_store"]["entry"]
    assert torch_runtime["embedding_store"]["shards_from_store"] == 1


@pytest.mark.slow
def test_openvino_batches_like_the_torch_path(kinds, home, monkeypatch):
    """Capped, length-sorted batches; vectors back in the caller's order, whatever the cap."""
    from benchmark.retrievers.backends import torch_backend

    encoder = DenseRetriever(kinds["shared-cls"].retriever, device="cpu",
                             store=OPENVINO).passage_encoder
    assert encoder.backend == "openvino" and encoder.batch_size(64) == torch_backend.CPU_BATCH_CAP
    texts = [f"passage number {i} " * (i % 7 + 1) for i in range(40)]
    capped = encoder.encode(texts, 32, 64)
    monkeypatch.setattr(torch_backend, "CPU_BATCH_CAP", 64)
    whole = encoder.encode(texts, 32, 64)
    np.testing.assert_allclose(capped, whole, atol=1e-5)
    single = np.stack([encoder.embed_batch([t], 32)[0] for t in texts[:5]])
    np.testing.assert_allclose(capped[:5], single, atol=1e-5)


@pytest.mark.slow
def test_cli_backend_errors_are_one_line(tmp_path):
    import subprocess
    import sys

    from typer.testing import CliRunner

    from benchmark.cli import app

    cases = {
        ("--backend", "onnx"): "--backend must be one of auto, torch, openvino",
        ("--backend", "openvino", "--engine", "ray"): "--backend openvino goes with --engine local",
        ("--backend", "openvino", "--dtype", "bfloat16"): "OpenVINO is used for fp32 only",
    }
    for flags, message in cases.items():
        result = CliRunner().invoke(app, ["run", "-m", "all-minilm-l6-v2", "-t", "tiny",
                                          "--results-dir", str(tmp_path), *flags])
        assert result.exit_code != 0
        assert message in str(result.exception), result.output
    assert not list(tmp_path.rglob("*.json"))  # nothing was stored
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "run", "-m", "all-minilm-l6-v2",
                          "--backend", "onnx", "--results-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [
        "error: --backend must be one of auto, torch, openvino (got 'onnx')"]


# -- choice by measurement (issue 26) --------------------------------------------------------


@pytest.mark.slow
def test_auto_uses_torch_where_torch_measures_faster_and_says_so_with_the_numbers(
        kinds, home, tmp_path, monkeypatch, caplog):
    """The first auto run measures, keeps the numbers, uses the faster (torch here) and records
    the CPU, its ISA and both speeds; later runs read the choice without converting or
    measuring, and a warm run keeps the torch store entry."""
    from benchmark.catalog.tasks import get_task
    from benchmark.core.provenance import cpu_isa, cpu_model
    from benchmark.pipeline.runner import RunOptions, run_task
    from benchmark.results.result_store import read_result

    monkeypatch.setattr(measurement, "measure_backends", _measured(1000.0, 1500.0))
    card = kinds["shared-cls"]
    store = StoreOptions(root=tmp_path / "store")
    with caplog.at_level(logging.WARNING):
        result = read_result(run_task(card, get_task("tiny"), RunOptions(
            results_dir=tmp_path / "r", device="cpu", store=store)))
    runtime = result.provenance.runtime
    assert runtime["backend"] == "torch" and runtime["backend_requested"] == "auto"
    note = runtime["backend_note"]
    assert note.startswith("torch measured faster on this CPU (" + cpu_model())
    assert "1500 against OpenVINO's 1000 tokens/s at 128 tokens, load average" in note
    assert "/".join(cpu_isa()) in note
    assert result.provenance.hardware["cpu_isa"] == cpu_isa()
    assert "encoding with torch, not OpenVINO: torch measured faster" in caplog.text
    torch_vectors = DenseRetriever(card.retriever, device="cpu", store=TORCH).encode_queries(TEXTS)
    monkeypatch.setattr(measurement, "measure_backends",
                        lambda *a, **k: pytest.fail("measured again"))
    monkeypatch.setattr(openvino_export, "convert", lambda *a: pytest.fail("converted again"))
    lazy = DenseRetriever(card.retriever, device="cpu", lazy=True)
    assert lazy.backend_of("passage") == "torch" and lazy.describe()["backend_note"] == note
    np.testing.assert_array_equal(lazy.encode_queries(TEXTS), torch_vectors)
    warm = read_result(run_task(card, get_task("tiny"), RunOptions(
        results_dir=tmp_path / "w", device="cpu", store=store))).provenance.runtime
    assert warm["device"].startswith("none") and warm["backend"] == "torch"
    assert warm["embedding_store"]["entry"] == runtime["embedding_store"]["entry"]
    # the overrides skip the measurement: --backend openvino encodes with OpenVINO regardless
    forced = DenseRetriever(card.retriever, device="cpu", store=OPENVINO)
    assert forced.describe()["backend"] == "openvino"
    assert "calibration" not in forced.describe()["openvino"]


@pytest.mark.slow
def test_auto_uses_openvino_where_it_measures_faster_and_records_the_measurement(kinds, home):
    from benchmark.core.provenance import cpu_isa, cpu_model

    retriever = DenseRetriever(kinds["shared-cls"].retriever, device="cpu")
    info = retriever.describe()
    assert info["backend"] == "openvino" and "backend_note" not in info
    calibration = info["openvino"]["calibration"]
    assert calibration["choice"] == "openvino" and calibration["measured_now"]
    assert calibration["tokens_per_second"] == {"openvino": 2000.0, "torch": 1000.0}
    assert calibration["cpu"] == cpu_model() and calibration["cpu_isa"] == cpu_isa()
    assert calibration["max_length"] == 128 and calibration["batch_size"] == 4
    again = DenseRetriever(kinds["shared-cls"].retriever, device="cpu").describe()["openvino"]
    assert again["cache"] == "hit" and not again["calibration"]["measured_now"]


@pytest.mark.slow
def test_the_calibration_is_keyed_by_machine_threads_and_isa_caps(kinds, home, monkeypatch):
    """Another thread setting or an ISA cap is another machine for the choice: measured anew."""
    card = kinds["shared-cls"]
    DenseRetriever(card.retriever, device="cpu")
    for name, value in (("OMP_NUM_THREADS", "1"), ("ONEDNN_MAX_CPU_ISA", "AVX2")):
        with monkeypatch.context() as mp:
            mp.setenv(name, value)
            facts = DenseRetriever(card.retriever, device="cpu").describe()["openvino"]
            assert facts["calibration"]["measured_now"], name
    assert len(list((home / "openvino" / "calibration").glob("*.json"))) == 3


@pytest.mark.slow
def test_a_real_measurement_encodes_the_sample_with_both_backends(kinds, home, monkeypatch):
    """Unpinned: the sample is real text truncated at the card's max length, both backends
    encode it after a warm-up, and the faster one is what the file and the retriever say."""
    monkeypatch.setattr(measurement, "measure_backends", _REAL_MEASURE)
    card = kinds["shared-cls"]
    texts = measurement.calibration_sample(card.retriever, "passage", 8)
    assert len(set(texts)) == 8
    retriever = DenseRetriever(card.retriever, device="cpu")
    info = retriever.describe()
    calibration = (info.get("openvino") or {}).get("calibration") or _torch_calibration(retriever)
    speeds = calibration["tokens_per_second"]
    assert set(speeds) == {"openvino", "torch"} and min(speeds.values()) > 0
    assert calibration["choice"] == max(speeds, key=speeds.get)
    assert info["backend"] == calibration["choice"]
    assert calibration["tokens"] == calibration["texts"] * 128  # every text truncated
    assert all(len(times) == 2 for times in calibration["seconds"].values())
    assert all(len(times) == 2 and min(times) > 0 for times in calibration["cpu_seconds"].values())
    assert len(calibration["load_average"]) == 3


def _torch_calibration(retriever) -> dict:
    encoder = retriever.passage_encoder
    return encoder.backend_info["calibration"]


