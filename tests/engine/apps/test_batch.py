"""``tonno reconstruct``: batches of files, folders and CSVs; failures, --continue, kill -9, OOM."""

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tonno_cli.app import app
from tonno_engine.apps import batch
from tonno_engine.apps.batch import BatchConfig, BatchResult, reconstruct_batch_iter
from tonno_engine.base.errors import DataError
from tonno_engine.base.registry import MethodSpec
from tonno_engine.methods.settings import ReconstructionSettings

FAST = ["--slices", "6", "--directions", "16", "--device", "cpu", "-q"]
runner = CliRunner()


def _summary(out):
    with open(out / "summary.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_folder_with_two_methods(tiny_cases, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(app, ["reconstruct", "-i", str(tiny_cases), "-o", str(out), "-c", str(tiny_checkpoint),
                              "--method", "tonno,layercam", "--layer", "3", *FAST])
    assert res.exit_code == 0, res.output
    assert "device: cpu" in res.output
    rows = _summary(out)
    assert sorted((r["case"], r["method"]) for r in rows) == sorted(
        (f"phantom_{i:04d}", m) for i in range(4) for m in ("tonno", "layercam-l3"))
    assert all(r["status"] == "ok" and float(r["seconds"]) > 0 and float(r["peak_rss_mb"]) > 0 for r in rows)
    for row in rows:
        heat = nib.load(out / row["output"])
        src = nib.load(tiny_cases / "images" / f"{row['case']}.nii.gz")
        assert heat.get_data_dtype() == np.float32 and heat.shape == src.shape
        np.testing.assert_allclose(heat.affine, src.affine)
        assert np.isfinite(heat.get_fdata()).all()
    info = json.loads((out / "run.json").read_text())
    assert info["checkpoint_sha256"] == hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    assert info["device"] == "cpu" and info["counts"] == {"ok": 8, "skipped": 0, "failed": 0}
    assert info["arguments"]["slices"] == 6 and info["versions"]["torch"] is not None


def test_bad_cases_are_reported_and_the_batch_goes_on(tiny_cases, tiny_checkpoint, tmp_path):
    (tmp_path / "corrupt.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    rows = ["case,label,image", f"good,1,{tiny_cases / 'images' / 'phantom_0000.nii.gz'}", "missing,0,nowhere.nii.gz",
            f"corrupt,0,{tmp_path / 'corrupt.nii.gz'}", f"good2,0,{tiny_cases / 'images' / 'phantom_0001.nii.gz'}"]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    res = runner.invoke(app, ["reconstruct", "-i", str(tmp_path / "list.csv"), "-o", str(out), "-c",
                              str(tiny_checkpoint), *FAST])
    assert res.exit_code == 1
    status = {r["case"]: r for r in _summary(out)}
    assert {k: v["status"] for k, v in status.items()} == {"good": "ok", "missing": "failed", "corrupt": "failed",
                                                          "good2": "ok"}
    assert "nowhere.nii.gz" in status["missing"]["error"] and "not found" in status["missing"]["error"]
    assert "corrupt.nii.gz" in status["corrupt"]["error"] and "unreadable" in status["corrupt"]["error"]
    assert "failed: missing" in res.output and "2 done, 0 skipped, 2 failed" in res.output
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["good2_tonno.nii.gz", "good_tonno.nii.gz"]


def test_existing_outputs_need_continue_or_overwrite(tiny_cases, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    image = tiny_cases / "images" / "phantom_0002.nii.gz"
    args = ["reconstruct", "-i", str(image), "-o", str(out), "-c", str(tiny_checkpoint), *FAST]
    assert runner.invoke(app, args).exit_code == 0
    target = out / "phantom_0002_tonno.nii.gz"
    stamp = target.stat().st_mtime_ns
    res = runner.invoke(app, args)
    assert res.exit_code == 1 and "--continue" in res.output and target.stat().st_mtime_ns == stamp
    res = runner.invoke(app, [*args, "--continue"])
    assert res.exit_code == 0 and "0 done, 1 skipped" in res.output and target.stat().st_mtime_ns == stamp
    assert _summary(out)[0]["status"] == "skipped" and float(_summary(out)[0]["seconds"]) > 0
    res = runner.invoke(app, [*args, "--overwrite"])
    assert res.exit_code == 0 and "1 done" in res.output and target.stat().st_mtime_ns != stamp


def test_bad_arguments_fail_before_anything_is_written(tiny_cases, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    base = ["reconstruct", "-o", str(out), "-c", str(tiny_checkpoint), *FAST]
    res = runner.invoke(app, [*base, "-i", str(tmp_path / "nothing")])
    assert res.exit_code == 1 and "nothing" in res.output and "input not found" in res.output
    res = runner.invoke(app, [*base, "-i", str(tiny_cases), "--method", "gradcam3d"])
    assert res.exit_code == 2 and "unknown method" in res.output
    res = runner.invoke(app, ["reconstruct", "-i", str(tiny_cases), "-o", str(out), "-c", str(tmp_path / "x.pt"), *FAST])
    assert res.exit_code == 1 and "checkpoint not found" in res.output
    assert not out.exists()


def test_out_of_memory_halves_the_batch_and_retries(tiny_cases, tiny_checkpoint, tmp_path, monkeypatch):
    real = batch.reconstruct_case_iter

    def picky(scan, checkpoint, specs, settings, **kw):
        if settings.batch_size > 16:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(scan, checkpoint, specs, settings, **kw)

    monkeypatch.setattr(batch, "reconstruct_case_iter", picky)
    cfg = BatchConfig(methods=[MethodSpec("tonno")], settings=ReconstructionSettings(6, 16, batch_size=64), device="cpu")
    events = list(reconstruct_batch_iter(tiny_cases / "images" / "phantom_0003.nii.gz", tmp_path / "o", tiny_checkpoint, cfg))
    assert [e.batch_size for e in events if isinstance(e, batch.BatchSizeHalved)] == [32, 16]
    result = events[-1]
    assert isinstance(result, BatchResult) and result.rows[0]["status"] == "ok" and result.rows[0]["batch_size"] == "16"


def test_folder_of_nifti_files_and_duplicate_names(tiny_cases, tmp_path):
    inputs = batch.batch_inputs(tiny_cases / "images")
    assert [i.case for i in inputs] == [f"phantom_{i:04d}" for i in range(4)]
    (tmp_path / "a.nii").write_bytes((tiny_cases / "images" / "phantom_0000.nii.gz").read_bytes())
    (tmp_path / "a.nii.gz").write_bytes((tiny_cases / "images" / "phantom_0000.nii.gz").read_bytes())
    with pytest.raises(DataError, match="share the case name"):
        batch.batch_inputs(tmp_path)


@pytest.mark.slow
def test_kill_9_then_continue(tiny_cases, tiny_checkpoint, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(8):  # eight cases, copies of the four phantoms
        (images / f"v{i}.nii.gz").write_bytes((tiny_cases / "images" / f"phantom_{i % 4:04d}.nii.gz").read_bytes())
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", "from tonno_cli.app import main; main()", "reconstruct", "-i", str(images),
           "-o", str(out), "-c", str(tiny_checkpoint), "--slices", "12", "--directions", "96", "--device", "cpu", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(list(out.glob("v*_tonno.nii.gz"))) < 3:
        time.sleep(0.02)
    assert proc.poll() is None, "the batch ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p.name for p in out.glob("v*_tonno.nii.gz")}
    assert 3 <= len(before) < 8
    done = subprocess.run([*cmd, "--continue"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = _summary(out)
    assert sorted(r["case"] for r in rows) == [f"v{i}" for i in range(8)]  # each case exactly once
    assert {r["case"] for r in rows if r["status"] == "skipped"} == {n.split("_")[0] for n in before}
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".nii.gz")) == [f"v{i}_tonno.nii.gz" for i in range(8)]
    assert not list(out.glob(".*part*"))
    reference = tmp_path / "reference"
    subprocess.run([*cmd[:7], str(reference), *cmd[8:]], check=True, capture_output=True)
    for i in range(8):  # none is corrupt: every file loads and equals an uninterrupted run's
        got = nib.load(out / f"v{i}_tonno.nii.gz").get_fdata()
        np.testing.assert_array_equal(got, nib.load(reference / f"v{i}_tonno.nii.gz").get_fdata())


def test_quality_preset_with_overrides(tiny_cases, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(app, ["reconstruct", "-i", str(tiny_cases / "images" / "phantom_0000.nii.gz"), "-o", str(out),
                              "-c", str(tiny_checkpoint), "--quality", "preview", "--directions", "8", "--device", "cpu",
                              "-q"])
    assert res.exit_code == 0, res.output
    args = json.loads((out / "run.json").read_text())["arguments"]
    from tonno_engine.methods.settings import PRESETS

    assert (args["slices"], args["directions"], args["hemisphere"]) == (PRESETS["preview"].slices, 8, True)
    fine = tmp_path / "fine"  # one offset per voxel: resolved per case, recorded as such
    res = runner.invoke(app, ["reconstruct", "-i", str(tiny_cases / "images" / "phantom_0000.nii.gz"), "-o", str(fine),
                              "-c", str(tiny_checkpoint), "--quality", "fine", "--directions", "4", "--device", "cpu",
                              "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads((fine / "run.json").read_text())["arguments"]["slices"] is None
    assert (fine / "phantom_0000_tonno.nii.gz").exists()
    res = runner.invoke(app, ["reconstruct", "-i", str(tiny_cases), "-o", str(out), "-c", str(tiny_checkpoint),
                              "--quality", "draft"])
    assert res.exit_code == 2 and "unknown quality preset" in res.output
