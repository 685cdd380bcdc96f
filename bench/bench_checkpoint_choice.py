"""How often the chosen checkpoint is really the best: validation on few volumes against a large held-out set.

    .venv/bin/python bench/bench_checkpoint_choice.py OUT [--n 40] [--holdout 40] [--seeds 0,1]
        [--ema 0,0.99] [--steps 800] [--difficulty ms] [--spacing 2,2,3]

For each seed: ``tonno synth`` brains (``--n``, 20 % of them the run's validation split, so 8 of 40) and
``--holdout`` others; for each ``--ema`` a ``small-lesions`` training that keeps every validated step's
weights (``--keep-checkpoints``). Every kept checkpoint is then scored on the held-out volumes (volume
AUC, largest logit over 64 planes, :mod:`tonno_engine.apps.classification`). Printed per run: the
validation AUC and held-out AUC of the chosen checkpoint (``checkpoint_best.pt``), of the last one, and
of the one that is best on the held-out set, the chosen one's rank among the kept, and the intensity
baseline on the held-out volumes; last, how often the chosen checkpoint was within 0.02 of the best.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

from tonno_engine.apps.classification import classify_iter
from tonno_engine.apps.training_run import train_run_iter
from tonno_engine.data.dataset import read_cases
from tonno_engine.data.synth import SynthRequest, synthesize
from tonno_engine.methods.settings import ReconstructionSettings
from tonno_engine.models.checkpoint import load_checkpoint
from tonno_engine.training.config import recipe_config


def _run(value):
    """Run an engine generator to its end; its return value."""
    try:
        while True:
            next(value)
    except StopIteration as done:
        return done.value


def held_out_auc(checkpoint: Path, holdout) -> tuple[float, object]:
    result = _run(classify_iter(holdout, load_checkpoint(checkpoint, "cpu"), ReconstructionSettings(), seed=0))
    return result.auc, result


def one_run(args, seed: int, ema: float, data: Path, holdout) -> dict:
    out = Path(args.out) / f"seed{seed}-ema{ema:g}"
    cfg = recipe_config("small-lesions", dict(steps=args.steps, seed=seed, device="cpu", ema=ema, keep_checkpoints=True))
    start = time.perf_counter()
    if not (out / "run.json").exists() or json.loads((out / "run.json").read_text())["step"] < args.steps:
        for _ in train_run_iter(data, out, cfg, resume=(out / "checkpoint_last.pt").exists()):
            pass
    trained = time.perf_counter() - start
    with open(out / "metrics.csv", newline="") as fh:
        val = {int(r["step"]): float(r["val_volume_auc"]) for r in csv.DictReader(fh) if r["val_volume_auc"]}
    kept = sorted((out / "checkpoints").glob("step_*.pt"))
    held = {int(p.stem.split("_")[1]): held_out_auc(p, holdout)[0] for p in kept}
    run = json.loads((out / "run.json").read_text())
    chosen, last = run["best_step"], max(held)
    best = max(held, key=lambda s: (held[s], s))
    rank = 1 + sum(v > held[chosen] for v in held.values())
    baseline = held_out_auc(kept[-1], holdout)[1].baseline
    return {"seed": seed, "ema": ema, "chosen": chosen, "val_chosen": val[chosen], "held_chosen": held[chosen],
            "last": last, "held_last": held[last], "best": best, "held_best": held[best], "rank": rank,
            "kept": len(held), "baseline": baseline.describe(), "train_s": trained,
            "val_aucs": " ".join(f"{val[s]:.2f}" for s in sorted(val)),
            "held_aucs": " ".join(f"{held[s]:.2f}" for s in sorted(held))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--holdout", type=int, default=40)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--ema", default="0,0.99")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--difficulty", default="ms")
    ap.add_argument("--spacing", default="")
    args = ap.parse_args()
    spacing = tuple(float(v) for v in args.spacing.split(",")) if args.spacing else None
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        data, held_dir = Path(args.out) / f"data{seed}", Path(args.out) / f"holdout{seed}"
        for folder, n, s in ((data, args.n, seed), (held_dir, args.holdout, 1000 + seed)):
            if not (folder / "labels.csv").exists():
                list(synthesize(folder, SynthRequest(kind="brain", n=n, seed=s, difficulty=args.difficulty, spacing=spacing)))
        holdout = read_cases(held_dir / "labels.csv")
        for ema in (float(e) for e in args.ema.split(",")):
            row = one_run(args, seed, ema, data, holdout)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| seed | EMA | chosen step: val AUC / held-out AUC | last step: held-out AUC | best on held-out: step, AUC "
          "| chosen's rank of kept | held-out intensity baseline | training |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['ema']:g} | {r['chosen']}: {r['val_chosen']:.2f} / {r['held_chosen']:.2f} | "
              f"{r['held_last']:.2f} | {r['best']}, {r['held_best']:.2f} | {r['rank']} of {r['kept']} | "
              f"{r['baseline']} | {r['train_s']:.0f} s |")
    for ema in dict.fromkeys(r["ema"] for r in rows):
        mine = [r for r in rows if r["ema"] == ema]
        near = sum(r["held_best"] - r["held_chosen"] <= 0.02 for r in mine)
        print(f"EMA {ema:g}: the chosen checkpoint within 0.02 of the held-out best in {near} of {len(mine)} runs; "
              f"mean held-out AUC chosen {sum(r['held_chosen'] for r in mine) / len(mine):.3f}, "
              f"last {sum(r['held_last'] for r in mine) / len(mine):.3f}")


if __name__ == "__main__":
    main()
