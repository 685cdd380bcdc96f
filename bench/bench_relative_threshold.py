"""A per-volume relative cut on top of Table 2's calibrated threshold: does it lift lesion precision?

    .venv/bin/python bench/bench_relative_threshold.py BENCHMARK_OUT [--method tonno] [--checkpoint CKPT]
                                                       [--fractions 0,0.2,0.3,0.4,0.5,0.6,0.7,0.8]

Reads the heatmaps a ``tonno benchmark`` left in ``BENCHMARK_OUT/heatmaps`` and the masks its ``eval.csv`` names. For each
fraction ``a`` a component above the threshold is kept only if its peak is at least ``a`` times its volume's
largest heatmap value (``a`` = 0: Table 2's rule), the threshold calibrated for that ``a`` on the validation
cases as ``tonno benchmark`` does (quantile candidates, :func:`robust_argmax`). Prints the test precision,
recall and F1 of every ``a``, then the ``a`` validation would choose, with the bootstrap interval of its F1.
Validation cases: ``benchmark.json``'s, or the checkpoint's (``--checkpoint``) for older benchmark folders.
Why a script and not an option: it is an experiment on finished heatmaps (bench/RESULTS.md says whether it helped).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from tonno_engine.evaluation.bootstrap import bootstrap_intervals, case_arrays
from tonno_engine.evaluation.evaluate import load_pair, pair_files
from tonno_engine.evaluation.metrics import (
    calibration_levels,
    case_metrics,
    label_components,
    neighbour_mean,
    robust_argmax,
    summarize,
)
from tonno_engine.models.checkpoint import read_description


def relative_cut(heatmap: np.ndarray, level: float, fraction: float) -> np.ndarray:
    """``heatmap > level`` ``(D, H, W)`` without the components whose peak is below ``fraction`` of the map's maximum."""
    mask = heatmap > level
    if fraction <= 0:
        return mask
    components, count = label_components(mask)
    keep = np.zeros(count + 1, bool)
    keep[1:] = ndimage.maximum(heatmap, components, np.arange(1, count + 1)) >= fraction * heatmap.max()
    return keep[components]


def scores(loaded, level: float, fraction: float):
    """Per-case metrics of ``(heatmap, truth, label)`` triples cut by :func:`relative_cut`."""
    return [case_metrics(relative_cut(h, level, fraction), t, label=label) for h, t, label in loaded]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("benchmark")
    ap.add_argument("--method", default="tonno")
    ap.add_argument("--checkpoint")
    ap.add_argument("--fractions", default="0,0.2,0.3,0.4,0.5,0.6,0.7,0.8")
    args = ap.parse_args()
    out = Path(args.benchmark)
    record = out / "benchmark.json"
    if record.exists():
        val_names = set(json.loads(record.read_text())["validation_cases"])
    else:
        val_names = set(read_description(args.checkpoint).val_cases)
    pairs = [p for p in pair_files(out / "heatmaps", out / "eval.csv") if p.heatmap.name.endswith(f"_{args.method}.nii.gz")]
    loaded = {p.case: (*load_pair(p)[:2], p.label) for p in pairs}
    val = [loaded[c] for c in sorted(loaded) if c in val_names]
    test = [loaded[c] for c in sorted(loaded) if c not in val_names]
    levels = calibration_levels([h for h, _, _ in val])
    print(f"{len(val)} validation, {len(test)} test cases of {args.method}\n")
    print("| fraction | level | validation F1 | test precision | test recall | test F1 |\n|---|---|---|---|---|---|")
    chosen = []
    for fraction in (float(a) for a in args.fractions.split(",")):
        f1s = [summarize(scores(val, level, fraction))["f1"] for level in levels]
        best = robust_argmax(f1s)
        smoothed = neighbour_mean(f1s)[best]
        rows = scores(test, levels[best], fraction)
        s = summarize(rows)
        chosen.append((smoothed, fraction, rows))
        print(f"| {fraction:g} | {levels[best]:.4g} | {f1s[best]:.2f} | {s['precision']:.2f} | {s['recall']:.2f} | "
              f"{s['f1']:.2f} |", flush=True)
    _, fraction, rows = max(chosen, key=lambda c: c[0])  # ties: the first, the smallest fraction
    lo, hi = bootstrap_intervals({"x": case_arrays([r.as_dict() for r in rows])})["x"]["f1"]
    print(f"\nvalidation chooses fraction {fraction:g}: test F1 {summarize(rows)['f1']:.2f} [{lo:.2f}, {hi:.2f}]")


if __name__ == "__main__":
    main()
