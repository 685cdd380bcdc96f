"""Lesion candidates of a heatmap: the connected components above a level, measured in millimetres.

What the napari Lesion candidates widget lists and an annotator accepts or rejects. Arrays are
``(D, H, W)``; ``affine`` maps voxel ``(i, j, k, 1)`` to world mm (the NIfTI affine). Also: a
percentile level of a heatmap (calibrated levels: :mod:`.thresholds_file`), robust display limits, and the
decisions table.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from ..base.defaults import CONNECTIVITY
from ..base.events import Progress
from .metrics import label_components, voxel_volume_mm3

CANDIDATE_FIELDS = ("id", "voxels", "volume_mm3", "peak", "mean", "centroid_x_mm", "centroid_y_mm", "centroid_z_mm")
DECISION_FIELDS = ("level", "candidate", "decision", "annotation_label", "voxels", "volume_mm3", "peak", "centroid_x_mm",
                   "centroid_y_mm", "centroid_z_mm")


@dataclass(frozen=True)
class Candidate:
    """One component: ``id`` (its value in the label array), size, heatmap peak and mean, and its
    centroid as a voxel index ``(3,)`` and in world mm ``(3,)``."""

    id: int
    voxels: int
    volume_mm3: float
    peak: float
    mean: float
    centroid_voxel: tuple[float, float, float]
    centroid_mm: tuple[float, float, float]

    def row(self) -> dict:
        x, y, z = self.centroid_mm
        return {"id": self.id, "voxels": self.voxels, "volume_mm3": self.volume_mm3, "peak": self.peak,
                "mean": self.mean, "centroid_x_mm": x, "centroid_y_mm": y, "centroid_z_mm": z}


@dataclass
class CandidateSet:
    """The final event of :func:`candidates_iter`: the label array ``(D, H, W)`` int32 (0 = background,
    ``k`` = candidate ``k``), the candidates by decreasing peak, and the level used."""

    labels: np.ndarray
    candidates: list[Candidate]
    level: float

    def by_id(self, cid: int) -> Candidate:
        return next(c for c in self.candidates if c.id == cid)


def candidates_iter(heatmap: np.ndarray, level: float, affine=None, *, connectivity: int = CONNECTIVITY,
                    min_voxels: int = 1) -> Iterator[Progress | CandidateSet]:
    """Components of ``heatmap > level`` with at least ``min_voxels`` voxels; yields progress, then a
    :class:`CandidateSet` whose ids run 1…n by decreasing peak."""
    heat = np.asarray(heatmap, dtype=np.float32)
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    yield Progress("candidates", 0, 3, "steps", detail="labelling")
    labels, count = label_components(heat > level, connectivity)
    yield Progress("candidates", 1, 3, "steps", detail=f"measuring {count} components")
    ids = np.arange(1, count + 1)
    if count:
        sizes = ndimage.sum_labels(np.ones_like(heat, dtype=np.float32), labels, ids).astype(np.int64)
        peaks = ndimage.maximum(heat, labels, ids)
        means = ndimage.mean(heat, labels, ids)
        centres = np.asarray(ndimage.center_of_mass(np.ones_like(heat, dtype=np.float32), labels, ids), dtype=np.float64)
    else:
        sizes = peaks = means = np.zeros(0)
        centres = np.zeros((0, 3))
    yield Progress("candidates", 2, 3, "steps", detail="ordering")
    keep = [k for k in np.argsort(-np.asarray(peaks), kind="stable") if sizes[k] >= min_voxels]
    # renumber: candidate ids 1…n by decreasing peak; dropped components become background
    lookup = np.zeros(count + 1, dtype=np.int32)
    lookup[ids[keep]] = np.arange(1, len(keep) + 1, dtype=np.int32)
    labels = lookup[labels]
    mm3 = voxel_volume_mm3(affine)
    world = (affine @ np.c_[centres, np.ones(len(centres))].T).T[:, :3] if count else np.zeros((0, 3))
    found = [Candidate(n + 1, int(sizes[k]), float(sizes[k] * mm3), float(peaks[k]), float(means[k]),
                       tuple(float(v) for v in centres[k]), tuple(float(v) for v in world[k]))  # type: ignore[arg-type]
             for n, k in enumerate(keep)]
    yield Progress("candidates", 3, 3, "steps", detail=f"{len(found)} candidates")
    yield CandidateSet(labels, found, float(level))


def find_candidates(heatmap: np.ndarray, level: float, affine=None, *, connectivity: int = CONNECTIVITY,
                    min_voxels: int = 1) -> CandidateSet:
    """:func:`candidates_iter` run to the end."""
    return next(e for e in candidates_iter(heatmap, level, affine, connectivity=connectivity, min_voxels=min_voxels)
                if isinstance(e, CandidateSet))


def percentile_level(heatmap: np.ndarray, percentile: float, *, max_samples: int = 2_000_000) -> float:
    """The ``percentile`` of the heatmap's values (from an even subsample of at most ``max_samples``)."""
    flat = np.asarray(heatmap).reshape(-1)
    step = max(1, flat.size // max_samples)
    return float(np.percentile(flat[::step], percentile))


def display_limits(heatmap: np.ndarray, low: float = 95.0, high: float = 99.95) -> tuple[float, float]:
    """Robust contrast limits ``(p_low, p_high)`` for an overlay: everything below the ``low``
    percentile (most of the volume) is shown transparent; one hot voxel does not set the top."""
    lo, hi = percentile_level(heatmap, low), percentile_level(heatmap, high)
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def decisions_csv(decisions: list[dict]) -> str:
    """The annotator's decisions, one row per candidate decided (``DECISION_FIELDS``)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=DECISION_FIELDS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in decisions:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def decision_row(candidate: Candidate, decision: str, annotation_label: int, level: float) -> dict:
    """One row of :func:`decisions_csv`: candidate ``id`` among those above ``level``, what was decided."""
    return {"level": level, "candidate": candidate.id, "decision": decision, "annotation_label": annotation_label,
            **{k: v for k, v in asdict(candidate).items() if k in ("voxels", "volume_mm3", "peak")},
            **{k: v for k, v in candidate.row().items() if k.startswith("centroid")}}
