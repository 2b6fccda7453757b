"""The torch backend: turning texts into vectors, one class per encoder kind a card can name.

Every kind shares the same loop (length-sorted batches, pooling, optional head, optional L2
normalisation, fp32 output in the caller's order); the kinds differ only in which transformers
class loads the weights and in how the token states become one vector:

- shared / separate: AutoModel (DPR: DPRQuestionEncoder or DPRContextEncoder, chosen by role,
  because AutoModel would load a context encoder's weights into a question encoder class and
  silently leave them random); pooling cls / mean / pooler.
- t5: T5EncoderModel (GTR): the encoder stack only, mean pooling.
- dupmae: AutoModelForMaskedLM; [CLS] vector ++ sparse vocabulary vector (see DupMaeEncoder).

This module knows nothing of OpenVINO. The OpenVINO backend (.openvino_backend) subclasses
HFEncoder for its batching and ordering, and converts this same torch code (forward pass,
pooling, head, normalisation) into one OpenVINO model (.openvino_export); which of the two runs
is chosen by .policy and loaded by .dispatch.
"""

from __future__ import annotations

import logging
import pickle
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np

from benchmark.catalog.registry import DenseConfig
from benchmark.catalog.weights import load_failure, resolve_checkpoint
from benchmark.core.errors import ModelLoadError

log = logging.getLogger(__name__)

Role = Literal["query", "passage"]
# A text to encode: one string, or (title, text) when the card's title mode is `pair`.
EncoderInput = str | tuple[str, str]

# On CPU, batches larger than this are slower, not faster: measured with all-MiniLM-L6-v2 on 640
# NFCorpus passages (max length 256, 2 cores, torch 2.13, sdpa), one pass each: batch 64 28.9 s,
# 32 26.7 s, 24 26.1 s, 16 24.3-25.0 s, 12 23.0 s, 8 25.3 s, 4 34.0 s (the attention and
# feed-forward activations of a 64 x 256-token batch no longer fit in cache). The card's
# batch_size is meant for an accelerator; on CPU it is capped here. Vectors agree to ~1e-7.
CPU_BATCH_CAP = 16

# sentence-transformers module type (last dotted component) -> our head layer name
_ST_HEAD_TYPES = {"Dense": "dense", "LayerNorm": "layernorm"}


def torch_threads() -> int:
    """torch's intra-op thread count (the user's setting, e.g. OMP_NUM_THREADS): both backends
    run one single-threaded batch per thread, so it is also how many batches run at once."""
    import torch

    return max(1, torch.get_num_threads())


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def transformers_class(config: DenseConfig, model_type: str, role: Role):
    """The transformers class that loads this encoder's weights (see the module docstring for
    why DPR is chosen by role). Public: the OpenVINO backend names the same class for a cached
    model whose weights it never loads."""
    import transformers

    if config.encoder == "t5":
        return transformers.T5EncoderModel
    if config.encoder == "dupmae":
        return transformers.AutoModelForMaskedLM
    if model_type == "dpr":
        return transformers.DPRQuestionEncoder if role == "query" else transformers.DPRContextEncoder
    return transformers.AutoModel


@dataclass
class _HeadLayer:
    """One post-pooling layer of a sentence-transformers checkpoint (Dense or LayerNorm).

    Hand-written rather than sentence_transformers.models.*: those classes moved between
    sentence-transformers 5 and 6 (and the old path is deprecated), while the saved format these
    two layers use (config.json + linear.*/norm.* tensors) has stayed the same since v2."""

    kind: str
    module: object

    def __call__(self, x):
        return self.module(x)


def _read_st_modules(source: str, revision: str | None) -> list[dict]:
    """The checkpoint's modules.json (sentence-transformers layout), or [] when it has none;
    checked by st_config.read_modules (a list of objects, every path inside the checkpoint)."""
    from benchmark.catalog.st_config import read_modules

    return read_modules(source, revision) or []


def _load_state(source: str, folder: str, revision: str | None) -> dict:
    import torch
    from transformers.utils import cached_file

    from benchmark.catalog.st_config import pickle_refused

    for name in ("model.safetensors", "pytorch_model.bin"):
        path = cached_file(
            source, f"{folder}/{name}", revision=revision,
            _raise_exceptions_for_missing_entries=False,
        )
        if path:
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file

                try:
                    return load_file(path)
                except Exception as exc:  # noqa: BLE001 - SafetensorError: a damaged file
                    raise ModelLoadError(f"{source}: {folder}/{name} is not a valid safetensors "
                                         "file") from exc
            try:
                return torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as exc:
                raise pickle_refused(f"{source}: {folder}/{name}") from exc
    raise ModelLoadError(f"{source}: no weights in head folder {folder}/")


def _load_head_layer(source: str, module: dict, revision: str | None) -> _HeadLayer:
    import torch

    kind = _ST_HEAD_TYPES[module["type"].rsplit(".", 1)[-1]]
    folder = module["path"]
    cfg = _head_config(source, folder, kind, revision)
    state = _load_state(source, folder, revision)
    if kind == "dense":
        linear = torch.nn.Linear(cfg["in_features"], cfg["out_features"], bias=cfg.get("bias", True))
        _load_weights(linear, {k.removeprefix("linear."): v for k, v in state.items()}, source, folder)
        activation = cfg.get("activation_function", "torch.nn.modules.linear.Identity")
        if activation.rsplit(".", 1)[-1] == "Identity":
            layer = linear
        elif activation.rsplit(".", 1)[-1] == "Tanh":
            layer = torch.nn.Sequential(linear, torch.nn.Tanh())
        else:
            raise ModelLoadError(f"{source}: unsupported Dense activation {activation}")
    else:
        layer = torch.nn.LayerNorm(cfg["dimension"])
        _load_weights(layer, {k.removeprefix("norm."): v for k, v in state.items()}, source, folder)
    return _HeadLayer(kind, layer.eval())


def _head_config(source: str, folder: str, kind: str, revision: str | None) -> dict:
    """A head layer's config.json, read bounded and checked (sizes are positive integers)."""
    from benchmark.catalog.st_config import read_json

    where = f"{folder}/config.json" if folder else "config.json"
    cfg = read_json(source, where, revision)
    if cfg is None:
        raise ModelLoadError(f"{source}: no {where} for its {kind} head layer")
    needed = ("in_features", "out_features") if kind == "dense" else ("dimension",)
    if any(type(cfg.get(k)) is not int or not 0 < cfg[k] <= 1 << 20 for k in needed):
        raise ModelLoadError(f"{source}: {where} needs {' and '.join(needed)} (positive integers)")
    if not isinstance(cfg.get("bias", True), bool) or not isinstance(
        cfg.get("activation_function", ""), str
    ):
        raise ModelLoadError(f"{source}: {where}: bias must be true/false, activation_function a name")
    return cfg


def _load_weights(layer, state: dict, source: str, folder: str) -> None:
    try:
        layer.load_state_dict(state)
    except RuntimeError as exc:  # missing, extra or mis-shaped tensors
        raise ModelLoadError(f"{source}: the weights in {folder}/ do not fit its config.json "
                             f"({str(exc).splitlines()[0][:120]})") from exc


def load_head(source: str, config: DenseConfig, revision: str | None) -> list[_HeadLayer]:
    """The post-pooling layers the card names, checked against the checkpoint's modules.json."""
    modules = [
        m for m in _read_st_modules(source, revision)
        if m.get("type", "").rsplit(".", 1)[-1] in _ST_HEAD_TYPES
    ]
    found = tuple(_ST_HEAD_TYPES[m["type"].rsplit(".", 1)[-1]] for m in modules)
    if found != tuple(config.head):
        raise ModelLoadError(
            f"{source}: the checkpoint's sentence-transformers head is {list(found) or 'none'} "
            f"but the card says head: {list(config.head) or '[]'}; fix the card"
        )
    return [_load_head_layer(source, m, revision) for m in modules]


class HFEncoder:
    """One transformer with its tokenizer, pooling and head (a card may use two of these)."""

    backend = "torch"  # which backend computes the vectors (OpenVinoEncoder: "openvino")

    def __init__(self, checkpoint: str, config: DenseConfig, device: str, role: Role) -> None:
        from transformers import AutoConfig, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # per-tensor "Loading weights" bars drown our output

        self.config = config
        self.device = device
        self.checkpoint = checkpoint
        self._tokenizer_lock = threading.Lock()
        # what the backend wants recorded (a fallback's reason, conversion facts)
        self.backend_info: dict = {}
        source, self.origin = resolve_checkpoint(checkpoint, config.local_package, config.revision)
        revision = config.revision if self.origin == "hub" else None
        try:
            model_type = AutoConfig.from_pretrained(source, revision=revision).model_type
            self.model_class = transformers_class(config, model_type, role)
            self.tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
            self.model = _load_quietly(self.model_class, source, revision, torch_dtype(config.dtype),
                                       checkpoint)
            self.head = load_head(source, config, revision)
        except (OSError, ValueError) as exc:
            raise load_failure(checkpoint, config.revision, exc) from exc
        except pickle.UnpicklingError as exc:  # a pickled pytorch_model.bin: refused, one line
            from benchmark.catalog.st_config import pickle_refused

            raise pickle_refused(f"cannot load checkpoint {checkpoint}") from exc
        self.model.eval().to(device)
        for layer in self.head:
            layer.module.to(device)

    def batch_size(self, requested: int) -> int:
        """The batch size this encoder really uses on its device (see CPU_BATCH_CAP)."""
        return min(requested, CPU_BATCH_CAP) if str(self.device).startswith("cpu") else requested

    @property
    def dtype(self) -> str:
        return str(next(self.model.parameters()).dtype).removeprefix("torch.")

    @property
    def model_config(self):
        """The transformers config (layers, widths), whichever backend runs the model."""
        return self.model.config

    def forward(self, inputs):
        """The transformer on tokenised inputs (DupMAE asks for its hidden states too). Public:
        the OpenVINO export traces exactly this call."""
        return self.model(**inputs)

    def pool(self, outputs, attention_mask):
        """Token states -> one vector per text (in the model's dtype)."""
        import torch

        if self.config.pooling == "pooler":
            return outputs.pooler_output
        hidden = outputs.last_hidden_state
        if self.config.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / torch.clamp(mask.sum(dim=1), min=1e-9)

    def tokenize(self, batch: list[EncoderInput], max_length: int, tensors: str = "pt"):
        """The card's tokenisation of one batch ((title, text) pairs truncated longest first).
        Public: the OpenVINO backend feeds its graph, and the measurement counts tokens, with it."""
        if batch and isinstance(batch[0], tuple):
            titles = [t for t, _ in batch]
            texts = [x for _, x in batch]
            return self._tokenize_locked(
                titles, texts, padding=True, truncation="longest_first", max_length=max_length,
                return_tensors=tensors,
            )
        return self._tokenize_locked(
            batch, padding=True, truncation=True, max_length=max_length, return_tensors=tensors
        )

    def embed_batch(self, batch: list[EncoderInput], max_length: int):
        """One batch -> fp32 tensor (pooling, head, normalisation)."""
        import torch

        inputs = self.tokenize(batch, max_length).to(self.device)
        outputs = self.forward(inputs)
        pooled = self.pool(outputs, inputs["attention_mask"]).float()
        for layer in self.head:
            pooled = layer(pooled.to(next(layer.module.parameters()).dtype)).float()
        if self.config.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
        return pooled

    def encode(
        self, texts: list[EncoderInput], max_length: int, batch_size: int, desc: str = "encode"
    ) -> np.ndarray:
        """Length-sorted batches (each pads to similar lengths: the largest CPU speed-up); the
        embeddings come back in the original order, in fp32, whatever dtype the model ran in."""
        from tqdm.auto import tqdm

        batch_size = self.batch_size(batch_size)
        order = length_order(texts)
        batches = [[texts[i] for i in order[start : start + batch_size]]
                   for start in range(0, len(order), batch_size)]
        show = len(order) > 10 * batch_size
        with tqdm(total=len(batches), desc=desc, disable=not show, leave=False) as bar:
            chunks = self._embed_batches(batches, max_length, bar.update)
        if not chunks:
            return np.zeros((0, 0), dtype=np.float32)
        sorted_embeddings = np.concatenate(chunks)
        embeddings = np.empty_like(sorted_embeddings)
        embeddings[order] = sorted_embeddings
        return embeddings

    def _embed_batches(self, batches: list[list[EncoderInput]], max_length: int,
                       done: Callable[[int], object]) -> list[np.ndarray]:
        """Every batch embedded once, results in order. On CPU with n > 1 torch threads, n
        workers each run whole batches on one thread rather than all threads sharing each batch:
        small per-layer matrix products split across cores spend much of their time in OpenMP
        synchronisation (480 NFCorpus passages: 20.5 s shared vs 17.9 s one batch per core), and
        a batch computed on one thread gives the same bits whatever the core count, which the
        Ray engine's byte-identity with the local engine relies on."""
        import torch

        def embed(batch: list[EncoderInput]) -> np.ndarray:
            with torch.inference_mode():  # thread-local: each worker enters it itself
                vectors = self.embed_batch(batch, max_length).cpu().numpy()
            done(1)
            return vectors

        threads = torch.get_num_threads()
        if not str(self.device).startswith("cpu") or threads <= 1 or len(batches) <= 1:
            return [embed(batch) for batch in batches]
        from concurrent.futures import ThreadPoolExecutor

        with _single_threaded_torch(threads), ThreadPoolExecutor(threads) as pool:
            return list(pool.map(embed, batches))

    def _tokenize_locked(self, *args, **kwargs):
        # a fast tokenizer raises "Already borrowed" when two threads call it at once
        with self._tokenizer_lock:
            return self.tokenizer(*args, **kwargs)


def length_order(texts: list[EncoderInput]) -> list[int]:
    """The order `encode` batches texts in: longest first, ties in input order (a stable sort).
    A contiguous run of this order cut at batch boundaries is batched the same way when encoded
    on its own, which is what lets an interrupted corpus encode resume bit for bit
    (benchmark.retrievers.dense)."""

    def length(item: EncoderInput) -> int:
        return len(item) if isinstance(item, str) else len(item[0]) + len(item[1])

    return sorted(range(len(texts)), key=lambda i: length(texts[i]), reverse=True)


@contextmanager
def _single_threaded_torch(previous: int) -> Iterator[None]:
    """torch's intra-op thread count is process-wide: set it to 1 for the workers, then restore."""
    import torch

    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class DupMaeEncoder(HFEncoder):
    """DupMAE's duplex representation (RetroMAE v2, arXiv 2211.08769, Sec. 3).

    Dense part: the last layer's [CLS] state. Sparse part: the MLM head's logits for every
    ordinary token (positions after [CLS], padding masked out) max-pooled over positions into one
    |V|-dim vector, as `ot_embedding` in staoxiao/RetroMAE src/pretrain/modeling_duplex.py; only
    its top-k entries are kept (the rest set to 0). The two are concatenated, the sparse part
    scaled by `dupmae_sparse_weight`, so one dot product = dense dot + weight^2 * sparse dot.
    """

    def forward(self, inputs):
        return self.model(**inputs, output_hidden_states=True)

    def pool(self, outputs, attention_mask):
        import torch

        dense = outputs.hidden_states[-1][:, 0]
        logits = outputs.logits[:, 1:].float()
        mask = attention_mask[:, 1:].unsqueeze(-1).to(logits.dtype)
        sparse = torch.max(logits + (1 - mask) * -1000.0, dim=1).values
        k = min(self.config.dupmae_sparse_top_k, sparse.shape[-1])
        top = torch.topk(sparse, k, dim=-1)
        kept = torch.zeros_like(sparse).scatter_(-1, top.indices, top.values)
        return torch.cat([dense.float(), self.config.dupmae_sparse_weight * kept], dim=-1)


def load_torch_encoder(checkpoint: str, config: DenseConfig, device: str, role: Role) -> HFEncoder:
    """The torch encoder of one role (benchmark.retrievers.backends.dispatch picks the backend)."""
    cls = DupMaeEncoder if config.encoder == "dupmae" else HFEncoder
    return cls(checkpoint, config, device, role)


def _load_quietly(model_class, source: str, revision: str | None, dtype, checkpoint: str):
    """from_pretrained without transformers' load report: weights the encoder does not use (an
    MLM head saved with it, as `maebench pretrain` and BERT checkpoints do) are expected; weights
    it needs but does not find are said in one warning line, since they start random."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = model_class.from_pretrained(source, revision=revision, dtype=dtype,
                                                  output_loading_info=True)
    finally:
        hf_logging.set_verbosity(previous)
    missing = [k for k in info.get("missing_keys", []) if not k.startswith("pooler.")]
    if missing:
        import logging

        logging.getLogger(__name__).warning(
            "%s: %d weights missing from the checkpoint start random (e.g. %s)", checkpoint,
            len(missing), missing[0])
    return model
