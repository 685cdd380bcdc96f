import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from tonno_engine.apps.training_run import train_run_iter as train_iter
from tonno_engine.base.errors import DataError
from tonno_engine.base.events import Notice
from tonno_engine.data.dataset import hash_cases, read_cases
from tonno_engine.data.synth import SynthRequest, synthesize
from tonno_engine.models.checkpoint import load_model, read_checkpoint
from tonno_engine.training.config import TrainConfig
from tonno_engine.training.loop import NotLearnt, TrainStep

TINY = dict(model="resnet10t", norm="gn", slice_size=32, batch_volumes=2, slices_per_volume=4, val_every=3,
            checkpoint_every=2, val_slices=4, device="cpu", seed=7)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    list(synthesize(root, SynthRequest(kind="phantom", n=8, seed=0, shape=(24, 24, 24))))
    return root


def _steps(run):
    with open(run / "metrics.csv", newline="") as fh:
        return [int(r["step"]) for r in csv.DictReader(fh)]


def test_training_writes_the_run_folder(data, tmp_path):
    events = list(train_iter(data, tmp_path, TrainConfig(steps=6, **TINY)))
    train_events = [e for e in events if isinstance(e, TrainStep)]
    assert [e.done for e in train_events] == [1, 2, 3, 4, 5, 6]
    assert any(e.stage == "load" for e in events)
    assert _steps(tmp_path) == [1, 2, 3, 4, 5, 6]
    for name in ("checkpoint_last.pt", "checkpoint_best.pt", "run.json", "curves.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    with open(tmp_path / "metrics.csv", newline="") as fh:
        val_rows = [r for r in csv.DictReader(fh) if r["val_volume_auc"]]
    assert [int(r["step"]) for r in val_rows] == [3, 6]
    assert all(0 <= float(r["val_volume_auc"]) <= 1 for r in val_rows)
    run = json.loads((tmp_path / "run.json").read_text())
    meta = read_checkpoint(tmp_path / "checkpoint_last.pt")["meta"]
    for key in ("model", "norm", "slice_size", "preprocessing", "train_args", "versions", "data_hash"):
        assert key in meta and meta[key] is not None, key
    assert meta["preprocessing"]["intensity"] == "none"  # from the data set's dataset.json
    assert run["step"] == 6 and run["meta"]["data_hash"] == meta["data_hash"]
    assert not set(meta["train_cases"]) & set(meta["val_cases"])
    assert meta["image_hashes"] == hash_cases(read_cases(data))[1]  # every case it saw, by its image's content
    model, _ = load_model(tmp_path / "checkpoint_best.pt", "cpu")
    assert model(torch.rand(1, 1, 32, 32)).shape == (1, 1)
    with pytest.raises(DataError, match="already holds a training"):
        list(train_iter(data, tmp_path, TrainConfig(steps=6, **TINY)))


def test_resume_takes_exactly_the_steps_of_an_uninterrupted_run(data, tmp_path):
    cfg = TrainConfig(steps=7, **TINY)
    list(train_iter(data, tmp_path / "straight", cfg))
    for event in train_iter(data, tmp_path / "cut", cfg):  # stop after step 5: last checkpoint is step 4
        if isinstance(event, TrainStep) and event.done == 5:
            break
    assert read_checkpoint(tmp_path / "cut" / "checkpoint_last.pt")["meta"]["step"] == 4
    stale = tmp_path / "cut" / ".tonno-part.checkpoint_last.pt.x1y2.pt"  # as a kill mid-write leaves it
    stale.write_bytes(b"partial")
    list(train_iter(data, tmp_path / "cut", None, resume=True))
    assert not stale.exists()
    assert _steps(tmp_path / "cut") == list(range(1, 8))
    a = read_checkpoint(tmp_path / "straight" / "checkpoint_last.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "cut" / "checkpoint_last.pt")["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


@pytest.mark.slow
def test_kill_9_then_resume_from_the_command_line(data, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-c", "from tonno_cli.app import main; main()", "train", str(data), "--out", str(run),
           "--slice-size", "32", "--steps", "200", "--batch-volumes", "2", "--slices-per-volume", "4",
           "--norm", "gn", "--device", "cpu", "--checkpoint-every", "3", "--val-every", "50", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (run / "checkpoint_last.pt").exists() and len(_steps(run)) >= 8:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = max(_steps(run))
    assert killed_at < 200
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _steps(run) == list(range(1, 201))  # no step lost or repeated
    assert read_checkpoint(run / "checkpoint_last.pt")["meta"]["step"] == 200
    assert not list(run.glob(".*part*"))


def test_bad_data_fails_before_training(tmp_path):
    (tmp_path / "labels.csv").write_text("case,label,image\na,1,a.nii.gz\n")
    with pytest.raises(DataError, match="image file not found"):
        list(train_iter(tmp_path, tmp_path / "run", TrainConfig(steps=1, **TINY)))
    assert not (tmp_path / "run").exists()


def test_mil_loss_pools_each_volumes_slices():
    from tonno_engine.training.sampling import mil_loss

    logits = torch.tensor([-4.0, -4.0, 6.0, -4.0, -3.0, -3.0, -3.0, -3.0], requires_grad=True)
    y = torch.tensor([1.0] * 4 + [0.0] * 4)  # volume 1 positive: one slice shows its lesion; volume 2 negative
    loss = mil_loss(4)(logits, y)
    pooled = torch.stack([torch.logsumexp(logits[:4], 0), torch.logsumexp(logits[4:], 0)]) - math.log(4)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(pooled, torch.tensor([1.0, 0.0]))
    assert torch.isclose(loss, expected)
    loss.backward()
    # the positive volume's gradient goes mostly to the slice that shows the lesion
    assert logits.grad[2] < 0 and abs(logits.grad[2]) > 10 * abs(logits.grad[0])
    slice_loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.detach(), y)
    assert loss < slice_loss  # unlike per-slice labels, lesion-free slices of a positive volume are not punished


def test_train_with_the_mil_objective_from_the_command_line(tiny_cases, tmp_path):
    from typer.testing import CliRunner

    from tonno_cli.app import app

    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", str(tiny_cases), "--out", str(run), "--slice-size", "32", "--steps", "3",
                                   "--batch-volumes", "2", "--slices-per-volume", "4", "--norm", "gn", "--device",
                                   "cpu", "--objective", "mil", "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads((run / "run.json").read_text())["meta"]["train_args"]["objective"] == "mil"
    with open(run / "metrics.csv", newline="") as fh:
        assert all(math.isfinite(float(r["loss"])) for r in csv.DictReader(fh))
    bad = CliRunner().invoke(app, ["train", str(tiny_cases), "--out", str(tmp_path / "x"), "--objective", "max"])
    assert bad.exit_code == 2 and "unknown objective 'max'" in bad.output


STREAM = dict(TINY, cache_gb=0.00015, loader_workers=1)  # 24³ float32 = 55 kB: a pool of 2 of the 6 training volumes


def test_streaming_pool_is_bounded_reproducible_and_resumes_exactly(data, tmp_path):
    from tonno_engine.training.loop import setup

    run = None
    gen = setup(data, tmp_path / "probe", TrainConfig(steps=1, **STREAM))
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        run = stop.value
    assert run.pool is not None and len(run.pool.volumes) == 2 < len(run.description.train_cases)
    run.folder.close()

    cfg = TrainConfig(steps=7, **STREAM)
    list(train_iter(data, tmp_path / "a", cfg))
    list(train_iter(data, tmp_path / "b", cfg))
    for event in train_iter(data, tmp_path / "cut", cfg):  # stop after step 5: last checkpoint is step 4
        if isinstance(event, TrainStep) and event.done == 5:
            break
    pool = read_checkpoint(tmp_path / "cut" / "checkpoint_last.pt")["train_state"]["pool"]
    assert pool["position"] == 2 + 4 and len(pool["slots"]) == 2  # one volume swapped in per step
    list(train_iter(data, tmp_path / "cut", None, resume=True))
    a, b, c = (read_checkpoint(tmp_path / r / "checkpoint_last.pt")["state_dict"] for r in ("a", "b", "cut"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
        torch.testing.assert_close(a[key], c[key], rtol=0, atol=0, msg=key)
    assert read_checkpoint(tmp_path / "cut" / "checkpoint_last.pt")["meta"]["train_args"]["cache_gb"] == STREAM["cache_gb"]


def test_disk_cache_gives_the_same_run_cold_and_warm(data, tmp_path):
    cache = tmp_path / "cache"
    cfg = TrainConfig(steps=4, disk_cache=str(cache), **STREAM)
    list(train_iter(data, tmp_path / "cold", cfg))
    files = sorted(cache.glob("*.npy"))
    assert files and all(np.load(f).dtype == np.float16 for f in files)
    stamps = {f: f.stat().st_mtime_ns for f in files}
    list(train_iter(data, tmp_path / "warm", cfg))
    assert {f: f.stat().st_mtime_ns for f in sorted(cache.glob("*.npy"))} == stamps  # read, not rewritten
    a, b = (read_checkpoint(tmp_path / r / "checkpoint_last.pt")["state_dict"] for r in ("cold", "warm"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_mil_validation_loss_is_the_pooled_volume_loss():
    from tonno_engine.training.sampling import validation_scores

    # a positive volume with one confident lesion slice among lesion-free ones, and a clean negative volume
    per_volume = [(1, [8.0, -6.0, -6.0, -6.0]), (0, [-6.0, -6.0, -6.0, -6.0])]
    mil, per_slice = validation_scores(per_volume, "mil"), validation_scores(per_volume, "slice")
    assert mil.val_volume_auc == per_slice.val_volume_auc == 1.0
    pooled = torch.tensor([torch.logsumexp(torch.tensor(v), 0) - math.log(4) for _, v in per_volume])
    assert mil.val_loss == pytest.approx(torch.nn.functional.binary_cross_entropy_with_logits(
        pooled, torch.tensor([1.0, 0.0])).item())
    assert mil.val_loss < 0.01 < per_slice.val_loss  # per slice, the lesion-free slices of the positive count as errors


def test_a_bad_volume_met_while_streaming_names_its_file(data, tmp_path):
    import shutil

    from tonno_engine.data.dataset import read_cases
    from tonno_engine.data.preprocessing import Preprocessing
    from tonno_engine.training.streaming import PreprocessedVolumes, loaded_case

    bad_data = tmp_path / "data"
    shutil.copytree(data, bad_data)
    victim = sorted((bad_data / "images").glob("*.nii.gz"))[3]
    victim.write_bytes(victim.read_bytes()[:200])  # truncated after the header
    cases = read_cases(bad_data)
    source = PreprocessedVolumes(cases, Preprocessing("none"), physical=False)
    index = next(i for i, c in enumerate(cases) if c.image == victim)
    marker = source[index]  # as a loader process returns it
    assert marker[1] is None and str(victim) in marker[2][0]
    with pytest.raises(DataError, match="truncated"):
        loaded_case(cases[index], marker[1], marker[2], torch.device("cpu"), "paper", "full")
    with pytest.raises(DataError, match=victim.name):  # through the pool and its loader process
        list(train_iter(bad_data, tmp_path / "run", TrainConfig(steps=40, **STREAM)))


def test_a_data_set_too_large_for_memory_is_told_to_stream(data, tmp_path, monkeypatch):
    from tonno_engine.training import streaming

    monkeypatch.setattr(streaming, "free_memory", lambda device: 100_000)  # 100 kB free
    with pytest.raises(DataError, match="stream them with --cache-gb"):
        list(train_iter(data, tmp_path / "run", TrainConfig(steps=2, **TINY)))
    assert not (tmp_path / "run").exists()
    list(train_iter(data, tmp_path / "streamed", TrainConfig(steps=2, **STREAM)))  # streaming needs no check


def test_recipe_sets_defaults_that_options_override(tiny_cases, tmp_path):
    from typer.testing import CliRunner

    from tonno_cli.app import app

    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", str(tiny_cases), "--out", str(run), "--recipe", "small-lesions",
                                   "--slice-size", "32", "--steps", "2", "--norm", "gn", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    args = json.loads((run / "run.json").read_text())["meta"]["train_args"]
    assert (args["objective"], args["intensity"], args["batch_volumes"], args["slices_per_volume"]) == ("mil", "robust", 4, 16)
    assert (args["slice_size"], args["norm"], args["steps"]) == (32, "gn", 2)  # given explicitly: they win
    bad = CliRunner().invoke(app, ["train", str(tiny_cases), "--out", str(tmp_path / "x"), "--recipe", "fast"])
    assert bad.exit_code == 2 and "unknown recipe 'fast'" in bad.output


def test_validation_reports_an_interval_and_the_intensity_baseline(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom16")
    list(synthesize(root, SynthRequest(kind="phantom", n=16, seed=2, shape=(24, 24, 24))))
    out = tmp_path_factory.mktemp("run")
    events = list(train_iter(root, out, TrainConfig(steps=3, **TINY)))
    (scores,) = [e.validation for e in events if isinstance(e, TrainStep) and e.validation is not None]
    assert scores.val_volume_auc_lo <= scores.val_volume_auc <= scores.val_volume_auc_hi
    with open(out / "metrics.csv", newline="") as fh:
        (row,) = [r for r in csv.DictReader(fh) if r["val_volume_auc"]]
    assert float(row["val_volume_auc_lo"]) == pytest.approx(scores.val_volume_auc_lo, abs=1e-6)
    run = json.loads((out / "run.json").read_text())
    baseline = run["intensity_baseline"]
    assert float(row["val_intensity_auc"]) == pytest.approx(max(baseline["bright"], baseline["dark"]), abs=1e-6)
    assert 0 <= baseline["bright"] <= 1 and 0 <= baseline["dark"] <= 1  # (the phantoms' bright shells are in both classes)
    below = max(baseline["bright"], baseline["dark"]) > run["best_val_volume_auc"]
    # one warning, the "has not learnt" verdict: 2 + 2 validation volumes are too few whatever the AUC, and it names
    # the baseline when the chosen checkpoint is below it
    (notice,) = [e for e in events if isinstance(e, Notice)]
    assert isinstance(notice, NotLearnt) and "too-few-cases" in notice.reasons
    assert run["below_intensity_baseline"] is below and ("below-baseline" in notice.reasons) is below
    assert ("below the intensity baseline" in notice.message) is below
    assert run["learning_verdict"]["learnt"] is False
    assert [r["code"] for r in run["learning_verdict"]["reasons"]] == list(notice.reasons)


def test_an_averaged_run_resumes_exactly_and_keeps_every_validated_step(data, tmp_path):
    cfg = TrainConfig(steps=7, ema=0.9, keep_checkpoints=True, **TINY)
    list(train_iter(data, tmp_path / "straight", cfg))
    for event in train_iter(data, tmp_path / "cut", cfg):
        if isinstance(event, TrainStep) and event.done == 5:
            break
    list(train_iter(data, tmp_path / "cut", None, resume=True))
    a, b = (read_checkpoint(tmp_path / run / "checkpoint_last.pt") for run in ("straight", "cut"))
    for key in a["state_dict"]:  # the average, and the trained weights apart from it
        torch.testing.assert_close(a["state_dict"][key], b["state_dict"][key], rtol=0, atol=0, msg=key)
        torch.testing.assert_close(a["train_state"]["model"][key], b["train_state"]["model"][key], rtol=0, atol=0)
    moved = [k for k in a["state_dict"] if a["state_dict"][k].is_floating_point()
             and not torch.equal(a["state_dict"][k], a["train_state"]["model"][k])]
    assert moved  # the checkpoint holds the average, not the last step's weights
    kept = sorted(p.name for p in (tmp_path / "straight" / "checkpoints").iterdir())
    assert kept == ["step_000003.pt", "step_000006.pt", "step_000007.pt"]
    assert read_checkpoint(tmp_path / "straight" / "checkpoints" / "step_000006.pt")["meta"]["step"] == 6
    model, _ = load_model(tmp_path / "straight" / "checkpoints" / "step_000003.pt", "cpu")
    assert model(torch.rand(1, 1, 32, 32)).shape == (1, 1)


@pytest.fixture(scope="module")
def indistinguishable(tmp_path_factory):
    """100 copies of one phantom, half labelled 1 and half 0: no classifier can tell the classes apart, and the 20 %
    validation split holds 10 of each (enough cases: what the verdict then says is about the classifier)."""
    import shutil

    made = tmp_path_factory.mktemp("one")
    list(synthesize(made, SynthRequest(kind="phantom", n=2, seed=0, shape=(24, 24, 24))))
    root = tmp_path_factory.mktemp("same")
    (root / "images").mkdir()
    rows = ["case,label,image"]
    for i in range(100):
        shutil.copy(made / "images" / "phantom_0000.nii.gz", root / "images" / f"c{i:03d}.nii.gz")
        rows.append(f"c{i:03d},{i % 2},images/c{i:03d}.nii.gz")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_a_data_set_whose_classes_cannot_be_told_apart_ends_train_with_the_warning(indistinguishable, tmp_path):
    """Issue 42's must-show: ``tonno train`` ends with the "has not learnt" warning (exit 0) and run.json holds it."""
    from typer.testing import CliRunner

    from tonno_cli.app import app

    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", str(indistinguishable), "--out", str(run), "--slice-size", "32", "--steps",
                                   "3", "--batch-volumes", "2", "--slices-per-volume", "4", "--val-slices", "4",
                                   "--val-every", "3", "--norm", "gn", "--intensity", "none", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    assert "warning: the classifier has not learnt what the labels say" in res.output
    verdict = json.loads((run / "run.json").read_text())["learning_verdict"]
    codes = [r["code"] for r in verdict["reasons"]]
    assert verdict["learnt"] is False and "chance" in codes and "too-few-cases" not in codes
    for reason in verdict["reasons"]:  # each reason is printed with what to try
        assert reason["seen"] in res.output and reason["advice"] in res.output
    assert "try: more --steps" in res.output
    assert res.output.index("warning: the classifier has not learnt") < res.output.index("done: step 3/3")

