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


class DiskFull(OSError):
    """The file system is full while writing ``filename``: a batch or a training stops on it (every
    later write would fail too). ``str()`` reads ``"<file>: no space left on device (<detail>)"``."""

    def __init__(self, path, detail: str = ""):
        import errno

        super().__init__(errno.ENOSPC, "no space left on device" + (f" ({detail})" if detail else ""), str(path))
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


class ResourceError(RuntimeError):
    """The machine ran out of something outside tonno's control (a loader process killed, memory);
    ``str()`` says what happened and what to do."""


class Stopped(RuntimeError):
    """Work stopped by a ``signal`` (SIGTERM, SIGUSR1: what SLURM sends before it ends a job) after keeping what it had
    finished. ``str()`` reads ``"<where>: <cause>"``, the cause saying how to continue; the CLI exits with 128 + the
    signal's number, as a process the signal ended would."""

    def __init__(self, where, signal: str, cause: str):
        self.where = str(where)
        self.signal = signal
        self.cause = cause
        super().__init__(f"{self.where}: {cause}")
