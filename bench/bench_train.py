"""Training quality on CPU-sized synthetic data: seconds and validation AUCs.

    .venv/bin/python bench/bench_train.py [--kind phantom] [--n 60] [--steps 600] [--slice-size 64]
        [--norm bn] [--device auto] [--out /tmp/tonno_bench_train]

Generates the data set (``tonno synth``'s generator), trains (``tonno train``'s engine), and
prints the wall time of the training and the best and final validation volume/slice AUC. The
issue's target: phantom data, at most 5 minutes on 2 CPU cores, validation volume AUC >= 0.9.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import time
from pathlib import Path

from tonno_engine.data.synth import SynthRequest, synthesize
from tonno_engine.training.config import TrainConfig
from tonno_engine.training.loop import train_iter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", default="phantom")
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--slice-size", type=int, default=64)
    ap.add_argument("--norm", default="bn")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="/tmp/tonno_bench_train")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    list(synthesize(out / "data", SynthRequest(kind=args.kind, n=args.n, seed=args.seed)))
    cfg = TrainConfig(slice_size=args.slice_size, steps=args.steps, norm=args.norm, lr=args.lr, device=args.device,
                      seed=args.seed, val_every=50)
    start = time.perf_counter()
    for _ in train_iter(out / "data", out / "run", cfg):
        pass
    seconds = time.perf_counter() - start
    with open(out / "run" / "metrics.csv", newline="") as fh:
        val = [r for r in csv.DictReader(fh) if r["val_volume_auc"]]
    best = max(val, key=lambda r: (float(r["val_volume_auc"]), -float(r["val_loss"])))
    print(f"{args.kind} n={args.n}, {args.steps} steps of {cfg.batch_volumes}x{cfg.slices_per_volume} slices of "
          f"{args.slice_size}², resnet10t/{args.norm}, device {cfg.device}")
    print(f"training time: {seconds:.0f} s")
    print(f"final: val volume AUC {float(val[-1]['val_volume_auc']):.3f}, slice AUC {float(val[-1]['val_slice_auc']):.3f}")
    print(f"best (step {best['step']}): val volume AUC {float(best['val_volume_auc']):.3f}, "
          f"slice AUC {float(best['val_slice_auc']):.3f}")


if __name__ == "__main__":
    main()
