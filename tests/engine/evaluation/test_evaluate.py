"""``tonno evaluate`` and ``tonno benchmark`` on small files."""

import csv

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from tonno_cli.app import app
from tonno_engine.data.nifti import save_nifti

runner = CliRunner()


def _write_case(folder, name, mask, *, noise_seed, affine=None, shape=None, lesion=1.0):
    rng = np.random.default_rng(noise_seed)
    heat = rng.uniform(0, 0.5, shape or mask.shape) + (lesion * mask if shape is None else 0)
    save_nifti(folder / "gt" / f"{name}.nii.gz", mask.astype(np.uint8), np.eye(4), dtype=np.uint8)
    save_nifti(folder / "pred" / f"{name}_tonno.nii.gz", heat, np.eye(4) if affine is None else affine)


def _mask(*boxes):
    out = np.zeros((12, 12, 12), bool)
    for b in boxes:
        out[b] = True
    return out


@pytest.fixture
def files(tmp_path):
    _write_case(tmp_path, "a", _mask(np.s_[1:4, 1:4, 1:4], np.s_[8:11, 8:11, 8:11]), noise_seed=0)
    _write_case(tmp_path, "b", _mask(), noise_seed=1)
    _write_case(tmp_path, "c", _mask(np.s_[5:8, 2:4, 2:4]), noise_seed=2)
    return tmp_path


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_evaluate_fixed_threshold_writes_rows_summary_and_masks(files):
    out = files / "metrics.csv"
    res = runner.invoke(app, ["evaluate", str(files / "pred"), str(files / "gt"), "--threshold", "fixed:0.75",
                              "-o", str(out), "--masks", str(files / "bin"), "-q"])
    assert res.exit_code == 0, res.output
    rows = _rows(out)
    assert [r["case"] for r in rows] == ["a", "b", "c", "ALL"]
    assert [r["n_gt"] for r in rows[:3]] == ["2", "0", "1"] and [r["detected"] for r in rows[:3]] == ["2", "0", "1"]
    assert rows[3]["f1"] == "1.0000" and rows[3]["balanced_accuracy"] == "1.0000" and rows[3]["dice"] == "1.0000"
    assert rows[0]["gt_volume_mm3"] == rows[0]["pred_volume_mm3"] == f"{54 * 1.0:.4f}"  # two 3³ lesions, 1 mm voxels
    lesions = _rows(files / "metrics_lesions.csv")
    assert sorted((r["case"], r["voxels"], r["detected"]) for r in lesions) == [("a", "27", "True"), ("a", "27", "True"),
                                                                                ("c", "12", "True")]
    binary = nib.load(files / "bin" / "a_tonno.nii.gz").get_fdata()
    np.testing.assert_array_equal(binary > 0, _mask(np.s_[1:4, 1:4, 1:4], np.s_[8:11, 8:11, 8:11]))
    assert "F1 1.000" in res.output


def test_evaluate_reports_bad_cases_and_goes_on(files):
    _write_case(files, "shape", _mask(), noise_seed=3, shape=(12, 12, 10))
    _write_case(files, "affine", _mask(), noise_seed=4, affine=np.diag([2.0, 1, 1, 1]))
    save_nifti(files / "pred" / "orphan_tonno.nii.gz", np.zeros((12, 12, 12)))
    out = files / "m.csv"
    res = runner.invoke(app, ["evaluate", str(files / "pred"), str(files / "gt"), "-o", str(out), "-q",
                              "--threshold", "0.75"])
    assert res.exit_code == 1
    status = {r["case"]: (r["status"], r["error"]) for r in _rows(out)}
    assert status["a"][0] == "ok" and status["ALL"][0] == "summary"
    assert status["shape"][0] == "failed" and "shape (12, 12, 10) differs" in status["shape"][1]
    assert "affine differs" in status["affine"][1] and "affine_tonno.nii.gz" in status["affine"][1]
    assert "no ground truth" in status["orphan_tonno"][1]
    assert "failed: orphan_tonno" in res.output


def test_evaluate_calibrates_on_validation_files(files, tmp_path_factory):
    val = tmp_path_factory.mktemp("val")
    _write_case(val, "v1", _mask(np.s_[2:5, 2:5, 2:5]), noise_seed=7)
    _write_case(val, "v2", _mask(), noise_seed=8)
    out = files / "m.csv"
    res = runner.invoke(app, ["evaluate", str(files / "pred"), str(files / "gt"), "-o", str(out), "-q",
                              "--val-pred", str(val / "pred"), "--val-gt", str(val / "gt")])
    assert res.exit_code == 0, res.output
    assert "calibrated threshold" in res.output
    summary = _rows(out)[-1]
    assert summary["threshold"].startswith("calibrated:") and summary["f1"] == "1.0000"


def test_evaluate_usage_errors(files):
    res = runner.invoke(app, ["evaluate", str(files / "pred"), str(files / "gt"), "--threshold", "median"])
    assert res.exit_code == 2 and "bad threshold" in res.output
    res = runner.invoke(app, ["evaluate", str(files / "nothing"), str(files / "gt")])
    assert res.exit_code == 1 and "heatmaps not found" in res.output


def test_evaluate_instance_metrics_in_mm(files, tmp_path):
    out = files / "metrics.csv"
    res = runner.invoke(app, ["evaluate", str(files / "pred"), str(files / "gt"), "--threshold", "fixed:0.75",
                              "-o", str(out), "--metrics", "all", "--tolerance-mm", "1", "-q"])
    assert res.exit_code == 0, res.output
    rows = _rows(out)
    assert {"f1", "dice", "inst_tp", "hd95_mm", "nsd", "pq"} <= set(rows[0])
    assert [(r["inst_tp"], r["inst_fp"], r["inst_fn"]) for r in rows[:3]] == [("2", "0", "0"), ("0", "0", "0"),
                                                                            ("1", "0", "0")]
    assert rows[0]["hd95_mm"] == "0.0000" and rows[3]["pq"] == "1.0000" and rows[3]["nsd"] == "1.0000"
    assert "PQ 1.000" in res.output and "F1 1.000, Dice" in res.output
    only = runner.invoke(app, ["evaluate", str(files / "pred"), str(files / "gt"), "--threshold", "fixed:0.75",
                               "-o", str(tmp_path / "inst.csv"), "--metrics", "instances", "-q"])
    assert only.exit_code == 0, only.output
    assert "dice" not in _rows(tmp_path / "inst.csv")[0] and "balanced accuracy" not in only.output
    bad = runner.invoke(app, ["evaluate", str(files / "pred"), str(files / "gt"), "--metrics", "panoptic"])
    assert bad.exit_code == 2 and "unknown metrics 'panoptic'" in bad.output


def test_instance_metrics_without_the_extra_say_which_to_install(files, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "monai.metrics", None)  # as if MONAI were not installed
    res = runner.invoke(app, ["evaluate", str(files / "pred"), str(files / "gt"), "--metrics", "instances",
                              "-o", str(files / "m.csv")])
    assert res.exit_code == 1 and "pip install 'napari-tonno[eval]'" in res.output
    assert not (files / "m.csv").exists()


def test_the_minimum_size_drops_speckles_in_mm3_and_is_calibrated_on_validation(tmp_path):
    import nibabel as nib

    from tonno_engine.evaluation.evaluate import Pair, calibrate_min_size, calibrated_scores
    from tonno_engine.evaluation.metrics import Threshold, keep_large_components

    affine = np.diag([2.0, 2.0, 2.0, 1.0])  # 8 mm³ voxels
    pairs = []
    for k in range(3):
        truth = np.zeros((16, 16, 16), np.uint8)
        truth[4:7, 4:7, 4:7] = 1  # 27 voxels, 216 mm³
        heat = truth.astype(np.float32)
        heat[12, 12, 12 - k] = heat[1, 14, 3 + k] = 0.9  # two one-voxel speckles, 8 mm³ each
        nib.save(nib.Nifti1Image(heat, affine), tmp_path / f"c{k}_stage2.nii.gz")
        nib.save(nib.Nifti1Image(truth, affine), tmp_path / f"c{k}.nii.gz")
        pairs.append(Pair(f"c{k}", tmp_path / f"c{k}_stage2.nii.gz", tmp_path / f"c{k}.nii.gz", 1))
    mask = np.asarray(nib.load(pairs[0].heatmap).dataobj) > 0.5
    assert keep_large_components(mask, 7.5, affine).sum() == 29 and keep_large_components(mask, 9.0, affine).sum() == 27
    size, f1 = calibrate_min_size(pairs[:2], Threshold("fixed", 0.5))
    assert size == 10.0 and f1 == 1.0  # the smallest candidate above the speckles; 0 would give F1 0.5
    threshold, val_f1, result = calibrated_scores(pairs[:2], pairs[2:], level=Threshold("fixed", 0.5))
    assert threshold.value == 0.5 and result.min_mm3 == 10.0 and result.summary["precision"] == 1.0
    _, _, plain = calibrated_scores(pairs[:2], pairs[2:])  # a level of its own calibrated instead: no size
    assert plain.min_mm3 == 0.0
