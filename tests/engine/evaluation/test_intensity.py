"""The intensity baseline and the volume AUC's bootstrap interval."""

import numpy as np
import pytest

from tonno_engine.evaluation.auc import auc_interval, roc_auc
from tonno_engine.evaluation.intensity import intensity_baseline, robust_extremes


def _volumes(finding: float, n: int = 12, seed: int = 0):
    """Half of ``n`` noisy 'brains' on a zero background carry a 3³ finding of contrast ``finding``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        v = np.zeros((32, 32, 32), np.float32)
        v[6:26, 6:26, 6:26] = 1.0 + 0.1 * rng.normal(size=(20, 20, 20))
        v[6:26, 6:26, 6:26] += np.linspace(0, 0.3, 20)[None, None, :]  # a slow bias field
        if i % 2:
            c = rng.integers(10, 20, 3)
            v[c[0]:c[0] + 3, c[1]:c[1] + 3, c[2]:c[2] + 3] += finding
        out.append((i % 2, v))
    return out


@pytest.mark.parametrize("finding, which", [(0.8, "brightest"), (-0.8, "darkest")])
def test_a_bright_or_dark_finding_is_found_by_the_threshold(finding, which):
    cases = _volumes(finding)
    baseline = intensity_baseline([c[0] for c in cases], [robust_extremes(c[1]) for c in cases])
    assert baseline.which == which and baseline.auc == 1.0
    assert baseline.beats(0.7) and not baseline.beats(1.0)
    assert "1.00 [1.00, 1.00]" in baseline.describe()


def test_without_a_finding_the_baseline_is_near_chance():
    cases = _volumes(0.0, n=40, seed=1)
    baseline = intensity_baseline([c[0] for c in cases], [robust_extremes(c[1]) for c in cases])
    assert 0.2 < baseline.bright < 0.8 and 0.2 < baseline.dark < 0.8
    assert baseline.bright_interval[0] < 0.5 < baseline.bright_interval[1]


def test_the_background_does_not_count_as_dark():
    v = np.zeros((16, 16, 16), np.float32)
    v[4:12, 4:12, 4:12] = 1.0 + 0.05 * np.random.default_rng(0).normal(size=(8, 8, 8))
    high, low = robust_extremes(v)
    assert -10 < low < 0 < high < 10  # the zeros outside the Otsu foreground are not the darkest tissue
    assert robust_extremes(np.ones((4, 4, 4))) == (0.0, 0.0)


def test_auc_interval_contains_the_auc_and_narrows_with_more_volumes():
    rng = np.random.default_rng(0)

    def width(n):
        labels = np.arange(n) % 2
        scores = labels + rng.normal(0, 1.0, n)
        lo, hi = auc_interval(labels, scores, seed=1)
        assert lo <= roc_auc(labels, scores) <= hi
        return hi - lo

    assert width(200) < width(16) / 2
    assert all(np.isnan(auc_interval([1, 0, 0], [0.9, 0.1, 0.2])))  # one positive: no interval
