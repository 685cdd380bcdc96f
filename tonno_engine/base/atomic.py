"""Atomic file writes: a reader (or a rerun after ``kill -9``) never sees a partial file.

Temporary files are named ``.tonno-part.<name>.<random><suffixes>``: a name only tonno makes, so
:func:`remove_stale_parts` never touches a user's own hidden files. They are created with mode
``0o666`` and the process umask applies (as for any ``open()``), unlike ``tempfile.mkstemp``,
which always makes ``0o600`` files that the collaborators of a lab cannot read.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from .errors import DataError, DiskFull

#: the prefix of every temporary file tonno writes (and the only files it removes as stale)
PART_PREFIX = ".tonno-part."
#: errors that mean "the file system is full": a batch or a training stops on them
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def part_name(path: Path) -> str:
    """A fresh temporary name beside ``path`` that keeps its suffixes (``.nii.gz``, ``.pt``)."""
    return f"{PART_PREFIX}{path.name}.{secrets.token_hex(4)}{''.join(path.suffixes)}"


def _fresh_part(path: Path, create) -> Path:
    """``create(tmp)`` at a fresh temporary name beside ``path`` (``create`` fails if it exists)."""
    while True:
        tmp = path.parent / part_name(path)
        try:
            create(tmp)
            return tmp
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue


def _create_part(path: Path) -> Path:
    # O_EXCL with mode 0o666: unique like mkstemp, but the umask decides the mode (see module doc)
    return _fresh_part(path, lambda tmp: os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)))


def make_part_folder(path: Path) -> Path:
    """A fresh temporary folder beside ``path`` (mode ``0o777`` less the umask, unlike ``mkdtemp``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return _fresh_part(path, lambda tmp: tmp.mkdir(0o777))


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in FULL_ERRNOS


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    On any error the temporary file is removed and ``path`` is left as it was. A full file system
    (ENOSPC, EDQUOT) is raised as :class:`DiskFull` naming ``path``, whatever the writer raised.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = None
    try:
        tmp_path = _create_part(path)
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except OSError as exc:
        if is_disk_full(exc) and not isinstance(exc, DiskFull):
            raise DiskFull(path) from exc
        raise
    finally:
        if tmp_path is not None:
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


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, after checking the file system has room for it (so a
    full disk is found before the old file's replacement is even started)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path.parent).free
    if free < len(data):
        raise DiskFull(path, f"needs {len(data) / 2**20:.1f} MB, {free / 2**20:.1f} MB free")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def remove_stale_parts(folder: str | os.PathLike, pattern: str = "*") -> list[Path]:
    """Delete the temporary files a killed tonno writer left in ``folder`` (only tonno's own names,
    ``.tonno-part.<pattern>``); returns what was removed."""
    stale = sorted(Path(folder).glob(f"{PART_PREFIX}{pattern}"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
