"""Fault injection: each trial of docs/faults.md ("What happens when…") as a test.

Every trial makes one bad situation (a stale folder, a failed case, a corrupt file, a full disk, a
second writer, …), runs the command a user would, and asserts the loud outcome: the exit code, the
message naming the file and cause, and what is (not) left on disk. The table in docs/faults.md lists
the same trials with the messages they print.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tonno_cli.app import app
from tonno_engine.base.errors import DataError

runner = CliRunner()
FAST = ["--slices", "6", "--directions", "60", "--device", "cpu", "-q"]
TRAIN = ["--model", "resnet10t", "--norm", "gn", "--slice-size", "32", "--batch-volumes", "2",
         "--slices-per-volume", "2", "--val-every", "2", "--checkpoint-every", "2", "--device", "cpu", "-q"]


def reconstruct(src, out, ckpt, *extra):
    return runner.invoke(app, ["reconstruct", "-i", str(src), "-o", str(out), "-c", str(ckpt), *FAST, *extra])


def _other_checkpoint(tiny_checkpoint, tmp_path):
    from tonno_engine.models.checkpoint import read_description, save_checkpoint
    from tonno_engine.models.encoders import create_encoder

    description = read_description(tiny_checkpoint)
    torch.manual_seed(1)
    return save_checkpoint(tmp_path / "other.pt", create_encoder("resnet10t", norm="gn"), description)


# 1. --continue with another checkpoint and --directions: refused, listing what differs
def test_continue_refuses_outputs_made_with_other_settings(tiny_cases, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    assert reconstruct(tiny_cases / "images" / "phantom_0000.nii.gz", out, tiny_checkpoint).exit_code == 0
    before = (out / "phantom_0000_tonno.nii.gz").read_bytes()
    res = reconstruct(tiny_cases, out, _other_checkpoint(tiny_checkpoint, tmp_path), "--continue", "--directions", "80")
    assert res.exit_code == 1
    assert "--continue would mix results" in res.output and "phantom_0000_tonno.nii.gz" in res.output
    assert "checkpoint" in res.output and "settings.directions 60 → 80" in res.output
    assert (out / "phantom_0000_tonno.nii.gz").read_bytes() == before
    assert not (out / "phantom_0001_tonno.nii.gz").exists()


def test_continue_skips_matching_outputs_and_run_json_says_who_made_them(tiny_cases, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    assert reconstruct(tiny_cases / "images" / "phantom_0000.nii.gz", out, tiny_checkpoint).exit_code == 0
    first = json.loads((out / "run.json").read_text())["started"]
    res = reconstruct(tiny_cases, out, tiny_checkpoint, "--continue")
    assert res.exit_code == 0, res.output
    cases = {c["case"]: c for c in json.loads((out / "run.json").read_text())["cases"]}
    assert cases["phantom_0000"]["status"] == "skipped" and cases["phantom_0000"]["made"] == first
    assert cases["phantom_0001"]["status"] == "ok"


def test_continue_redoes_nothing_for_an_input_that_changed(tiny_cases, tiny_checkpoint, tmp_path):
    src = tmp_path / "img.nii.gz"
    shutil.copy(tiny_cases / "images" / "phantom_0000.nii.gz", src)
    out = tmp_path / "out"
    assert reconstruct(src, out, tiny_checkpoint).exit_code == 0
    os.utime(src, ns=(1, 1))  # the input was replaced since
    res = reconstruct(src, out, tiny_checkpoint, "--continue")
    assert res.exit_code == 1 and "input.mtime_ns" in res.output


# 2. --overwrite where the case now fails: the old heatmap is gone, evaluate cannot score it
def test_overwrite_of_a_case_that_now_fails_leaves_no_stale_heatmap(tiny_cases, tiny_checkpoint, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(tiny_cases / "images" / "phantom_0000.nii.gz", src / "a.nii.gz")
    out = tmp_path / "out"
    assert reconstruct(src, out, tiny_checkpoint).exit_code == 0
    (src / "a.nii.gz").write_bytes(b"broken")
    res = reconstruct(src, out, tiny_checkpoint, "--overwrite")
    assert res.exit_code == 1 and "a.nii.gz" in res.output
    assert not (out / "a_tonno.nii.gz").exists()
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[1].split(",")[2] == "failed" and ",a_tonno.nii.gz," not in summary[1]  # 13: no output named


# 3. evaluate with a missing heatmap: a failure, not a smaller data set
def test_evaluate_counts_every_ground_truth_case(tiny_cases, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    assert reconstruct(tiny_cases, out, tiny_checkpoint).exit_code == 0
    (out / "phantom_0002_tonno.nii.gz").unlink()
    res = runner.invoke(app, ["evaluate", str(out), str(tiny_cases), "-o", str(tmp_path / "m.csv"), "-q"])
    assert res.exit_code == 1
    assert "phantom_0002" in res.output and "no heatmap for this ground-truth case" in res.output
    res = runner.invoke(app, ["evaluate", str(out), str(tiny_cases), "-o", str(tmp_path / "m.csv"), "-q",
                              "--missing-as-empty"])
    assert res.exit_code == 0, res.output
    assert "4 cases" in res.output and "missing: phantom_0002" in res.output


# 4. DICOM with an unreadable first, middle or last file
@pytest.mark.parametrize("which", [0, 4, 7])
def test_dicom_series_with_a_corrupt_file_is_refused_naming_it(tmp_path, which):
    from tonno_engine.data.dicom_write import write_dicom_series
    from tonno_engine.data.images import load_image

    paths = sorted(write_dicom_series(tmp_path / "s", np.random.default_rng(0).random((16, 16, 8)) * 100,
                                      np.diag([1.0, 1.0, 2.0, 1.0])))
    paths[which].write_bytes(paths[which].read_bytes()[:300])
    with pytest.raises(DataError, match=f"could not be read into the series: {paths[which].name}"):
        load_image(tmp_path / "s")


# 5. a user's hidden file that looks like a temporary one survives a write
def test_users_hidden_part_files_are_never_removed(tiny_cases, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    mine = out / ".notes.part1.txt"
    mine.write_text("mine")
    ours = out / ".tonno-part.x_tonno.nii.gz.abcd.nii.gz"  # what a killed tonno leaves
    ours.write_bytes(b"partial")
    assert reconstruct(tiny_cases / "images" / "phantom_0000.nii.gz", out, tiny_checkpoint).exit_code == 0
    assert mine.read_text() == "mine" and not ours.exists()


# 6. two processes, one folder
def test_a_second_writer_is_refused_naming_the_first(tiny_cases, tiny_checkpoint, tmp_path):
    from tonno_engine.base.folder_lock import folder_lock

    out = tmp_path / "out"
    with folder_lock(out):
        res = reconstruct(tiny_cases, out, tiny_checkpoint)
        assert res.exit_code == 1
        assert "another tonno process is writing here" in res.output and f"pid {os.getpid()}" in res.output
        res = runner.invoke(app, ["train", str(tiny_cases), "--out", str(out), "--steps", "2", *TRAIN])
        assert res.exit_code == 1 and "another tonno process is writing here" in res.output
    assert not (out / "run.json").exists()


def test_parts_of_one_batch_share_the_folder_but_a_whole_run_does_not(tmp_path):
    from tonno_engine.base.folder_lock import folder_lock

    with folder_lock(tmp_path, shared=True), folder_lock(tmp_path, shared=True):
        with pytest.raises(DataError, match="another tonno process"), folder_lock(tmp_path):
            pass


# 7. full disk
def _fill_disk_after(monkeypatch, target_name: str):
    """Writes of files named ``target_name`` fail as on a full disk (ENOSPC)."""
    from tonno_engine.base import atomic

    real = atomic._create_part

    def create(path):
        if path.name == target_name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path)

    monkeypatch.setattr(atomic, "_create_part", create)


def test_full_disk_stops_the_batch_naming_the_file(tiny_cases, tiny_checkpoint, tmp_path, monkeypatch):
    _fill_disk_after(monkeypatch, "phantom_0001_tonno.nii.gz")
    out = tmp_path / "out"
    res = reconstruct(tiny_cases, out, tiny_checkpoint)
    assert res.exit_code == 1
    assert "phantom_0001_tonno.nii.gz: no space left on device" in res.output and "case 2 of 4" in res.output
    assert not (out / "phantom_0002_tonno.nii.gz").exists()  # the batch did not go on


def test_full_disk_at_the_start_leaves_no_folder(tiny_cases, tiny_checkpoint, tmp_path, monkeypatch):
    _fill_disk_after(monkeypatch, "run.json")
    out = tmp_path / "new"
    res = reconstruct(tiny_cases, out, tiny_checkpoint)
    assert res.exit_code == 1 and "run.json: no space left on device" in res.output
    assert not out.exists()


def test_full_disk_in_training_keeps_the_last_good_checkpoint(tiny_cases, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert runner.invoke(app, ["train", str(tiny_cases), "--out", str(out), "--steps", "2", *TRAIN]).exit_code == 0
    good = (out / "checkpoint_last.pt").read_bytes()
    _fill_disk_after(monkeypatch, "checkpoint_last.pt")
    res = runner.invoke(app, ["train", str(tiny_cases), "--out", str(out), "--steps", "4", "--resume", "-q"])
    assert res.exit_code == 1
    assert "checkpoint_last.pt: no space left on device" in res.output and "(step 2) is intact" in res.output
    assert (out / "checkpoint_last.pt").read_bytes() == good


def test_checkpoint_room_is_checked_before_writing(tmp_path, monkeypatch):
    from collections import namedtuple

    from tonno_engine.base import atomic
    from tonno_engine.base.errors import DiskFull

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("shutil.disk_usage", lambda _: usage(10, 10, 0))
    with pytest.raises(DiskFull, match="needs"):
        atomic.write_bytes_atomic(tmp_path / "c.pt", b"x" * 100)
    assert list(tmp_path.iterdir()) == []


def test_plain_rerun_never_overwrites_a_surviving_best_checkpoint(tiny_cases, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint_best.pt").write_bytes(b"the best we had")
    res = runner.invoke(app, ["train", str(tiny_cases), "--out", str(out), "--steps", "2", *TRAIN])
    assert res.exit_code == 1 and "already holds a training (checkpoint_best.pt)" in res.output
    assert (out / "checkpoint_best.pt").read_bytes() == b"the best we had"


# 8. --resume with changed options
def test_resume_with_changed_options_is_a_usage_error(tiny_cases, tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, ["train", str(tiny_cases), "--out", str(out), "--steps", "2", *TRAIN]).exit_code == 0
    res = runner.invoke(app, ["train", str(tiny_cases), "--out", str(out), "--resume", "--slice-size", "48",
                              "--lr", "0.5", "--steps", "4"])
    assert res.exit_code == 2
    assert "slice_size 48 (the run's: 32)" in res.output and "lr 0.5" in res.output
    res = runner.invoke(app, ["train", str(tiny_cases), "--out", str(out), "--resume", "--slice-size", "32",
                              "--steps", "3", "-q"])
    assert res.exit_code == 0, res.output  # the run's own value, and a longer run: accepted


# 9. a header that declares more than its file holds
def _lying_header(path: Path, shape, compress: bool) -> Path:
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.float32)
    hdr["vox_offset"] = 352
    raw = hdr.binaryblock + b"\0" * 4
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


@pytest.mark.parametrize("shape,compress", [((4096, 4096, 4096), True), ((800, 800, 800), True), ((64, 64, 64), False)])
def test_a_header_that_lies_is_a_data_error_before_allocation(tmp_path, shape, compress):
    from tonno_engine.data.images import load_image, size_estimate

    path = _lying_header(tmp_path / ("x.nii.gz" if compress else "x.nii"), shape, compress)
    with pytest.raises(DataError, match="x.nii.*(more than a|truncated)"):
        load_image(path)
    assert size_estimate(path) == 0  # planning never trusts it (no --cache-gb advice)


def test_a_lying_header_fails_its_case_and_the_batch_goes_on(tiny_cases, tiny_checkpoint, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(tiny_cases / "images" / "phantom_0000.nii.gz", src / "good.nii.gz")
    _lying_header(src / "bomb.nii.gz", (4096, 4096, 4096), True)
    res = reconstruct(src, tmp_path / "out", tiny_checkpoint)
    assert res.exit_code == 1 and "bomb.nii.gz" in res.output and "1 done" in res.output


# 10. weights files of another architecture, or no weights at all
@pytest.mark.parametrize("content", ["other-architecture", "not-a-checkpoint"])
def test_bad_weights_file_is_named(tiny_cases, tmp_path, content):
    from tonno_engine.models.encoders import create_encoder

    weights = tmp_path / "w.pth"
    if content == "other-architecture":
        torch.save(create_encoder("resnet18", norm="bn").state_dict(), weights)
    else:
        weights.write_bytes(b"hello")
    res = runner.invoke(app, ["train", str(tiny_cases), "--out", str(tmp_path / "r"), "--steps", "1",
                              "--weights", str(weights), *TRAIN])
    assert res.exit_code == 1 and "w.pth" in res.output and "Traceback" not in res.output
    assert ("do not fit resnet10t" if content == "other-architecture" else "not a weights file") in res.output


def test_a_killed_loader_process_is_named(monkeypatch):
    from tonno_engine.base.errors import ResourceError
    from tonno_engine.training import loop

    class Folder:
        last_good = (Path("run/checkpoint_last.pt"), 6)

        def close(self):
            pass

    class FakeRun:
        folder, pool = Folder(), None

    def dying(run):
        yield from ()
        raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed.")

    def fake_setup(*a, **k):
        yield from ()
        return FakeRun()

    monkeypatch.setattr(loop, "setup", fake_setup)
    monkeypatch.setattr(loop, "_loop", dying)
    with pytest.raises(ResourceError, match=r"pid 4242.*--loader-workers.*step 6: --resume"):
        list(loop.train_iter("data", "run"))


# 11. a labels CSV with a byte-order mark
def test_labels_csv_with_a_byte_order_mark(tiny_cases, tmp_path):
    from tonno_engine.data.dataset import read_cases

    text = (tiny_cases / "labels.csv").read_text()
    bom = tmp_path / "labels.csv"
    bom.write_bytes("\ufeff".encode() + text.replace("images/", f"{tiny_cases}/images/")
                    .replace("masks/", f"{tiny_cases}/masks/").encode())
    assert [c.case for c in read_cases(bom)] == [c.case for c in read_cases(tiny_cases)]


# 12. permissions follow the umask
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_outputs_follow_the_umask(tiny_cases, tiny_checkpoint, tmp_path, umask, mode):
    out = tmp_path / "out"
    code = (f"import os, sys; os.umask({umask}); from tonno_cli.app import main; "
            f"sys.argv = ['tonno', 'reconstruct', '-i', {str(tiny_cases / 'images' / 'phantom_0000.nii.gz')!r}, "
            f"'-o', {str(out)!r}, '-c', {str(tiny_checkpoint)!r}, {', '.join(map(repr, FAST))}]; main()")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
    written = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert {p.name for p in written} >= {"phantom_0000_tonno.nii.gz", "summary.csv", "run.json"}
    assert {oct(p.stat().st_mode & 0o777) for p in written} == {oct(mode)}


# 13. the smaller ones
def test_exit_codes_are_usage_errors(tiny_cases, tiny_checkpoint, tmp_path):
    assert reconstruct(tiny_cases, tmp_path / "o", tiny_checkpoint, "--continue", "--overwrite").exit_code == 2
    assert reconstruct(tiny_cases, tmp_path / "o", tiny_checkpoint, "--num-parts", "2", "--part-id", "2").exit_code == 2
    assert not (tmp_path / "o").exists()


def test_a_checkpoint_folder_is_named_as_a_folder(tiny_cases, tmp_path):
    res = reconstruct(tiny_cases, tmp_path / "o", tmp_path)
    assert res.exit_code == 1 and "is a folder, not a checkpoint file" in res.output


def test_suspicious_settings_warn(tiny_cases, tiny_checkpoint, tmp_path):
    res = runner.invoke(app, ["reconstruct", "-i", str(tiny_cases / "images" / "phantom_0000.nii.gz"), "-o",
                              str(tmp_path / "o"), "-c", str(tiny_checkpoint), "--slices", "6", "--directions", "1",
                              "--slice-size", "8", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    assert "warning: --slice-size 8 is far below the 32² slices" in res.output
    assert "warning: 1 direction(s) give mostly streak artefacts" in res.output


def test_ctrl_c_says_how_to_continue(tiny_cases, tiny_checkpoint, tmp_path, monkeypatch):
    from tonno_engine.apps import batch

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "reconstruct_batch_iter", interrupted)
    res = reconstruct(tiny_cases, tmp_path / "o", tiny_checkpoint)
    assert res.exit_code == 130 and "interrupted" in res.output and "--continue" in res.output
