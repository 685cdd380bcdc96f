"""Second-stage prediction: files on the input's grid, provenance, reruns and bad inputs."""

import nibabel as nib
import numpy as np


def test_prediction_keeps_the_grid_skips_up_to_date_cases_and_reports_a_bad_one(tmp_path, tiny_cases):
    from tonno_engine.apps.stage2 import PredictResult, predict_iter
    from tonno_engine.models.segmenter import build_unet, save_segmenter

    checkpoint = save_segmenter(tmp_path / "segmenter.pt", build_unet(),
                                  {"channels": [16, 32, 64, 128], "strides": [2, 2, 2], "res_units": 1, "patch": 16,
                                   "preprocessing": {"intensity": "robust"}})
    out = tmp_path / "pred"
    done = list(predict_iter(checkpoint, tiny_cases, out))[-1]
    assert isinstance(done, PredictResult) and len(done.written) == 4 and not done.failed
    image = nib.load(tiny_cases / "images" / "phantom_0000.nii.gz")
    predicted = nib.load(out / "phantom_0000_stage2.nii.gz")
    np.testing.assert_allclose(predicted.affine, image.affine, atol=1e-6)
    p = np.asarray(predicted.dataobj)
    assert p.shape == image.shape and 0.0 <= p.min() and p.max() <= 1.0
    again = list(predict_iter(checkpoint, tiny_cases, out))[-1]
    assert again.skipped == done.written and not again.written
    broken = tmp_path / "broken.csv"
    broken.write_text(f"case,label,image\nok,1,{tiny_cases / 'images' / 'phantom_0000.nii.gz'}\n"
                        f"bad,0,{tmp_path / 'nope.nii.gz'}\n")
    mixed = list(predict_iter(checkpoint, broken, tmp_path / "mixed"))[-1]
    assert mixed.written == ["ok"] and [case for case, _ in mixed.failed] == ["bad"]
    assert "nope.nii.gz" in mixed.failed[0][1] and not (tmp_path / "mixed" / "bad_stage2.nii.gz").exists()


def test_a_segmenter_trains_on_a_two_image_export_and_predicts_a_two_image_case(two_channel_phantoms, tmp_path):
    import json

    from tonno_engine.apps.export_nnunet import ExportConfig, export_nnunet_iter
    from tonno_engine.apps.stage2 import PredictResult, predict_iter
    from tonno_engine.models.segmenter import read_segmenter
    from tonno_engine.training.segmenter import SegmenterConfig, SegmenterResult, train_segmenter_iter

    cases, heat, csv = two_channel_phantoms(4)
    cfg = ExportConfig(method="tonno", level=0.5, channels=(("T1", "robust"), ("CT", "ct")))
    export = list(export_nnunet_iter(cases, [], heat, tmp_path / "raw", cfg))[-1]
    done = list(train_segmenter_iter(export.folder, tmp_path / "seg", SegmenterConfig(steps=2, patch=16)))[-1]
    assert isinstance(done, SegmenterResult) and done.steps == 2
    payload = read_segmenter(done.checkpoint)
    meta = payload["meta"]
    assert meta["in_channels"] == 2 and meta["channel_names"] == ["T1", "CT"]
    assert [(c["name"], c["intensity"]) for c in meta["preprocessing"]["channels"]] == [("T1", "robust"), ("CT", "ct")]
    assert next(v for k, v in payload["state_dict"].items() if k.endswith("weight") and v.ndim == 5).shape[1] == 2
    out = tmp_path / "pred"
    result = list(predict_iter(done.checkpoint, csv, out))[-1]
    assert isinstance(result, PredictResult) and sorted(result.written) == sorted(c.case for c in cases)
    for c in cases:  # the last case's CT lies on a coarser grid: read onto the first image's
        first, predicted = nib.load(c.images[0]), nib.load(out / f"{c.case}_stage2.nii.gz")
        p = np.asarray(predicted.dataobj)
        assert p.shape == first.shape and np.allclose(predicted.affine, first.affine, atol=1e-6)
        assert np.isfinite(p).all() and 0.0 <= p.min() and p.max() <= 1.0
    # a case of one image, and a data set naming its images otherwise, are refused by name; the others go on
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "labels.csv").write_text(f"case,label,image\nsingle,0,{cases[0].images[0]}\n")
    refused = list(predict_iter(done.checkpoint, odd / "labels.csv", tmp_path / "pred-odd"))[-1]
    assert [case for case, _ in refused.failed] == ["single"] and not refused.written
    assert "the segmenter takes 2 images per case (T1, CT); this case has 1" in refused.failed[0][1]
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    (swapped / "labels.csv").write_text(csv.read_text())
    (swapped / "dataset.json").write_text(json.dumps({"channels": [{"name": "CT"}, {"name": "T1"}]}))
    refused = list(predict_iter(done.checkpoint, swapped / "labels.csv", tmp_path / "pred-swapped"))[-1]
    assert len(refused.failed) == 4 and "images are CT, T1 but the segmenter takes T1, CT" in refused.failed[0][1]
