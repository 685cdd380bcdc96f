"""Fault injection, locks: every command that writes a folder holds its lock, one folder holds one segmenter's
predictions, and ``tonno evaluate`` says when a run is still writing the heatmaps it reads (docs/faults.md).

A second process is simulated as in ``test_faults.py``: this process holds ``folder_lock(OUT)`` (``flock`` on a
second open file conflicts as another process's would) while the command runs.
"""

from __future__ import annotations

import json
import os
import socket

import nibabel as nib
import pytest
import torch
from typer.testing import CliRunner

from tonno_cli.app import app
from tonno_engine.base.folder_lock import LOCK_NAME, folder_lock

runner = CliRunner()
BENCH = ["--method", "tonno", "--slices", "5", "--directions", "8", "--device", "cpu", "--resamples", "200", "-q"]


def _segmenter(path, seed: int):
    """A small untrained segmenter (16³ patches); another ``seed``, another segmenter (weights and SHA-256)."""
    from tonno_engine.models.segmenter import build_unet, save_segmenter

    torch.manual_seed(seed)
    return save_segmenter(path, build_unet(), {"channels": [16, 32, 64, 128], "strides": [2, 2, 2], "res_units": 1,
                                               "patch": 16, "preprocessing": {"intensity": "robust"}})


def _predict(checkpoint, source, out, *extra):
    return runner.invoke(app, ["segment", "predict", str(checkpoint), str(source), "-o", str(out), "--device", "cpu",
                               "-q", *extra])


def _segmenter_of(path) -> str:
    from tonno_engine.data.nifti import read_provenance

    return read_provenance(path)["parts"]["segmenter_sha256"]


# 1. two writers, one folder: each command that writes a folder is refused while another process writes there
@pytest.mark.parametrize("command", ["segment predict", "synth", "evaluate --masks", "benchmark"])
def test_every_command_that_writes_a_folder_refuses_a_second_writer(command, tmp_path, tiny_cases, tiny_checkpoint,
                                                                    masked_phantoms):
    out = tmp_path / "out"
    if command == "segment predict":
        args = ["segment", "predict", str(_segmenter(tmp_path / "a.pt", 0)), str(tiny_cases), "-o", str(out),
                "--device", "cpu", "-q"]
    elif command == "synth":  # --overwrite: the lock's own files make the folder non-empty
        args = ["synth", str(out), "--n", "2", "--shape", "16,16,16", "--overwrite", "-q"]
    elif command == "evaluate --masks":
        _, heat = masked_phantoms(4)
        args = ["evaluate", str(heat), str(tmp_path / "data"), "-o", str(tmp_path / "m.csv"), "--masks", str(out), "-q"]
    else:
        from tonno_engine.data.synth import SynthRequest, synthesize

        list(synthesize(tmp_path / "data", SynthRequest(kind="phantom", n=10, seed=4, shape=(16, 16, 16))))
        args = ["benchmark", str(tmp_path / "data"), "-o", str(out), "-c", str(tiny_checkpoint), *BENCH]
    with folder_lock(out):
        res = runner.invoke(app, args)
        assert res.exit_code == 1, res.output
        assert "another tonno process is writing here" in res.output and f"pid {os.getpid()}" in res.output
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written beside the first writer


# 2. predictions of two segmenters in one folder
def test_predictions_of_another_segmenter_are_refused_unless_overwritten(tmp_path, tiny_cases):
    first, second = _segmenter(tmp_path / "a.pt", 0), _segmenter(tmp_path / "b.pt", 1)
    out = tmp_path / "pred"
    assert "4 written" in _predict(first, tiny_cases, out).output
    made = _segmenter_of(out / "phantom_0000_stage2.nii.gz")
    res = _predict(second, tiny_cases, out)
    assert res.exit_code == 1
    assert "4 prediction(s) made by another segmenter" in res.output and "would mix two models' predictions" in res.output
    assert str(first) in res.output and str(second) in res.output and "--overwrite" in res.output
    assert all(_segmenter_of(p) == made for p in out.glob("*_stage2.nii.gz"))  # untouched
    one = _predict(second, tiny_cases / "images" / "phantom_0000.nii.gz", out, "--overwrite")
    assert one.exit_code == 0 and "1 written" in one.output, one.output
    assert "3 prediction(s) made by another segmenter" in one.output and "still mixes" in one.output
    rest = _predict(second, tiny_cases, out, "--overwrite")
    assert rest.exit_code == 0 and "3 written, 1 up to date" in rest.output and "warning" not in rest.output
    assert {_segmenter_of(p) for p in out.glob("*_stage2.nii.gz")} == {_segmenter_of(out / "phantom_0000_stage2.nii.gz")}
    assert _segmenter_of(out / "phantom_0000_stage2.nii.gz") != made
    again = _predict(second, tiny_cases, out)  # its own predictions: no flag needed
    assert again.exit_code == 0 and "4 up to date" in again.output


def test_a_prediction_without_provenance_counts_as_another_segmenters(tmp_path, tiny_cases):
    out = tmp_path / "pred"
    out.mkdir()
    image = nib.load(tiny_cases / "images" / "phantom_0001.nii.gz")
    nib.save(nib.Nifti1Image(image.get_fdata().astype("float32"), image.affine), out / "phantom_0001_stage2.nii.gz")
    res = _predict(_segmenter(tmp_path / "a.pt", 0), tiny_cases, out)
    assert res.exit_code == 1 and "no provenance says which" in res.output, res.output


# 3. evaluate while a run writes the heatmaps
def test_evaluate_warns_about_a_heatmap_folder_a_run_is_still_writing(tmp_path, masked_phantoms):
    _, heat = masked_phantoms(4)
    args = ["evaluate", str(heat), str(tmp_path / "data"), "-o", str(tmp_path / "m.csv"), "-q"]
    with folder_lock(heat):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
        assert f"warning: {heat} is still being written by a tonno run (pid {os.getpid()} on" in res.output
        assert "its heatmaps may be incomplete" in res.output and "F1 1.000" in res.output
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and "still being written" not in res.output


def test_a_writers_record_without_its_lock_is_not_a_writer(tmp_path):
    """Details left by a process killed on another host (its PID cannot be checked from here): the lock itself,
    free, says nobody writes; the reader removes nothing."""
    from tonno_engine.base.folder_lock import writer_of

    assert writer_of(tmp_path) is None
    with folder_lock(tmp_path):
        assert f"pid {os.getpid()} on {socket.gethostname()}" in writer_of(tmp_path)
    stale = tmp_path / f"{LOCK_NAME}.4242"
    stale.write_text(json.dumps({"pid": 4242, "host": "elsewhere", "command": "tonno reconstruct", "started": "x"}))
    assert writer_of(tmp_path) is None and stale.exists()
