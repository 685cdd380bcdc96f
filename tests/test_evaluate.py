"""``tonno evaluate`` and ``tonno benchmark`` on small files."""

import csv

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from tonno_cli.app import app
from tonno_engine.io import save_nifti

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


def test_benchmark_trains_reconstructs_calibrates_and_reports(tmp_path):
    from tonno_engine.synth import synthesize

    data = tmp_path / "data"
    list(synthesize(data, kind="phantom", n=14, seed=3, shape=(20, 20, 20)))
    out = tmp_path / "bench"
    res = runner.invoke(app, ["benchmark", str(data), "-o", str(out), "--steps", "3", "--slice-size", "32",
                              "--norm", "gn", "--slices", "6", "--angles", "12", "--layer", "3", "--device", "cpu",
                              "-q"])
    assert res.exit_code == 0, res.output
    with open(out / "table.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["label"] for r in rows] == ["gradcam-l3", "layercam-l3", "tonno", "averaged-layercam-l3",
                                          "tomographic-layercam-l3"]
    assert all(0.0 <= float(r["f1"]) <= 1.0 and float(r["val_f1"]) >= 0.0 for r in rows)
    table = (out / "table.md").read_text()
    assert "| ToNNO |" in table and "| LayerCAM (layer 3) |" in table and "Balanced accuracy" in table
    assert (out / "model" / "checkpoint_last.pt").exists() and (out / "heatmaps" / "summary.csv").exists()
    png = (out / "figure.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "Test cases: " in res.output and "figure:" in res.output
    # rerunning continues: training is complete and every heatmap is reused
    from napari_tonno.demo_viewer import demo_layers
    from tonno_engine.benchmark import BenchmarkConfig, BenchmarkResult, benchmark_iter, default_methods
    from tonno_engine.training import TrainConfig

    cfg = BenchmarkConfig(train=TrainConfig(steps=3, slice_size=32, norm="gn", device="cpu"),
                          methods=default_methods(3), slices=6, angles=12, device="cpu")
    result = [e for e in benchmark_iter(data, out, cfg) if isinstance(e, BenchmarkResult)][0]
    with open(out / "heatmaps" / "summary.csv", newline="") as fh:
        assert {r["status"] for r in csv.DictReader(fh)} == {"skipped"}
    assert [r["f1"] for r in result.rows] == pytest.approx([float(r["f1"]) for r in rows], abs=1e-4)
    layers = demo_layers(out, result)  # what `tonno demo --napari` shows
    assert [kind for _, _, kind in layers] == ["image", "labels"] + ["image"] * 5
    assert layers[0][0].shape == layers[-1][0].shape == (20, 20, 20)


def test_benchmark_with_chosen_methods_and_a_checkpoint(tmp_path, tiny_checkpoint):
    from tonno_engine.synth import synthesize

    data = tmp_path / "data"
    list(synthesize(data, kind="phantom", n=8, seed=4, shape=(16, 16, 16)))
    out = tmp_path / "bench"
    res = runner.invoke(app, ["benchmark", str(data), "-o", str(out), "-c", str(tiny_checkpoint), "--method",
                              "gradcam++,tonno", "-m", "averaged-cam", "--cam", "gradcam", "--layer", "3",
                              "--slices", "5", "--angles", "8", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    with open(out / "table.csv", newline="") as fh:
        assert [r["label"] for r in csv.DictReader(fh)] == ["gradcampp-l3", "tonno", "averaged-gradcam-l3"]
    assert not (out / "model").exists()  # the checkpoint was used, nothing trained


def test_benchmark_needs_masks(tmp_path, tiny_checkpoint, tiny_cases):
    images = tiny_cases / "images"
    (tmp_path / "labels.csv").write_text(f"case,label,image\na,1,{images / 'phantom_0000.nii.gz'}\n"
                                         f"b,0,{images / 'phantom_0001.nii.gz'}\n")
    res = runner.invoke(app, ["benchmark", str(tmp_path), "-o", str(tmp_path / "o"), "-c", str(tiny_checkpoint)])
    assert res.exit_code == 1 and "needs ground-truth masks" in res.output
