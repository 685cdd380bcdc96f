"""Pseudo-labels, the nnU-Net export and the second-stage segmenter (issue 26, first pieces)."""

import json

import nibabel as nib
import numpy as np
import torch


def test_pseudo_labels_negative_all_background_positive_has_lesion_and_band():
    from tonno_engine.evaluation.pseudo_labels import IGNORE, LESION, PseudoLabelRule, pseudo_labels

    heat = np.zeros((20, 20, 20), np.float32)
    heat[8:12, 8:12, 8:12] = 1.0
    heat[2, 2, 2] = 0.4  # above the low level, below the level: uncertain
    assert not pseudo_labels(heat, False, 0.5).any()
    labels = pseudo_labels(heat, True, 0.5, rule=PseudoLabelRule(band=0.5, margin_mm=1.0))
    assert (labels[8:12, 8:12, 8:12] == LESION).all() and labels[2, 2, 2] == IGNORE
    assert labels[7, 10, 10] == IGNORE and labels[0, 19, 0] == 0 and set(np.unique(labels)) <= {0, 1, 2}


def test_ignored_voxels_do_not_enter_the_loss():
    from tonno_engine.training.segmenter import masked_loss

    torch.manual_seed(0)
    labels = torch.randint(0, 3, (2, 1, 8, 8, 8))
    logits = torch.randn(2, 2, 8, 8, 8, requires_grad=True)
    loss = masked_loss(logits, labels)
    loss.backward()
    ignored = (labels == 2).expand_as(logits)
    assert logits.grad[ignored].abs().max() == 0 and logits.grad[~ignored].abs().max() > 0
    changed = logits.detach().clone()
    changed[ignored] = 50.0
    assert torch.isclose(masked_loss(changed, labels), loss.detach())


def test_export_round_trip_train_and_predict(tmp_path):
    from tonno_engine.apps.export_nnunet import ExportConfig, ExportResult, export_nnunet_iter
    from tonno_engine.apps.stage2 import PredictResult, predict_iter
    from tonno_engine.data.dataset import read_cases
    from tonno_engine.data.nifti import load_nifti, save_nifti
    from tonno_engine.data.synth import synthesize
    from tonno_engine.training.segmenter import SegmenterConfig, SegmenterResult, train_segmenter_iter

    list(synthesize(tmp_path / "data", kind="phantom", n=6, seed=1, shape=(16, 16, 16)))
    cases = read_cases(tmp_path / "data")
    heat = tmp_path / "heat"
    heat.mkdir()
    for c in cases:
        v = load_nifti(c.image)
        save_nifti(heat / f"{c.case}_tonno.nii.gz", load_nifti(c.mask).array, v.affine, v.header)
    done = list(export_nnunet_iter(cases[:4], cases[4:], heat, tmp_path / "raw", ExportConfig(method="tonno", level=0.5)))
    result = done[-1]
    assert isinstance(result, ExportResult) and result.training == 4 and result.testing == 2
    meta = json.loads((result.folder / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "lesion": 1, "ignore": 2} and meta["numTraining"] == 4
    for c in cases[:4]:
        image = nib.load(result.folder / "imagesTr" / f"{c.case}_0000.nii.gz")
        label = nib.load(result.folder / "labelsTr" / f"{c.case}.nii.gz")
        assert np.allclose(image.affine, nib.load(c.image).affine, atol=1e-6)
        assert np.allclose(label.affine, image.affine, atol=1e-6)
        values = np.asarray(label.dataobj)
        assert set(np.unique(values)) <= {0, 1, 2} and (c.label or not values.any())
    assert not list((tmp_path / "raw").glob(".tonno-part.*"))  # nothing temporary left
    run = list(train_segmenter_iter(result.folder, tmp_path / "seg", SegmenterConfig(steps=2, patch=16)))
    assert isinstance(run[-1], SegmenterResult)
    predicted = list(predict_iter(run[-1].checkpoint, tmp_path / "data", tmp_path / "pred"))[-1]
    assert isinstance(predicted, PredictResult) and len(predicted.written) == 6 and not predicted.failed
    p = load_nifti(tmp_path / "pred" / f"{cases[0].case}_stage2.nii.gz").array
    assert p.shape == (16, 16, 16) and 0.0 <= p.min() and p.max() <= 1.0
