"""What a user should expect on their data: one recipe across generator settings nobody tuned for.

    .venv/bin/python bench/bench_robustness.py OUT [--cells default,faint,thick,bias,few] [--seeds 0,1,2]
        [--recipe small-lesions] [--methods tonno,layercam] [--quality demo]

Each cell is a ``tonno synth --kind brain`` data set (``default``: 120 MS-like brains; ``faint``: lesion
contrast × 0.5; ``thick``: re-acquired at 1 × 1 × 3 mm; ``bias``: a bias field of 0.3; ``few``: 40 brains
instead of 120) and a ``tonno benchmark --recipe RECIPE --quality demo`` on it (training, calibration on the
run's validation cases, test on the 30 % held out; ``--quality`` another reconstruction preset). Printed per
cell and seed: the classifier's volume AUC on the test cases with its interval, the intensity baseline's, and
each method's F1 and Dice with their intervals; a cell at chance (AUC ≤ 0.6) or below the baseline is marked.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tonno_engine.apps.benchmark import BenchmarkConfig, BenchmarkResult, benchmark_iter
from tonno_engine.base.registry import MethodSpec
from tonno_engine.data.synth import SynthRequest, synthesize
from tonno_engine.methods.settings import PRESETS
from tonno_engine.training.config import recipe_config

CELLS = {
    "default": dict(n=120),
    "faint": dict(n=120, contrast_scale=0.5),
    "thick": dict(n=120, spacing=(1.0, 1.0, 3.0)),
    "bias": dict(n=120, bias_field=0.3),
    "few": dict(n=40),
}


def run_cell(args, cell: str, seed: int) -> dict:
    data, out = Path(args.out) / f"{cell}-{seed}" / "data", Path(args.out) / f"{cell}-{seed}" / "bench"
    if not (data / "labels.csv").exists():
        list(synthesize(data, SynthRequest(kind="brain", seed=seed, **CELLS[cell])))
    cfg = BenchmarkConfig(train=recipe_config(args.recipe, dict(device="cpu", seed=seed)),
                          methods=[MethodSpec(m) for m in args.methods.split(",")], settings=PRESETS[args.quality],
                          device="cpu", seed=seed)
    start = time.perf_counter()
    result = next(e for e in benchmark_iter(data, out, cfg) if isinstance(e, BenchmarkResult))
    c = result.classification
    row = {"cell": cell, "seed": seed, "minutes": (time.perf_counter() - start) / 60, "auc": c.auc,
           "auc_interval": list(c.interval), "baseline": c.baseline.describe(), "baseline_auc": c.baseline.auc,
           "chance": c.auc <= 0.6, "below_baseline": c.below_baseline}
    for r in result.rows:
        ci = r["intervals"]
        row[r["label"]] = {"f1": r["f1"], "f1_interval": list(ci["f1"]), "dice": r["dice"], "dice_interval": list(ci["dice"])}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--cells", default=",".join(CELLS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--recipe", default="small-lesions")
    ap.add_argument("--methods", default="tonno,layercam")
    ap.add_argument("--quality", default="demo", choices=list(PRESETS))
    args = ap.parse_args()
    rows = []
    for cell in args.cells.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            rows.append(run_cell(args, cell, seed))
            print(json.dumps(rows[-1]), flush=True)
    labels = [MethodSpec(m).label for m in args.methods.split(",")]
    print("\n| cell | seed | test volume AUC [95 %] | intensity baseline | "
          + " | ".join(f"{label} F1 [95 %] | {label} Dice [95 %]" for label in labels) + " | note |")
    print("|---|---|---|---|" + "---|---|" * len(labels) + "---|")
    for r in rows:
        cells = []
        for label in labels:
            m = r[label]
            cells += [f"{m['f1']:.2f} [{m['f1_interval'][0]:.2f}, {m['f1_interval'][1]:.2f}]",
                      f"{m['dice']:.2f} [{m['dice_interval'][0]:.2f}, {m['dice_interval'][1]:.2f}]"]
        note = "; ".join(n for n, flag in (("at chance", r["chance"]), ("below the baseline", r["below_baseline"])) if flag)
        print(f"| {r['cell']} | {r['seed']} | {r['auc']:.2f} [{r['auc_interval'][0]:.2f}, {r['auc_interval'][1]:.2f}] | "
              f"{r['baseline']} | " + " | ".join(cells) + f" | {note} |")


if __name__ == "__main__":
    main()
