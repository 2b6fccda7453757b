"""Where the registry, the results database, the site templates and the data cache live.

models/ and results/ are found, in this order (commands' --models-dir / --results-dir first):
1. $MAEBENCH_MODELS_DIR / $MAEBENCH_RESULTS_DIR;
2. $MAEBENCH_ROOT/models, $MAEBENCH_ROOT/results;
3. the checkout the package runs from (an editable install: the repository's own folders);
4. ./models, ./results in the current directory, when that directory has either;
5. $MAEBENCH_HOME/models, $MAEBENCH_HOME/results (default ~/.cache/maebench).
Templates and static files are package data (benchmark/site/assets, a symlink to the
repository's site/ in a checkout), so `maebench site` works from an installed wheel.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from benchmark.core.errors import MaebenchError

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # benchmark/, this file is benchmark/core/paths.py
PROJECT_ROOT = Path(os.environ.get("MAEBENCH_ROOT", PACKAGE_DIR.parent))
EMBEDDED_DATA_DIR = PACKAGE_DIR / "data"
SITE_ASSETS_DIR = PACKAGE_DIR / "site" / "assets"


def in_checkout() -> bool:
    """Running from the repository (editable install), not from an installed wheel."""
    return (PACKAGE_DIR.parent / "pyproject.toml").is_file() and (PACKAGE_DIR.parent / ".git").exists()


def _database_dir(name: str, env: str) -> Path:
    if os.environ.get(env):
        return Path(os.environ[env])
    if os.environ.get("MAEBENCH_ROOT") or in_checkout():
        return PROJECT_ROOT / name
    cwd = Path.cwd()
    if (cwd / "models").is_dir() or (cwd / "results").is_dir():
        return cwd / name
    return home_dir() / name


def models_dir() -> Path:
    return _database_dir("models", "MAEBENCH_MODELS_DIR")


def results_dir() -> Path:
    return _database_dir("results", "MAEBENCH_RESULTS_DIR")


def site_dir() -> Path:
    """templates/ and static/ of the site: package data when installed, site/ in a checkout."""
    if (SITE_ASSETS_DIR / "templates" / "base.html").is_file():
        return SITE_ASSETS_DIR
    return PROJECT_ROOT / "site"


def home_dir() -> Path:
    """The user's maebench home, outside any checkout: trained weights, the embedding store,
    downloaded data. $MAEBENCH_HOME, else the user cache (~/.cache/maebench)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "maebench"
    return Path(os.environ.get("MAEBENCH_HOME", default))


def cache_dir() -> Path:
    """Downloaded datasets; never inside the repository."""
    return Path(os.environ.get("MAEBENCH_CACHE", home_dir()))


def checkpoints_dir() -> Path:
    """Weights written by `maebench finetune` / `pretrain` (too large for git)."""
    return home_dir() / "checkpoints"


def embeddings_dir() -> Path:
    """The embedding store (keyed shards + manifests)."""
    return home_dir() / "embeddings"


def data_dir_from_env() -> Path | None:
    """A folder of BEIR-format datasets (`<dir>/<task>/corpus.jsonl`), e.g. ../shared/data/beir."""
    value = os.environ.get("MAEBENCH_DATA_DIR")
    return Path(value) if value else None


# --------------------------------------------------------------------------- untrusted names and paths
#
# Three checks every file maebench is handed, or names from a stored file, goes through:
# - check_name: a name that becomes a file (a card, a result, a reported file, weights);
# - confine: a path a stored file names (an embedding-store manifest's shard, a results-store
#   journal's renames, a sentence-transformers module's folder) must stay inside its own tree,
#   also after following symlinks;
# - read_bounded: a file is read only if it is a regular file, and never past a size limit (so
#   /dev/zero, a FIFO or a 10 GB "config" cannot hang or exhaust the process).

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._\-]{0,79}")
NAME_RULE = "lowercase letters, digits, '.', '-', '_', starting with a letter or digit, at most 80"


class UnsafePathError(MaebenchError):
    """A name or a stored path that would leave its tree, or a file that cannot be read safely."""


def is_name(name: object) -> bool:
    """True for a registry-safe name (cards, results, reported files, checkpoints). A full
    match: `re.match(r'...$')` also accepted a trailing newline, which then became a file name."""
    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None


def check_name(name: object, what: str = "name", error: type[MaebenchError] = UnsafePathError) -> str:
    """`name` itself when it is a safe name (see is_name), else a one-line error."""
    if not is_name(name):
        raise error(f"invalid {what} {name!r} ({NAME_RULE})")
    return name  # type: ignore[return-value]


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def confine(
    root: Path, name: object, what: str, *, error: type[MaebenchError] = UnsafePathError,
    link_root: Path | None = None, allow_root: bool = False,
) -> Path:
    """The path that `name` (relative to `root`, or absolute) names, refused unless it stays in
    `root`: a string without NUL and without '..' components, an absolute name only when it
    lies in `root`, and, after following every symlink, a target inside `link_root` (default
    `root`; a Hugging Face snapshot links its files into the repository's blobs/, so its
    callers pass the repository folder). `root` itself only with `allow_root`."""
    if not isinstance(name, str) or "\x00" in name:
        raise error(f"{root}: {what} {name!r} is not a path")
    candidate = Path(name)
    if ".." in candidate.parts:
        raise error(f"{root}: {what} {name!r} leaves its folder ('..')")
    path = candidate if candidate.is_absolute() else root / candidate
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    limit = Path(os.path.realpath(link_root)) if link_root is not None else real_root
    lexical = Path(os.path.abspath(path))
    if candidate.is_absolute() and not (
        _inside(lexical, Path(os.path.abspath(root))) or _inside(real, real_root)
    ):
        raise error(f"{root}: {what} {name!r} lies outside {root}")
    if not _inside(real, limit):
        raise error(f"{root}: {what} {name!r} leads outside {root} (a symlink?)")
    if not allow_root and real == real_root:
        raise error(f"{root}: {what} {name!r} names the folder itself, not a file in it")
    return path


def read_bounded(
    path: Path, limit: int, what: str, *, error: type[MaebenchError] = UnsafePathError,
) -> bytes:
    """The bytes of `path`, a regular file (symlinks followed) of at most `limit` bytes. Opened
    non-blocking, so a FIFO is refused at once instead of waiting for a writer forever."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or type(exc).__name__})") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path}: {what} is not a regular file")
        if info.st_size > limit:
            raise error(f"{path}: {what} is larger than {limit} bytes")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # grew while read, or a /proc-like file with no size
                raise error(f"{path}: {what} is larger than {limit} bytes")
        return b"".join(chunks)
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or type(exc).__name__})") from exc
    finally:
        os.close(fd)


def read_text_bounded(
    path: Path, limit: int, what: str, *, error: type[MaebenchError] = UnsafePathError,
) -> str:
    """read_bounded, decoded as UTF-8 (a one-line error when it is not)."""
    data = read_bounded(path, limit, what, error=error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: {what} is not UTF-8 text") from exc


def _no_constant(name: str):
    raise ValueError(f"non-finite number {name}")


def load_json_bounded(
    path: Path, limit: int, what: str, *, error: type[MaebenchError] = UnsafePathError,
):
    """The JSON value in `path` (read_bounded; NaN/Infinity, deep nesting and bad UTF-8 are
    one-line errors). Callers still check the value's shape."""
    import json

    text = read_text_bounded(path, limit, what, error=error)
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise error(f"{path}: {what} is not valid JSON ({type(exc).__name__})") from exc


def refuse_owned_output(
    out: Path, *, option: str = "--out", also: tuple[tuple[str, Path | None], ...] = (),
) -> Path:
    """`out` itself, refused in one line when it is, or lies inside, a folder maebench owns: the
    results database and the models folder (the defaults, and `also`: the command's own
    --results-dir / --models-dir), the trained weights and the embedding store. A bundle written
    into results/<x> became a stale copy that shadowed newer results in compare and on the
    site; a site or an MTEB export there is the same mistake. Checked both as written and with
    symlinks followed, so a link from elsewhere into the database is refused too."""
    owned = [("results database", results_dir()), ("models folder", models_dir()),
             ("trained-weights folder", checkpoints_dir()), ("embedding store", embeddings_dir()),
             *also]
    lexical, real = Path(os.path.abspath(out)), Path(os.path.realpath(out))
    for label, folder in owned:
        if folder is None:
            continue
        roots = {Path(os.path.abspath(folder)), Path(os.path.realpath(folder))}
        if any(_inside(candidate, root) for candidate in (lexical, real) for root in roots):
            raise MaebenchError(f"{option} {out} lies in the {label} ({folder}); write it "
                                "somewhere outside maebench's own folders")
    return out
