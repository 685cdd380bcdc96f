"""``tonno export nnunet``, ``tonno segment train|predict`` and ``tonno benchmark --stage2`` from the command line."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from tonno_cli.app import app

runner = CliRunner()


def test_export_train_resume_and_predict(tmp_path, tiny_cases, tiny_checkpoint):
    heat = tmp_path / "heat"
    made = runner.invoke(app, ["reconstruct", "-i", str(tiny_cases), "-o", str(heat), "-c", str(tiny_checkpoint),
                               "--method", "tonno", "--slices", "5", "--directions", "8", "--device", "cpu", "-q"])
    assert made.exit_code == 0, made.output
    raw = tmp_path / "raw"
    neither = runner.invoke(app, ["export", "nnunet", str(tiny_cases), "--heatmaps", str(heat), "-o", str(raw)])
    assert neither.exit_code == 2 and "exactly one of" in neither.output
    done = runner.invoke(app, ["export", "nnunet", str(tiny_cases), "--heatmaps", str(heat), "-o", str(raw),
                               "--percentile", "99", "--id", "7", "--name", "Tiny", "-q"])
    assert done.exit_code == 0, done.output
    export = raw / "Dataset007_Tiny"
    assert "4 training cases" in done.output and len(list((export / "labelsTr").iterdir())) == 4
    again = runner.invoke(app, ["export", "nnunet", str(tiny_cases), "--heatmaps", str(heat), "-o", str(raw),
                                "--percentile", "99", "--id", "7", "--name", "Tiny", "-q"])
    assert again.exit_code == 1 and "not empty" in again.output

    run = tmp_path / "seg"
    bad = runner.invoke(app, ["segment", "train", str(export), "-o", str(run), "--intensity", "xray", "-q"])
    assert bad.exit_code == 2 and "--intensity" in bad.output and not run.exists()
    first = runner.invoke(app, ["segment", "train", str(export), "-o", str(run), "--steps", "2", "--patch", "16",
                                "--device", "cpu", "-q"])
    assert first.exit_code == 0, first.output
    twice = runner.invoke(app, ["segment", "train", str(export), "-o", str(run), "--steps", "2", "--patch", "16", "-q"])
    assert twice.exit_code == 1 and "--resume" in twice.output
    other = runner.invoke(app, ["segment", "train", str(export), "-o", str(run), "--steps", "3", "--patch", "24",
                                "--resume", "-q"])
    assert other.exit_code == 1 and "patch" in other.output
    longer = runner.invoke(app, ["segment", "train", str(export), "-o", str(run), "--steps", "3", "--patch", "16",
                                 "--resume", "-q"])
    assert longer.exit_code == 0, longer.output
    with open(run / "metrics.csv", newline="") as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh)] == [1, 2, 3]
    info = json.loads((run / "run.json").read_text())
    assert info["labels"]["export"] == str(export.resolve()) and info["labels"]["percentile"] == 99.0

    pred = tmp_path / "pred"
    predicted = runner.invoke(app, ["segment", "predict", str(run / "segmenter.pt"), str(tiny_cases), "-o", str(pred), "-q"])
    assert predicted.exit_code == 0 and "4 written" in predicted.output, predicted.output
    image = nib.load(tiny_cases / "images" / "phantom_0000.nii.gz")
    out = nib.load(pred / "phantom_0000_stage2.nii.gz")
    probability = np.asarray(out.dataobj)
    np.testing.assert_allclose(out.affine, image.affine, atol=1e-6)
    assert probability.shape == image.shape and 0.0 <= probability.min() and probability.max() <= 1.0
    rerun = runner.invoke(app, ["segment", "predict", str(run / "segmenter.pt"), str(tiny_cases), "-o", str(pred), "-q"])
    assert rerun.exit_code == 0 and "4 up to date" in rerun.output
    wrong = runner.invoke(app, ["segment", "predict", str(tiny_checkpoint), str(tiny_cases), "-o", str(tmp_path / "w"), "-q"])
    assert wrong.exit_code == 1 and "slice classifier's checkpoint" in wrong.output
    scored = runner.invoke(app, ["evaluate", str(pred), str(tiny_cases), "-o", str(tmp_path / "m.csv"), "-q"])
    assert scored.exit_code == 0, scored.output  # a stage-2 folder is evaluated like any heatmaps


def test_benchmark_stage2_adds_its_row_and_reuses_the_segmenter(tmp_path, tiny_checkpoint):
    from tonno_engine.data.synth import SynthRequest, synthesize

    data = tmp_path / "data"
    list(synthesize(data, SynthRequest(kind="phantom", n=10, seed=4, shape=(16, 16, 16))))
    out = tmp_path / "bench"
    args = ["benchmark", str(data), "-o", str(out), "-c", str(tiny_checkpoint), "--method", "tonno,layercam",
            "--slices", "5", "--directions", "8", "--device", "cpu", "--resamples", "200", "--stage2",
            "--stage2-steps", "2", "--stage2-patch", "16", "-q"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    with open(out / "table.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["label"] for r in rows] == ["tonno", "layercam-l2", "stage2"]
    record = json.loads((out / "stage2" / "stage2.json").read_text())
    assert record["source"] in ("tonno", "layercam-l2") and set(record["difference_to_source"]) >= {"f1", "dice"}
    assert "minus" in (out / "table.md").read_text()
    with open(out / "stage2" / "test.csv", newline="") as fh:
        tested = [r["case"] for r in csv.DictReader(fh)]
    assert tested and all((out / "heatmaps" / f"{c}_stage2.nii.gz").exists() for c in tested)
    segmenter = out / "stage2" / "model" / "segmenter.pt"
    before = segmenter.stat().st_mtime_ns
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and segmenter.stat().st_mtime_ns == before  # the same labels: not trained again
    bandless = runner.invoke(app, args + ["--band", "1", "--margin-mm", "0"])  # no ignore label at all
    assert bandless.exit_code == 0, bandless.output
    assert segmenter.stat().st_mtime_ns != before  # other labels: trained again
    assert json.loads((out / "stage2" / "stage2.json").read_text())["rule"]["band"] == 1.0
    assert json.loads((out / "stage2" / "model" / "run.json").read_text())["labels"]["rule"]["margin_mm"] == 0.0
    twice = runner.invoke(app, args + ["--band", "1", "--margin-mm", "0", "--stage2-rounds", "2"])
    assert twice.exit_code == 0, twice.output
    rounds = json.loads((out / "stage2" / "stage2.json").read_text())["rounds"]
    assert [r["labels_from"] for r in rounds] == [record["source"], "stage2"]
    assert rounds[0]["segmenter"] == str(segmenter)  # round 1 is the run above, reused
    assert (out / "stage2" / "model-round2" / "segmenter.pt").exists() and "2 rounds" in (out / "table.md").read_text()
    exported = json.loads((out / "stage2" / "Dataset999_Benchmark" / "tonno_export.json").read_text())
    assert exported["method"] == "stage2" and exported["heatmaps"] == str(out / "stage2" / "round1")
    (out / "stage2" / "model" / "segmenter.pt").write_bytes(b"not a checkpoint")  # e.g. a disk that filled up
    mended = runner.invoke(app, args)
    assert mended.exit_code == 0 and "training the segmenter again" in mended.output, mended.output


def test_export_reads_a_calibrated_share_of_each_heatmaps_maximum(tmp_path, masked_phantoms):
    """thresholds.json's level 0.5 with 0.6 of the maximum: a positive heatmap whose lesion is at 3 and a look-alike
    at 1 keeps the look-alike out of its lesion label (1.8 is its level); the level alone would take it in."""
    from tonno_engine.data.nifti import load_nifti, save_nifti

    cases, heat = masked_phantoms(4)
    case = next(c for c in cases if c.label)
    path = heat / f"{case.case}_tonno.nii.gz"
    old = load_nifti(path)
    look_alike = np.zeros(old.array.shape, bool)
    look_alike[:3, :3, :3] = True
    assert not (old.array[look_alike] > 0).any(), "the look-alike must lie outside the lesion"
    save_nifti(path, np.where(look_alike, 1.0, 3.0 * old.array).astype(np.float32), old.affine, old.header)
    labels = {}
    for relative in (0.0, 0.6):
        (tmp_path / "thresholds.json").write_text(json.dumps({"tonno": {"level": 0.5, "relative": relative}}))
        raw = tmp_path / f"raw{relative}"
        done = runner.invoke(app, ["export", "nnunet", str(tmp_path / "data"), "--heatmaps", str(heat), "-o", str(raw),
                                   "--thresholds", str(tmp_path / "thresholds.json"), "-q"])
        assert done.exit_code == 0, done.output
        export = raw / "Dataset501_TonnoLesions"
        labels[relative] = np.asarray(nib.load(export / "labelsTr" / f"{case.case}.nii.gz").dataobj)
        record = json.loads((export / "tonno_export.json").read_text())
        assert record["level"] == 0.5 and record["relative"] == relative
    lesion = load_nifti(case.mask).array > 0
    assert (labels[0.0][look_alike] == 1).all() and not (labels[0.6][look_alike] == 1).any()
    assert (labels[0.6][lesion] == 1).all() and (labels[0.0][lesion] == 1).all()
    description = json.loads((raw / "Dataset501_TonnoLesions" / "dataset.json").read_text())["description"]
    assert "0.6 × the heatmap's maximum" in description
