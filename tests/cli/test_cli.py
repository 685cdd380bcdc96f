import json
import subprocess
import sys

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from tonno_cli.app import app

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("info", "selfcheck"):
        assert command in result.output


def test_info_reports_devices_and_auto_choice():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    assert "auto picks" in result.output and "torch" in result.output and "cpu" in result.output


def test_selfcheck_bad_device_is_a_usage_error():
    result = runner.invoke(app, ["selfcheck", "--device", "quantum"])
    assert result.exit_code == 2
    assert "quantum" in result.output


def test_selfcheck_console_script_passes_and_prints_numbers():
    exe = [sys.executable, "-c", "from tonno_cli.app import main; main()"]
    proc = subprocess.run([*exe, "selfcheck", "--device", "cpu", "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["passed"] and result["correlation"] >= 0.97 and result["relative_error"] <= 0.2
    assert result["seconds"] > 0


def test_synth_and_its_errors(tmp_path):
    out = tmp_path / "data"
    result = runner.invoke(app, ["synth", str(out), "--n", "4", "--shape", "16,16,16", "-q"])
    assert result.exit_code == 0, result.output
    assert (out / "labels.csv").read_text().count("\n") == 5
    again = runner.invoke(app, ["synth", str(out), "--n", "4", "--shape", "16,16,16", "-q"])
    assert again.exit_code == 1 and "not empty" in again.output
    bad = runner.invoke(app, ["synth", str(tmp_path / "x"), "--kind", "liver", "-q"])
    assert bad.exit_code == 2 and "unknown kind 'liver'" in bad.output


def test_train_bad_input_exits_nonzero_and_leaves_nothing(tmp_path):
    run = tmp_path / "run"
    missing = runner.invoke(app, ["train", str(tmp_path / "nope"), "--out", str(run), "-q"])
    assert missing.exit_code == 1 and "nope" in missing.output and "not found" in missing.output
    (tmp_path / "labels.csv").write_text("case,label,image\na,1,a.nii.gz\nb,0,b.nii.gz\n")
    (tmp_path / "a.nii.gz").write_bytes(b"\x1f\x8b truncated")
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), str(tmp_path / "b.nii.gz"))
    broken = runner.invoke(app, ["train", str(tmp_path), "--out", str(run), "-q", "--device", "cpu"])
    assert broken.exit_code == 1 and "a.nii.gz" in broken.output and "unreadable or truncated" in broken.output
    assert not run.exists()
    device = runner.invoke(app, ["train", str(tmp_path), "--out", str(run), "--device", "quantum"])
    assert device.exit_code == 2


def test_a_dicom_data_set_trains_reconstructs_and_evaluates(tmp_path):
    data, run, heat = tmp_path / "data", tmp_path / "run", tmp_path / "heat"
    made = runner.invoke(app, ["synth", str(data), "--n", "4", "--shape", "24,24,24", "--format", "dicom", "-q"])
    assert made.exit_code == 0, made.output
    assert (data / "images" / "phantom_0000").is_dir() and "images/phantom_0000," in (data / "labels.csv").read_text()
    trained = runner.invoke(app, ["train", str(data), "--out", str(run), "--slice-size", "32", "--steps", "2",
                                  "--batch-volumes", "2", "--slices-per-volume", "2", "--norm", "gn", "--device", "cpu",
                                  "--val-every", "2", "-q"])
    assert trained.exit_code == 0, trained.output
    done = runner.invoke(app, ["reconstruct", "-i", str(data), "-o", str(heat), "-c", str(run / "checkpoint_last.pt"),
                               "--slices", "6", "--directions", "8", "--device", "cpu", "-q"])
    assert done.exit_code == 0, done.output
    scored = runner.invoke(app, ["evaluate", str(heat), str(data), "-o", str(tmp_path / "metrics.csv")])
    assert scored.exit_code == 0, scored.output
    rows = (tmp_path / "metrics.csv").read_text().strip().splitlines()[1:]
    assert sorted(r.split(",")[2] for r in rows) == ["ok"] * 4 + ["summary"]  # ground truth paired for every case


def test_angles_is_a_deprecated_spelling_of_directions(tiny_cases, tiny_checkpoint, tmp_path):
    out = tmp_path / "heat"
    res = runner.invoke(app, ["reconstruct", "-i", str(tiny_cases / "images" / "phantom_0001.nii.gz"), "-o", str(out),
                              "-c", str(tiny_checkpoint), "--slices", "4", "--angles", "6", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    assert "--angles is deprecated" in res.output and "use --directions" in res.output
    assert json.loads((out / "run.json").read_text())["arguments"]["directions"] == 6


def test_solver_options_reach_the_iterative_method_and_its_provenance(tiny_cases, tiny_checkpoint, tmp_path):
    from tonno_engine.data.nifti import read_provenance

    out = tmp_path / "heat"
    image = tiny_cases / "images" / "phantom_0001.nii.gz"
    res = runner.invoke(app, ["reconstruct", "-i", str(image), "-o", str(out), "-c", str(tiny_checkpoint),
                              "-m", "tonno,tonno-iterative", "--slices", "4", "--directions", "6", "--regulariser", "tv",
                              "--nonnegative", "--iterations", "3", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    made = {p.name for p in out.glob("*.nii.gz")}
    assert made == {"phantom_0001_tonno.nii.gz", "phantom_0001_tonno-iterative-tv0.1-nonneg-it3.nii.gz"}
    heat = nib.load(out / "phantom_0001_tonno-iterative-tv0.1-nonneg-it3.nii.gz").get_fdata()
    assert heat.min() >= 0 and heat.max() > 0
    solver = read_provenance(out / "phantom_0001_tonno-iterative-tv0.1-nonneg-it3.nii.gz")["parts"]["method"]["solver"]
    assert solver["regulariser"] == "tv" and solver["strength"] == 0.1 and solver["iterations"] == 3
    assert "solver" not in read_provenance(out / "phantom_0001_tonno.nii.gz")["parts"]["method"]
    alone = runner.invoke(app, ["reconstruct", "-i", str(image), "-o", str(tmp_path / "x"), "-c", str(tiny_checkpoint),
                                "-m", "tonno", "--regulariser", "tv", "--device", "cpu", "-q"])
    assert alone.exit_code == 2 and "apply to the iterative methods" in alone.output
    assert not (tmp_path / "x").exists()
