"""Tiny random checkpoints built by the tests (save_pretrained into a temp dir): every encoder
path of every card can run offline in seconds, with no downloaded weights."""

from __future__ import annotations

import re
from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# two texts to encode, the second longer (a batch of both is padded)
TEXTS = ["what makes stars twinkle", "why do planets twinkle less than stars in the night sky"]


def word_vocab(texts: list[str], extra: int = 0) -> list[str]:
    words = sorted({w for t in texts for w in re.findall(r"[a-z0-9]+|[^\sa-z0-9]", t.lower())})
    return SPECIAL + words + [f"[unused{i}]" for i in range(extra)]


def save_bert_tokenizer(folder: Path, vocab: list[str]) -> None:
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # transformers 5 takes the vocabulary as `vocab` and silently ignores `vocab_file` (every
    # word would become [UNK]); transformers 4 reads `vocab_file`. Use whichever took effect.
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    if len(tokenizer) != len(vocab):
        tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    assert len(tokenizer) == len(vocab), "tiny tokenizer did not load its vocabulary"
    tokenizer.save_pretrained(folder)


def tiny_bert(
    folder: Path, texts: list[str], seed: int = 0, hidden: int = 32, initializer_range: float = 0.02
) -> Path:
    """A 2-layer BERT with a word-level vocabulary covering `texts`. With BERT's default
    initializer_range every text gets nearly the same vector (scores tie to 1e-5); a range near
    1 makes embeddings depend on the words, for tests that compare rankings."""
    import torch
    from transformers import BertConfig, BertModel

    vocab = word_vocab(texts)
    save_bert_tokenizer(folder, vocab)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=512,
        initializer_range=initializer_range,
    )
    BertModel(config).save_pretrained(folder)
    return folder


def _tiny_bert_config(vocab: list[str], hidden: int):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=512,
    )


def tiny_bert_mlm(folder: Path, texts: list[str], seed: int = 0, hidden: int = 32) -> Path:
    """A 2-layer BERT with its MLM head (BertForMaskedLM), for the DupMAE encoder."""
    import torch
    from transformers import BertForMaskedLM

    vocab = word_vocab(texts)
    save_bert_tokenizer(folder, vocab)
    torch.manual_seed(seed)
    BertForMaskedLM(_tiny_bert_config(vocab, hidden)).save_pretrained(folder)
    return folder


def tiny_dpr(folder: Path, texts: list[str], role: str, seed: int = 0, hidden: int = 32) -> Path:
    """A 2-layer DPR question (role 'query') or context (role 'passage') encoder."""
    import torch
    from transformers import DPRConfig, DPRContextEncoder, DPRQuestionEncoder

    vocab = word_vocab(texts)
    save_bert_tokenizer(folder, vocab)
    torch.manual_seed(seed)
    config = DPRConfig(
        vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=512, projection_dim=0,
    )
    cls = DPRQuestionEncoder if role == "query" else DPRContextEncoder
    cls(config).save_pretrained(folder)
    return folder


def tiny_t5(folder: Path, texts: list[str], seed: int = 0, d_model: int = 32) -> Path:
    """A 2-layer T5 encoder stack (T5EncoderModel) with a word-level tokenizer; the tokenizer
    kind does not matter to the pooling code under test, and needs no sentencepiece model."""
    import torch
    from transformers import T5Config, T5EncoderModel

    vocab = word_vocab(texts)
    save_bert_tokenizer(folder, vocab)
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(vocab), d_model=d_model, d_kv=8, d_ff=2 * d_model, num_layers=2,
        num_heads=2, pad_token_id=0, decoder_start_token_id=0,
    )
    T5EncoderModel(config).save_pretrained(folder)
    return folder


def add_st_head(folder: Path, layers: list[str], dim: int, out_dim: int | None = None,
                seed: int = 1) -> Path:
    """Write sentence-transformers head folders (as GTR's 2_Dense, ANCE's Dense + LayerNorm)
    and a modules.json naming them, with random non-trivial weights."""
    import json

    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    width = dim
    for layer in layers:
        idx = len(modules)
        if layer == "dense":
            out = out_dim or dim
            path = f"{idx}_Dense"
            config = {"in_features": width, "out_features": out, "bias": False,
                      "activation_function": "torch.nn.modules.linear.Identity"}
            state = {"linear.weight": torch.randn(out, width) / width**0.5}
            width = out
            kind = "Dense"
        else:
            path = f"{idx}_LayerNorm"
            config = {"dimension": width}
            state = {"norm.weight": 1 + 0.1 * torch.randn(width), "norm.bias": 0.1 * torch.randn(width)}
            kind = "LayerNorm"
        (folder / path).mkdir(parents=True, exist_ok=True)
        (folder / path / "config.json").write_text(json.dumps(config))
        save_file(state, str(folder / path / "model.safetensors"))
        modules.append({"idx": idx, "name": str(idx), "path": path,
                        "type": f"sentence_transformers.models.{kind}"})
    (folder / "modules.json").write_text(json.dumps(modules))
    return folder


ST_MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]


def make_st(folder: Path) -> Path:
    """A tiny BERT in sentence-transformers layout (mean pooling, normalised, cosine)."""
    import json

    (folder / "modules.json").write_text(json.dumps(ST_MODULES))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64}))
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {}, "similarity_fn_name": "cosine"}))
    return folder
