"""SHA-256 of files, read block by block (checkpoints, input images, weights)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def update_hash(digest, path: str | Path):
    """Feed a file's bytes into ``digest`` block by block; returns ``digest``."""
    update_hashes((digest,), path)
    return digest


def update_hashes(digests, path: str | Path) -> None:
    """Feed a file's bytes into every digest of ``digests``, reading the file once."""
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            for digest in digests:
                digest.update(block)


def file_sha256(path: str | Path) -> str:
    return update_hash(hashlib.sha256(), path).hexdigest()
