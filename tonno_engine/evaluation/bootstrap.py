"""Bootstrap 95 % intervals for Table 2: each method's pooled metrics, and its difference to a baseline.

Test cases are resampled with replacement within each class (positive and negative volumes apart:
a stratified bootstrap with ``scipy.stats.bootstrap``, one sample per class, percentile intervals),
so that every resample keeps the test set's class balance and has lesions to score Dice on; every
method is scored on the same resampled cases, so a difference between two methods is a paired
bootstrap. The statistics are those of :func:`~tonno_engine.evaluation.metrics.summarize`: pooled
precision, recall and F1 over the resampled cases' components and lesions, mean Dice over those with
a lesion, balanced accuracy of "the binary map is not empty" against the volume's class.

A class of fewer than :data:`MIN_CASES` test cases cannot vary: the intervals are not computed with fewer
test cases with lesions (:func:`intervals_shortfall` says so, and Table 2 prints it instead of ``[nan, nan]``);
a single test case without lesions is kept in every resample (what resampling a class of one draws).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from ..base.defaults import BOOTSTRAP_RESAMPLES

METRICS = ("precision", "recall", "f1", "dice", "balanced_accuracy")
#: the fewest test cases of a class that a stratified bootstrap resamples (scipy's ``bootstrap`` needs two
#: observations a sample): Table 2's intervals need this many test cases with lesions, the AUC's this many of each class
MIN_CASES = 2
_FIELDS = ("n_pred", "tp_pred", "n_gt", "detected", "dice", "predicted_positive", "positive")


def case_arrays(rows: list[dict]) -> dict[str, np.ndarray]:
    """Per-case columns ``(n,)`` from ``metrics.csv``-style rows of the successful cases."""
    ok = [r for r in rows if r.get("status", "ok") == "ok"]
    out = {}
    for key in _FIELDS:
        values = [r[key] for r in ok]
        if key in ("predicted_positive", "positive"):
            out[key] = np.array([v in (True, "True", "true", 1, "1") for v in values], dtype=float)
        else:
            out[key] = np.array([float(v) if v not in ("", None) else np.nan for v in values], dtype=float)
    return out


def _ratio(num, den, empty):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), empty)


def metric_values(arrays: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric for each row of case indices ``idx`` ``(..., n)``: arrays of shape ``idx.shape[:-1]``."""
    take = {k: v[idx] for k, v in arrays.items()}
    precision = _ratio(take["tp_pred"].sum(-1), take["n_pred"].sum(-1), 1.0)
    recall = _ratio(take["detected"].sum(-1), take["n_gt"].sum(-1), 1.0)
    f1 = _ratio(2 * precision * recall, precision + recall, 0.0)
    has = take["n_gt"] > 0
    dice = _ratio(np.where(has, np.nan_to_num(take["dice"]), 0).sum(-1), has.sum(-1), np.nan)
    pos, hit = take["positive"], take["predicted_positive"]
    tpr = _ratio((pos * hit).sum(-1), pos.sum(-1), np.nan)
    tnr = _ratio(((1 - pos) * (1 - hit)).sum(-1), (1 - pos).sum(-1), np.nan)
    with np.errstate(invalid="ignore"):
        balanced = np.nanmean(np.stack([tpr, tnr]), axis=0)
    return {"precision": precision, "recall": recall, "f1": f1, "dice": dice, "balanced_accuracy": balanced}


def intervals_shortfall(positive) -> str:
    """Why :func:`bootstrap_intervals` cannot be computed over test cases of the volume classes ``positive``
    (``(n,)``, true: the case has lesions), as a note for Table 2 ("intervals need …"); ``""`` when they can."""
    found = int(np.count_nonzero(positive))
    if found >= MIN_CASES:
        return ""
    return f"intervals need at least {MIN_CASES} test cases with lesions; here {found}: not computed"


def bootstrap_intervals(methods: dict[str, dict[str, np.ndarray]], baseline: str | None = None, *,
                        resamples: int = BOOTSTRAP_RESAMPLES, confidence: float = 0.95, seed: int = 0) -> dict[str, dict]:
    """``{label: {metric: (lo, hi), "diff": {metric: (lo, hi)}}}`` over the methods' common test cases.

    Every interval draws the same resamples (one seed), which is what pairs the methods. With fewer than
    :data:`MIN_CASES` test cases with lesions every interval is ``(nan, nan)`` (:func:`intervals_shortfall`).

    ``methods``: :func:`case_arrays` of each method, the same cases in the same order. ``diff`` (the
    method minus ``baseline``) is missing for the baseline itself and when ``baseline`` is ``None``.
    """
    from scipy.stats import DegenerateDataWarning, bootstrap

    n = len(next(iter(methods.values()))["n_gt"])
    if any(len(a["n_gt"]) != n for a in methods.values()):
        raise ValueError("every method must be scored on the same test cases")
    positive = next(iter(methods.values()))["positive"] > 0
    classes = (np.flatnonzero(positive), np.flatnonzero(~positive))
    strata = tuple(s for s in classes if len(s) >= MIN_CASES)
    # a class of one (or none) is not resampled: it is in every resample, as resampling one case would draw it
    fixed = np.concatenate([np.zeros(0, np.intp), *(s for s in classes if len(s) < MIN_CASES)])
    shortfall = intervals_shortfall(positive)

    def resampled(statistic, *idx, axis=-1):
        drawn = np.concatenate(idx, axis=-1).astype(int)
        return statistic(np.concatenate([drawn, np.broadcast_to(fixed, (*drawn.shape[:-1], len(fixed)))], axis=-1))

    def interval(statistic) -> tuple[float, float]:
        if shortfall:
            return (float("nan"), float("nan"))
        with warnings.catch_warnings():  # a constant statistic (a method against itself) is a valid (x, x)
            warnings.simplefilter("ignore", DegenerateDataWarning)
            res = bootstrap(strata, functools.partial(resampled, statistic), vectorized=True, n_resamples=resamples,
                            confidence_level=confidence, method="percentile", random_state=np.random.default_rng(seed))
        return float(res.confidence_interval.low), float(res.confidence_interval.high)

    out: dict[str, dict] = {}
    for label, arrays in methods.items():
        row: dict = {m: interval(lambda idx, a=arrays, m=m: metric_values(a, idx)[m]) for m in METRICS}
        if baseline is not None and label != baseline:
            row["diff"] = {m: interval(lambda idx, a=arrays, b=methods[baseline], m=m:
                                       metric_values(a, idx)[m] - metric_values(b, idx)[m]) for m in METRICS}
        out[label] = row
    return out
