"""Binarisation and the evaluation protocol of docs/evaluation.md.

Lesions are 3D connected components (scipy.ndimage.label; connectivity 6, 18 or 26, default 26).
A ground-truth lesion is detected if any predicted component overlaps it; a predicted component
is a true positive if it overlaps any ground-truth lesion. Precision and recall are pooled over a
split (sums of counts), Dice is the mean over positive volumes, MaxIoU (for box-only ground truth)
is the mean over ground-truth boxes of the best IoU with a predicted component's box, and balanced
accuracy scores the volume-level decision "binary map is not empty" against "ground truth is not
empty" (or the volume's label).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from ..base.defaults import CONNECTIVITY

THRESHOLDS = ("fixed", "otsu", "percentile", "calibrated")
_CONNECTIVITY = {6: 1, 18: 2, 26: 3}


@dataclass(frozen=True)
class Threshold:
    """``kind`` with its ``value``: fixed → the value itself; percentile → the value-th percentile
    of each heatmap; otsu → Otsu's threshold of each heatmap (value unused); calibrated → a fixed
    value chosen on a validation split by :func:`calibrate_threshold`.

    ``relative`` (0 ≤ f < 1, default 0: off) raises each heatmap's level to ``f × its maximum`` where that is higher:
    ``max(level, f · max h)``. Heatmaps in logit units scale with their volume's score, so one very confident volume
    can put a whole region above a fixed level; its share of the volume's own maximum does not grow with it.
    """

    kind: str = "otsu"
    value: float | None = None
    relative: float = 0.0

    def __post_init__(self):
        if self.kind not in THRESHOLDS:
            raise ValueError(f"unknown threshold {self.kind!r}; valid: {', '.join(THRESHOLDS)}")
        if self.kind in ("fixed", "calibrated", "percentile") and self.value is None:
            raise ValueError(f"threshold {self.kind!r} needs a value")
        if self.kind == "percentile" and not 0.0 <= float(self.value) <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {self.value}")
        if not 0.0 <= float(self.relative) < 1.0:
            raise ValueError(f"relative must be in [0, 1), got {self.relative}")

    @classmethod
    def parse(cls, text: str) -> Threshold:
        """``otsu``, ``fixed:0.5``, ``percentile:99.5`` (or a bare number for fixed), each optionally followed by
        ``,relative:0.3``."""
        head, _, rest = text.partition(",")
        try:
            relative = 0.0
            if rest:
                key, _, share = rest.partition(":")
                if key.strip() != "relative" or not share:
                    raise ValueError("after the comma, give relative:<share of the maximum>")
                relative = float(share)
            kind, _, value = head.partition(":")
            kind, value = ("fixed", kind) if not value and kind not in THRESHOLDS else (kind, value)
            number = float(value) if value else None
            if number is not None and not math.isfinite(number):
                raise ValueError(f"{kind} needs a finite number, got {value}")
            return cls(kind, number, relative)
        except ValueError as exc:
            raise ValueError(f"bad threshold {text!r}: {exc}") from exc

    @classmethod
    def of_record(cls, record) -> Threshold:
        """A calibrated threshold from its ``thresholds.json`` entry: ``{"level": t, "relative": f}``, or a bare
        level (files written before tonno 0.4)."""
        if isinstance(record, dict):
            return cls("calibrated", float(record["level"]), float(record.get("relative", 0.0)))
        return cls("calibrated", float(record))

    def record(self) -> dict:
        """The ``thresholds.json`` entry of a fixed or calibrated threshold (:meth:`of_record` reads it)."""
        if self.kind not in ("fixed", "calibrated"):
            raise ValueError(f"a {self.kind} threshold has no level of its own to record")
        return {"level": float(self.value), "relative": float(self.relative)}

    def level(self, heatmap: np.ndarray) -> float:
        """The threshold for ``heatmap``: voxels strictly above it are foreground."""
        if self.kind == "otsu":
            base = float(threshold_otsu(heatmap)) if np.ptp(heatmap) > 0 else float(heatmap.max())
        elif self.kind == "percentile":
            base = float(np.percentile(heatmap, self.value))
        else:
            base = float(self.value)
        return max(base, self.relative * float(np.max(heatmap))) if self.relative else base

    def formula(self) -> str:
        """``1.23``, or ``max(1.23, 0.3 × the heatmap's maximum)``: the level in words."""
        base = self.kind if self.value is None else f"{self.value:.4g}"
        if self.kind == "percentile":
            base = f"its {self.value:g}th percentile"
        return f"max({base}, {self.relative:g} × the heatmap's maximum)" if self.relative else base

    def describe(self) -> str:
        """``> 1.23``, or ``> max(1.23, 0.3 × the heatmap's maximum)``, for tables and logs."""
        return f"> {self.formula()}"

    def __str__(self) -> str:
        text = self.kind if self.value is None else f"{self.kind}:{self.value:.6g}"
        return f"{text},relative:{self.relative:g}" if self.relative else text


def binarize(heatmap: np.ndarray, threshold: Threshold) -> np.ndarray:
    """``heatmap > threshold.level(heatmap)`` as a bool array of the same shape."""
    return np.asarray(heatmap) > threshold.level(np.asarray(heatmap))


def label_components(mask: np.ndarray, connectivity: int = CONNECTIVITY) -> tuple[np.ndarray, int]:
    """Connected components of a 3D bool mask: ``(labels int32, count)``."""
    if connectivity not in _CONNECTIVITY:
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity}")
    structure = ndimage.generate_binary_structure(3, _CONNECTIVITY[connectivity])
    return ndimage.label(np.asarray(mask, bool), structure=structure)


@dataclass
class CaseMetrics:
    """Counts and scores of one volume; pooled by :func:`summarize`."""

    case: str
    n_pred: int  # predicted components
    tp_pred: int  # predicted components overlapping a lesion
    n_gt: int  # ground-truth lesions
    detected: int  # lesions overlapped by a prediction
    dice: float  # nan for a volume without lesions
    max_iou: float  # nan for a volume without lesions
    predicted_positive: bool
    positive: bool

    def as_dict(self) -> dict:
        return asdict(self)


def _boxes(labels: np.ndarray, count: int) -> list[tuple[slice, ...]]:
    return [b for b in ndimage.find_objects(labels, max_label=count) if b is not None]


def _box_iou(a: tuple[slice, ...], b: tuple[slice, ...]) -> float:
    inter = np.prod([max(0, min(x.stop, y.stop) - max(x.start, y.start)) for x, y in zip(a, b)])
    vol = lambda s: np.prod([x.stop - x.start for x in s])  # noqa: E731
    return float(inter / (vol(a) + vol(b) - inter))


def case_metrics(pred: np.ndarray, gt: np.ndarray, *, case: str = "", connectivity: int = CONNECTIVITY,
                 label: int | None = None) -> CaseMetrics:
    """Lesion-wise counts, Dice and MaxIoU of one binary prediction against one binary mask.

    ``label`` (0/1) is the volume's label for balanced accuracy; default: whether ``gt`` has a lesion.
    """
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    pred_lab, n_pred = label_components(pred, connectivity)
    gt_lab, n_gt = label_components(gt, connectivity)
    tp_pred = len(np.unique(pred_lab[gt & (pred_lab > 0)]))
    detected = len(np.unique(gt_lab[pred & (gt_lab > 0)]))
    if n_gt:
        dice = 2.0 * np.logical_and(pred, gt).sum() / (pred.sum() + gt.sum())
        pboxes = _boxes(pred_lab, n_pred)
        max_iou = float(np.mean([max((_box_iou(g, p) for p in pboxes), default=0.0)
                                 for g in _boxes(gt_lab, n_gt)]))
    else:
        dice = max_iou = float("nan")
    positive = bool(n_gt) if label is None else bool(label)
    return CaseMetrics(case, int(n_pred), int(tp_pred), int(n_gt), int(detected), float(dice), max_iou,
                       bool(n_pred), positive)


def summarize(cases: list[CaseMetrics]) -> dict[str, float]:
    """Pooled precision, recall, F1; mean Dice and MaxIoU over positive volumes; balanced accuracy.

    Conventions for empty sets: precision is 1 when nothing is predicted, recall is 1 when there
    is no lesion (nothing to miss); a class absent from the split is left out of balanced accuracy.
    """
    n_pred = sum(c.n_pred for c in cases)
    n_gt = sum(c.n_gt for c in cases)
    precision = sum(c.tp_pred for c in cases) / n_pred if n_pred else 1.0
    recall = sum(c.detected for c in cases) / n_gt if n_gt else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    pos = [c for c in cases if c.n_gt]
    rates = []
    for cls in (True, False):
        group = [c for c in cases if c.positive == cls]
        if group:
            rates.append(np.mean([c.predicted_positive == cls for c in group]))
    return {
        "precision": precision, "recall": recall, "f1": f1,
        "dice": float(np.mean([c.dice for c in pos])) if pos else float("nan"),
        "max_iou": float(np.mean([c.max_iou for c in pos])) if pos else float("nan"),
        "balanced_accuracy": float(np.mean(rates)) if rates else float("nan"),
        "cases": len(cases), "lesions": n_gt, "predicted_components": n_pred,
    }


#: how many quantile levels :func:`calibrate_threshold` tries by default
CALIBRATION_CANDIDATES = 48
#: the candidates' span: quantiles ``1 - 10^-k`` for k from the first to the second
CALIBRATION_EXPONENTS = (0.3, 4.0)
#: the shares of each heatmap's maximum :func:`calibrate_threshold` tries (``Threshold.relative``; 0: none)
CALIBRATION_RELATIVES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
#: how :func:`calibrate_threshold` picks its level, recorded beside calibrated results (``benchmark.json``)
CALIBRATION_RULE = (f"lesion F1 averaged with the two neighbouring candidate levels, "
                    f"{CALIBRATION_CANDIDATES} quantile candidates, each heatmap's level raised to "
                    f"f x its maximum for the f of {', '.join(f'{f:g}' for f in CALIBRATION_RELATIVES)} "
                    f"with the best such F1 (ties to the smaller f)")


def calibrate_threshold(heatmaps: list[np.ndarray], truths: list[np.ndarray], *, connectivity: int = CONNECTIVITY,
                        candidates: int = CALIBRATION_CANDIDATES, labels: list[int] | None = None,
                        relatives=CALIBRATION_RELATIVES) -> tuple[Threshold, float]:
    """The threshold that maximises pooled lesion F1 on a validation split, read robustly.

    Level candidates are quantiles ``1 - 10^-k`` (k in :data:`CALIBRATION_EXPONENTS`) of all validation voxels
    pooled, dense near the top because lesions are a small fraction of a volume. For each share ``f`` of
    ``relatives`` every heatmap is binarised at ``max(level, f · its maximum)`` (:class:`Threshold` ``relative``),
    and the chosen level maximises the F1 averaged with its two neighbours (:func:`robust_argmax`), not its own F1
    alone: with a dozen validation volumes F1 is often maximal over a range of levels, and that range's lowest edge
    (or a lone spike) is where a small shift between validation and test maps costs most. The ``f`` whose chosen
    level has the best such mean wins, ties to the smaller (0 first: a plain fixed level unless a share of the
    maximum does better). Returns ``(Threshold("calibrated", level, relative=f), F1 at that choice)``.
    """
    if not heatmaps or len(heatmaps) != len(truths):
        raise ValueError("calibration needs at least one heatmap and one ground truth per heatmap")
    levels = calibration_levels(heatmaps, candidates)
    tops = [float(np.max(h)) for h in heatmaps]
    seen: dict[tuple[int, float], CaseMetrics] = {}  # one binarisation per (case, effective level): shares overlap

    def metrics_at(i: int, level: float) -> CaseMetrics:
        if (i, level) not in seen:
            seen[i, level] = case_metrics(heatmaps[i] > level, truths[i], connectivity=connectivity,
                                          label=None if labels is None else labels[i])
        return seen[i, level]

    best = None  # (neighbour-mean F1, Threshold, F1)
    for share in relatives:
        f1s = [summarize([metrics_at(i, max(float(level), share * top)) for i, top in enumerate(tops)])["f1"]
               for level in levels]
        k = robust_argmax(f1s)
        score = float(neighbour_mean(f1s)[k])
        if best is None or score > best[0]:
            best = (score, Threshold("calibrated", float(levels[k]), float(share)), float(f1s[k]))
    return best[1], best[2]


def calibration_levels(heatmaps: list[np.ndarray], candidates: int = CALIBRATION_CANDIDATES) -> np.ndarray:
    """The candidate levels of :func:`calibrate_threshold`, ascending and distinct: quantiles ``1 - 10^-k`` (k across
    :data:`CALIBRATION_EXPONENTS`, ``candidates`` of them) of all voxels of ``heatmaps`` pooled."""
    pooled = np.concatenate([np.asarray(h, np.float32).ravel() for h in heatmaps])
    first, last = CALIBRATION_EXPONENTS
    return np.unique(np.quantile(pooled, 1.0 - np.logspace(-first, -last, candidates)))


def neighbour_mean(scores) -> np.ndarray:
    """Each score averaged with its two neighbours (the ends repeated), the same length as ``scores``."""
    return np.convolve(np.pad(np.asarray(scores, float), 1, mode="edge"), np.ones(3) / 3, mode="valid")


def robust_argmax(scores) -> int:
    """Index of the largest :func:`neighbour_mean`, ties to the lowest index: the middle of a plateau or of a
    broad peak rather than its edge or a one-candidate spike."""
    return int(np.argmax(neighbour_mean(scores)))


@dataclass
class LesionRecord:
    """One ground-truth lesion: its size in voxels and mm³, its centroid in scanner mm, how far that
    lies from the volume's centre (mm, and as a share of the half-diagonal), and whether a
    predicted component overlaps it."""

    case: str
    lesion: int
    voxels: int
    volume_mm3: float
    centroid_mm: tuple[float, float, float]
    centre_distance_mm: float
    relative_radius: float
    detected: bool

    def as_dict(self) -> dict:
        d = asdict(self)
        d["centroid_mm"] = " ".join(f"{c:.1f}" for c in self.centroid_mm)
        return d


def keep_large_components(mask: np.ndarray, min_mm3: float, affine, connectivity: int = CONNECTIVITY) -> np.ndarray:
    """``mask`` ``(D, H, W)`` without its connected components smaller than ``min_mm3`` (the voxel volume from
    ``affine``, the NIfTI voxel-to-mm matrix); ``min_mm3`` 0 keeps every component."""
    mask = np.asarray(mask, bool)
    if min_mm3 <= 0:
        return mask
    components, count = label_components(mask, connectivity)
    sizes = ndimage.sum_labels(np.ones(mask.shape, np.float32), components, np.arange(1, count + 1))
    keep = np.zeros(count + 1, bool)
    keep[1:] = sizes * voxel_volume_mm3(affine) >= min_mm3
    return keep[components]


def voxel_volume_mm3(affine) -> float:
    """The volume of one voxel in mm³: ``|det|`` of the affine's ``3 × 3`` part."""
    return float(abs(np.linalg.det(np.asarray(affine, float)[:3, :3])))


def lesion_records(pred: np.ndarray, gt: np.ndarray, affine, *, case: str = "",
                   connectivity: int = CONNECTIVITY) -> list[LesionRecord]:
    """One :class:`LesionRecord` per connected component of ``gt`` (``(D, H, W)`` bool, voxel ``i`` at
    ``affine @ i`` mm), detected when ``pred`` overlaps it (the rule of :func:`case_metrics`)."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    affine = np.asarray(affine, float)
    gt_lab, n_gt = label_components(gt, connectivity)
    if not n_gt:
        return []
    ids = np.arange(1, n_gt + 1)
    counts = ndimage.sum_labels(np.ones_like(gt_lab), gt_lab, ids)
    hits = ndimage.maximum(pred, gt_lab, ids)
    centroids = ndimage.center_of_mass(np.ones_like(gt_lab), gt_lab, ids)
    centre = (np.asarray(gt.shape, float) - 1) / 2
    half_diagonal = np.linalg.norm(affine[:3, :3] @ centre)
    mm3 = voxel_volume_mm3(affine)
    records = []
    for k, (count, hit, c) in enumerate(zip(counts, hits, centroids), start=1):
        offset = affine[:3, :3] @ (np.asarray(c) - centre)
        world = affine[:3, :3] @ np.asarray(c) + affine[:3, 3]
        distance = float(np.linalg.norm(offset))
        records.append(LesionRecord(case, k, int(count), float(count * mm3), tuple(float(w) for w in world), distance,
                                    distance / half_diagonal if half_diagonal else 0.0, bool(hit)))
    return records
