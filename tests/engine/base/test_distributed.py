"""Two processes under torchrun (gloo on the CPU, loopback only): training, batches and sharded directions."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from tonno_engine.data.synth import SynthRequest, synthesize
from tonno_engine.models.checkpoint import read_checkpoint

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}

LOCK = ".tonno.lock"  # the folder lock stays (removing a flock'd file would race with the next writer)


def torchrun(*args, nproc: int = 2, **kwargs) -> subprocess.CompletedProcess | subprocess.Popen:
    """``torchrun --standalone --nproc_per_node N -m tonno_cli ARGS`` (Popen when ``background``)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "tonno_cli", *map(str, args)]
    if kwargs.pop("background", False):
        return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=240)


def torchrun_script(folder: Path, code: str) -> str:
    """``torchrun --standalone --nproc_per_node 2`` of a script holding ``code`` (written into ``folder``);
    asserts that it succeeded and returns its standard output."""
    script = folder / "script.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script)], env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def tonno(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tonno_cli", *map(str, args)], env=ENV, capture_output=True,
                          text=True, timeout=240)


def _metric_steps(run: Path) -> list[int]:
    with open(run / "metrics.csv", newline="") as fh:
        return [int(r["step"]) for r in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def easy_cases(tmp_path_factory):
    """Fifteen 16³ volumes a classifier separates in a few steps: positives hold a bright ball, negatives
    noise. Three validate: the two ranks get uneven shares."""
    root = tmp_path_factory.mktemp("easy")
    rng = np.random.default_rng(0)
    rows = ["case,label,image"]
    grid = np.indices((16, 16, 16)) - 7.5
    ball = (np.sqrt((grid ** 2).sum(0)) < 5).astype(np.float32)
    for i in range(15):
        label = i % 2
        image = rng.normal(0, 0.1, (16, 16, 16)).astype(np.float32) + label * ball
        nib.save(nib.Nifti1Image(image, np.eye(4)), root / f"c{i}.nii.gz")
        rows.append(f"c{i},{label},c{i}.nii.gz")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


TRAIN = ["--slice-size", "16", "--batch-volumes", "2", "--slices-per-volume", "4", "--norm", "gn", "--device", "cpu",
         "--val-every", "5", "--checkpoint-every", "5", "--lr", "3e-3", "-q"]


@pytest.mark.slow
def test_two_rank_training_one_run_folder_and_resume_in_any_world_size(easy_cases, tmp_path):
    run = tmp_path / "run"
    done = torchrun("train", easy_cases, "--out", run, "--steps", 20, *TRAIN)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("done: step 20/20") == 1  # rank 0 reports
    assert sorted(p.name for p in run.iterdir() if p.name != LOCK) == ["checkpoint_best.pt", "checkpoint_last.pt", "curves.png",
                                                     "metrics.csv", "run.json"]
    assert _metric_steps(run) == list(range(1, 21))  # one row per step: rank 0 alone writes
    with open(run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    losses = [float(r["loss"]) for r in rows]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert float(rows[-1]["val_volume_auc"]) == 1.0  # validation split across the ranks, scored on all of them
    ckpt = read_checkpoint(run / "checkpoint_last.pt")
    assert ckpt["meta"]["world_size"] == 2 and len(ckpt["train_state"]["ranks"]) == 2
    assert ckpt["train_state"]["ranks"][0]["rng"]["sampler"].ne(ckpt["train_state"]["ranks"][1]["rng"]["sampler"]).any()

    again = torchrun("train", easy_cases, "--out", run, "--steps", 25, "--resume", *TRAIN)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _metric_steps(run) == list(range(1, 26))
    alone = tonno("train", easy_cases, "--out", run, "--steps", 27, "--resume", *TRAIN)  # another world size
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert _metric_steps(run) == list(range(1, 28))
    assert read_checkpoint(run / "checkpoint_last.pt")["meta"]["step"] == 27


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the ranks through /proc")
def test_a_signal_to_one_rank_checkpoints_every_rank_and_resume_continues(easy_cases, tmp_path):
    run = tmp_path / "run"
    proc = torchrun("train", easy_cases, "--out", run, "--steps", 100_000, *TRAIN, background=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ((run / "metrics.csv").exists() and len(_metric_steps(run)) >= 6):
        time.sleep(0.1)
    workers = _children(proc.pid)
    assert len(workers) == 2, workers
    os.kill(workers[1], signal.SIGUSR1)  # one rank only, as a pre-emption warning may reach one first
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "stopped by SIGUSR1" in out
    last = max(_metric_steps(run))
    assert read_checkpoint(run / "checkpoint_last.pt")["meta"]["step"] == last
    assert not list(run.glob(".*part*"))
    resumed = torchrun("train", easy_cases, "--out", run, "--steps", last + 3, "--resume", *TRAIN)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _metric_steps(run) == list(range(1, last + 4))


RECON = ["--quality", "demo", "--slices", "6", "--device", "cpu", "-q"]


@pytest.mark.slow
def test_direction_sharded_heatmap_equals_the_single_process_one(tiny_cases, tiny_checkpoint, tmp_path):
    image = tiny_cases / "images" / "phantom_0001.nii.gz"
    one = tonno("reconstruct", "-i", image, "-o", tmp_path / "one", "-c", tiny_checkpoint, "--directions", 33, *RECON)
    assert one.returncode == 0, one.stderr
    two = torchrun("reconstruct", "-i", image, "-o", tmp_path / "two", "-c", tiny_checkpoint, "--directions", 33,
                   "--shard-directions", *RECON)
    assert two.returncode == 0, two.stdout + two.stderr
    a = nib.load(tmp_path / "one" / "phantom_0001_tonno.nii.gz").get_fdata()
    b = nib.load(tmp_path / "two" / "phantom_0001_tonno.nii.gz").get_fdata()
    assert np.abs(a).max() > 0
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * np.abs(a).max())
    assert sorted(p.name for p in (tmp_path / "two").iterdir() if p.name != LOCK) == ["phantom_0001_tonno.nii.gz", "run.json",
                                                                    "summary.csv"]
    assert two.stdout.count("1 done") == 1  # rank 0 writes and reports


def test_reduce_in_slabs_sums_every_slab_onto_rank_zero(tmp_path):
    code = (
        "import torch, torch.distributed as dist\n"
        "from tonno_engine.base.distributed import current_world, reduce_in_slabs\n"
        "dist.init_process_group('gloo')\n"
        "w = current_world()\n"
        "t = torch.arange(5 * 7 * 3, dtype=torch.float32).reshape(5, 7, 3) * (w.rank + 1)\n"
        "sent = reduce_in_slabs(t, w, slab_bytes=2 * 7 * 3 * 4)  # three slabs: 42, 42 and 21 values\n"
        "if w.rank == 0:\n"
        "    expected = torch.arange(5 * 7 * 3, dtype=torch.float32).reshape(5, 7, 3) * 3\n"
        "    assert torch.equal(t, expected), (t - expected).abs().max()\n"
        "    assert sent == t.numel() * 4\n"
        "    print('ok')\n"
        "dist.destroy_process_group()\n")
    assert "ok" in torchrun_script(tmp_path, code)


@pytest.mark.slow
def test_ranks_that_end_right_after_a_collective_exit_cleanly(tmp_path):
    """init_world leaves the group at exit: without it 9 of 15 such runs aborted in gloo's threads."""
    code = (
        "import torch\n"
        "from tonno_engine.base.distributed import init_world, reduce_in_slabs\n"
        "w = init_world(torch.device('cpu'))\n"
        "reduce_in_slabs(torch.ones(2_000_000), w, slab_bytes=2**20)\n")
    for _ in range(5):
        torchrun_script(tmp_path, code)  # asserts a clean exit of every rank


def test_a_failure_on_one_rank_fails_the_sharded_reconstruction_on_every_rank(tmp_path):
    """Otherwise the healthy rank waits in the reduce, or pairs it with the failed rank's next case."""
    code = (
        "import torch\n"
        "from tonno_engine.base.distributed import RankFailed, init_world\n"
        "from tonno_engine.tomography.plan import Plan\n"
        "from tonno_engine.tomography.reconstruction import final_result, reconstruct_iter\n"
        "from tonno_engine.tomography.sharding import sharded_iter\n"
        "w = init_world(torch.device('cpu'))\n"
        "vol = torch.rand(12, 12, 12, generator=torch.Generator().manual_seed(0))\n"
        "plan = Plan(slices=5, directions=8, slice_size=12, device='cpu')\n"
        "def sharded(scorer):\n"
        "    return sharded_iter(lambda subset: reconstruct_iter(vol, scorer, plan, partials=False, subset=subset), 8, w)\n"
        "def mean(s):\n"
        "    return s.mean(dim=(1, 2))\n"
        "def broken(s):\n"
        "    if w.rank == 1:\n"
        "        raise ValueError('bad scorer')\n"
        "    return mean(s)\n"
        "def oom(s):\n"
        "    if w.rank == 0:\n"
        "        raise torch.OutOfMemoryError('out of memory')\n"
        "    return mean(s)\n"
        "for scorer, expected in ((broken, ValueError if w.rank else RankFailed), (oom, torch.OutOfMemoryError)):\n"
        "    try:\n"
        "        final_result(sharded(scorer))\n"
        "        raise SystemExit(f'rank {w.rank}: no error from {scorer.__name__}')\n"
        "    except expected as exc:\n"
        "        print(f'rank {w.rank}: {type(exc).__name__}: {exc}')\n"
        "both = final_result(sharded(mean))  # the ranks are still in step\n"
        "if w.rank == 0:\n"
        "    one = final_result(reconstruct_iter(vol, mean, plan, partials=False))\n"
        "    torch.testing.assert_close(both, one)\n"
        "    print('ok')\n")
    out = torchrun_script(tmp_path, code)
    assert "ok" in out
    assert "rank 0: RankFailed: rank 1 failed: ValueError: bad scorer" in out
    assert "rank 1: OutOfMemoryError: rank 0 ran out of device memory" in out


def test_shard_directions_refuses_slicewise_methods(tiny_cases, tiny_checkpoint, tmp_path):
    bad = tonno("reconstruct", "-i", tiny_cases, "-o", tmp_path / "o", "-c", tiny_checkpoint, "-m", "layercam",
                "--shard-directions", *RECON)
    assert bad.returncode != 0 and "slice-wise methods without it" in bad.stderr + bad.stdout
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def eight_cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("eight")
    list(synthesize(root, SynthRequest(kind="phantom", n=8, seed=3, shape=(24, 24, 24))))
    return root


def _summary(out: Path) -> list[dict]:
    with open(out / "summary.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_two_rank_batch_writes_every_case_exactly_once(eight_cases, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    done = torchrun("reconstruct", "-i", eight_cases, "-o", out, "-c", tiny_checkpoint, "--directions", 16, *RECON)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(list(out.glob("*_tonno.nii.gz"))) == 8
    rows = _summary(out)
    assert sorted(r["case"] for r in rows) == [f"phantom_{i:04d}" for i in range(8)]
    assert all(r["status"] == "ok" for r in rows)
    records = [json.loads(p.read_text()) for p in sorted((out / "parts").glob("part-*-of-2.json"))]
    cases = [r["case"] for rec in records for r in rec["rows"]]
    assert len(records) == 2 and sorted(cases) == sorted(set(cases)) and len(cases) == 8  # each once
    assert all(rec["rows"] for rec in records)  # both ranks had work
    info = json.loads((out / "run.json").read_text())
    assert info["counts"] == {"ok": 8, "skipped": 0, "failed": 0} and info["finished"] and not info["cases_missing"]


@pytest.mark.slow
def test_a_part_killed_half_way_is_finished_by_continue(eight_cases, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    common = ["-i", eight_cases, "-o", out, "-c", tiny_checkpoint, "--directions", 600, "--num-parts", 2, *RECON]
    first = tonno("reconstruct", *common, "--part-id", 0)
    assert first.returncode == 0, first.stderr
    info = json.loads((out / "run.json").read_text())
    assert info["finished"] is None and len(info["cases_missing"]) == 4 and info["parts_finished"] == [0]
    cmd = [sys.executable, "-m", "tonno_cli", "reconstruct", *map(str, common), "--part-id", "1"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    before = set(out.glob("*_tonno.nii.gz"))
    deadline = time.time() + 120
    while time.time() < deadline and len(set(out.glob("*_tonno.nii.gz")) - before) < 1:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    made = {p: p.stat().st_mtime_ns for p in out.glob("*_tonno.nii.gz")}
    assert 4 < len(made) < 8, "the part was not killed half-way"
    rest = tonno("reconstruct", *common, "--part-id", 1, "--continue")
    assert rest.returncode == 0, rest.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in made.items())  # nothing computed twice
    assert len(list(out.glob("*_tonno.nii.gz"))) == 8 and not list(out.glob(".*part*"))
    rows = _summary(out)
    assert len(rows) == 8 and all(r["status"] in ("ok", "skipped") for r in rows)
    info = json.loads((out / "run.json").read_text())
    assert info["finished"] and info["parts_finished"] == [0, 1] and not info["cases_missing"]
