"""Training candidates side by side on one data set: validation volume AUC with its interval, the intensity
baseline, and the time each took (wall and CPU), with optional self-supervised pretraining first.

    .venv/bin/python bench/bench_recipes.py DATA OUT [--candidates small-lesions,long-ema,pretrained]
        [--holdout HOLDOUT_DATA | --test-fraction 0.3] [--seed 0]

Candidates (all from ``small-lesions``): ``small-lesions`` (800 steps), ``long-ema`` (3000 steps, weights
averaged with decay 0.99), ``pretrained`` (``tonno pretrain`` for 400 steps, then 2000 steps from its
encoder, averaged), ``pretrained-short`` (the same pretraining, then 800 steps), ``large-slices`` (128²
slices, 2 pixels per voxel of a 64-voxel brain, so that a lesion of a few voxels outlives the stem's
stride of 4; 800 steps, averaged), ``top-k`` (each drawn volume's 4 highest-scoring of 64 random slices, 8
volumes a step, 1500 steps, averaged), ``look-alikes`` (the recipe: planes through each volume's 12 bright
spots, 12 volumes × 12 slices, 1000 steps, averaged), ``look-alikes-long`` (the same, 1500 steps),
``pretrained-look-alikes`` (``tonno pretrain`` for 150 steps, then ``look-alikes`` from its encoder),
``look-alikes-96`` (the recipe on 96² slices, 1.5 pixels per voxel of a 64-voxel brain),
``look-alikes-context`` (the recipe on 2.5D input: each slice with the planes 1.5 pixels below and above it). With
``--holdout``, every chosen checkpoint's volume AUC on those cases too. CPU time is the process's user + system time over
the candidate (2 cores: up to twice the wall time).
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import time
from pathlib import Path

from tonno_engine.apps.classification import classify_iter
from tonno_engine.apps.training_run import train_run_iter
from tonno_engine.data.dataset import read_cases, split_cases
from tonno_engine.methods.settings import ReconstructionSettings
from tonno_engine.models.checkpoint import load_checkpoint
from tonno_engine.training.config import pretrain_config, recipe_config

CANDIDATES = {
    "small-lesions": dict(train=dict()),
    "long-ema": dict(train=dict(steps=3000, ema=0.99)),
    "pretrained": dict(pretrain=dict(steps=150), train=dict(steps=2000, ema=0.99)),
    "pretrained-short": dict(pretrain=dict(steps=150), train=dict()),
    "large-slices": dict(train=dict(slice_size=128, steps=800, ema=0.99)),
    "top-k": dict(train=dict(candidates=64, batch_volumes=8, slices_per_volume=4, steps=1500, ema=0.99)),
    "look-alikes": dict(recipe="look-alikes", train=dict()),
    "look-alikes-long": dict(recipe="look-alikes", train=dict(steps=1500)),
    "pretrained-look-alikes": dict(recipe="look-alikes", pretrain=dict(steps=150), train=dict()),
    "look-alikes-96": dict(recipe="look-alikes", train=dict(slice_size=96)),
    "look-alikes-context": dict(recipe="look-alikes", train=dict(context=1.5)),
}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _drain(events):
    last = None
    for event in events:
        last = event
    return last


def run_candidate(name: str, data: Path, out: Path, holdout, seed: int = 0) -> dict:
    spec = CANDIDATES[name]
    wall, cpu = time.perf_counter(), _cpu_seconds()
    weights = None
    if "pretrain" in spec:
        pre = out / f"{name}-pretrain"
        if not (pre / "encoder.pth").exists():
            _drain(train_run_iter(data, pre, pretrain_config(dict(device="cpu", **spec["pretrain"]))))
        weights = str(pre / "encoder.pth")
    run = out / name
    cfg = recipe_config(spec.get("recipe", "small-lesions"), dict(device="cpu", weights=weights, seed=seed, **spec["train"]))
    done = json.loads((run / "run.json").read_text())["step"] if (run / "run.json").exists() else 0
    if done < cfg.steps:  # a finished candidate is read back; an interrupted one resumes
        _drain(train_run_iter(data, run, cfg, resume=(run / "checkpoint_last.pt").exists()))
    info = json.loads((run / "run.json").read_text())
    row = {"candidate": name, "wall_min": (time.perf_counter() - wall) / 60, "cpu_min": (_cpu_seconds() - cpu) / 60,
           "best_step": info["best_step"], "val_auc": info["best_val_volume_auc"],
           "baseline": info["intensity_baseline"]}
    with open(run / "metrics.csv", newline="") as fh:
        rows = {int(r["step"]): r for r in csv.DictReader(fh) if r["val_volume_auc"]}
    chosen = rows[info["best_step"]]
    row["val_interval"] = [float(chosen["val_volume_auc_lo"]), float(chosen["val_volume_auc_hi"])]
    row["val_curve"] = " ".join(f"{float(r['val_volume_auc']):.2f}" for _, r in sorted(rows.items()))
    if holdout:
        result = None
        events = classify_iter(holdout, load_checkpoint(run / "checkpoint_best.pt", "cpu"), ReconstructionSettings())
        try:
            while True:
                next(events)
        except StopIteration as done:
            result = done.value
        row["holdout_auc"], row["holdout_interval"] = result.auc, list(result.interval)
        row["holdout_baseline"] = result.baseline.describe()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--candidates", default="small-lesions,long-ema,pretrained")
    ap.add_argument("--holdout", default="")
    ap.add_argument("--test-fraction", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0, help="training seed, which also draws the validation split "
                                                        "(the held-out split stays seed 0's)")
    args = ap.parse_args()
    holdout = read_cases(args.holdout) if args.holdout else None
    out = Path(args.out)
    data = Path(args.data)
    if args.test_fraction:
        rest, holdout = split_cases(read_cases(data), args.test_fraction, 0)
        out.mkdir(parents=True, exist_ok=True)
        (out / "train.csv").write_text("case,label,image,mask\n" + "".join(
            f"{c.case},{c.label},{c.image},{c.mask}\n" for c in rest))
        data = out / "train.csv"
    rows = []
    for name in args.candidates.split(","):
        row = run_candidate(name, data, out, holdout, args.seed)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| candidate | validation volume AUC of the chosen checkpoint [95 %] | step | held-out AUC [95 %] | "
          "wall | CPU |\n|---|---|---|---|---|---|")
    for r in rows:
        held = (f"{r['holdout_auc']:.2f} [{r['holdout_interval'][0]:.2f}, {r['holdout_interval'][1]:.2f}]"
                if "holdout_auc" in r else "")
        print(f"| {r['candidate']} | {r['val_auc']:.2f} [{r['val_interval'][0]:.2f}, {r['val_interval'][1]:.2f}] | "
              f"{r['best_step']} | {held} | {r['wall_min']:.1f} min | {r['cpu_min']:.1f} min |")


if __name__ == "__main__":
    main()
