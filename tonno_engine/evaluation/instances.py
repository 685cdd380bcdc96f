"""Lesion-instance metrics in millimetres, with MONAI's maintained implementations (the ``eval`` extra).

Lesions are the connected components of each mask (the same connectivity as the paper's metrics).
Predicted and true lesions are matched one to one by IoU (above ``iou_threshold``; below 0.5 MONAI
solves the assignment with the Munkres algorithm), so one blob over two lesions is one match and one
miss, where the paper's "any overlap" count detects both. Per volume: matched (tp), unmatched
predicted (fp) and unmatched true lesions (fn) and the sum of matched IoUs, which pool into panoptic
quality ``PQ = SQ · RQ`` (``SQ`` mean matched IoU, ``RQ`` the instance F1); and between the whole
predicted and true masks the 95th-percentile Hausdorff distance and the normalised surface Dice at
``tolerance_mm``, both measured with the voxel size of the ground truth's grid.

panoptica is not used: every release pins ``rich<14``, which cannot be installed beside napari 0.9.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np

from ..base.defaults import CONNECTIVITY
from ..base.errors import MissingExtra
from .metrics import label_components

INSTANCE_FIELDS = ("inst_tp", "inst_fp", "inst_fn", "inst_iou_sum", "hd95_mm", "nsd")
INSTANCE_SUMMARY_KEYS = ("inst_precision", "inst_recall", "inst_f1", "pq", "sq", "rq", "hd95_mm", "nsd")
EXTRA = "instance metrics need the eval extra: pip install 'napari-tonno[eval]' (MONAI)"


@dataclass
class InstanceMetrics:
    """One volume. ``hd95_mm``/``nsd`` are NaN unless both masks hold a voxel (NSD is 1 when both are empty)."""

    inst_tp: int
    inst_fp: int
    inst_fn: int
    inst_iou_sum: float
    hd95_mm: float
    nsd: float

    def as_dict(self) -> dict:
        return asdict(self)


def monai_metrics():
    try:
        import monai.metrics as mm
    except ImportError as exc:
        raise MissingExtra(EXTRA) from exc
    return mm


def instance_metrics(pred: np.ndarray, gt: np.ndarray, spacing, *, iou_threshold: float = 0.5,
                     tolerance_mm: float = 2.0, connectivity: int = CONNECTIVITY) -> InstanceMetrics:
    """Matched lesions and boundary distances of a binary ``pred`` against a binary ``gt`` (both ``(D, H, W)``);
    ``spacing``: mm per array axis."""
    import torch

    mm = monai_metrics()
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"IoU threshold must be in (0, 1], got {iou_threshold}")
    pred_lab, _ = label_components(pred, connectivity)
    gt_lab, _ = label_components(gt, connectivity)
    tp, fp, fn, iou_sum = mm.compute_panoptic_quality(torch.from_numpy(pred_lab.astype(np.int64)),
                                                      torch.from_numpy(gt_lab.astype(np.int64)),
                                                      match_iou_threshold=iou_threshold,
                                                      output_confusion_matrix=True).tolist()
    spacing = [float(s) for s in spacing]
    hd95, nsd = float("nan"), float("nan")
    if pred.any() and gt.any():
        y_pred, y = (torch.from_numpy(m)[None, None] for m in (pred, gt))  # (B=1, C=1, D, H, W)
        with warnings.catch_warnings():  # MONAI 1.5+ warns about an argument its own surface Dice passes
            warnings.filterwarnings("ignore", message=".*always_return_as_numpy", category=FutureWarning)
            hd95 = float(mm.compute_hausdorff_distance(y_pred, y, include_background=True, percentile=95,
                                                       spacing=spacing).item())
            nsd = float(mm.compute_surface_dice(y_pred, y, [tolerance_mm], include_background=True,
                                                spacing=spacing).item())
    else:  # a surface on one side only scores 0; none on either side is a perfect match
        nsd = 0.0 if pred.any() or gt.any() else 1.0
    return InstanceMetrics(int(tp), int(fp), int(fn), float(iou_sum), hd95, nsd)


def summarize_instances(cases: list[InstanceMetrics]) -> dict[str, float]:
    """Pooled instance precision/recall/F1 (= RQ), SQ, PQ; mean HD95 and NSD over the volumes that have them."""
    tp, fp, fn = (sum(getattr(c, k) for c in cases) for k in ("inst_tp", "inst_fp", "inst_fn"))
    iou = sum(c.inst_iou_sum for c in cases)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    rq = tp / (tp + 0.5 * fp + 0.5 * fn) if tp + fp + fn else 1.0
    sq = iou / tp if tp else 0.0
    finite = lambda key: [getattr(c, key) for c in cases if np.isfinite(getattr(c, key))]  # noqa: E731
    return {"inst_precision": precision, "inst_recall": recall, "inst_f1": rq, "pq": sq * rq, "sq": sq, "rq": rq,
            "hd95_mm": float(np.mean(finite("hd95_mm"))) if finite("hd95_mm") else float("nan"),
            "nsd": float(np.mean(finite("nsd"))) if finite("nsd") else float("nan")}
