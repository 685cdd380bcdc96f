"""Pseudo-labels from a heatmap: certain background, lesion, and an ``ignore`` band the loss skips.

Arrays are ``(D, H, W)``; ``affine`` maps voxel ``(i, j, k, 1)`` to world mm (the NIfTI affine), so
margins in mm stay right on anisotropic grids. Values: :data:`BACKGROUND` 0, :data:`LESION` 1,
:data:`IGNORE` 2 (the highest label, as nnU-Net v2 requires of its ``ignore`` label).

* A negative volume is background everywhere: its label says no lesion is in it.
* In a positive volume, connected components above ``level`` with at least ``min_mm3`` are lesion;
  smaller ones are ignore. Voxels above the low level (``band`` of the way from the heatmap's median
  to ``level``) and within ``margin_mm`` of a lesion are ignore; the rest is background.
* A reviewed case (the napari Lesion candidates widget's saved annotation and decisions): accepted
  voxels are lesion, rejected candidates background, everything else as computed.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..base.defaults import CONNECTIVITY, PSEUDO_LABEL_BAND, PSEUDO_LABEL_MARGIN_MM
from ..base.errors import DataError
from .candidates import find_candidates
from .metrics import keep_large_components, label_components

BACKGROUND, LESION, IGNORE = 0, 1, 2
LABEL_NAMES = {"background": BACKGROUND, "lesion": LESION, "ignore": IGNORE}


@dataclass(frozen=True)
class PseudoLabelRule:
    """How a heatmap becomes labels. ``band`` in [0, 1]: where the low level sits between the heatmap's
    median (0: every voxel above the median is uncertain) and ``level`` (1: no band); ``margin_mm``:
    the ignore shell around each accepted component; ``min_mm3``: smaller components are ignored."""

    band: float = PSEUDO_LABEL_BAND
    margin_mm: float = PSEUDO_LABEL_MARGIN_MM
    min_mm3: float = 0.0
    connectivity: int = CONNECTIVITY

    def __post_init__(self):
        if not 0.0 <= self.band <= 1.0:
            raise ValueError(f"band must be in [0, 1], got {self.band}")
        if not (0.0 <= self.margin_mm < math.inf and 0.0 <= self.min_mm3 < math.inf):
            raise ValueError(f"margin_mm and min_mm3 must be finite numbers >= 0, got {self.margin_mm} and {self.min_mm3}")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PseudoLabelStats:
    """What one case's labels hold: voxels per value, accepted lesion components, and the levels used."""

    background: int
    lesion: int
    ignore: int
    components: int
    level: float
    low_level: float
    reviewed: bool = False


def pseudo_labels(heatmap: np.ndarray, positive: bool, level: float, affine=None,
                  rule: PseudoLabelRule = PseudoLabelRule(), *, low: float | None = None) -> np.ndarray:
    """The label map ``(D, H, W)`` uint8 of one case (see module doc); ``low``: :func:`low_level`, if known."""
    heat = np.asarray(heatmap, np.float32)
    labels = np.zeros(heat.shape, np.uint8)
    if not positive:
        return labels
    affine = np.eye(4) if affine is None else np.asarray(affine, float)
    low = low_level(heat, level, rule.band) if low is None else low
    above = heat > level
    lesion = keep_large_components(above, rule.min_mm3, affine, rule.connectivity)
    uncertain = (heat > low) | (above & ~lesion)
    if rule.margin_mm > 0 and lesion.any():
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        uncertain |= ndimage.distance_transform_edt(~lesion, sampling=spacing) <= rule.margin_mm
    labels[uncertain] = IGNORE
    labels[lesion] = LESION
    return labels


def low_level(heatmap: np.ndarray, level: float, band: float) -> float:
    """The level below which a positive volume's voxels are certain background."""
    median = float(np.median(heatmap))
    return median + band * (float(level) - median) if level > median else float(level)


def label_stats(labels: np.ndarray, level: float, low: float, rule: PseudoLabelRule, *,
                reviewed: bool = False) -> PseudoLabelStats:
    counts = np.bincount(labels.reshape(-1), minlength=3)
    _, components = label_components(labels == LESION, rule.connectivity)
    return PseudoLabelStats(int(counts[BACKGROUND]), int(counts[LESION]), int(counts[IGNORE]), int(components),
                            float(level), float(low), reviewed)


def read_decisions(path: str | Path) -> list[dict]:
    """The rows of a ``<name>_decisions.csv`` the Lesion candidates widget saved (``level``,
    ``candidate``, ``decision``, ``voxels``, ...)."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise DataError(path, f"cannot read the annotator's decisions ({exc})") from exc
    for n, row in enumerate(rows, start=2):
        if row.get("decision") not in ("accept", "reject", "merge") or not row.get("candidate", "").isdigit():
            raise DataError(f"{path}, row {n}", "not a decisions table of the Lesion candidates widget")
    return rows


def apply_review(labels: np.ndarray, heatmap: np.ndarray, annotation: np.ndarray, decisions: list[dict], *,
                 where: str | Path = "annotation", connectivity: int = CONNECTIVITY) -> np.ndarray:
    """``labels`` with an annotator's review laid over it: voxels of ``annotation`` > 0 become lesion, each
    rejected candidate's voxels background (found again on ``heatmap`` at the level it was decided at; its
    size must match the decision's, or the annotation belongs to another heatmap: :class:`DataError`)."""
    out = np.asarray(labels, np.uint8).copy()
    annotation = np.asarray(annotation)
    if annotation.shape != out.shape:
        raise DataError(where, f"annotation shape {annotation.shape} differs from the case's {out.shape}")
    rejected = [row for row in decisions if row["decision"] == "reject"]
    for level in sorted({float(row["level"]) for row in rejected}):
        found = find_candidates(heatmap, level, connectivity=connectivity)
        for row in (r for r in rejected if float(r["level"]) == level):
            cid = int(row["candidate"])
            mask = found.labels == cid
            if row.get("voxels") and int(float(row["voxels"])) != int(mask.sum()):
                raise DataError(where, f"rejected candidate {cid} at level {level:g} has {row['voxels']} voxels in the "
                                       f"decisions but {int(mask.sum())} in this heatmap: the review was made on another heatmap")
            out[mask] = BACKGROUND
    out[annotation > 0] = LESION
    return out
