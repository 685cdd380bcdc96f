"""Rank statistics for validation: the volume AUC and its bootstrap interval."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import rankdata

from ..base.defaults import AUC_RESAMPLES
from .bootstrap import MIN_CASES


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve by the Mann–Whitney rank formula (ties count ½); NaN if one class."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    pos, neg = labels.sum(), (~labels).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _auc_of_samples(pos: np.ndarray, neg: np.ndarray, axis: int = -1) -> np.ndarray:
    """AUC of positive against negative scores along ``axis`` (vectorised for the bootstrap; ties ½)."""
    pos, neg = np.moveaxis(pos, axis, -1), np.moveaxis(neg, axis, -1)
    diff = pos[..., :, None] - neg[..., None, :]
    return ((diff > 0) + 0.5 * (diff == 0)).mean(axis=(-2, -1))


def auc_interval(labels, scores, *, resamples: int = AUC_RESAMPLES, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """The ``confidence`` percentile bootstrap interval of :func:`roc_auc`, resampling the positive and the
    negative volumes apart (``scipy.stats.bootstrap``, stratified as Table 2's intervals are); ``(nan, nan)``
    with fewer than :data:`~tonno_engine.evaluation.bootstrap.MIN_CASES` of either class. With 8 validation volumes it
    is wide, which is the point."""
    from scipy.stats import bootstrap

    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) < MIN_CASES or len(neg) < MIN_CASES:
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate resample distribution (every AUC 1.0) warns; its interval is exact
        res = bootstrap((pos, neg), _auc_of_samples, n_resamples=resamples, confidence_level=confidence,
                        method="percentile", vectorized=True,
                        batch=max(1, 10**7 // (len(pos) * len(neg))),  # bounds the resamples' pairwise differences
                        random_state=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    value = roc_auc(labels, scores)
    return float(np.nan_to_num(lo, nan=value)), float(np.nan_to_num(hi, nan=value))
