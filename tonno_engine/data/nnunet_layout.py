"""The layout of an nnU-Net v2 raw data set as tonno exports it (``imagesTr``, ``labelsTr``, ``imagesTs``,
``dataset.json``, MONAI's ``datalist.json`` and tonno's ``tonno_export.json``), shared by the export and
the second-stage training that reads it."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..base.hashing import update_hash

FILE_ENDING = ".nii.gz"
EXPORT_RECORD = "tonno_export.json"
DATALIST = "datalist.json"


def image_name(case: str, channel: int = 0) -> str:
    """An image's file name: nnU-Net's ``{case}_{channel:04d}`` (channel 0: the one image, or a case's first of
    several)."""
    return f"{case}_{channel:04d}{FILE_ENDING}"


def labels_sha256(folder: str | Path) -> str:
    """SHA-256 over every ``labelsTr`` file's name and bytes: identifies the labels a segmenter learnt from."""
    digest = hashlib.sha256()
    for path in sorted((Path(folder) / "labelsTr").glob(f"*{FILE_ENDING}")):
        digest.update(path.name.encode() + b"\0")
        update_hash(digest, path)
    return digest.hexdigest()
