"""Turning a torch encoder into an OpenVINO model, and the check that the two agree.

What is converted is the whole text -> vector function of one encoder: the transformer forward
pass plus the card's pooling, post-pooling head and L2 normalisation, traced from the very
torch code the torch backend runs (HFEncoder.forward / pool / head), so every encoder kind
converts the same way: shared BERT-like and DPR encoders, T5 with its Dense head, DupMAE's
[CLS] ++ top-k vocabulary vector. Tokenisation stays with the Hugging Face tokenizer.

Two of the three things that keep the vectors those of torch are here (the third, the fp32
precision read back after compiling, is the backend's):
- `save_model(..., compress_to_fp16=False)`: the default stores fp16 weights;
- parity on first conversion: a fixed sample (the embedded tiny task's queries and passages,
  plus passages long enough to be truncated) is encoded by both backends, and the L2-normalised
  vectors must agree within PARITY_TOLERANCE (and the norms in relative terms), else the card
  stays on torch and the reason is cached, so the next run does not convert again to learn it.

Its own module: it is run once per model and converter, where encoding runs on every cold run.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from benchmark.catalog.registry import DenseConfig
from benchmark.retrievers.backends.torch_backend import EncoderInput, HFEncoder, Role

PARITY_TOLERANCE = 1e-5  # max abs diff of L2-normalised vectors, torch vs OpenVINO
# the tokenizer fields the converted graph takes, in its input order
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


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
            pooled = encoder.pool(encoder.forward(inputs), attention_mask).float()
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
    example = encoder.tokenize(texts, 32, tensors="pt")
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
