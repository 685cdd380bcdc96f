"""Bootstrap intervals for Table 2: the same statistics as summarize(), paired differences, narrowing with n."""

from __future__ import annotations

import numpy as np
import pytest

from tonno_engine.evaluation.bootstrap import METRICS, bootstrap_intervals, case_arrays, metric_values
from tonno_engine.evaluation.metrics import CaseMetrics, summarize


def _cases(seed: int, n: int = 16, skill: float = 0.7) -> list[CaseMetrics]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        n_gt = int(rng.integers(0, 4)) if k % 2 else 0
        detected = int(rng.binomial(n_gt, skill))
        n_pred = detected + int(rng.integers(0, 3))
        out.append(CaseMetrics(f"c{k}", n_pred, detected, n_gt, detected, float(rng.uniform(0.2, 0.8)) if n_gt else float("nan"),
                               float("nan"), bool(n_pred), bool(n_gt)))
    return out


def _rows(cases):
    return [{**c.as_dict(), "status": "ok"} for c in cases]


def test_point_statistics_equal_summarize():
    cases = _cases(0)
    values = metric_values(case_arrays(_rows(cases)), np.arange(len(cases)))
    expected = summarize(cases)
    for metric in METRICS:
        assert float(values[metric]) == pytest.approx(expected[metric]), metric


def test_intervals_hold_the_estimate_and_pair_the_methods():
    cases = _cases(1)
    better = [CaseMetrics(c.case, c.n_gt, c.n_gt, c.n_gt, c.n_gt, 0.9 if c.n_gt else float("nan"), c.max_iou,
                          bool(c.n_gt), c.positive) for c in cases]  # perfect on every case
    methods = {"layercam-l2": case_arrays(_rows(cases)), "same": case_arrays(_rows(cases)),
               "tonno": case_arrays(_rows(better))}
    out = bootstrap_intervals(methods, "layercam-l2", resamples=500)
    point = summarize(cases)
    for metric in METRICS:
        lo, hi = out["layercam-l2"][metric]
        assert lo <= point[metric] <= hi
        assert out["same"]["diff"][metric] == (0.0, 0.0)  # the same cases in every resample: paired
    assert out["tonno"]["diff"]["f1"][0] > 0 and out["tonno"]["diff"]["dice"][0] > 0
    assert "diff" not in out["layercam-l2"]


def test_more_cases_narrow_the_interval():
    small = bootstrap_intervals({"m": case_arrays(_rows(_cases(2, n=12)))}, resamples=500)["m"]["f1"]
    large = bootstrap_intervals({"m": case_arrays(_rows(_cases(2, n=192)))}, resamples=500)["m"]["f1"]
    assert (large[1] - large[0]) < 0.5 * (small[1] - small[0])


def test_resamples_keep_the_class_balance_so_dice_is_always_defined():
    cases = _cases(3, n=12)  # every other case positive: unstratified, 1 resample in ~4000 has no lesion
    out = bootstrap_intervals({"m": case_arrays(_rows(cases))}, resamples=5000)["m"]
    assert all(np.isfinite(out[metric]).all() for metric in METRICS)


def test_a_single_case_without_lesions_is_in_every_resample_and_one_with_lesions_gives_no_interval():
    # six volumes with lesions, all found; one without, where the method finds 5 components that are not there
    cases = [CaseMetrics(f"p{k}", 1, 1, 1, 1, 0.8, 0.7, True, True) for k in range(6)]
    cases.append(CaseMetrics("n", 5, 0, 0, 0, float("nan"), float("nan"), True, False))
    arrays = case_arrays(_rows(cases))
    out = bootstrap_intervals({"m": arrays}, resamples=500)["m"]
    point = summarize(cases)
    for metric in METRICS:  # left out, the false components would make precision [1, 1] beside a point of 0.55
        lo, hi = out[metric]
        assert lo <= point[metric] + 1e-9 and point[metric] - 1e-9 <= hi, metric
    from tonno_engine.evaluation.bootstrap import MIN_CASES, intervals_shortfall

    assert intervals_shortfall(arrays["positive"] > 0) == ""
    one = case_arrays(_rows(cases[5:]))  # one volume with lesions: nothing to resample
    assert intervals_shortfall(one["positive"] > 0) == (f"intervals need at least {MIN_CASES} test cases with "
                                                        "lesions; here 1: not computed")
    assert all(np.isnan(bootstrap_intervals({"m": one}, resamples=100)["m"][m]).all() for m in METRICS)
