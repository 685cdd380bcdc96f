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
