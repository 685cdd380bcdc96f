"""Fault injection, issue 43 (minor trials): a heatmap of another image, a benchmark stopped by SIGTERM while it
reconstructs, Table 2's intervals over too few test cases, a segmenter checkpoint given where a classifier's belongs.

Each test is a trial of docs/faults.md: it makes the situation, runs the command a user would and asserts the
outcome (exit code, the one line that names the cause).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from tonno_cli.app import app

runner = CliRunner()
FAST = ["--slices", "5", "--directions", "8", "--device", "cpu", "-q"]


@pytest.fixture(autouse=True)
def _no_nnunet_check(monkeypatch):
    """nnU-Net's own integrity check (a child process, ~30 s) is not what these trials test."""
    monkeypatch.setattr("tonno_engine.apps.export_nnunet.nnunet_integrity_check", lambda folder: "not run (test)")


def _copy(tiny_cases, tmp_path):
    """A copy of the session's phantoms that a trial may change."""
    return shutil.copytree(tiny_cases, tmp_path / "data")


# 1. a heatmap made from another image is named as such; "stale" stays for the same image changed since
def test_export_names_a_heatmap_of_another_image_and_a_stale_one_apart(tiny_cases, tiny_checkpoint, tmp_path):
    data = _copy(tiny_cases, tmp_path)
    heat = tmp_path / "heat"
    made = runner.invoke(app, ["reconstruct", "-i", str(data), "-o", str(heat), "-c", str(tiny_checkpoint),
                               "--method", "tonno", *FAST])
    assert made.exit_code == 0, made.output
    export = ["export", "nnunet", "--heatmaps", str(heat), "--level", "0.5", "-q"]
    # the labels now give phantom_0000 the image of phantom_0001 (same grid): its heatmap was made from another image
    labels = data / "labels.csv"
    original = labels.read_text()
    labels.write_text(original.replace("0000,1,images/phantom_0000.nii.gz", "0000,1,images/phantom_0001.nii.gz"))
    other = runner.invoke(app, [*export[:2], str(data), *export[2:], "-o", str(tmp_path / "raw")])
    assert other.exit_code == 1 and "Traceback" not in other.output
    flat = " ".join(other.output.split())
    assert "made from another image" in flat and "stale" not in flat, other.output
    assert "phantom_0000.nii.gz (recorded: 1 files," in flat and "≠" in flat and "phantom_0001.nii.gz" in flat
    # the same image, changed after its heatmap was made: stale
    labels.write_text(original)
    image = data / "images" / "phantom_0000.nii.gz"
    later = image.stat().st_mtime_ns + 10**9
    os.utime(image, ns=(later, later))
    stale = runner.invoke(app, [*export[:2], str(data), *export[2:], "-o", str(tmp_path / "raw")])
    assert stale.exit_code == 1
    flat = " ".join(stale.output.split())
    assert "stale heatmap" in flat and "changed after it was made" in flat and "another image" not in flat
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").glob("Dataset*"))


# 2. SIGTERM while `tonno benchmark` reconstructs: one line, it was stopped and running it again continues
def test_sigterm_during_the_benchmarks_reconstruction_says_it_stopped_and_how_to_continue(tiny_cases, tiny_checkpoint,
                                                                                           tmp_path):
    out = tmp_path / "bench"
    cmd = [sys.executable, "-c", "from tonno_cli.app import main; main()", "benchmark", str(tiny_cases), "-o", str(out),
           "-c", str(tiny_checkpoint), "--method", "tonno", "--slices", "24", "--directions", "4000", "--device", "cpu",
           "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not (out / "heatmaps" / "run.json").exists():
            time.sleep(0.05)
        assert proc.poll() is None, "the benchmark ended before its reconstruction could be stopped"
        assert (out / "heatmaps" / "run.json").exists(), "the reconstruction did not start"
        proc.send_signal(signal.SIGTERM)  # what SLURM sends before it kills a job
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert "stopped by SIGTERM" in lines[0] and "again" in lines[0] and "continue" in lines[0], lines[0]
    assert not (out / "table.md").exists() and not list(out.rglob(".tonno-part*"))


# 3. Table 2's intervals over 2 test cases (one with lesions): a note, never [nan, nan]
def test_benchmark_notes_intervals_it_cannot_compute_over_too_few_test_cases(tiny_cases, tiny_checkpoint, tmp_path):
    out = tmp_path / "bench"
    res = runner.invoke(app, ["benchmark", str(tiny_cases), "-o", str(out), "-c", str(tiny_checkpoint), "--method",
                              "tonno", *FAST])
    assert res.exit_code == 0, res.output
    table = (out / "table.md").read_text()
    assert "Test cases: 2" in table
    assert "nan" not in table.lower(), table
    from tonno_engine.evaluation.bootstrap import MIN_CASES

    assert f"intervals need at least {MIN_CASES} test cases with lesions; here 1: not computed" in table, table
    assert "95 % bootstrap intervals over the test cases" not in table
    assert "AUC" in table and "interval not computed" in table, table


# 4. a segmenter checkpoint given to `tonno reconstruct`
def test_reconstruct_names_a_segmenter_checkpoint_as_one(tiny_cases, tmp_path):
    from tonno_engine.models.segmenter import build_unet, save_segmenter

    (tmp_path / "seg").mkdir()
    segmenter = save_segmenter(tmp_path / "seg" / "segmenter.pt", build_unet(), {"step": 1})
    res = runner.invoke(app, ["reconstruct", "-i", str(tiny_cases), "-o", str(tmp_path / "o"), "-c", str(segmenter),
                              *FAST])
    assert res.exit_code == 1 and "Traceback" not in res.output
    flat = " ".join(res.output.split())
    assert "segmenter checkpoint" in flat and "tonno segment train" in flat and "tonno segment predict" in flat, flat
    assert "not a tonno checkpoint" not in flat and not (tmp_path / "o").exists()
