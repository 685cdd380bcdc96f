"""Atomic file writes: a reader (or a rerun after ``kill -9``) never sees a partial file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import DataError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    On any error the temporary file is removed and ``path`` is left as it was. The temporary
    name keeps ``path``'s suffixes (``.nii.gz``, ``.pt``) so that writers choose the right format.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def make_output_folder(path: str | os.PathLike) -> Path:
    """Create the folder ``path`` and its parents; :class:`DataError` naming it if that is impossible
    (a file in the way, no permission, a read-only or full file system)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(path, f"cannot create the output folder ({exc.strerror or exc})") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise DataError(path, "the output folder is not writable")
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def remove_stale_parts(folder: str | os.PathLike) -> list[Path]:
    """Delete temporary files that a killed writer left in ``folder``; returns what was removed."""
    stale = sorted(Path(folder).glob(".*.part*"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
