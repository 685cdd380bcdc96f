"""Pseudo-labels from a heatmap: certain background, lesion, and the ignore band."""

import numpy as np


def test_pseudo_labels_negative_all_background_positive_has_lesion_and_band():
    from tonno_engine.evaluation.pseudo_labels import IGNORE, LESION, PseudoLabelRule, pseudo_labels

    heat = np.zeros((20, 20, 20), np.float32)
    heat[8:12, 8:12, 8:12] = 1.0
    heat[2, 2, 2] = 0.4  # above the low level, below the level: uncertain
    assert not pseudo_labels(heat, False, 0.5).any()
    labels = pseudo_labels(heat, True, 0.5, rule=PseudoLabelRule(band=0.5, margin_mm=1.0))
    assert (labels[8:12, 8:12, 8:12] == LESION).all() and labels[2, 2, 2] == IGNORE
    assert labels[7, 10, 10] == IGNORE and labels[0, 19, 0] == 0 and set(np.unique(labels)) <= {0, 1, 2}
    no_band = pseudo_labels(heat, True, 0.5, rule=PseudoLabelRule(band=1.0, margin_mm=0.0))
    assert not (no_band == IGNORE).any() and (no_band == LESION).sum() == 64


def test_the_margin_is_in_millimetres_on_an_anisotropic_grid():
    from tonno_engine.evaluation.pseudo_labels import IGNORE, PseudoLabelRule, pseudo_labels

    heat = np.zeros((21, 21, 21), np.float32)
    heat[10, 10, 10] = 1.0
    affine = np.diag([1.0, 1.0, 3.0, 1.0])  # 3 mm along the last axis
    labels = pseudo_labels(heat, True, 0.5, affine, PseudoLabelRule(band=1.0, margin_mm=2.5))
    assert labels[12, 10, 10] == IGNORE and labels[13, 10, 10] == 0  # 2 mm inside, 3 mm outside
    assert labels[10, 10, 11] == 0  # one voxel along the 3 mm axis is already beyond 2.5 mm


def test_small_components_are_ignored_not_lesion():
    from tonno_engine.evaluation.pseudo_labels import IGNORE, LESION, PseudoLabelRule, pseudo_labels

    heat = np.zeros((20, 20, 20), np.float32)
    heat[2:6, 2:6, 2:6] = 1.0  # 64 mm³
    heat[15, 15, 15] = 1.0  # 1 mm³
    labels = pseudo_labels(heat, True, 0.5, rule=PseudoLabelRule(band=1.0, margin_mm=0.0, min_mm3=8.0))
    assert (labels[2:6, 2:6, 2:6] == LESION).all() and labels[15, 15, 15] == IGNORE


def test_a_rule_of_numbers_that_cannot_be_right_is_refused():
    import pytest

    from tonno_engine.evaluation.pseudo_labels import PseudoLabelRule

    for bad in (dict(band=float("nan")), dict(margin_mm=float("inf")), dict(margin_mm=float("nan")),
                dict(min_mm3=float("inf")), dict(min_mm3=-1.0)):
        with pytest.raises(ValueError):
            PseudoLabelRule(**bad)
