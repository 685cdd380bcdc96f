"""One writer per output folder: an advisory lock held while a run writes into it.

``fcntl.flock`` on ``<folder>/.tonno.lock`` (the kernel drops it when the process ends, even after
``kill -9``, so a lock is never stale). The holder writes its PID, host, command and start time into
``<folder>/.tonno.lock.<pid>`` so that a second process can name it. Written here rather than with
the ``filelock`` package: its Unix lock opens the lock file with ``O_TRUNC`` on every attempt, so
the holder's details cannot live there, and it offers no shared mode. Parts of one batch (a job
array or torchrun ranks, which write disjoint cases by design) take the lock shared; a whole run
takes it exclusive, so it conflicts with any part and any other run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import DataError

LOCK_NAME = ".tonno.lock"


def _alive(details: dict) -> bool:
    """False for a process of this host that has ended (``kill -9`` leaves its details behind)."""
    if details.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(details.get("pid")), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError):
        pass
    return True


def _holders(folder: Path, *, tidy: bool = True) -> str:
    """The live holders' details, ``"; "``-joined (``""``: none left any); ``tidy`` removes those of ended ones."""
    found = []
    for info in sorted(folder.glob(f"{LOCK_NAME}.*")):
        try:
            d = json.loads(info.read_text())
        except (OSError, ValueError):
            continue
        if not _alive(d):
            if tidy:
                info.unlink(missing_ok=True)
            continue
        found.append(f"pid {d.get('pid')} on {d.get('host')} since {d.get('started')}: {d.get('command')}")
    return "; ".join(found)


@contextlib.contextmanager
def folder_lock(folder: str | Path, *, shared: bool = False) -> Iterator[None]:
    """Hold the folder's lock (see module doc) for the ``with`` block; :class:`DataError` naming the
    folder and the process that holds it when another tonno process writes there."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fh = open(folder / LOCK_NAME, "a")  # noqa: SIM115 - closed in the finally below
    info = folder / f"{LOCK_NAME}.{os.getpid()}"
    try:
        try:
            fcntl.flock(fh, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holders = _holders(folder) or "a process that left no details"
            raise DataError(folder, f"another tonno process is writing here ({holders}); wait for it to "
                                    "finish, or use another output folder") from None
        with contextlib.suppress(OSError):  # the details are a courtesy: a full disk must not stop the lock
            info.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                        "command": " ".join(sys.argv), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}))
        yield
    finally:
        info.unlink(missing_ok=True)
        fh.close()


def writer_of(folder: str | Path) -> str | None:
    """Who is writing into ``folder`` now (the holders' details, as a refused writer is told them), or ``None``
    when no process holds its lock. For readers: it never removes anything, and it tests the lock itself (an
    instant's non-blocking try) only when a holder's details say a process is alive, so an idle folder is never
    touched and a stale record (a process killed on another host) is not taken for a writer."""
    folder = Path(folder)
    holders = _holders(folder, tidy=False) if (folder / LOCK_NAME).is_file() else ""
    if not holders:
        return None
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return holders
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return holders
    except OSError:  # a file system whose locks a read-only descriptor cannot test: trust the details
        return holders
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
