"""Every encoder kind a card can name, on tiny random checkpoints built here (no network).

The pooling maths is checked against a direct forward pass of the same transformers class; the
end-to-end tests run each kind through benchmark.pipeline.runner.run_task on the embedded tiny task.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from benchmark.catalog.registry import ModelCard, parse_card
from benchmark.core.errors import ModelLoadError
from benchmark.datasets.records import Document
from benchmark.retrievers import build_retriever
from benchmark.retrievers.dense import DenseRetriever
from benchmark.retrievers.options import StoreOptions
from tests.helpers import checkpoints
from tests.helpers.cards import make_card
from tests.helpers.checkpoints import TEXTS

TORCH = StoreOptions(backend="torch")  # tests of the torch encoder's own CPU path


def tokens(model_dir: Path, texts: list[str], max_length: int = 64):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory, tiny_texts) -> Path:
    return checkpoints.tiny_bert_mlm(tmp_path_factory.mktemp("mlm"), tiny_texts)


@pytest.fixture(scope="module")
def dpr_dirs(tmp_path_factory, tiny_texts) -> tuple[Path, Path]:
    q = checkpoints.tiny_dpr(tmp_path_factory.mktemp("dpr-q"), tiny_texts, "query", seed=1)
    p = checkpoints.tiny_dpr(tmp_path_factory.mktemp("dpr-p"), tiny_texts, "passage", seed=2)
    return q, p


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory, tiny_texts) -> Path:
    folder = checkpoints.tiny_t5(tmp_path_factory.mktemp("t5"), tiny_texts)
    return checkpoints.add_st_head(folder, ["dense"], dim=32, out_dim=16)


@pytest.fixture(scope="module")
def ance_dir(tmp_path_factory, tiny_texts) -> Path:
    folder = checkpoints.tiny_bert(tmp_path_factory.mktemp("ance"), tiny_texts, seed=3)
    return checkpoints.add_st_head(folder, ["dense", "layernorm"], dim=32)


# --- pooling maths ---------------------------------------------------------------------------


def test_cls_pooling_is_position_zero(tiny_bert_dir):
    from transformers import BertModel

    retriever = DenseRetriever(make_card(tiny_bert_dir).retriever, device="cpu")
    got = retriever.encode_queries(TEXTS)
    model = BertModel.from_pretrained(tiny_bert_dir).eval()
    with torch.no_grad():
        expected = model(**tokens(tiny_bert_dir, TEXTS)).last_hidden_state[:, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_mean_pooling_ignores_padding(tiny_bert_dir):
    from transformers import BertModel

    retriever = DenseRetriever(make_card(tiny_bert_dir, pooling="mean").retriever, device="cpu")
    alone = retriever.encode_queries(TEXTS[:1])[0]
    padded = retriever.encode_queries(TEXTS)[0]  # batched with a longer text: padded
    np.testing.assert_allclose(alone, padded, atol=1e-5)
    model = BertModel.from_pretrained(tiny_bert_dir).eval()
    with torch.no_grad():
        hidden = model(**tokens(tiny_bert_dir, TEXTS[:1])).last_hidden_state[0]
    np.testing.assert_allclose(alone, hidden.mean(dim=0).numpy(), atol=1e-5)
    assert not np.allclose(alone, hidden[0].numpy(), atol=1e-3)  # not the CLS vector


class TokenizerSpy:
    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.calls: list[tuple] = []

    def __call__(self, *args, **kwargs):
        self.calls.append(args)
        return self.tokenizer(*args, **kwargs)


def test_prefixes_are_prepended(tiny_bert_dir):
    card = make_card(tiny_bert_dir, query_prefix="query: ", passage_prefix="passage: ")
    retriever = DenseRetriever(card.retriever, device="cpu")
    spy = TokenizerSpy(retriever.query_encoder.tokenizer)
    retriever.query_encoder.tokenizer = spy
    with_prefix = retriever.encode_queries(TEXTS[:1])
    retriever.encode_passages([Document(title="Stars", text="light bends")])
    assert spy.calls[0][0] == ["query: " + TEXTS[0]]
    assert spy.calls[1][0] == ["passage: Stars light bends"]
    plain = DenseRetriever(make_card(tiny_bert_dir).retriever, device="cpu")
    assert not np.allclose(with_prefix, plain.encode_queries(TEXTS[:1]), atol=1e-4)


def test_title_pair_mode_passes_title_and_text_as_a_pair(tiny_bert_dir):
    retriever = DenseRetriever(make_card(tiny_bert_dir, title="pair").retriever, device="cpu")
    spy = TokenizerSpy(retriever.passage_encoder.tokenizer)
    retriever.passage_encoder.tokenizer = spy
    retriever.encode_passages([Document(title="Stars", text="light bends")])
    assert spy.calls[0][:2] == (["Stars"], ["light bends"])


def test_separate_encoders_use_their_own_weights(dpr_dirs):
    from transformers import DPRContextEncoder, DPRQuestionEncoder

    q_dir, p_dir = dpr_dirs
    card = make_card(encoder="separate", query_checkpoint=str(q_dir), passage_checkpoint=str(p_dir),
                     pooling="pooler")
    retriever = DenseRetriever(card.retriever, device="cpu")
    as_query = retriever.encode_queries(TEXTS)
    as_passage = retriever.encode_passages(TEXTS)
    assert not np.allclose(as_query, as_passage, atol=1e-3)
    with torch.no_grad():
        q = DPRQuestionEncoder.from_pretrained(q_dir).eval()(**tokens(q_dir, TEXTS)).pooler_output
        p = DPRContextEncoder.from_pretrained(p_dir).eval()(**tokens(p_dir, TEXTS, 128)).pooler_output
    np.testing.assert_allclose(as_query, q.numpy(), atol=1e-5)
    np.testing.assert_allclose(as_passage, p.numpy(), atol=1e-5)
    info = retriever.describe()
    assert info["model_class"] == "DPRQuestionEncoder"
    assert info["passage_model_class"] == "DPRContextEncoder"


def test_t5_mean_pooling_with_dense_projection(t5_dir):
    from safetensors.torch import load_file
    from transformers import T5EncoderModel

    card = make_card(t5_dir, encoder="t5", pooling="mean", head=["dense"], normalize=True,
                     similarity="cosine")
    retriever = DenseRetriever(card.retriever, device="cpu")
    got = retriever.encode_queries(TEXTS)
    assert got.shape == (2, 16)  # the projection's output width, not d_model
    model = T5EncoderModel.from_pretrained(t5_dir).eval()
    batch = tokens(t5_dir, TEXTS)
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    weight = load_file(str(t5_dir / "2_Dense" / "model.safetensors"))["linear.weight"]
    expected = torch.nn.functional.normalize(pooled @ weight.T, dim=-1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert retriever.describe()["model_class"] == "T5EncoderModel"


def test_ance_head_is_dense_then_layernorm(ance_dir):
    from safetensors.torch import load_file
    from transformers import BertModel

    card = make_card(ance_dir, head=["dense", "layernorm"])
    got = DenseRetriever(card.retriever, device="cpu").encode_queries(TEXTS)
    with torch.no_grad():
        cls = BertModel.from_pretrained(ance_dir).eval()(**tokens(ance_dir, TEXTS)).last_hidden_state[:, 0]
    dense = load_file(str(ance_dir / "2_Dense" / "model.safetensors"))
    norm = load_file(str(ance_dir / "3_LayerNorm" / "model.safetensors"))
    projected = cls @ dense["linear.weight"].T
    expected = torch.nn.functional.layer_norm(projected, (32,), norm["norm.weight"], norm["norm.bias"])
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)


def test_a_head_the_card_does_not_name_is_refused(ance_dir, t5_dir):
    with pytest.raises(ModelLoadError, match="head"):
        DenseRetriever(make_card(ance_dir).retriever, device="cpu")
    with pytest.raises(ModelLoadError, match="head"):
        DenseRetriever(make_card(t5_dir, encoder="t5", pooling="mean").retriever, device="cpu")


def test_dupmae_concatenates_cls_and_topk_vocabulary_vector(mlm_dir):
    from transformers import BertForMaskedLM

    k, weight = 5, 0.5
    card = make_card(mlm_dir, encoder="dupmae", dupmae_sparse_top_k=k, dupmae_sparse_weight=weight)
    retriever = DenseRetriever(card.retriever, device="cpu")
    got = retriever.encode_queries(TEXTS)
    model = BertForMaskedLM.from_pretrained(mlm_dir).eval()
    vocab = model.config.vocab_size
    assert got.shape == (2, 32 + vocab)
    batch = tokens(mlm_dir, TEXTS)
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    np.testing.assert_allclose(got[:, :32], out.hidden_states[-1][:, 0].numpy(), atol=1e-5)
    for row in range(2):
        n = int(batch["attention_mask"][row].sum())
        pooled = out.logits[row, 1:n].max(dim=0).values.numpy()  # ordinary tokens, no padding
        sparse = got[row, 32:]
        assert np.count_nonzero(sparse) == k
        top = np.argsort(-pooled)[:k]
        np.testing.assert_allclose(sparse[top], weight * pooled[top], atol=1e-4)
    # padding must not leak into the max-pool: the short text alone gives the same vector
    np.testing.assert_allclose(retriever.encode_queries(TEXTS[:1])[0], got[0], atol=1e-4)


def test_dtype_is_recorded_and_outputs_are_fp32(tiny_bert_dir):
    retriever = DenseRetriever(make_card(tiny_bert_dir, dtype="bfloat16").retriever, device="cpu")
    assert retriever.describe()["model_dtype"] == "bfloat16"
    assert retriever.encode_queries(TEXTS).dtype == np.float32


def test_cosine_normalises_for_search_and_dot_does_not(tiny_bert_dir):
    raw = np.array([[3.0, 4.0]], dtype=np.float32)
    dot = DenseRetriever(make_card(tiny_bert_dir).retriever, device="cpu")
    cos = DenseRetriever(make_card(tiny_bert_dir, similarity="cosine").retriever, device="cpu")
    np.testing.assert_allclose(dot._for_search(raw), raw)
    np.testing.assert_allclose(cos._for_search(raw), [[0.6, 0.8]])


# --- end to end through the runner ------------------------------------------------------------


def _kinds(tiny_bert_dir, mlm_dir, dpr_dirs, t5_dir, ance_dir) -> dict[str, ModelCard]:
    q_dir, p_dir = dpr_dirs
    return {
        "shared-cls": make_card(tiny_bert_dir),
        "shared-mean-prefix": make_card(tiny_bert_dir, pooling="mean", normalize=True,
                                        similarity="cosine", query_prefix="query: ",
                                        passage_prefix="passage: "),
        "separate-dpr": make_card(encoder="separate", query_checkpoint=str(q_dir),
                                  passage_checkpoint=str(p_dir), pooling="pooler", title="pair"),
        "t5-dense": make_card(t5_dir, encoder="t5", pooling="mean", head=["dense"], normalize=True,
                              similarity="cosine"),
        "ance-head": make_card(ance_dir, head=["dense", "layernorm"]),
        "dupmae": make_card(mlm_dir, encoder="dupmae", dupmae_sparse_top_k=8,
                            dupmae_sparse_weight=1.0),
    }


@pytest.mark.slow
def test_every_kind_runs_end_to_end(tiny_bert_dir, mlm_dir, dpr_dirs, t5_dir, ance_dir, tmp_path):
    from benchmark.catalog.tasks import get_task
    from benchmark.pipeline.runner import RunOptions, run_task
    from benchmark.results.result_store import read_result

    task = get_task("tiny")
    for kind, card in _kinds(tiny_bert_dir, mlm_dir, dpr_dirs, t5_dir, ance_dir).items():
        options = RunOptions(results_dir=tmp_path / kind, device="cpu")
        result = read_result(run_task(card, task, options))
        assert 0.0 <= result.metrics["nDCG@10"] <= 1.0, kind
        assert result.task.n_queries == 24
        assert result.model.config["encoder"] == card.retriever.encoder
        assert result.provenance.runtime["model_dtype"] == "float32"
        assert "encode_corpus" in result.provenance.timings


def test_build_retriever_refuses_unreleased_weights():
    raw = {"name": "ghost", "display_name": "g", "family": "mae", "description": "d", "source": "s",
           "weights": "unreleased", "pretraining": {"objective": "mae"},
           "retriever": {"kind": "dense", "encoder": "dupmae", "pooling": "cls", "normalize": False,
                         "similarity": "dot", "query_prefix": "", "passage_prefix": "",
                         "query_max_length": 32, "passage_max_length": 128, "title": "prepend"}}
    card = parse_card(yaml.safe_dump(raw), "ghost")
    with pytest.raises(ModelLoadError, match="never released"):
        build_retriever(card, "cpu")


def test_cpu_caps_the_batch_size_and_records_it(tiny_bert_dir, monkeypatch):
    """The card's batch size is for accelerators; on CPU the encoder caps it (CPU_BATCH_CAP),
    really batches at the capped size, and the result's runtime block says which it used."""
    from benchmark.retrievers.backends import torch_backend

    retriever = DenseRetriever(make_card(tiny_bert_dir, batch_size=64).retriever, device="cpu",
                               store=TORCH)  # the torch path's batches (openvino: its own test)
    encoder = retriever.passage_encoder
    assert encoder.batch_size(64) == torch_backend.CPU_BATCH_CAP < 64
    assert encoder.batch_size(4) == 4
    assert retriever.describe()["batch_size"] == torch_backend.CPU_BATCH_CAP
    encoder.device = "cuda:0"  # the policy only; nothing runs on it
    assert encoder.batch_size(64) == 64
    encoder.device = "cpu"

    seen: list[int] = []
    real = encoder.embed_batch
    monkeypatch.setattr(encoder, "embed_batch", lambda b, m: seen.append(len(b)) or real(b, m))
    texts = [f"passage number {i} " * (i % 7 + 1) for i in range(40)]
    capped = encoder.encode(texts, 32, 64)
    assert max(seen) == torch_backend.CPU_BATCH_CAP and sum(seen) == 40
    monkeypatch.setattr(torch_backend, "CPU_BATCH_CAP", 64)
    whole = encoder.encode(texts, 32, 64)
    np.testing.assert_allclose(capped, whole, atol=1e-5)


def test_cpu_workers_give_the_same_vectors_and_restore_the_thread_count(tiny_bert_dir):
    """On CPU, batches go to one single-threaded worker per torch thread: the vectors must not
    depend on the number of workers (bit for bit), every batch must be embedded exactly once, in
    order, and the caller's torch thread count must come back afterwards."""
    encoder = DenseRetriever(make_card(tiny_bert_dir).retriever, device="cpu",
                             store=TORCH).passage_encoder
    texts = [f"document {i} about " + "stars and planets " * (i % 9 + 1) for i in range(70)]
    seen: list[tuple[int, int, bool, int]] = []  # (thread, torch threads, inference mode, size)
    embed_batch = encoder.embed_batch

    def spy(batch, max_length):
        seen.append((threading.get_ident(), torch.get_num_threads(),
                     torch.is_inference_mode_enabled(), len(batch)))
        return embed_batch(batch, max_length)

    encoder.embed_batch = spy
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = encoder.encode(texts, 64, 4)
        assert torch.get_num_threads() == 1
        assert len({thread for thread, *_ in seen}) == 1
        seen.clear()
        torch.set_num_threads(3)
        pooled = encoder.encode(texts, 64, 4)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(serial, pooled)
    assert sum(size for *_, size in seen) == len(texts)  # every text embedded once
    assert {(n, mode) for _, n, mode, _ in seen} == {(1, True)}  # one thread each, no autograd
    assert len({thread for thread, *_ in seen}) > 1  # the batches were spread over workers
    with torch.inference_mode():
        direct = encoder.embed_batch([texts[5]], 64).numpy()[0]
    np.testing.assert_allclose(pooled[5], direct, atol=1e-6)
