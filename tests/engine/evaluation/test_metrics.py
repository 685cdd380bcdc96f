"""Evaluation metrics on small cases checked by hand."""

import math

import numpy as np
import pytest

from tonno_engine.evaluation.metrics import (
    Threshold,
    binarize,
    calibrate_threshold,
    case_metrics,
    label_components,
    robust_argmax,
    summarize,
)


def _vol(*boxes, shape=(10, 10, 10)):
    out = np.zeros(shape, bool)
    for b in boxes:
        out[b] = True
    return out


A = np.s_[1:3, 1:3, 1:3]  # 8 voxels
B = np.s_[6:8, 6:8, 6:8]  # 8 voxels


def test_empty_prediction():
    m = case_metrics(_vol(), _vol(A, B))
    assert (m.n_pred, m.tp_pred, m.n_gt, m.detected) == (0, 0, 2, 0)
    assert m.dice == 0.0 and m.max_iou == 0.0 and not m.predicted_positive and m.positive
    s = summarize([m])
    assert s["precision"] == 1.0 and s["recall"] == 0.0 and s["f1"] == 0.0 and s["balanced_accuracy"] == 0.0


def test_empty_ground_truth():
    m = case_metrics(_vol(A), _vol())
    assert (m.n_pred, m.tp_pred, m.n_gt, m.detected) == (1, 0, 0, 0)
    assert math.isnan(m.dice) and math.isnan(m.max_iou) and m.predicted_positive and not m.positive
    s = summarize([m])
    assert s["precision"] == 0.0 and s["recall"] == 1.0 and s["f1"] == 0.0 and math.isnan(s["dice"])
    assert s["balanced_accuracy"] == 0.0  # the only (negative) volume was called positive


def test_one_prediction_touching_two_lesions():
    pred = _vol(np.s_[1:8, 2, 2])  # one bar of 7 voxels along axis 0
    gt = _vol(A, np.s_[6:8, 1:3, 1:3])  # two 8-voxel lesions the bar runs through (x0 = 1, 2 and 6, 7)
    m = case_metrics(pred, gt)
    assert (m.n_pred, m.tp_pred, m.n_gt, m.detected) == (1, 1, 2, 2)
    assert m.dice == pytest.approx(2 * 4 / (7 + 16))
    s = summarize([m])
    assert (s["precision"], s["recall"], s["f1"]) == (1.0, 1.0, 1.0)


def test_pooling_over_cases_and_balanced_accuracy():
    rows = [case_metrics(_vol(A), _vol(A, B), case="hit one of two"),       # tp 1/1, detected 1/2
            case_metrics(_vol(A, np.s_[8:9, 0:1, 0:1]), _vol(A), case="hit + false positive"),  # tp 1/2
            case_metrics(_vol(), _vol(), case="true negative"),
            case_metrics(_vol(B), _vol(), case="false positive")]
    s = summarize(rows)
    assert s["precision"] == pytest.approx(2 / 4) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert s["dice"] == pytest.approx(np.mean([2 * 8 / (8 + 16), 2 * 8 / (9 + 8)]))
    assert s["balanced_accuracy"] == pytest.approx(0.5 * (1.0 + 0.5))


def test_connectivity_decides_what_is_one_lesion():
    diagonal = _vol(np.s_[2, 2, 2], np.s_[3, 3, 3])  # touch at a corner only
    assert label_components(diagonal, 26)[1] == 1
    assert label_components(diagonal, 18)[1] == 2
    assert label_components(_vol(np.s_[2, 2, 2], np.s_[3, 3, 2]), 18)[1] == 1  # shared edge
    assert label_components(_vol(np.s_[2, 2, 2], np.s_[3, 3, 2]), 6)[1] == 2
    with pytest.raises(ValueError, match="connectivity"):
        label_components(diagonal, 8)


def test_max_iou_of_boxes():
    gt = _vol(np.s_[0:4, 0:4, 0:4])  # a 4³ box
    pred = _vol(np.s_[0:4, 0:4, 0:2])  # half of it
    assert case_metrics(pred, gt).max_iou == pytest.approx(0.5)
    assert case_metrics(_vol(np.s_[0:4, 0:4, 0:2], np.s_[0:4, 0:4, 3:4]), gt).max_iou == pytest.approx(0.5)


def test_thresholds():
    h = np.linspace(0, 1, 1000).reshape(10, 10, 10)
    assert binarize(h, Threshold("fixed", 0.5)).sum() == 500
    assert binarize(h, Threshold.parse("percentile:90")).sum() == 100
    bimodal = np.r_[np.zeros(900), np.ones(100)].reshape(10, 10, 10) + 0.01 * np.sin(np.arange(1000)).reshape(10, 10, 10)
    assert binarize(bimodal, Threshold.parse("otsu")).sum() == 100
    assert Threshold.parse("0.25") == Threshold("fixed", 0.25)
    for bad in ("median", "percentile:150", "fixed", "fixed:1,relative:1", "fixed:1,share:0.2", "fixed:1,relative:",
                "nan", "inf", "fixed:-inf", "percentile:nan"):
        with pytest.raises(ValueError):
            Threshold.parse(bad)


def test_a_relative_share_raises_the_level_to_a_share_of_each_heatmaps_maximum():
    h = np.linspace(0, 1, 1000).reshape(10, 10, 10)
    assert Threshold("fixed", 0.2, relative=0.5).level(h) == pytest.approx(0.5)  # the share is higher
    assert Threshold("fixed", 0.2, relative=0.5).level(0.3 * h) == pytest.approx(0.2)  # the level is higher
    assert binarize(4 * h, Threshold("fixed", 0.2, relative=0.5)).sum() == 500  # scaling a map does not change it
    assert Threshold.parse("calibrated:1.25,relative:0.3") == Threshold("calibrated", 1.25, 0.3)
    assert Threshold.parse(str(Threshold("calibrated", 1.25, 0.3))) == Threshold("calibrated", 1.25, 0.3)
    assert Threshold.parse("0.5") == Threshold("fixed", 0.5, 0.0) and str(Threshold("fixed", 0.5)) == "fixed:0.5"
    # thresholds.json entries: a level with its share; a bare number is a file from before the share
    recorded = Threshold("calibrated", 1.25, 0.3)
    assert Threshold.of_record(recorded.record()) == recorded
    assert Threshold.of_record(0.75) == Threshold("calibrated", 0.75, 0.0)
    assert "0.3 × the heatmap's maximum" in recorded.describe() and Threshold("fixed", 2.0).describe() == "> 2"


def test_calibration_finds_the_level_that_separates_lesions():
    gt = [_vol(A), _vol(B), _vol()]
    heat = []
    for g, seed in zip(gt, (1, 2, 3)):
        noise = np.random.default_rng(seed).uniform(0, 0.6, g.shape)
        heat.append(noise + 0.8 * g)  # lesions above 0.8, background below 0.6
    threshold, f1 = calibrate_threshold(heat, gt)
    top = min(h[g].max() for h, g in zip(heat, gt) if g.any())
    assert f1 == 1.0 and 0.6 <= threshold.value < top and threshold.kind == "calibrated"
    assert threshold.relative == 0.0  # a fixed level already scores 1: no share of the maximum is taken


def test_calibration_takes_a_share_of_the_maximum_when_one_volume_runs_hot():
    """Each positive map holds its lesion at 1 × its scale and a look-alike at 0.3 × its scale; one volume's
    scale is 5. No fixed level separates them all (the hot look-alike, 1.5, lies above the others' lesions), a
    share of each map's maximum does."""
    rng = np.random.default_rng(7)
    gt = [_vol(A), _vol(A), _vol(A), _vol(A), _vol()]
    heat = []
    for g, scale in zip(gt, (1.0, 1.0, 1.0, 5.0, 1.0)):
        look_alike = _vol(B)
        heat.append(scale * (0.05 * rng.random(g.shape) + 0.3 * look_alike + g))
    fixed, fixed_f1 = calibrate_threshold(heat, gt, relatives=(0.0,))
    threshold, f1 = calibrate_threshold(heat, gt)
    assert fixed.relative == 0.0 and fixed_f1 < 1.0
    assert f1 == 1.0 and 0.3 < threshold.relative <= 0.5
    assert all(case_metrics(binarize(h, threshold), g).n_pred == int(g.any()) for h, g in zip(heat, gt))


def test_robust_argmax_takes_the_middle_of_a_plateau_not_its_edge_or_a_spike():
    assert robust_argmax([0.5, 1.0, 1.0, 1.0, 1.0, 0.6]) == 2  # first of the plateau's interior
    assert robust_argmax([0.2, 1.0, 0.2, 0.9, 0.9, 0.9]) == 4  # a broad 0.9 beats a lone 1.0
    assert robust_argmax([0.7, 1.0, 1.0, 1.0, 1.0, 1.0]) == 2  # the plateau runs to the end: still inside it
    assert robust_argmax([0.3]) == 0


def test_calibration_steps_inside_the_range_of_perfect_levels():
    """Background up to 0.6, lesion voxels graded over 1–2.6: a range of candidate levels scores F1 1; its
    lowest one (the range's edge, next to the background's top) must not be the one chosen."""
    gt = [_vol(A), _vol(B), _vol()]
    heat = []
    for g, seed in zip(gt, (4, 5, 6)):
        rng = np.random.default_rng(seed)
        heat.append(rng.uniform(0, 0.6, g.shape) + g * rng.uniform(1.0, 2.0, g.shape))
    threshold, f1 = calibrate_threshold(heat, gt)
    pooled = np.concatenate([h.ravel() for h in heat])
    levels = np.unique(np.quantile(pooled, 1.0 - np.logspace(-0.3, -4.0, 48)))
    perfect = [lv for lv in levels if summarize([case_metrics(h > lv, g) for h, g in zip(heat, gt)])["f1"] == 1.0]
    assert len(perfect) >= 3, "the test needs a plateau of at least three candidates"
    assert f1 == 1.0 and perfect[0] + 1e-3 < threshold.value <= perfect[-1] + 1e-3  # float32 pooling in the engine


def test_lesion_records_in_millimetres():
    from tonno_engine.evaluation.metrics import lesion_records, voxel_volume_mm3

    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    affine[:3, 3] = (10.0, 20.0, 30.0)
    gt = np.zeros((11, 11, 11), bool)
    gt[5, 5, 5] = True  # the centre voxel: 1 voxel, at the centre
    gt[0:2, 0:2, 0:2] = True  # 8 voxels in a corner
    pred = np.zeros_like(gt)
    pred[1, 1, 1] = True
    records = sorted(lesion_records(pred, gt, affine, case="c"), key=lambda r: r.voxels)
    assert voxel_volume_mm3(affine) == 12.0
    centre, corner = records
    assert (centre.voxels, centre.volume_mm3, centre.detected) == (1, 12.0, False)
    assert centre.centre_distance_mm == 0.0 and centre.centroid_mm == (20.0, 30.0, 45.0)
    assert (corner.voxels, corner.volume_mm3, corner.detected) == (8, 96.0, True)
    half_diagonal = np.linalg.norm([10.0, 10.0, 15.0])
    assert corner.centre_distance_mm == pytest.approx(np.linalg.norm([9.0, 9.0, 13.5]))
    assert corner.relative_radius == pytest.approx(corner.centre_distance_mm / half_diagonal)
    assert lesion_records(pred, np.zeros_like(gt), affine) == []
