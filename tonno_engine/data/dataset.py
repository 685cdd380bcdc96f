"""Data sets of weakly labelled volumes.

A data set is a CSV with the columns ``case,label,image[,mask]`` (paths relative to the CSV are
allowed; an image or mask is any format :func:`~tonno_engine.data.images.load_image` reads, a DICOM
series as its folder or ``folder#SeriesInstanceUID``; ``label`` is 0 or 1; ``mask`` is an optional
ground-truth lesion mask used only for evaluation), or a folder that holds such a CSV named
``labels.csv`` (what ``tonno synth`` writes).
An optional ``dataset.json`` beside the CSV may name the intensity mode (``"intensity"``).
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..base.errors import DataError
from ..base.hashing import update_hash
from .images import image_exists, input_files

REQUIRED = ("case", "label", "image")


@dataclass(frozen=True)
class Case:
    case: str
    label: int
    image: Path
    mask: Path | None = None


def resolve_csv(source: str | Path) -> Path:
    """The CSV behind ``source``: the file itself, or ``source/labels.csv`` for a folder."""
    path = Path(source)
    if path.is_dir():
        path = path / "labels.csv"
    if not path.exists():
        raise DataError(path, "data set not found (give a labels CSV or a folder holding labels.csv)")
    return path


def read_cases(source: str | Path, *, check_files: bool = True) -> list[Case]:
    """Parse and validate a data set CSV; raises :class:`DataError` naming the file and row."""
    path = resolve_csv(source)
    # utf-8-sig: spreadsheets save "CSV UTF-8" with a byte-order mark before the first column name
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise DataError(path, f"missing column(s) {', '.join(missing)}; need case,label,image[,mask]")
        cases, seen = [], set()
        for row_no, raw in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
            where = f"{path}, row {row_no}"
            if row["label"] not in ("0", "1"):
                raise DataError(where, f"label must be 0 or 1, got {row['label']!r}")
            if not row["case"]:
                raise DataError(where, "empty case name")
            if row["case"] in seen:
                raise DataError(where, f"duplicate case {row['case']!r}")
            seen.add(row["case"])
            image = _resolve(path.parent, row["image"])
            mask = _resolve(path.parent, row["mask"]) if row.get("mask") else None
            for kind, file in (("image", image), ("mask", mask)):
                if check_files and file is not None and not image_exists(file):
                    raise DataError(where, f"{kind} file not found: {file}")
            cases.append(Case(row["case"], int(row["label"]), image, mask))
    if not cases:
        raise DataError(path, "no cases")
    return cases


def _resolve(base: Path, entry: str) -> Path:
    """``entry`` relative to the CSV's folder, keeping a ``#SeriesInstanceUID`` suffix as it is."""
    path, mark, uid = entry.partition("#")
    return Path(f"{(base / path).resolve()}{mark}{uid}")


def write_cases_csv(path: str | Path, cases: list[Case]) -> None:
    """``cases`` as a data set CSV (``case,label,image,mask``, absolute paths), written atomically."""
    from ..base.atomic import write_text_atomic

    lines = ["case,label,image,mask"] + [f"{c.case},{c.label},{c.image},{c.mask or ''}" for c in cases]
    write_text_atomic(path, "\n".join(lines) + "\n")


def check_both_classes(cases: list[Case], where) -> None:
    labels = {c.label for c in cases}
    if labels != {0, 1}:
        raise DataError(where, f"training needs both classes, only label {labels.pop()} present")


def read_dataset_meta(source: str | Path) -> dict:
    """``dataset.json`` beside the CSV (``{}`` if absent)."""
    meta = resolve_csv(source).parent / "dataset.json"
    return json.loads(meta.read_text()) if meta.exists() else {}


def dataset_intensity(source: str | Path) -> str | None:
    """The intensity mode ``dataset.json`` recommends (its key was ``preset`` before 0.2), or ``None``."""
    meta = read_dataset_meta(source)
    return meta.get("intensity", meta.get("preset"))


def data_hash(cases: list[Case]) -> str:
    """SHA-256 over every case's name, label and image bytes: identifies the training data."""
    digest = hashlib.sha256()
    for case in sorted(cases, key=lambda c: c.case):
        digest.update(f"{case.case}\0{case.label}\0".encode())
        for file in input_files(case.image):
            update_hash(digest, file)
    return digest.hexdigest()


def split_cases(cases: list[Case], val_fraction: float, seed: int) -> tuple[list[Case], list[Case]]:
    """Stratified split by case: at least one case of each class goes to validation when possible."""
    import random

    rng = random.Random(seed)
    train, val = [], []
    for label in (0, 1):
        group = [c for c in cases if c.label == label]
        rng.shuffle(group)
        k = max(1, round(len(group) * val_fraction)) if val_fraction > 0 and len(group) > 1 else 0
        val += group[:k]
        train += group[k:]
    return train, val
