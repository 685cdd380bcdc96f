"""The trivial baseline beside every AUC: how well a threshold on intensity alone separates the volumes.

A volume scores its largest robust z-score ``(v − median) / IQR`` over its foreground
(:func:`~tonno_engine.data.foreground.foreground_mask`: above Otsu's threshold, holes filled), and,
for dark findings, its smallest. When these separate the classes better than the classifier does, the
network learnt less than a threshold knows (docs/studies/look-alikes.md, issue 24).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.foreground import SAMPLE as _SAMPLE
from ..data.foreground import foreground_mask
from .auc import auc_interval, roc_auc


def robust_extremes(volume, mask: np.ndarray | None = None) -> tuple[float, float]:
    """``(largest, smallest)`` robust z-score of the foreground of ``volume`` ``(D, H, W)`` (``mask``: its
    :func:`~tonno_engine.data.foreground.foreground_mask`, when the caller has it already)."""
    array = np.asarray(volume, dtype=np.float32)
    finite = np.isfinite(array)
    v = array[finite]
    if v.size == 0 or v.min() == v.max():
        return 0.0, 0.0
    mask = foreground_mask(array) if mask is None else mask
    foreground = array[mask] if mask.sum() >= 2 else v
    q1, median, q3 = np.percentile(foreground[:: max(1, foreground.size // _SAMPLE)], (25, 50, 75))
    spread = max(float(q3 - q1), 1e-6 * max(abs(float(median)), 1.0))
    return float((foreground.max() - median) / spread), float((foreground.min() - median) / spread)


@dataclass(frozen=True)
class IntensityBaseline:
    """Volume AUC of the largest (``bright``) and of minus the smallest (``dark``) robust z-score, with
    their 95 % bootstrap intervals; ``auc``: the better of the two (a threshold on one or the other)."""

    bright: float
    dark: float
    bright_interval: tuple[float, float]
    dark_interval: tuple[float, float]

    @property
    def auc(self) -> float:
        finite = [a for a in (self.bright, self.dark) if np.isfinite(a)]
        return float(max(finite)) if finite else float("nan")  # NaN: one class only among the volumes

    @property
    def which(self) -> str:
        return "brightest" if not self.dark > self.bright else "darkest"

    def beats(self, classifier_auc: float) -> bool:
        """Whether the threshold separates the volumes better than a classifier with ``classifier_auc``."""
        return bool(np.isfinite(self.auc) and (not np.isfinite(classifier_auc) or self.auc > classifier_auc))

    def describe(self) -> str:
        lo, hi = self.bright_interval if self.which == "brightest" else self.dark_interval
        interval = f" [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else ""
        return f"{self.auc:.2f}{interval} (its {self.which} voxel)"


def intensity_baseline(labels, extremes, *, seed: int = 0) -> IntensityBaseline:
    """The baseline of volumes with ``labels`` ``(n,)`` and :func:`robust_extremes` ``[(largest, smallest), ...]``."""
    high = np.array([e[0] for e in extremes], dtype=float)
    low = -np.array([e[1] for e in extremes], dtype=float)
    return IntensityBaseline(roc_auc(labels, high), roc_auc(labels, low),
                             auc_interval(labels, high, seed=seed), auc_interval(labels, low, seed=seed))


def findings_baseline(targets, extremes, *, seed: int = 0) -> IntensityBaseline:
    """The baseline of volumes with one label per finding ``targets`` ``(n, K)`` (``nan``: unknown): for one
    finding :func:`intensity_baseline`; for several, the mean over findings of each one's AUCs (each on the
    volumes where it is known; no interval), to set beside the classifier's mean AUC over findings."""
    targets = np.asarray(targets, dtype=float).reshape(len(extremes), -1)
    if targets.shape[1] == 1:
        return intensity_baseline(targets[:, 0].astype(int), extremes, seed=seed)
    each = []
    for k in range(targets.shape[1]):
        known = np.isfinite(targets[:, k])
        each.append(intensity_baseline(targets[known, k].astype(int), [e for e, ok in zip(extremes, known) if ok],
                                       seed=seed))
    def mean(values) -> float:  # of the findings with both classes among these volumes
        finite = [v for v in values if np.isfinite(v)]
        return float(np.mean(finite)) if finite else float("nan")

    nan = (float("nan"), float("nan"))
    return IntensityBaseline(mean([b.bright for b in each]), mean([b.dark for b in each]), nan, nan)
