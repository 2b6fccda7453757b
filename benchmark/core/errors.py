"""One exception type for every user-facing failure.

The CLI prints `error: <message>` and exits non-zero for a MaebenchError, so every message
must fit on one line and name the offending thing (file, field, model, task).
"""

from __future__ import annotations


class MaebenchError(Exception):
    """A problem with the user's input or environment, reported as one clear line."""


class DataError(MaebenchError):
    """A dataset folder or file is missing, malformed or inconsistent."""


class RegistryError(MaebenchError):
    """A model card is unknown, malformed or names settings we cannot honour."""


class ResultError(MaebenchError):
    """A stored or submitted result is malformed, conflicting or would be overwritten."""


class ModelLoadError(MaebenchError):
    """The weights a card points at cannot be loaded here."""


class Interrupted(BaseException):  # noqa: N818 (it is Ctrl-C, not an error)
    """Ctrl-C with a note of what was kept, raised by a command in place of the KeyboardInterrupt:
    typer turns a KeyboardInterrupt into a bare exit code, losing the note; this reaches the
    CLI's entry point, which prints it as one line and exits 130."""


def brief(text: object, limit: int = 160) -> str:
    """A library's exception text as a clause of our one-line message: its first line, then
    as many whole sentences as fit in `limit` characters, else cut at a word (never mid-word,
    as in the old `try aga)`)."""
    import re
    import textwrap

    lines = str(text).strip().splitlines()
    line = " ".join(lines[0].split()) if lines else ""
    if len(line) <= limit:
        return line
    kept = ""
    for sentence in re.split(r"(?<=[.!?])\s+", line):
        if len(kept) + len(sentence) + 1 > limit:
            break
        kept = f"{kept} {sentence}".strip()
    return kept or textwrap.shorten(line, width=limit, placeholder=" ...")


def did_you_mean(given: str, known: list[str], limit: int = 3) -> str:
    """`; did you mean a, b?` with the closest of `known` to a misspelt name (difflib's ratio,
    case-insensitive), or "" when none is close."""
    import difflib

    by_fold = {k.casefold(): k for k in known}
    close = difflib.get_close_matches(given.casefold(), list(by_fold), n=limit, cutoff=0.6)
    return f"; did you mean {' or '.join(by_fold[c] for c in close)}?" if close else ""
