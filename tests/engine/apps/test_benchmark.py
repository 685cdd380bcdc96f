"""Table 2 end to end: training, every method, calibration, evaluation, table and figure."""

import csv

import pytest
from typer.testing import CliRunner

from tonno_cli.app import app

runner = CliRunner()


def test_benchmark_trains_reconstructs_calibrates_and_reports(tmp_path):
    from tonno_engine.data.synth import SynthRequest, synthesize

    data = tmp_path / "data"
    list(synthesize(data, SynthRequest(kind="phantom", n=14, seed=3, shape=(20, 20, 20))))
    out = tmp_path / "bench"
    res = runner.invoke(app, ["benchmark", str(data), "-o", str(out), "--steps", "3", "--slice-size", "32",
                              "--norm", "gn", "--slices", "6", "--directions", "12", "--layer", "3", "--device", "cpu",
                              "-q"])
    assert res.exit_code == 0, res.output
    with open(out / "table.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["label"] for r in rows] == ["gradcam-l3", "layercam-l3", "tonno", "averaged-layercam-l3",
                                          "tomographic-layercam-l3"]
    assert all(0.0 <= float(r["f1"]) <= 1.0 and float(r["val_f1"]) >= 0.0 for r in rows)
    table = (out / "table.md").read_text()
    assert "| ToNNO |" in table and "| LayerCAM (layer 3) |" in table and "Balanced accuracy" in table
    assert "95 % bootstrap intervals" in table
    import json

    classified = json.loads((out / "classification.json").read_text())  # beside the table: AUC and the baseline
    lo, hi = classified["interval"]
    assert classified["cases"] == int(rows[0]["cases"])  # every test case, as the methods' rows count them
    assert lo <= classified["auc"] <= hi and f"Volume classification on the {classified['cases']} test cases" in table
    baseline = classified["intensity_baseline"]
    assert classified["below_intensity_baseline"] == (max(baseline["bright"], baseline["dark"]) > classified["auc"])
    assert ("below the intensity baseline" in res.output) == classified["below_intensity_baseline"]
    for r in rows:  # each interval holds its estimate; LayerCAM has no difference to itself
        assert float(r["f1_lo"]) <= float(r["f1"]) <= float(r["f1_hi"])
        assert (r["f1_diff_lo"] == "") == (r["label"] == "layercam-l3")
    assert (out / "model" / "checkpoint_last.pt").exists() and (out / "heatmaps" / "summary.csv").exists()
    from tonno_engine.base.hashing import file_sha256
    from tonno_engine.evaluation.metrics import CALIBRATION_RULE

    made_by = json.loads((out / "benchmark.json").read_text())  # what made the table: code, model, split, rule
    used = out / "model" / ("checkpoint_best.pt" if (out / "model" / "checkpoint_best.pt").exists() else "checkpoint_last.pt")
    assert made_by["checkpoint_sha256"] == file_sha256(used) and made_by["calibration"] == CALIBRATION_RULE
    assert len(made_by["test_cases"]) == classified["cases"] and made_by["methods"] == [r["label"] for r in rows]
    assert not set(made_by["test_cases"]) & set(made_by["validation_cases"]) and made_by["settings"]["slices"] == 6
    # 3 steps on the few validation volumes of 14 phantoms: the training says it has not learnt, so Table 2 says so too
    verdict = json.loads((out / "model" / "run.json").read_text())["learning_verdict"]
    assert verdict["learnt"] is False and made_by["trustworthy"] is False and made_by["training_verdict"] == verdict
    assert table.startswith("**Table 2 is not trustworthy") and "warning: Table 2 is not trustworthy" in res.output
    png = (out / "figure.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "Test cases: " in res.output and "figure:" in res.output
    # every test case and method, at the calibrated thresholds, where the Results browser reads them
    from tonno_engine.apps.results import ResultsFolder

    browsed = ResultsFolder.open(out)
    assert browsed.thresholds == out / "thresholds.json" and browsed.methods == [r["label"] for r in rows]
    from tonno_engine.evaluation.thresholds_file import calibrated_threshold

    for r in rows:  # each method's level and share of the maximum, as the table and its readers see them
        threshold = calibrated_threshold(out / "thresholds.json", r["label"])
        assert (f"{threshold.value:.4f}", f"{threshold.relative:.4f}") == (r["threshold"], r["relative"])
        assert f"{r['method']} {threshold.describe()}" in table
    scored = [c for c in browsed.cases if c.metrics]
    assert scored and all(set(c.metrics) == set(browsed.methods) for c in scored)
    assert all(c.image is not None and c.image.exists() for c in browsed.cases)
    # rerunning continues: training is complete and every heatmap is reused
    from napari_tonno.demo_viewer import demo_layers
    from tonno_engine.apps.benchmark import BenchmarkConfig, BenchmarkResult, benchmark_iter, default_methods
    from tonno_engine.methods.settings import ReconstructionSettings
    from tonno_engine.training.config import TrainConfig

    cfg = BenchmarkConfig(train=TrainConfig(steps=3, slice_size=32, norm="gn", device="cpu"),
                          methods=default_methods(3), settings=ReconstructionSettings(6, 12), device="cpu")
    result = [e for e in benchmark_iter(data, out, cfg) if isinstance(e, BenchmarkResult)][0]
    with open(out / "heatmaps" / "summary.csv", newline="") as fh:
        assert {r["status"] for r in csv.DictReader(fh)} == {"skipped"}
    assert [r["f1"] for r in result.rows] == pytest.approx([float(r["f1"]) for r in rows], abs=1e-4)
    layers = demo_layers(out, result)  # what `tonno demo --napari` shows
    assert [kind for _, _, kind in layers] == ["image", "labels"] + ["image"] * 5
    assert layers[0][0].shape == layers[-1][0].shape == (20, 20, 20)


def test_benchmark_with_chosen_methods_and_a_checkpoint(tmp_path, tiny_checkpoint):
    from tonno_engine.data.synth import SynthRequest, synthesize

    data = tmp_path / "data"
    list(synthesize(data, SynthRequest(kind="phantom", n=8, seed=4, shape=(16, 16, 16))))
    out = tmp_path / "bench"
    res = runner.invoke(app, ["benchmark", str(data), "-o", str(out), "-c", str(tiny_checkpoint), "--method",
                              "gradcam++,tonno", "-m", "averaged-cam", "--cam", "gradcam", "--layers", "3,4",
                              "--slices", "5", "--directions", "8", "--device", "cpu", "--resamples", "200", "-q"])
    assert res.exit_code == 0, res.output
    with open(out / "table.csv", newline="") as fh:
        assert [r["label"] for r in csv.DictReader(fh)] == ["gradcampp-l3", "tonno", "averaged-gradcam-l3",
                                                            "gradcampp-l4", "averaged-gradcam-l4"]
    bad = runner.invoke(app, ["benchmark", str(data), "-o", str(out), "--layers", "2,7"])
    assert bad.exit_code == 2 and "--layers" in bad.output
    assert not (out / "model").exists()  # the checkpoint was used, nothing trained
    import json

    assert json.loads((out / "benchmark.json").read_text())["trustworthy"] is None  # no run.json: its training unknown
    assert (out / "table.md").read_text().startswith("Test cases:")


def test_table_2_is_marked_not_trustworthy_by_the_verdict_beside_the_checkpoint(tmp_path, tiny_checkpoint):
    import json
    import shutil

    from tonno_engine.apps.benchmark import training_verdict_of, untrusted_line
    from tonno_engine.models.checkpoint import read_description

    run = tmp_path / "run"
    run.mkdir()
    checkpoint = shutil.copy(tiny_checkpoint, run / "checkpoint_best.pt")
    assert training_verdict_of(checkpoint) is None and untrusted_line(None, checkpoint) == ""
    verdict = {"learnt": False, "reasons": [{"code": "constant-output", "seen": "…", "advice": "…"}]}
    meta = read_description(checkpoint).as_meta()
    (run / "run.json").write_text(json.dumps({"meta": meta, "learning_verdict": verdict}))
    assert training_verdict_of(checkpoint) == verdict
    line = untrusted_line(verdict, checkpoint)
    assert line.startswith("Table 2 is not trustworthy") and "(constant-output;" in line and str(run) in line
    assert untrusted_line({"learnt": True, "reasons": []}, checkpoint) == ""
    few = untrusted_line({"learnt": False, "reasons": [{"code": "too-few-cases", "seen": "…", "advice": "…"}]},
                         checkpoint)  # it may have learnt: the line says the validation cannot tell, not that it did not
    assert few.startswith("Table 2 is not trustworthy") and "too few volumes to show" in few and "did not learn" not in few
    (run / "run.json").write_text(json.dumps({"meta": {**meta, "data_hash": "another"}, "learning_verdict": verdict}))
    assert training_verdict_of(checkpoint) is None  # the run.json of another training


def test_benchmark_needs_masks(tmp_path, tiny_checkpoint, tiny_cases):
    images = tiny_cases / "images"
    (tmp_path / "labels.csv").write_text(f"case,label,image\na,1,{images / 'phantom_0000.nii.gz'}\n"
                                         f"b,0,{images / 'phantom_0001.nii.gz'}\n")
    res = runner.invoke(app, ["benchmark", str(tmp_path), "-o", str(tmp_path / "o"), "-c", str(tiny_checkpoint)])
    assert res.exit_code == 1 and "needs ground-truth masks" in res.output


def test_a_signal_during_training_stops_the_benchmark_before_any_heatmap(tmp_path):
    import os
    import signal

    from tonno_engine.apps.benchmark import BenchmarkConfig, benchmark_iter
    from tonno_engine.base.errors import Stopped
    from tonno_engine.base.registry import MethodSpec
    from tonno_engine.data.synth import SynthRequest, synthesize
    from tonno_engine.methods.settings import ReconstructionSettings
    from tonno_engine.training.config import TrainConfig
    from tonno_engine.training.loop import TrainStep

    data = tmp_path / "data"
    list(synthesize(data, SynthRequest(kind="phantom", n=10, seed=3, shape=(16, 16, 16))))
    cfg = BenchmarkConfig(train=TrainConfig(steps=20, slice_size=32, norm="gn", device="cpu"),
                          methods=[MethodSpec("tonno")], settings=ReconstructionSettings(5, 8), device="cpu")
    events = benchmark_iter(data, tmp_path / "bench", cfg)
    with pytest.raises(Stopped, match="training stopped by SIGTERM at step 2 of 20"):
        for event in events:
            if isinstance(event, TrainStep) and event.done == 1:
                os.kill(os.getpid(), signal.SIGTERM)  # what SLURM sends before it kills a job
    assert not (tmp_path / "bench" / "heatmaps").exists() and not (tmp_path / "bench" / "table.md").exists()


def test_a_benchmark_matches_cases_to_the_checkpoint_by_image_content_not_by_name(tmp_path):
    """The checkpoint saw three of the folder's images for training and two for validation, under other names (a
    training CSV of its own): they calibrate or are left out, and only the images it never saw are tested."""
    import json

    import torch

    from tonno_engine.data.dataset import hash_cases, read_cases
    from tonno_engine.data.synth import SynthRequest, synthesize
    from tonno_engine.models.checkpoint import CheckpointDescription, save_checkpoint
    from tonno_engine.models.encoders import create_encoder

    data = tmp_path / "data"
    list(synthesize(data, SynthRequest(kind="phantom", n=10, seed=4, shape=(16, 16, 16))))
    cases = read_cases(data)
    images = hash_cases(cases)[1]
    positive = next(c.case for c in cases if c.label == 1)
    negative = next(c.case for c in cases if c.label == 0)
    validated = [positive, negative]
    trained = [c.case for c in cases if c.case not in validated][:3]
    hashes = {f"train_{k}": images[name] for k, name in enumerate(trained)}
    hashes |= {f"val_{k}": images[name] for k, name in enumerate(validated)} | {"elsewhere": "0" * 16}
    torch.manual_seed(0)
    description = CheckpointDescription(model="resnet10t", norm="gn", slice_size=32,
                                        preprocessing={"intensity": "none", "params": {}, "spacing": None},
                                        train_cases=("train_0", "train_1", "train_2", "elsewhere"),
                                        val_cases=("val_0", "val_1"), image_hashes=hashes)
    checkpoint = save_checkpoint(tmp_path / "ckpt.pt", create_encoder("resnet10t", norm="gn"), description)
    out = tmp_path / "bench"
    res = runner.invoke(app, ["benchmark", str(data), "-o", str(out), "-c", str(checkpoint), "--method", "tonno",
                              "--slices", "5", "--directions", "8", "--device", "cpu", "--resamples", "200"])
    assert res.exit_code == 0, res.output
    made_by = json.loads((out / "benchmark.json").read_text())
    assert sorted(made_by["validation_cases"]) == sorted(validated)
    assert made_by["test_cases"] == [c.case for c in cases if c.case not in validated + trained]
    assert "3 of its 10 cases are images its training run saw" in " ".join(res.output.split())


def test_a_checkpoint_without_image_hashes_on_other_data_of_the_same_names_is_benchmarked_with_a_notice(tmp_path):
    """A checkpoint from before image hashes cannot tell whether it saw a case of the same name: the data is split in
    halves as other data, and the user is told."""
    import torch

    from tonno_engine.data.synth import SynthRequest, synthesize
    from tonno_engine.models.checkpoint import CheckpointDescription, save_checkpoint
    from tonno_engine.models.encoders import create_encoder

    data = tmp_path / "data"
    list(synthesize(data, SynthRequest(kind="phantom", n=8, seed=4, shape=(16, 16, 16))))
    torch.manual_seed(0)
    description = CheckpointDescription(model="resnet10t", norm="gn", slice_size=32,
                                        preprocessing={"intensity": "none", "params": {}, "spacing": None},
                                        train_cases=("phantom_0000", "phantom_0001"), val_cases=("phantom_0002",),
                                        data_hash="0" * 64)
    checkpoint = save_checkpoint(tmp_path / "ckpt.pt", create_encoder("resnet10t", norm="gn"), description)
    res = runner.invoke(app, ["benchmark", str(data), "-o", str(tmp_path / "bench"), "-c", str(checkpoint), "--method",
                              "tonno", "--slices", "5", "--directions", "8", "--device", "cpu", "--resamples", "200"])
    assert res.exit_code == 0, res.output
    assert "3 of its cases share names with the cases" in " ".join(res.output.split())
