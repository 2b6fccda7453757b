"""Paired significance tests, multiple-comparison correction and effect sizes.

Hand-written on purpose: ranx's Fisher randomization test is not reproducible even with a seed,
its default is the paired t-test, it has no multiple-comparison correction, and its Tukey HSD
option is an unpaired test. What we need is small (a sign-flip randomization test, a paired
bootstrap, Holm and Benjamini-Hochberg), so it lives here, with every random draw coming from a
seeded numpy Generator.

Speed and exactness come from one trick. Per-query scores are first quantized to integers
(multiples of 2**-QUANT_BITS, far below any meaningful difference), so every sum below is a sum
of integers held exactly in float64: results do not depend on BLAS blocking, thread count or
which other models were batched alongside, and identical inputs give byte-identical outputs
(rounding can move a sum by at most n units, so sums that close count as ties).
Then, for a task with models X (M x n) and one seeded sign matrix S (P x n) shared by all
comparisons with n queries, the permuted statistic of a pair (a, b) is S @ (x_a - x_b) =
(S @ X.T)[:, a] - (S @ X.T)[:, b]: one matrix product per task covers every pair, and each pair
then costs a column subtraction. The paired bootstrap works the same way with a matrix of
resampling counts (B x n) in place of S.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

from benchmark.core.errors import MaebenchError

DEFAULT_PERMUTATIONS = 10_000
DEFAULT_BOOTSTRAP = 10_000
DEFAULT_SEED = 0
QUANT_BITS = 20  # per-query scores are rounded to multiples of 2**-20 (about 1e-6)
_QUANT = float(1 << QUANT_BITS)


class IncomparableResultsError(MaebenchError):
    """Two results were evaluated on different data (fingerprints, split, quirks or queries)."""


@dataclass(frozen=True)
class PairComparison:
    """One paired comparison of model `a` against model `b` on one task and metric."""

    task: str
    metric: str
    a: str
    b: str
    n: int
    mean_a: float
    mean_b: float
    diff: float  # mean(a - b)
    ci_low: float | None  # None when the caller skipped the bootstrap
    ci_high: float | None
    p_value: float
    cohens_d: float | None  # paired standardized mean difference, mean(d) / sd(d)
    wins: int  # queries where a > b
    ties: int
    losses: int
    p_holm: float | None = None
    p_bh: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- random matrices


BLOCK_ROWS = 2048  # random matrices are drawn and multiplied in blocks: bounded memory


def sign_blocks(
    n: int, n_perm: int, seed: int = DEFAULT_SEED, skip: int = 0
) -> Iterator[np.ndarray]:
    """The P x n matrix of random sign flips as 0/1 (1 keeps the sign, 0 flips it), float64, in
    blocks of BLOCK_ROWS rows.

    Seeded by (seed, n) only, so every comparison with n queries sees the same flips wherever
    it is computed (compare, site, tests). Every block is drawn in full and then cut, so a
    larger n_perm extends the same sequence: its first rows are the smaller run's flips, and
    `skip` yields only rows skip..n_perm-1 of it (the earlier ones are drawn, not returned)."""
    if n_perm < 1:
        raise ValueError("n_perm must be positive")
    rng = np.random.default_rng([seed, n, 0x5161])
    width = (n + 7) // 8
    for start in range(0, n_perm, BLOCK_ROWS):
        raw = np.frombuffer(rng.bytes(BLOCK_ROWS * width), dtype=np.uint8)
        if start + BLOCK_ROWS <= skip:
            continue
        bits = np.unpackbits(raw.reshape(BLOCK_ROWS, width), axis=1, count=n)
        yield bits[max(0, skip - start): n_perm - start].astype(np.float64)


def count_blocks(n: int, n_boot: int, seed: int = DEFAULT_SEED, stream: int = 0
                 ) -> Iterator[np.ndarray]:
    """The B x n matrix of bootstrap counts (how often each query is drawn in each resample),
    float64, in blocks of BLOCK_ROWS rows (drawn in full, then cut, as in sign_blocks).
    `stream` separates tasks (a stable hash of the task name), so that resamples of unrelated
    tasks with the same query count are independent when they are combined across tasks."""
    if n_boot < 1:
        raise ValueError("n_boot must be positive")
    rng = np.random.default_rng([seed, n, stream, 0xB007])
    offsets = (np.arange(BLOCK_ROWS, dtype=np.int64) * n)[:, None]
    for start in range(0, n_boot, BLOCK_ROWS):
        draws = rng.integers(0, n, size=(BLOCK_ROWS, n), dtype=np.int64)
        draws += offsets
        counts = np.bincount(draws.ravel(), minlength=BLOCK_ROWS * n).reshape(BLOCK_ROWS, n)
        yield counts[: n_boot - start].astype(np.float64)


def permutations_for(family_size: int, alpha: float, minimum: int = DEFAULT_PERMUTATIONS) -> int:
    """Enough sign flips that Holm can reject in a family of `family_size` tests.

    The smallest p-value a randomization test can give is 1 / (P + 1), and Holm compares the
    smallest one with alpha / m: with P = 10,000 nothing in a family of 500 or more comparisons
    could ever be significant. We take P >= 2 m / alpha (rounded up to a multiple of 1,000);
    P only sets the Monte Carlo precision, the test stays valid for any P."""
    if alpha <= 0:
        return minimum
    needed = math.ceil(2 * max(family_size, 1) / alpha / 1000) * 1000
    return max(minimum, needed)


def _task_key(task: str) -> int:
    return zlib.crc32(task.encode("utf-8"))


# --------------------------------------------------------------------------- one task


def quantize(scores: np.ndarray) -> np.ndarray:
    """Scores as integer-valued float64 (units of 2**-QUANT_BITS); see the module docstring."""
    scores = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(scores)):
        raise ValueError("per-query scores must be finite")
    if scores.size and float(np.abs(scores).max()) * scores.shape[-1] >= 2.0 ** (52 - QUANT_BITS):
        raise ValueError("per-query scores too large for exact integer sums")
    return np.rint(scores * _QUANT)


def _products(blocks: Iterator[np.ndarray], q: np.ndarray) -> np.ndarray:
    """(R @ q.T).T for R given as row blocks: M x R, exact for integer-valued inputs."""
    return np.ascontiguousarray(np.concatenate([(block @ q.T).T for block in blocks], axis=1))


class TaskScores:
    """Per-query scores of M models on one task (same queries, same order), with the permutation
    and bootstrap sums precomputed once so that any set of pairs is cheap to test."""

    def __init__(
        self,
        task: str,
        metric: str,
        names: Sequence[str],
        scores: np.ndarray,
        n_perm: int = DEFAULT_PERMUTATIONS,
        n_boot: int = DEFAULT_BOOTSTRAP,
        seed: int = DEFAULT_SEED,
    ) -> None:
        scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
        if scores.shape[0] != len(names):
            raise ValueError("one row of scores per model name")
        if scores.shape[1] < 1:
            raise ValueError(f"task {task}: no queries to compare on")
        self.task, self.metric, self.names = task, metric, list(names)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.n = scores.shape[1]
        self.n_perm, self.n_boot, self.seed = n_perm, n_boot, seed
        self.q = quantize(scores)  # M x n integers
        self.sums = self.q.sum(axis=1)  # exact
        self.means = self.sums / (self.n * _QUANT)
        # M x P permuted sums (one contiguous row per model, so gathering the rows of many pairs
        # is cheap): with B01 the 0/1 flips, S = 2 B01 - 1 and S q = 2 B01 q - sum(q)
        self.perm_sums = _products(sign_blocks(self.n, n_perm, seed), self.q)
        self.perm_sums *= 2.0
        self.perm_sums -= self.sums[:, None]

    def subset(self, names: Sequence[str], n_perm: int) -> TaskScores:
        """The same task restricted to `names`, with n_perm sign flips: the flips this object
        already has are reused (same seeded sequence), only the extra ones are multiplied."""
        rows = [self.index[name] for name in names]
        out = object.__new__(TaskScores)
        out.task, out.metric, out.names = self.task, self.metric, list(names)
        out.index = {name: i for i, name in enumerate(out.names)}
        out.n, out.n_perm, out.n_boot, out.seed = self.n, n_perm, self.n_boot, self.seed
        out.q, out.sums, out.means = self.q[rows], self.sums[rows], self.means[rows]
        have = min(n_perm, self.n_perm)
        parts = [self.perm_sums[rows, :have]]
        if n_perm > have:
            extra = _products(sign_blocks(self.n, n_perm, self.seed, skip=have), out.q)
            parts.append(2.0 * extra - out.sums[:, None])
        out.perm_sums = np.ascontiguousarray(np.concatenate(parts, axis=1))
        return out

    @cached_property
    def boot_sums(self) -> np.ndarray:
        """M x B bootstrap sums, exact integers (computed on first use)."""
        blocks = count_blocks(self.n, self.n_boot, self.seed, _task_key(self.task))
        return _products(blocks, self.q)

    def bootstrap_means(self) -> np.ndarray:
        """B x M bootstrap replicates of each model's mean score."""
        return self.boot_sums.T / (self.n * _QUANT)

    def compare(
        self, pairs: Sequence[tuple[str, str]], confidence: float = 0.95, ci: bool = True
    ) -> list[PairComparison]:
        """Paired randomization test (two-sided, sign flips), bootstrap CI of the mean difference
        (skipped when `ci` is False), paired Cohen's d and win/tie/loss for each (a, b); no
        multiple-comparison correction here (see `correct`)."""
        if not pairs:
            return []
        ia = np.array([self.index[a] for a, _ in pairs])
        ib = np.array([self.index[b] for _, b in pairs])
        # Each quantized score is off by at most half a unit, so a sum of n differences by at
        # most n units: permuted sums within n units of the observed one count as ties (a mean
        # difference within 2**-QUANT_BITS), as mathematically tied sums must.
        observed = np.abs(self.sums[ia] - self.sums[ib]) - self.n  # K, exact
        count = np.empty(len(pairs), dtype=np.int64)
        boot_lo = np.empty(len(pairs))
        boot_hi = np.empty(len(pairs))
        tail = (1.0 - confidence) / 2.0 * 100.0
        chunk = max(1, 2_000_000 // max(self.n_perm, self.n_boot))
        for start in range(0, len(pairs), chunk):
            sl = slice(start, start + chunk)
            perm = np.abs(self.perm_sums[ia[sl]] - self.perm_sums[ib[sl]])
            count[sl] = (perm >= observed[sl, None]).sum(axis=1)
            if ci:
                boot = self.boot_sums[ia[sl]] - self.boot_sums[ib[sl]]
                lo, hi = np.percentile(boot, [tail, 100.0 - tail], axis=1)
                boot_lo[sl], boot_hi[sl] = lo / (self.n * _QUANT), hi / (self.n * _QUANT)
        diffs = self.q[ia] - self.q[ib]  # K x n integers
        wins = (diffs > 0).sum(axis=1)
        losses = (diffs < 0).sum(axis=1)
        mean_d = diffs.mean(axis=1)
        sd_d = diffs.std(axis=1, ddof=1) if self.n > 1 else np.zeros(len(pairs))
        out = []
        for k, (a, b) in enumerate(pairs):
            if sd_d[k] > 0:
                d: float | None = float(mean_d[k] / sd_d[k])
            else:
                d = 0.0 if mean_d[k] == 0 else None
            out.append(
                PairComparison(
                    task=self.task,
                    metric=self.metric,
                    a=a,
                    b=b,
                    n=self.n,
                    mean_a=float(self.means[ia[k]]),
                    mean_b=float(self.means[ib[k]]),
                    diff=float((self.sums[ia[k]] - self.sums[ib[k]]) / (self.n * _QUANT)),
                    ci_low=float(boot_lo[k]) if ci else None,
                    ci_high=float(boot_hi[k]) if ci else None,
                    p_value=float((count[k] + 1) / (self.n_perm + 1)),
                    cohens_d=d,
                    wins=int(wins[k]),
                    ties=int(self.n - wins[k] - losses[k]),
                    losses=int(losses[k]),
                )
            )
        return out


def paired_test(
    a: Sequence[float],
    b: Sequence[float],
    n_perm: int = DEFAULT_PERMUTATIONS,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    task: str = "",
    metric: str = "",
) -> PairComparison:
    """Convenience wrapper: compare two aligned per-query score vectors."""
    scores = np.vstack([np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)])
    if scores.ndim != 2 or scores.shape[0] != 2:
        raise ValueError("a and b must be 1-D sequences of the same length")
    table = TaskScores(task, metric, ["a", "b"], scores, n_perm, n_boot, seed)
    return table.compare([("a", "b")])[0]


# --------------------------------------------------------------------------- corrections


def _step(p_values: Sequence[float], adjust) -> list[float]:
    """`adjust(sorted p, m)`: the adjusted p-values in ascending order of p, put back in the
    order of `p_values` (ties keep their order)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    out = np.empty(m)
    out[order] = adjust(p[order], m)
    return [float(x) for x in out]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (controls the family-wise error rate)."""
    return _step(p_values, lambda p, m: np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p)))


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg step-up adjusted p-values (controls the false discovery rate)."""
    return _step(p_values, lambda p, m: np.minimum(
        1.0, np.minimum.accumulate((p * m / np.arange(1, m + 1))[::-1])[::-1]))


def correct(comparisons: Sequence[PairComparison]) -> list[PairComparison]:
    """Holm and BH over the family `comparisons` (exactly the comparisons shown together)."""
    from dataclasses import replace

    p = [c.p_value for c in comparisons]
    return [
        replace(c, p_holm=h, p_bh=q)
        for c, h, q in zip(comparisons, holm(p), benjamini_hochberg(p), strict=True)
    ]


# --------------------------------------------------------------------------- across tasks


def rank_intervals(
    boot_means: Sequence[np.ndarray], confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Rank intervals of M models from per-task bootstrap replicates (each B x M, same model
    order, tasks resampled independently): the mean over tasks is recomputed per replicate, the
    models are ranked in it (1 = best; ties share the best rank) and the interval holds the
    central `confidence` share of the ranks each model received."""
    stacked = np.mean(np.stack(list(boot_means)), axis=0)  # B x M
    # rank = 1 + number of models strictly better in that replicate
    order = np.sort(stacked, axis=1)
    ranks = stacked.shape[1] - np.stack(
        [np.searchsorted(row, vals, side="right") for row, vals in zip(order, stacked, strict=True)]
    ) + 1
    tail = (1.0 - confidence) / 2.0 * 100.0
    low = np.floor(np.percentile(ranks, tail, axis=0, method="lower")).astype(int)
    high = np.ceil(np.percentile(ranks, 100.0 - tail, axis=0, method="higher")).astype(int)
    return low, high
