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
