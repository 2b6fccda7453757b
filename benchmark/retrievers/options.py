"""How a dense run uses the embedding store, which engine and backend encode, how it searches."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from benchmark.core.errors import MaebenchError

DEFAULT_MAX_MEMORY = 8 << 30
MAX_SHARD_ROWS = 100_000  # the historical corpus shard: keeps stored results byte-identical


@dataclass(frozen=True)
class StoreOptions:
    use_store: bool = True
    root: Path | None = None  # default: benchmark.core.paths.embeddings_dir()
    store_dtype: Literal["float32", "float16"] = "float32"
    engine: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    ray_workers: int | None = None
    max_memory: int = DEFAULT_MAX_MEMORY
    search: Literal["exact", "hnsw", "ivf"] = "exact"
    ann_sample: int = 200  # queries whose approximate top-k is checked against exact search
    # inference backend: auto (OpenVINO on CPU where it converts with parity, else torch), torch
    # or openvino; default $MAEBENCH_BACKEND, so finetune / study / mteb follow the user's choice
    backend: str = field(default_factory=lambda: _default_backend())

    def store_root(self) -> Path:
        from benchmark.core.paths import embeddings_dir

        return self.root or embeddings_dir()


def _default_backend() -> str:
    from benchmark.retrievers.backends.policy import default_backend

    return default_backend()


def shard_rows(dim: int, max_memory: int, granule: int) -> int:
    """Rows per corpus shard: one fp32 shard may use an eighth of the memory budget (the rest is
    the model, a batch, the running top-k and the ids), rounded down to the read granule."""
    budget_rows = (max_memory // 8) // (4 * max(dim, 1))
    rows = min(MAX_SHARD_ROWS, budget_rows // granule * granule)
    return max(granule, rows)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'8GB', '512MiB', '2g' -> bytes (binary units: memory is sized in GiB)."""
    match = _SIZE.match(text)
    if not match:
        raise MaebenchError(f"cannot read size '{text}' (e.g. 8GB, 512MB)")
    number, unit = float(match.group(1)), match.group(2).upper()
    return int(number * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[unit])


def store_options(
    use_store: bool, store_dtype: str, engine: str, ray_address: str | None,
    ray_workers: int | None, max_memory: str, search: str, backend: str | None = None,
) -> StoreOptions:
    """The `maebench run` flags, checked (one-line errors) into StoreOptions."""
    from benchmark.retrievers.backends.policy import check_backend, default_backend

    backend = check_backend(backend or default_backend(),
                            "--backend" if backend else "MAEBENCH_BACKEND")
    if backend == "openvino" and engine != "local":
        raise MaebenchError("--backend openvino goes with --engine local (Ray actors use torch)")
    choices = {"store_dtype": (store_dtype, ("float32", "float16")),
               "engine": (engine, ("local", "ray")), "search": (search, ("exact", "hnsw", "ivf"))}
    for flag, (value, allowed) in choices.items():
        if value not in allowed:
            raise MaebenchError(f"--{flag.replace('_', '-')} must be one of {', '.join(allowed)}")
    if engine != "ray" and (ray_address or ray_workers):
        raise MaebenchError("--ray-address / --ray-workers go with --engine ray")
    if not use_store and (engine == "ray" or search != "exact" or store_dtype != "float32"):
        raise MaebenchError("--engine ray, --search and --store-dtype need the embedding store")
    memory = parse_size(max_memory)
    if memory < 256 << 20:
        raise MaebenchError(f"--max-memory {max_memory} is below the 256MB a run needs at least")
    return StoreOptions(
        use_store=use_store, store_dtype=store_dtype, engine=engine, ray_address=ray_address,
        ray_workers=ray_workers, max_memory=memory, search=search, backend=backend,
    )
