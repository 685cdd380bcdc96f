"""Quality per network evaluation: Table 2 rows of ToNNO and the iterative ToNNO at a reduced (L, M) budget,
with a checkpoint (the split it was trained on, as ``tonno benchmark --checkpoint`` takes it).

    .venv/bin/python bench/bench_budget.py DATA CHECKPOINT OUT --directions 38 --slices 24
        [--methods tonno,tonno-iterative,tonno-iterative-tv]

``tonno-iterative-tv`` is registered here: the iterative ToNNO with total variation (strength 0.1) and
non-negativity. The quality preset is ``demo`` (hemisphere) with L and M overridden.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tonno_engine.apps.benchmark import BenchmarkConfig, BenchmarkResult, benchmark_iter
from tonno_engine.base.registry import MethodRecord, MethodSpec, register_method
from tonno_engine.methods.settings import PRESETS
from tonno_engine.tomography.iterative import IterativeTonno
from tonno_engine.tomography.solvers import SolverSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--directions", type=int, default=38)
    ap.add_argument("--slices", type=int, default=24)
    ap.add_argument("--methods", default="tonno,tonno-iterative,tonno-iterative-tv")
    args = ap.parse_args()
    register_method(MethodRecord(
        "tonno-iterative-tv", title="Iterative ToNNO, TV + non-negative", label="tonno-iterative-tv",
        kind="tomographic", needs="logits", default_directions=args.directions,
        description="iterative ToNNO with total variation (0.1) and f >= 0", equation="",
        formula=IterativeTonno(SolverSettings(regulariser="tv", strength=0.1, nonnegative=True))))
    cfg = BenchmarkConfig(checkpoint=Path(args.checkpoint), methods=[MethodSpec(m) for m in args.methods.split(",")],
                          settings=PRESETS["demo"].override(directions=args.directions, slices=args.slices),
                          device="cpu", seed=0)
    start = time.perf_counter()
    for event in benchmark_iter(args.data, args.out, cfg):
        if isinstance(event, BenchmarkResult):
            print(Path(event.table_md).read_text())
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
