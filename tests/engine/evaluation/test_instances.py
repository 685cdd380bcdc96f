"""Instance metrics: one-to-one matching (one blob over two lesions is one match), distances follow spacing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tonno_engine.evaluation.instances import instance_metrics, summarize_instances
from tonno_engine.evaluation.metrics import case_metrics


def _two_lesions():
    """A large lesion (10³ voxels) and a small one (3³) 4 voxels apart, in a (40, 24, 24) volume."""
    gt = np.zeros((40, 24, 24), bool)
    gt[5:15, 5:15, 5:15] = True
    gt[19:22, 8:11, 8:11] = True
    return gt


def test_one_blob_over_two_lesions_is_one_match():
    gt = _two_lesions()
    blob = gt.copy()
    blob[15:19, 8:11, 8:11] = True  # a bridge joins the two: one predicted component over both lesions
    paper = case_metrics(blob, gt)
    assert (paper.n_pred, paper.detected, paper.n_gt) == (1, 2, 2)  # "any overlap" detects both
    inst = instance_metrics(blob, gt, (1.0, 1.0, 1.0))
    assert (inst.inst_tp, inst.inst_fp, inst.inst_fn) == (1, 0, 1)  # matched once; the small lesion is missed
    assert inst.inst_iou_sum == pytest.approx(1000 / (1000 + 27 + 36))
    pooled = summarize_instances([inst])
    assert pooled["inst_recall"] == 0.5 and pooled["inst_precision"] == 1.0
    assert pooled["pq"] == pytest.approx(pooled["sq"] * pooled["rq"]) and pooled["rq"] == pytest.approx(1 / 1.5)


def test_two_blobs_match_two_lesions_and_low_iou_needs_a_lower_threshold():
    gt = _two_lesions()
    shifted = np.roll(gt, 2, axis=1)  # big: IoU 8/12 = 0.67; small: IoU 1/5 = 0.2
    strict = instance_metrics(shifted, gt, (1, 1, 1), iou_threshold=0.5)
    assert (strict.inst_tp, strict.inst_fp, strict.inst_fn) == (1, 1, 1)
    loose = instance_metrics(shifted, gt, (1, 1, 1), iou_threshold=0.1)  # Munkres below 0.5
    assert (loose.inst_tp, loose.inst_fp, loose.inst_fn) == (2, 0, 0)


def test_distances_follow_the_voxel_spacing():
    gt = _two_lesions()
    pred = np.roll(gt, 2, axis=0)  # every surface point moves 2 voxels along axis 0
    iso = instance_metrics(pred, gt, (1.0, 1.0, 1.0))
    thick = instance_metrics(pred, gt, (3.0, 1.0, 1.0))  # the same voxels, 3 mm along axis 0
    assert iso.hd95_mm == pytest.approx(2.0, abs=0.01)
    assert thick.hd95_mm == pytest.approx(6.0, abs=0.01)
    # surface Dice at 2 mm: every shifted surface point is within 2 mm isotropically, not at 3 mm per voxel
    assert iso.nsd == pytest.approx(1.0) and thick.nsd < 0.8
    assert instance_metrics(pred, gt, (1.0, 1.0, 1.0), tolerance_mm=1.0).nsd < 0.8
    assert instance_metrics(pred, gt, (3.0, 1.0, 1.0), tolerance_mm=6.5).nsd == pytest.approx(1.0)


def test_empty_volumes():
    empty = np.zeros((8, 8, 8), bool)
    one = empty.copy()
    one[2:4, 2:4, 2:4] = True
    nothing = instance_metrics(empty, empty, (1, 1, 1))
    assert (nothing.inst_tp, nothing.inst_fp, nothing.inst_fn, nothing.nsd) == (0, 0, 0, 1.0)
    assert math.isnan(nothing.hd95_mm)
    missed = instance_metrics(empty, one, (1, 1, 1))
    assert (missed.inst_fn, missed.nsd) == (1, 0.0)
    with pytest.raises(ValueError, match="differs"):
        instance_metrics(one, np.zeros((8, 8, 9), bool), (1, 1, 1))
