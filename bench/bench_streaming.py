"""Streaming training data: host memory with a bounded cache, and throughput against in-memory training.

    .venv/bin/python bench/bench_streaming.py rss [--counts 50 200] [--cache-gb 0.5] [--steps 40]
    .venv/bin/python bench/bench_streaming.py throughput [--steps 60] [--repeats 2] [--device cpu] [--slice-size 64]

``rss``: for each count, that many 128³ float32 volumes (8 MiB each) as ``.nii.gz``; ``tonno train``
runs in a subprocess with ``--cache-gb`` (streaming) and without (every volume loaded), and the peak
memory of the process and its loader workers together (the sum of their PSS) is sampled every 100 ms.
Streaming must stay flat from 50 to 200 volumes; loading all grows with them.

``throughput``: the demo's data (40 brains 64×76×64, as ``tonno demo`` makes them), the demo's
training settings, in-memory and streamed with a pool of a third of the volumes, alternating; the
ratio of the median slices per second of the steps (each step's time includes swapping a volume into
the pool). Target ≥ 0.9.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import psutil
from timing import tonno_command

TONNO = tonno_command()


def make_volumes(root: Path, count: int, side: int = 128) -> Path:
    """``count`` volumes ``side³`` (half with a bright ball) and labels.csv; reused when present."""
    if (root / "labels.csv").exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    grid = np.indices((side,) * 3, dtype=np.float32) - side / 2
    radius = np.sqrt((grid ** 2).sum(0))
    body = (radius < side * 0.45).astype(np.float32)
    rows = ["case,label,image"]
    for i in range(count):
        label = i % 2
        centre = rng.uniform(-side / 5, side / 5, 3).astype(np.float32)
        ball = np.sqrt(((grid - centre[:, None, None, None]) ** 2).sum(0)) < side / 16
        image = body * (0.5 + 0.05 * rng.standard_normal(body.shape, dtype=np.float32)) + label * ball
        nib.save(nib.Nifti1Image(image.astype(np.float32), np.eye(4)), root / f"v{i:04d}.nii.gz")
        rows.append(f"v{i:04d},{label},v{i:04d}.nii.gz")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def peak_tree_rss(cmd: list[str]) -> tuple[float, float, int]:
    """Run ``cmd``; ``(peak memory of it and its children in MiB, seconds, exit code)``. Memory is the sum of
    each process's PSS (proportional set size: a page shared by k processes counts 1/k in each), so
    the loader workers' pages shared with the parent after fork are not counted twice."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    top = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [top, *top.children(recursive=True)]
            peak = max(peak, sum(p.memory_full_info().pss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.1)
    if proc.returncode:
        print(proc.stderr.read(), file=sys.stderr)
    return peak / 2**20, time.perf_counter() - start, proc.returncode


def rss(args) -> None:
    root = Path(args.work)
    train = ["--slice-size", "64", "--steps", str(args.steps), "--batch-volumes", "4", "--slices-per-volume", "8",
             "--norm", "bn", "--device", "cpu", "--val-every", str(10**6), "--checkpoint-every", str(10**6), "-q"]
    print("| volumes (128³ float32) | data in float32 | mode | peak PSS, process + loader workers | wall |")
    print("|---|---|---|---|---|")
    for count in args.counts:
        data = make_volumes(root / f"v{count}", count)
        for mode, extra in ((f"streaming, --cache-gb {args.cache_gb:g}", ["--cache-gb", str(args.cache_gb)]),
                            ("all loaded", [])):
            with tempfile.TemporaryDirectory() as tmp:
                peak, wall, code = peak_tree_rss([*TONNO, "train", str(data), "--out", f"{tmp}/run", *train, *extra])
            status = "" if code == 0 else f" (exit {code})"
            print(f"| {count} | {count * 8} MiB | {mode} | {peak:.0f} MiB{status} | {wall:.0f} s |", flush=True)


def _median_speed(run: Path, skip: int = 5) -> float:
    with open(run / "metrics.csv", newline="") as fh:
        speeds = [float(r["slices_per_s"]) for r in csv.DictReader(fh)][skip:]
    return statistics.median(speeds)


def throughput(args) -> None:
    from tonno_engine.apps.demo import DEMO_LESION_RADIUS
    from tonno_engine.data.synth import SynthRequest, synthesize

    root = Path(args.work) / "demo-data"
    if not (root / "labels.csv").exists():
        list(synthesize(root, SynthRequest(kind="brain", n=40, seed=0, lesion_radius=DEMO_LESION_RADIUS, max_lesions=3)))
    volume_mib = 64 * 76 * 64 * 4 / 2**20
    pool = 10  # a third of the 32 training volumes
    cache_gb = pool * volume_mib / 0.75 / 1024
    train = ["--slice-size", str(args.slice_size), "--steps", str(args.steps), "--batch-volumes", "8",
             "--slices-per-volume", "8", "--norm", "bn", "--device", args.device, "--val-every", str(10**6),
             "--checkpoint-every", str(10**6), "-q"]
    speeds = {"in memory": [], "streaming": []}
    for r in range(args.repeats):
        order = ["in memory", "streaming"] if r % 2 == 0 else ["streaming", "in memory"]
        for mode in order:
            extra = ["--cache-gb", f"{cache_gb:.5f}", "--pool-volumes", str(pool)] if mode == "streaming" else []
            with tempfile.TemporaryDirectory() as tmp:
                subprocess.run([*TONNO, "train", str(root), "--out", f"{tmp}/run", *train, *extra], check=True,
                               stdout=subprocess.DEVNULL)
                speeds[mode].append(_median_speed(Path(tmp) / "run"))
    for mode, values in speeds.items():
        print(f"{mode}: median slices/s per run {', '.join(f'{v:.1f}' for v in values)}")
    ratio = statistics.median(speeds["streaming"]) / statistics.median(speeds["in memory"])
    print(f"streaming / in memory: {ratio:.3f} (target >= 0.9); pool {pool} of 32 training volumes, one swapped per step")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    a = sub.add_parser("rss")
    a.add_argument("--counts", type=int, nargs="+", default=[50, 200])
    a.add_argument("--cache-gb", type=float, default=0.5)
    a.add_argument("--steps", type=int, default=40)
    b = sub.add_parser("throughput")
    b.add_argument("--steps", type=int, default=60)
    b.add_argument("--repeats", type=int, default=2)
    b.add_argument("--device", default="cpu")
    b.add_argument("--slice-size", type=int, default=64)
    for p in (a, b):
        p.add_argument("--work", default="/tmp/bench_streaming")
    args = ap.parse_args()
    {"rss": rss, "throughput": throughput}[args.what](args)


if __name__ == "__main__":
    main()
