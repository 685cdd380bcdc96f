"""Errors that name the offending file (or row) and the cause."""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data. ``str()`` reads ``"<where>: <cause>"``."""

    def __init__(self, where, cause: str):
        self.where = str(where)
        self.cause = cause
        super().__init__(f"{self.where}: {cause}")


class MissingExtra(ImportError):
    """An optional dependency is not installed; ``str()`` says which extra to install."""
