"""Quality per network evaluation: Table 2 rows of ToNNO (filtered backprojection) and the iterative ToNNO
over a grid of (L, M) budgets, with a checkpoint (the split it was trained on, as ``tonno benchmark
--checkpoint`` takes it).

    .venv/bin/python bench/bench_budget.py DATA CHECKPOINT OUT [--budgets 19x12,38x12,96x12,19x24,38x24,96x24]
        [--methods tonno,tonno-iterative,tonno-iterative-tv] [--reference DEMO_DIR@192x24]

Each budget ``LxM`` is one benchmark run (L directions on the hemisphere, M slices each, so ``L × (M + 2)``
network evaluations per case) under ``OUT/LxM``; ``OUT/budgets.md`` gathers F1 and Dice with their 95 %
bootstrap intervals, ``OUT/budgets.png`` plots Dice against evaluations per case. ``tonno-iterative-tv``
is ``tonno-iterative`` with total variation (strength 0.1) and non-negativity. The quality preset is
``demo`` with L and M overridden.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from tonno_engine.apps.benchmark import BenchmarkConfig, BenchmarkResult, benchmark_iter
from tonno_engine.base.registry import MethodSpec
from tonno_engine.base.solver_settings import SolverSettings
from tonno_engine.methods.settings import PRESETS

TV = SolverSettings(regulariser="tv", strength=0.1, nonnegative=True)


def spec(name: str) -> MethodSpec:
    return MethodSpec("tonno-iterative", solver=TV) if name == "tonno-iterative-tv" else MethodSpec(name)


def run_budget(args, directions: int, slices: int) -> list[dict]:
    """One benchmark at ``(L, M)``: its table rows (``table.csv``), each with the budget added."""
    out = Path(args.out) / f"{directions}x{slices}"
    cfg = BenchmarkConfig(checkpoint=Path(args.checkpoint), methods=[spec(m) for m in args.methods.split(",")],
                          settings=PRESETS["demo"].override(directions=directions, slices=slices),
                          device="cpu", seed=0)
    start = time.perf_counter()
    result = next(e for e in benchmark_iter(args.data, out, cfg) if isinstance(e, BenchmarkResult))
    seconds = time.perf_counter() - start
    with open(result.table_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    evaluations = directions * (slices + 2)
    print(f"L={directions} M={slices}: {evaluations} evaluations per case, {seconds:.0f} s", flush=True)
    return [{**r, "L": directions, "M": slices, "evaluations": evaluations, "seconds": seconds} for r in rows]


def table(rows: list[dict]) -> str:
    lines = ["| method | L | M | evaluations per case | F1 [95 % interval] | Dice [95 % interval] |",
             "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["method"], r["evaluations"])):
        f1 = f"{float(r['f1']):.2f} [{float(r['f1_lo']):.2f}, {float(r['f1_hi']):.2f}]"
        dice = f"{float(r['dice']):.2f} [{float(r['dice_lo']):.2f}, {float(r['dice_hi']):.2f}]"
        lines.append(f"| {r['method']} | {r['L']} | {r['M']} | {r['evaluations']} | {f1} | {dice} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for offset, method in enumerate(dict.fromkeys(r["method"] for r in rows)):
        for m, marker in zip(sorted({r["M"] for r in rows}), "os^D"):
            pts = sorted((r for r in rows if r["method"] == method and r["M"] == m), key=lambda r: r["evaluations"])
            x = [r["evaluations"] * (1 + 0.03 * offset) for r in pts]  # a small shift keeps the bars apart
            y = [float(r["dice"]) for r in pts]
            err = [[v - float(r["dice_lo"]) for v, r in zip(y, pts)], [float(r["dice_hi"]) - v for v, r in zip(y, pts)]]
            ax.errorbar(x, y, yerr=err, marker=marker, capsize=3, color=f"C{offset}",
                        label=f"{method}, M = {m}")
    ax.set_xscale("log")
    ax.set_xlabel("network evaluations per case, L × (M + 2)")
    ax.set_ylabel("Dice (95 % bootstrap interval)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def reference_rows(spec: str) -> list[dict]:
    """``DIR@LxM``: the rows of an earlier benchmark's ``DIR/table.csv`` (e.g. the demo's own, at the full
    budget), with that budget."""
    folder, budget = spec.rsplit("@", 1)
    directions, slices = (int(v) for v in budget.split("x"))
    with open(Path(folder) / "table.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["label"] == "tonno"]
    return [{**r, "method": f"{r['method']} (reference)", "L": directions, "M": slices,
             "evaluations": directions * (slices + 2), "seconds": float("nan")} for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--budgets", default="19x12,38x12,96x12,19x24,38x24,96x24", help="LxM, comma-separated")
    ap.add_argument("--methods", default="tonno,tonno-iterative,tonno-iterative-tv")
    ap.add_argument("--reference", default="", help="DIR@LxM: ToNNO's row of an earlier benchmark at its budget")
    args = ap.parse_args()
    budgets = [tuple(int(v) for v in b.split("x")) for b in args.budgets.split(",")]
    rows = [row for directions, slices in budgets for row in run_budget(args, directions, slices)]
    rows += reference_rows(args.reference) if args.reference else []
    out = Path(args.out)
    (out / "budgets.md").write_text(table(rows))
    plot(rows, out / "budgets.png")
    print(table(rows))
    print(f"table and plot: {out / 'budgets.md'}, {out / 'budgets.png'}")


if __name__ == "__main__":
    main()
