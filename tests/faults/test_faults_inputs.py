"""Fault injection, inputs a command should read or refuse up front: trials of docs/faults.md ("What happens when…").

- Trial 12: ``tonno pretrain`` with one plane a step (``--batch-volumes 1 --slices-per-volume 1``) had a contrastive
  loss without negatives (0 at every step), trained nothing and wrote its random start as the encoder, exit 0.
- Trial 8: ``tonno reconstruct`` and ``tonno segment predict`` refused a CT-RATE-style CSV (an id column
  ``VolumeName``, no ``label`` column) that ``tonno train --id-column`` reads.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from tonno_cli.app import app

runner = CliRunner()
PRETRAIN = ["--model", "resnet10t", "--norm", "gn", "--slice-size", "16", "--steps", "2", "--checkpoint-every", "2",
            "--device", "cpu", "-q"]


# 12. one plane a step: the contrastive loss has no negatives
def test_pretrain_with_one_plane_a_step_is_a_usage_error_and_writes_nothing(tiny_cases, tmp_path):
    from tonno_engine.training.config import pretrain_config

    out = tmp_path / "pre"
    res = runner.invoke(app, ["pretrain", str(tiny_cases), "--out", str(out), *PRETRAIN,
                              "--batch-volumes", "1", "--slices-per-volume", "1"])
    assert res.exit_code == 2, res.output
    message = " ".join(res.output.split())  # typer wraps the usage error in a box
    assert "--batch-volumes" in message and "--slices-per-volume" in message and "negatives" in message
    assert not out.exists()
    with pytest.raises(ValueError, match="at least 2"):  # the Python API refuses it too
        pretrain_config({"batch_volumes": 1, "slices_per_volume": 1})
    assert pretrain_config({"batch_volumes": 2, "slices_per_volume": 1}).batch_volumes == 2


def test_a_pretraining_whose_loss_stays_zero_writes_no_encoder(tiny_cases, tmp_path, monkeypatch):
    import tonno_engine.training.loop as loop

    monkeypatch.setattr(loop, "nt_xent", lambda temperature: lambda flat, y: flat.sum() * 0.0)
    out = tmp_path / "pre"
    res = runner.invoke(app, ["pretrain", str(tiny_cases), "--out", str(out), *PRETRAIN,
                              "--batch-volumes", "2", "--slices-per-volume", "1"])
    assert res.exit_code == 1, res.output
    assert "0 at every step" in res.output and "encoder.pth is not written" in res.output
    assert not (out / "encoder.pth").exists()


# 8. a CT-RATE-style CSV: an id column holding the image paths, finding columns, no label column
def _ct_rate_csv(tiny_cases, tmp_path):
    volumes = tmp_path / "data" / "volumes"
    volumes.mkdir(parents=True)
    for name in ("phantom_0000", "phantom_0001"):
        shutil.copy(tiny_cases / "images" / f"{name}.nii.gz", volumes / f"{name}.nii.gz")
    csv = tmp_path / "data" / "ct.csv"
    csv.write_text("VolumeName,Nodule\nvolumes/phantom_0000.nii.gz,1\nvolumes/phantom_0001.nii.gz,\n")
    return csv


def test_reconstruct_and_predict_read_a_csv_by_its_id_column_without_labels(tiny_cases, tiny_checkpoint, tmp_path):
    from tonno_engine.apps.results import ResultsFolder
    from tonno_engine.models.segmenter import build_unet, save_segmenter

    csv = _ct_rate_csv(tiny_cases, tmp_path)
    fast = ["--slices", "6", "--directions", "60", "--device", "cpu", "-q"]
    out = tmp_path / "heat"
    res = runner.invoke(app, ["reconstruct", "-i", str(csv), "-o", str(out), "-c", str(tiny_checkpoint), *fast,
                              "--id-column", "VolumeName"])
    assert res.exit_code == 0, res.output
    assert (out / "phantom_0000_tonno.nii.gz").exists() and (out / "phantom_0001_tonno.nii.gz").exists()
    assert json.loads((out / "run.json").read_text())["id_column"] == "VolumeName"
    shown = ResultsFolder.open(out)  # the Results browser finds each case's image through the same column
    assert {c.case: c.image.name for c in shown.cases} == {"phantom_0000": "phantom_0000.nii.gz",
                                                            "phantom_0001": "phantom_0001.nii.gz"}
    without = runner.invoke(app, ["reconstruct", "-i", str(csv), "-o", str(tmp_path / "x"), "-c",
                                  str(tiny_checkpoint), *fast])
    assert without.exit_code == 1 and "missing column(s) case" in without.output  # it never asks for a label
    assert "label" not in without.output.split("need")[-1]

    segmenter = save_segmenter(tmp_path / "segmenter.pt", build_unet(),
                               {"channels": [16, 32, 64, 128], "strides": [2, 2, 2], "res_units": 1, "patch": 16,
                                "preprocessing": {"intensity": "robust"}})
    pred = tmp_path / "pred"
    torch.manual_seed(0)
    res = runner.invoke(app, ["segment", "predict", str(segmenter), str(csv), "-o", str(pred), "--id-column",
                              "VolumeName", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    assert "2 written" in res.output and (pred / "phantom_0001_stage2.nii.gz").exists()
