"""Recall by lesion position and size from `tonno benchmark` output folders (their lesions.csv), side by side.

    .venv/bin/python bench/bench_lesion_position.py RUN [RUN ...] [--method tonno] [--outer 0.45]

"Outer" lesions are those whose centroid lies at least `--outer` of the half-diagonal from the
volume's centre (`relative_radius` in lesions.csv); sizes are split at the terciles of all lesions.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--method", default="tonno")
    ap.add_argument("--outer", type=float, default=0.45)
    args = ap.parse_args()
    tables = {}
    for run in args.runs:
        with open(run / "lesions.csv", newline="") as fh:
            tables[run] = [r for r in csv.DictReader(fh) if r["method"] == args.method]
    sizes = np.array([float(r["volume_mm3"]) for rows in tables.values() for r in rows])
    cuts = np.quantile(sizes, [1 / 3, 2 / 3]) if len(sizes) else (0, 0)

    def recall(rows):
        return f"{np.mean([r['detected'] == 'True' for r in rows]):.2f} ({len(rows)})" if rows else "- (0)"

    print(f"method {args.method}; recall (lesions) overall, outer (relative radius >= {args.outer}), inner, and by size "
          f"(mm³ terciles {cuts[0]:.0f} / {cuts[1]:.0f})")
    for run, rows in tables.items():
        outer = [r for r in rows if float(r["relative_radius"]) >= args.outer]
        inner = [r for r in rows if float(r["relative_radius"]) < args.outer]
        by_size = [[r for r in rows if lo <= float(r["volume_mm3"]) < hi]
                   for lo, hi in ((0, cuts[0]), (cuts[0], cuts[1]), (cuts[1], np.inf))]
        print(f"{run.name:16s} overall {recall(rows)}  outer {recall(outer)}  inner {recall(inner)}  "
              f"small {recall(by_size[0])}  medium {recall(by_size[1])}  large {recall(by_size[2])}")


if __name__ == "__main__":
    main()
