"""The three distributed paths, one process against two under torchrun, side by side in one run.

    .venv/bin/python bench/bench_distributed.py [--device cpu] [--nproc 2] [--work /tmp/bench_distributed]

- training: the demo's data and settings (64² slices, 8 volumes × 8 slices per rank and step); the
  median slices per second over the steps (all ranks together);
- batch: ``tonno reconstruct`` of 12 demo brains with ToNNO at the ``demo`` quality: wall time;
- directions: one 128³ volume, ToNNO with L=768, M=24, ``--shard-directions``: wall time, and the
  heatmaps compared;
- the reduce of a 512³ float32 heatmap (``reduce_in_slabs``, 64 MiB slabs): bytes each rank sends
  and seconds.

On CPUs the single process gets all threads (``OMP_NUM_THREADS`` = cores) and each of the N ranks
cores/N, so the ratios show the overhead of the process group, not a speed-up (there are no extra
cores to use); on a node with N GPUs each rank has its own.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from timing import tonno_command

CORES = os.cpu_count() or 1


def run(cmd: list[str], threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - start


def launcher(nproc: int) -> list[str]:
    if nproc == 1:
        return tonno_command()
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            *tonno_command()[1:]]


def median_speed(run_dir: Path) -> float:
    with open(run_dir / "metrics.csv", newline="") as fh:
        return statistics.median(float(r["slices_per_s"]) for r in list(csv.DictReader(fh))[5:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--work", default="/tmp/bench_distributed")
    args = ap.parse_args()
    work = Path(args.work)
    data = work / "demo-data"
    if not (data / "labels.csv").exists():
        from tonno_engine.apps.demo import DEMO_LESION_RADIUS
        from tonno_engine.data.synth import SynthRequest, synthesize

        list(synthesize(data, SynthRequest(kind="brain", n=40, seed=0, lesion_radius=DEMO_LESION_RADIUS, max_lesions=3)))
    sides = {1: CORES, args.nproc: max(1, CORES // args.nproc)}
    rows = []

    train = ["train", str(data), "--slice-size", "64", "--steps", str(args.steps), "--batch-volumes", "8",
             "--slices-per-volume", "8", "--norm", "bn", "--device", args.device, "--val-every", "20", "-q"]
    speeds = {}
    for n in (1, args.nproc):
        out = work / f"train-{n}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        wall = run([*launcher(n), *train, "--out", str(out)], sides[n])
        speeds[n] = median_speed(out)
        rows.append(("training", n, f"{speeds[n]:.0f} slices/s (median step), {wall:.0f} s wall"))
    checkpoint = work / "train-1" / "checkpoint_last.pt"

    images = sorted((data / "images").glob("*.nii.gz"))[:12]
    batch_in = work / "batch-in"
    batch_in.mkdir(exist_ok=True)
    for p in images:
        if not (batch_in / p.name).exists():
            (batch_in / p.name).symlink_to(p)
    walls = {}
    for n in (1, args.nproc):
        out = work / f"batch-{n}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        walls[n] = run([*launcher(n), "reconstruct", "-i", str(batch_in), "-o", str(out), "-c", str(checkpoint),
                        "--quality", "demo", "--device", args.device, "-q"], sides[n])
        rows.append(("batch of 12 cases", n, f"{walls[n]:.1f} s wall"))

    big = work / "big.nii.gz"
    if not big.exists():
        rng = np.random.default_rng(0)
        nib.save(nib.Nifti1Image(rng.random((128, 128, 128), dtype=np.float32), np.eye(4)), big)
    heat, dwalls = {}, {}
    for n in (1, args.nproc):
        out = work / f"dirs-{n}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        shard = ["--shard-directions"] if n > 1 else []
        dwalls[n] = run([*launcher(n), "reconstruct", "-i", str(big), "-o", str(out), "-c", str(checkpoint),
                         "--directions", "768", "--slices", "24", "--hemisphere", "--device", args.device, "-q", *shard],
                        sides[n])
        heat[n] = nib.load(out / "big_tonno.nii.gz").get_fdata()
    diff = np.abs(heat[args.nproc] - heat[1]).max() / np.abs(heat[1]).max()
    for n in (1, args.nproc):
        rows.append(("one 128³ volume, L=768, M=24", n, f"{dwalls[n]:.1f} s wall" +
                     (f"; max |difference| / max |heatmap| = {diff:.1e}" if n > 1 else "")))

    script = work / "reduce512.py"
    script.write_text(
        "import time, torch, torch.distributed as dist\n"
        "from tonno_engine.base.distributed import current_world, reduce_in_slabs\n"
        "dist.init_process_group('gloo')\n"
        "w = current_world()\n"
        "t = torch.ones(512, 512, 512)\n"
        "dist.barrier(); start = time.perf_counter()\n"
        "sent = reduce_in_slabs(t, w)\n"
        "dist.barrier(); took = time.perf_counter() - start\n"
        "if w.rank == 0:\n"
        "    assert float(t[0, 0, 0]) == w.size\n"
        "    print(f'{sent / 2**20:.0f} MiB sent per rank, {took:.2f} s')\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([*launcher(args.nproc)[:-2], str(script)], env=env, capture_output=True, text=True)
    rows.append(("reduce of a 512³ float32 heatmap (gloo)", args.nproc, out.stdout.strip() or out.stderr[-300:]))

    print("| path | processes | measured |\n|---|---|---|")
    for what, n, text in rows:
        print(f"| {what} | {n} | {text} |")
    print(f"\ntraining {args.nproc} ranks / 1 process: {speeds[args.nproc] / speeds[1]:.2f}; "
          f"batch 1 process / {args.nproc} ranks: {walls[1] / walls[args.nproc]:.2f}; "
          f"directions 1 process / {args.nproc} ranks: {dwalls[1] / dwalls[args.nproc]:.2f}")


if __name__ == "__main__":
    main()
