"""Tiny random checkpoints built by the tests (save_pretrained into a temp dir): every encoder
path of every card can run offline in seconds, with no downloaded weights."""

from __future__ import annotations

import re
from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def word_vocab(texts: list[str], extra: int = 0) -> list[str]:
    words = sorted({w for t in texts for w in re.findall(r"[a-z0-9]+|[^\sa-z0-9]", t.lower())})
    return SPECIAL + words + [f"[unused{i}]" for i in range(extra)]


def save_bert_tokenizer(folder: Path, vocab: list[str]) -> None:
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(
        folder
    )


def tiny_bert(folder: Path, texts: list[str], seed: int = 0, hidden: int = 32) -> Path:
    """A 2-layer BERT with a word-level vocabulary covering `texts`."""
    import torch
    from transformers import BertConfig, BertModel

    vocab = word_vocab(texts)
    save_bert_tokenizer(folder, vocab)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(folder)
    return folder
