"""Dense bi-encoders on torch + transformers: formatting, encoding through the embedding store,
search over the store.

The inference backend (benchmark.retrievers.backends) is chosen per role before any key is
made: `auto` means OpenVINO on CPU where the card converts with parity, torch otherwise. The
backend is part of the store key (its vectors differ from torch's at ~1e-7) and recorded in the
result's provenance, but not in the evaluation identity. When a conversion falls back to torch
the entry is re-keyed before anything is encoded, so torch vectors never sit under an OpenVINO key.

The card decides how texts are formatted (prefixes, title mode) and which encoder kind embeds
them (benchmark.retrievers.backends.torch_backend). Vectors go through the embedding store
(benchmark.embeddings): each corpus shard is loaded from the store when its key matches, else
encoded and committed, then searched, so peak memory is one shard plus the running top-k and a
second run with the same key never loads the model. A shard being encoded is checkpointed in
parts (at most CHECKPOINT_ROWS rows or about CHECKPOINT_SECONDS each, whichever comes first,
then that size for every part of the entry), so Ctrl-C keeps every finished part and the same
command resumes; the parts follow the encoder's own batches, so the resumed shard is
byte-identical to an uninterrupted one (and to shards written before parts existed). Search is
exact (fp32) unless the user asks for an approximate index, which is then labelled in the result
with its measured recall.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.catalog.registry import DenseConfig
from benchmark.catalog.weights import load_failure, resolve_checkpoint
from benchmark.core.devices import pick_device
from benchmark.core.errors import MaebenchError, ModelLoadError
from benchmark.core.timing import PhaseTimer
from benchmark.datasets.beir import Dataset
from benchmark.datasets.records import Document
from benchmark.embeddings.key import StoreKey, folder_digest, texts_fingerprint
from benchmark.embeddings.sources import GRANULE, CorpusSource, corpus_source
from benchmark.retrievers.backends.policy import (
    BackendChoice,
    check_backend,
    choose_for_role,
    is_cpu,
)
from benchmark.retrievers.base import Run, document_text
from benchmark.retrievers.options import StoreOptions, shard_rows
from benchmark.retrievers.search import StreamingTopK, approximate_search

log = logging.getLogger(__name__)

# kept for callers that import them: the defaults the shard size is derived from
CORPUS_SHARD = 100_000

# A shard being encoded is committed in parts of at most this many rows, or of what was
# encoded in about this many seconds, whichever comes first (the first part fixes the size of
# all the entry's parts). Small: a part costs one small file and one manifest write, and
# everything since the last part is lost on Ctrl-C.
CHECKPOINT_ROWS = 2048
CHECKPOINT_SECONDS = 20.0


@dataclass(frozen=True)
class CheckpointPolicy:
    """When a part of an unfinished shard is committed (MAEBENCH_CHECKPOINT_ROWS / _SECONDS)."""

    rows: int = CHECKPOINT_ROWS
    seconds: float = CHECKPOINT_SECONDS

    @classmethod
    def from_env(cls) -> CheckpointPolicy:
        return cls(rows=int(_positive("MAEBENCH_CHECKPOINT_ROWS", CHECKPOINT_ROWS)),
                   seconds=_positive("MAEBENCH_CHECKPOINT_SECONDS", CHECKPOINT_SECONDS))


def _positive(variable: str, default: float) -> float:
    text = os.environ.get(variable)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value > 0 and math.isfinite(value)):
        raise MaebenchError(f"{variable}={text!r}: expected a positive number")
    return value


class EncodeInterrupted(KeyboardInterrupt):
    """Ctrl-C during a corpus encode, saying what the embedding store kept (the CLI prints it)."""


def _say(line: str) -> None:
    """One line for the user beside the progress bar (stderr, like the bar)."""
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stderr)


def _check_hub_checkpoint(checkpoint: str, revision: str | None) -> None:
    """Fail in well under a second when hub weights are not reachable (offline, not cached),
    without importing transformers: the model itself loads lazily, only if a vector is missing."""
    from huggingface_hub import hf_hub_download

    try:
        hf_hub_download(checkpoint, "config.json", revision=revision)
    except Exception as exc:  # every hub failure (offline, 404, auth) means the same to the user
        raise load_failure(checkpoint, revision, exc) from exc


class DenseRetriever:
    streams_corpus = True  # the runner hands it a StreamedCorpus, never a dict of documents

    def __init__(
        self, config: DenseConfig, device: str | None = None, name: str = "",
        store: StoreOptions | None = None, lazy: bool = False,
    ) -> None:
        """`lazy`: load the model only when a vector is missing from the store (a warm run never
        imports torch); otherwise load it now, so a broken checkpoint fails before any data."""
        if not config.has_checkpoint:
            raise ModelLoadError(
                f"{name or 'this card'}: its authors never released the checkpoint (card "
                "weights: unreleased); copy the card with `checkpoint:` pointing at your own "
                "weights to run it"
            )
        self.config = config
        self._device = device
        self.store = store or StoreOptions()
        self._encoders: dict[str, object] = {}
        self._store_stats: dict = {}
        self._search_info: dict = {"kind": "exact"}
        separate = config.encoder == "separate"
        self._checkpoints = {
            "query": config.query_checkpoint if separate else config.checkpoint,
            "passage": config.passage_checkpoint if separate else config.checkpoint,
        }
        self._weights: dict[str, str] = {}
        self._name = name
        self._choices: dict[str, BackendChoice] = {}
        self._noted = False
        check_backend(self.store.backend, "MAEBENCH_BACKEND / --backend")
        for role, checkpoint in self._checkpoints.items():
            source, origin = resolve_checkpoint(checkpoint, config.local_package)
            if origin == "hub":
                _check_hub_checkpoint(checkpoint, config.revision)
                self._weights[role] = f"hub:{checkpoint}@{config.revision or 'unpinned'}"
            else:
                cache = self.store.store_root() / "weights-digests.json"
                self._weights[role] = "sha256:" + folder_digest(Path(source), cache)
        for role in self._checkpoints:  # before any data: `--backend openvino` on a GPU is one line
            self._choice(role)
        if not lazy:
            self._encoder("query")
            self._encoder("passage")

    # -- encoders, loaded on first use ---------------------------------------------------------
    @property
    def device(self) -> str:
        if self._device is None:
            self._device = pick_device(None)
        return self._device

    def _choice(self, role: str) -> BackendChoice:
        """The backend policy's answer for this role, without loading or converting anything
        (a conversion that failed before on this converter is known from its cached reason)."""
        if role not in self._choices:
            self._choices[role] = choose_for_role(
                self.store.backend, self._device, self.config, self.store.engine,
                self._weights[role], role)
        return self._choices[role]

    def backend_of(self, role: str) -> str:
        """What computes (or would compute) this role's vectors: the loaded encoder's backend,
        which may have fallen back to torch, else the policy's choice."""
        encoder = self._encoders.get(role)
        return encoder.backend if encoder is not None else self._choice(role).name

    def _fallback_reason(self, role: str) -> str | None:
        encoder = self._encoders.get(role)
        if encoder is not None and encoder.backend_info.get("fallback"):
            return encoder.backend_info["fallback"]
        choice = self._choice(role)
        return choice.reason if choice.name == "torch" and choice.requested == "auto" else None

    def _encoder(self, role: str):
        from benchmark.retrievers.backends.dispatch import load_encoder

        if role not in self._encoders:
            same = self._checkpoints["query"] == self._checkpoints["passage"]
            other = "passage" if role == "query" else "query"
            if same and self.config.encoder != "separate" and other in self._encoders:
                self._encoders[role] = self._encoders[other]
            else:
                choice = self._choice(role)
                self._encoders[role] = load_encoder(
                    self._checkpoints[role], self.config, self.device, role,
                    backend=choice.name, weights=self._weights[role],
                    strict=choice.requested == "openvino",
                )
            reason = self._fallback_reason(role)
            if reason and not self._noted and is_cpu(self.device):
                self._noted = True  # one line per run, not per role
                log.warning("%s: encoding with torch, not OpenVINO: %s",
                            self._name or "this card", reason)
        return self._encoders[role]

    def _encoder_for(self, key: StoreKey):
        """The encoder of key.role, refusing to write vectors of one backend under another's key
        (possible only when a conversion falls back after its entry was opened)."""
        encoder = self._encoder(key.role)
        if encoder.backend != key.backend:
            raise MaebenchError(
                f"the {key.role} encoder fell back to {encoder.backend} after its store entry was "
                f"opened for {key.backend}; run the command again"
            )
        return encoder

    @property
    def query_encoder(self):
        return self._encoder("query")

    @property
    def passage_encoder(self):
        return self._encoder("passage")

    def describe(self) -> dict:
        info: dict = {"device": "none (every vector came from the store)"}
        if self._encoders:
            info["device"] = self.device
            enc = self._encoders.get("query") or self._encoders["passage"]
            info |= {
                "weights_origin": enc.origin,
                "model_dtype": enc.dtype,
                "model_class": enc.model_class.__name__,
                "batch_size": enc.batch_size(self.config.batch_size),
            }
            passage = self._encoders.get("passage")
            if passage is not None and passage is not enc:
                info["passage_weights_origin"] = passage.origin
                info["passage_model_class"] = passage.model_class.__name__
        else:
            info["model_dtype"] = self.config.dtype
        info |= self._describe_backend()
        info["weights_identity"] = dict(self._weights)
        if self._store_stats:
            info["embedding_store"] = dict(self._store_stats)
        info["search"] = dict(self._search_info)
        return info

    def _describe_backend(self) -> dict:
        """Which backend computed the vectors, what was asked, why torch when auto chose it,
        and for OpenVINO its facts (precision read back, streams, cache hit or conversion
        seconds, parity numbers)."""
        info: dict = {"backend": self.backend_of("passage"),
                      "backend_requested": self.store.backend}
        if self.backend_of("query") != info["backend"]:
            info["query_backend"] = self.backend_of("query")
        reasons = {r for r in (self._fallback_reason("query"), self._fallback_reason("passage")) if r}
        if reasons:
            info["backend_note"] = "; ".join(sorted(reasons))
        loaded = {role: enc for role, enc in self._encoders.items() if enc.backend == "openvino"}
        if len(loaded) == 1 or len({id(enc) for enc in loaded.values()}) == 1:
            info["openvino"] = dict(next(iter(loaded.values())).backend_info)
        elif loaded:
            info["openvino"] = {role: dict(enc.backend_info) for role, enc in loaded.items()}
        return info

    # -- formatting and encoding ---------------------------------------------------------------
    def format_queries(self, texts: list[str]) -> list[str]:
        return [self.config.query_prefix + t for t in texts]

    def format_passages(self, docs: list[Document]):
        """The card's title mode and passage prefix applied to corpus documents."""
        cfg = self.config
        if cfg.title == "pair":
            return [(cfg.passage_prefix + d.title, d.text) for d in docs]
        return [cfg.passage_prefix + document_text(d, cfg.title, cfg.title_separator) for d in docs]

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.query_encoder.encode(
            self.format_queries(texts), self.config.query_max_length, self.config.batch_size,
            "queries",
        )

    def encode_passages(self, texts: list[str] | list[Document]) -> np.ndarray:
        """Documents get the card's title handling; plain strings only the passage prefix."""
        if texts and isinstance(texts[0], Document):
            formatted = self.format_passages(texts)
        else:
            formatted = [self.config.passage_prefix + t for t in texts]
        return self.passage_encoder.encode(
            formatted, self.config.passage_max_length, self.config.batch_size, "corpus"
        )

    def _for_search(self, embeddings: np.ndarray) -> np.ndarray:
        """Cosine without normalized encodings: normalize here, in fp32."""
        embeddings = embeddings.astype(np.float32, copy=False)
        if self.config.similarity == "cosine" and not self.config.normalize:
            norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
            embeddings = embeddings / np.maximum(norms, 1e-12)
        return embeddings

    def search_vectors(self, docs: list[Document]) -> np.ndarray:
        """What search uses for these documents (and what the store keeps)."""
        return self._for_search(self.encode_passages(docs))

    # -- store keys ----------------------------------------------------------------------------
    def store_key(self, role: str, texts: str, rows: int, store_dtype: str) -> StoreKey:
        cfg = self.config
        passage = role == "passage"
        return StoreKey(
            role=role,
            weights=self._weights[role],
            encoder=cfg.encoder,
            pooling=cfg.pooling,
            head=tuple(cfg.head),
            normalize=cfg.normalize,
            similarity=cfg.similarity,
            prefix=cfg.passage_prefix if passage else cfg.query_prefix,
            title=cfg.title if passage else "n/a",
            title_separator=cfg.title_separator if passage else "n/a",
            max_length=cfg.passage_max_length if passage else cfg.query_max_length,
            model_dtype=cfg.dtype,
            store_dtype=store_dtype,
            backend=self.backend_of(role),
            dupmae=(cfg.dupmae_sparse_weight, cfg.dupmae_sparse_top_k),
            texts=texts,
            shard_rows=rows,
        )

    def _store(self):
        from benchmark.embeddings.embedding_store import EmbeddingStore

        return EmbeddingStore(self.store.store_root())

    def _settled_entry(self, role: str, make_key: Callable[[], StoreKey], n_rows: int,
                       n_shards: int):
        """The store entry for `role`. When vectors are missing, the encoder is loaded first (it
        would be anyway) so that a conversion falling back to torch re-keys the entry before
        anything is written; a complete entry is read without loading any model."""
        entry = self._store().entry(make_key(), n_rows, n_shards)
        if entry.complete or role in self._encoders or self.store.engine != "local":
            return entry
        self._encoder(role)
        key = make_key()
        return entry if key == entry.key else self._store().entry(key, n_rows, n_shards)

    def _query_vectors(self, dataset: Dataset, query_ids: list[str], timer: PhaseTimer) -> np.ndarray:
        texts = [dataset.queries[q] for q in query_ids]
        if not self.store.use_store:
            with timer.phase("encode_queries"):
                return self._for_search(self.encode_queries(texts))
        fingerprint = texts_fingerprint(dataset.fingerprints.queries, query_ids)
        with timer.phase("load_model"):  # a lazy load (and a first conversion) is not encoding
            entry = self._settled_entry(
                "query", lambda: self.store_key("query", fingerprint, 0, "float32"),
                len(query_ids), 1,
            )
        with timer.phase("encode_queries"), entry.writing():
            vectors = entry.load(0, len(query_ids))
            if vectors is None:
                self._encoder_for(entry.key)
                vectors = self._for_search(self.encode_queries(texts))
                entry.write(0, vectors)
        return vectors

    # -- retrieval -----------------------------------------------------------------------------
    def retrieve(self, dataset: Dataset, top_k: int, timer: PhaseTimer) -> Run:
        query_ids = list(dataset.queries)
        corpus = corpus_source(dataset.corpus, dataset.fingerprints.corpus)
        queries = self._query_vectors(dataset, query_ids, timer)
        k = min(top_k, len(corpus))
        rows = shard_rows(queries.shape[1], self.store.max_memory, GRANULE)
        plan = corpus.shards(rows)
        if not self.store.use_store:
            if self.store.search != "exact":
                raise MaebenchError("approximate search reads the embedding store; drop --no-store")
            top = StreamingTopK(queries, k)
            for start, n in plan:
                with timer.phase("encode_corpus"):
                    vectors = self.search_vectors(corpus.read(start, n))
                with timer.phase("search"):
                    top.add_shard(vectors)
            scores, indices = top.result()
        else:
            scores, indices = self._retrieve_via_store(corpus, plan, rows, queries, k, timer)
        ids = corpus.ids
        return {
            qid: {ids[int(i)]: float(s) for i, s in zip(indices[row], scores[row], strict=True)
                  if i >= 0}
            for row, qid in enumerate(query_ids)
        }

    def _retrieve_via_store(
        self, corpus: CorpusSource, plan: list[tuple[int, int]], rows: int, queries: np.ndarray,
        k: int, timer: PhaseTimer,
    ) -> tuple[np.ndarray, np.ndarray]:
        dtype = self.store.store_dtype
        with timer.phase("load_model"):
            entry = self._settled_entry(
                "passage", lambda: self.store_key("passage", corpus.sha256, rows, dtype),
                len(corpus), len(plan),
            )
        key = entry.key
        stats = {"entry": key.digest()[:32], "store_dtype": dtype, "engine": self.store.engine,
                 "shard_rows": rows, "shards_total": len(plan), "shards_encoded": 0,
                 "shards_from_store": 0, "shards_dropped_corrupt": 0}
        self._store_stats = stats
        existed = (entry.folder / "key.json").is_file()  # a run of this entry came before
        unsaid = [True]  # whether this run resumes or starts over, said before its first encode
        with entry.writing(), self._interrupt_note(entry, plan):
            missing = entry.missing()
            if self.store.engine == "ray" and missing:
                from benchmark.retrievers.ray_engine import encode_with_ray

                with timer.phase("encode_corpus"):
                    stats["shards_encoded"] += encode_with_ray(entry, corpus, plan, missing, self)
            encoded_here = [0]

            def shard_vectors(index: int) -> np.ndarray:
                start, n = plan[index]
                with timer.phase("store_read"):
                    vectors = entry.load(index, n)
                if vectors is not None:
                    return vectors
                with timer.phase("encode_corpus"):
                    if unsaid:
                        unsaid.clear()
                        self._announce(entry, plan, existed)
                    vectors = self._encode_shard(entry, index, corpus.read(start, n), plan)
                    entry.write(index, vectors)
                encoded_here[0] += 1
                # search what a later run will read back (fp16 storage rounds)
                return vectors.astype(np.dtype(dtype)).astype(np.float32, copy=False)

            if self.store.search == "exact":
                top = StreamingTopK(queries, k)
                for index in range(len(plan)):
                    vectors = shard_vectors(index)
                    with timer.phase("search"):
                        top.add_shard(vectors)
                result = top.result()
            else:
                result, self._search_info = approximate_search(
                    self.store.search, queries, k, len(plan), shard_vectors,
                    lambda i: entry.load(i, plan[i][1]), self.store.ann_sample, timer,
                )
            stats["shards_dropped_corrupt"] = len(entry.dropped)
            stats["shards_encoded"] += encoded_here[0]
            stats["shards_from_store"] = len(plan) - stats["shards_encoded"]
        return result

    # -- checkpointed corpus encoding ----------------------------------------------------------
    def _encode_shard(self, entry, index: int, docs: list[Document],
                      plan: list[tuple[int, int]]) -> np.ndarray:
        """Shard `index`'s search vectors, encoded in the encoder's own length-sorted batches and
        committed in parts as they finish; finished parts of an earlier run are read back, not
        encoded again. Every batch holds the same texts and is computed the same way (a call of
        one batch would use all torch threads where the others use one: it is given a
        neighbour, whose vectors are dropped), so the vectors equal an uninterrupted encode's."""
        from tqdm.auto import tqdm

        from benchmark.retrievers.backends.torch_backend import length_order

        encoder = self._encoder_for(entry.key)
        cfg = self.config
        texts = self.format_passages(docs)
        batch = encoder.batch_size(cfg.batch_size)
        order = length_order(texts)
        n_batches = math.ceil(len(texts) / batch)
        policy = CheckpointPolicy.from_env()
        part_rows = entry.part_layout(batch, None)
        done = entry.load_parts(index)
        chunks = list(done)
        position = sum(len(c) for c in chunks)
        group = batch * max(2, min(8, os.cpu_count() or 1))  # batches per call: one per core

        def encode_rows(first: int, last: int) -> np.ndarray:
            b0, b1 = first // batch, math.ceil(last / batch)
            lo, hi = b0, b1
            if b1 - b0 == 1 and n_batches > 1:
                lo, hi = (b0 - 1, b1) if b0 > 0 else (b0, b1 + 1)
            rows = order[lo * batch: min(hi * batch, len(texts))]
            vectors = encoder.encode([texts[i] for i in rows], cfg.passage_max_length,
                                     cfg.batch_size, "corpus")
            return vectors[(first - lo * batch): (last - lo * batch)]

        bar = tqdm(total=n_batches, initial=position // batch, desc="corpus",
                   disable=n_batches <= 10, leave=False)
        with bar:
            part_start, started = position, time.monotonic()
            pending: list[np.ndarray] = []
            while position < len(texts):
                cap = part_rows or max(batch, policy.rows // batch * batch)
                end = min(position + group, part_start + cap, len(texts))
                pending.append(encode_rows(position, end))
                bar.update(math.ceil(end / batch) - position // batch)
                position = end
                if position >= len(texts):
                    break
                full = position - part_start >= cap
                slow = part_rows is None and time.monotonic() - started >= policy.seconds
                if full or slow:
                    part = np.concatenate(pending)
                    if part_rows is None:  # the first part fixes the size of them all
                        part_rows = len(part)
                        entry.set_part_rows(part_rows, batch)
                    entry.write_part(index, part)
                    chunks.append(part)
                    pending, part_start, started = [], position, time.monotonic()
            chunks.extend(pending)
        in_order = np.concatenate(chunks)
        vectors = np.empty_like(in_order)
        vectors[order] = in_order
        return self._for_search(vectors)

    @staticmethod
    def _pieces(entry, plan: list[tuple[int, int]]) -> tuple[int, int]:
        """(stored, total) in the units the user is told about: parts where the entry's part
        size is known (a finished shard counts all its parts), else whole shards."""
        size = entry.part_rows
        total = stored = 0
        for index, (_, n) in enumerate(plan):
            pieces = math.ceil(n / size) if size else 1
            total += pieces
            if index in entry.shards:
                stored += pieces
            else:
                stored += len(entry.parts.get(index, []))
        return stored, total

    def _announce(self, entry, plan: list[tuple[int, int]], existed: bool) -> None:
        """Say, before the first encode, whether this run resumes or starts over."""
        stored, total = self._pieces(entry, plan)
        rows = entry.stored_rows()
        if rows:
            _say(f"resuming: {stored} of {total} shards stored ({rows:,} of "
                 f"{entry.n_rows:,} passages); encoding the rest")
        elif existed:
            _say("starting over: none stored")

    @staticmethod
    def _interrupt_note(entry, plan: list[tuple[int, int]]):
        """Turn Ctrl-C into EncodeInterrupted, whose text says what the store kept."""
        from contextlib import contextmanager

        @contextmanager
        def note():
            try:
                yield
            except EncodeInterrupted:
                raise
            except KeyboardInterrupt as exc:
                stored, total = DenseRetriever._pieces(entry, plan)
                rows = entry.stored_rows()
                kept = (f"{stored} of {total} shards ({rows:,} of {entry.n_rows:,} passages) kept "
                        "in the embedding store; the same command resumes from there"
                        if rows else "no shard was finished, nothing kept; the same command "
                        "starts over")
                raise EncodeInterrupted(f"interrupted: {kept}") from exc

        return note()
