"""The "has not learnt" verdict on synthetic validation scores (issue 42, item 3)."""

import numpy as np

from tonno_engine.evaluation.intensity import IntensityBaseline
from tonno_engine.evaluation.verdict import (
    CONSTANT_SPREAD,
    MIN_CASES_PER_CLASS,
    VolumeScores,
    learning_verdict,
)


def _labels(n: int) -> np.ndarray:
    return np.array([0, 1] * (n // 2))


def test_constant_logits_say_the_output_does_not_depend_on_the_input():
    labels = _labels(40)
    tied = VolumeScores.of(labels, np.full(40, -2.3125), step=150)
    assert tied.auc == 0.5 and tied.spread == 0.0
    verdict = learning_verdict(tied, tied)
    assert not verdict.learnt and "constant-output" in verdict.codes and "chance" in verdict.codes
    assert "too-few-cases" not in verdict.codes  # 20 of each class
    assert "no longer depends on its input" in verdict.message() and "try:" in verdict.message()
    # nearly constant (bf16 rounding of a dead network): still constant; a real spread is not
    almost = VolumeScores.of(labels, -3.0 + np.random.default_rng(0).uniform(0, 0.01, 40))
    assert almost.spread < CONSTANT_SPREAD and "constant-output" in learning_verdict(almost).codes
    varied = VolumeScores.of(labels, np.random.default_rng(0).normal(0, 1, 40))
    assert "constant-output" not in learning_verdict(varied).codes


def test_the_end_of_a_run_counts_too():
    labels = _labels(40)
    good = VolumeScores.of(labels, labels * 3.0 + np.random.default_rng(1).normal(0, 0.5, 40), step=100)
    dead = VolumeScores.of(labels, np.zeros(40), step=800)
    assert learning_verdict(good).learnt
    verdict = learning_verdict(good, dead)
    assert set(verdict.codes) == {"chance", "constant-output"} and "at the end (step 800)" in verdict.message()


def test_sixteen_volumes_with_random_labels_are_too_few_or_at_chance():
    rng = np.random.default_rng(3)
    for trial in range(20):
        labels = rng.permutation(_labels(16))
        scores = rng.normal(0, 1, 16)
        # the training's 20 % stratified split of 16 volumes: 2 positive and 2 negative validation volumes
        pos, neg = np.flatnonzero(labels == 1)[:2], np.flatnonzero(labels == 0)[:2]
        idx = np.concatenate([pos, neg])
        verdict = learning_verdict(VolumeScores.of(labels[idx], scores[idx]))
        assert not verdict.learnt and "too-few-cases" in verdict.codes, trial
    # the report's case: 2 + 2 that happen to be separated give AUC 1.000 [1.00, 1.00], and the verdict still holds
    separated = VolumeScores.of([1, 1, 0, 0], [0.9, 0.8, 0.1, 0.2])
    assert separated.auc == 1.0 and separated.interval == (1.0, 1.0)
    assert learning_verdict(separated).codes == ("too-few-cases",)
    assert learning_verdict(separated).message().startswith("the classifier's validation is too small to show")
    # all 16 as validation, random scores: too few (8 < 10 of a class), and the interval reaches 0.5
    verdict = learning_verdict(VolumeScores.of(_labels(16), rng.normal(0, 1, 16)))
    assert "too-few-cases" in verdict.codes and MIN_CASES_PER_CLASS > 8


def test_a_clearly_separable_large_set_gets_no_warning():
    rng = np.random.default_rng(0)
    labels = _labels(60)
    scores = labels * 4.0 + rng.normal(0, 1, 60)
    chosen, end = VolumeScores.of(labels, scores, step=300), VolumeScores.of(labels, scores + 0.1, step=400)
    assert chosen.interval[0] > 0.9
    baseline = IntensityBaseline(0.7, 0.4, (0.55, 0.83), (0.25, 0.55))
    verdict = learning_verdict(chosen, end, baseline)
    assert verdict.learnt and verdict.reasons == () and verdict.as_dict() == {"learnt": True, "reasons": []}


def test_below_the_intensity_baseline_is_one_of_the_reasons():
    rng = np.random.default_rng(0)
    labels = _labels(60)
    chosen = VolumeScores.of(labels, labels * 2.5 + rng.normal(0, 1, 60), step=300)
    assert 0.9 < chosen.auc < 1.0 and chosen.interval[0] > 0.5
    baseline = IntensityBaseline(1.0, 0.5, (1.0, 1.0), (0.35, 0.65))
    verdict = learning_verdict(chosen, None, baseline)
    assert verdict.codes == ("below-baseline",)
    assert "below the intensity baseline" in verdict.message() and "--recipe look-alikes" in verdict.message()
    assert verdict.as_dict()["reasons"][0]["code"] == "below-baseline"
