"""Iterative reconstruction against the filtered backprojection, side by side in one run.

    .venv/bin/python bench/bench_iterative.py selfcheck [--directions 2000,500,200,100] [--iterations 20]
        [--geometries paper,physical]
    .venv/bin/python bench/bench_iterative.py cost CHECKPOINT [--slices 24 --directions 192]

``selfcheck``: the R_Σ check (the slice integral in place of the network) at each L, for ToNNO's
filtered backprojection and ``tonno-iterative``: the 32³ two-balls phantom in paper geometry (judged in
the unit ball) and the 64 × 48 × 14 phantom at 1 × 1 × 3 mm in physical geometry (judged over the whole
volume), M = 64, 64² slices. ``cost``: a 64³ MS-like brain with a checkpoint's network, ToNNO and
``tonno-iterative`` sharing one pass over the slices against ToNNO alone: the time ratio with the
network's cost included (the target is ≤ 1.5 at equal L).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from tonno_engine.tomography.iterative import IterativeTonno
from tonno_engine.tomography.phantoms import anisotropic_phantom, balls_phantom, quality_in_unit_ball
from tonno_engine.tomography.reconstruction import TONNO, reconstruct
from tonno_engine.tomography.scorers import radon_sum
from tonno_engine.tomography.solvers import SolverSettings


def _whole(heatmap: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    h, t = heatmap.double().flatten(), truth.double().flatten()
    return torch.corrcoef(torch.stack([h, t]))[0, 1].item(), ((h - t).norm() / t.norm()).item()


def selfcheck(args) -> None:
    iterative = IterativeTonno(SolverSettings(iterations=args.iterations))
    cases = {"paper, 32³ two balls": (balls_phantom((32,) * 3), dict(geometry="paper"), quality_in_unit_ball)}
    if "physical" in args.geometries:
        volume, spacing = anisotropic_phantom()
        cases["physical, 64×48×14 at 1×1×3 mm"] = (volume, dict(geometry="physical", spacing=spacing), _whole)
    if "paper" not in args.geometries:
        cases.pop("paper, 32³ two balls")
    print(f"R_Σ check, M={args.slices}, {args.slice_size}² slices, {args.iterations} CGLS iterations, "
          f"torch threads {torch.get_num_threads()}")
    print("| phantom | L | filtered backprojection: corr. / rel. error | iterative: corr. / rel. error | "
          "time FBP | time iterative |\n|---|---|---|---|---|---|")
    for name, (truth, frame, judge) in cases.items():
        for directions in (int(d) for d in args.directions.split(",")):
            row = []
            for formula in (TONNO, iterative):
                start = time.perf_counter()
                heat = reconstruct(truth, radon_sum, formula=formula, slices=args.slices, directions=directions,
                                   slice_size=args.slice_size, device="cpu", batch_size=512, **frame)
                row.append((*judge(heat, truth), time.perf_counter() - start))
            (c0, e0, t0), (c1, e1, t1) = row
            print(f"| {name} | {directions} | {c0:.3f} / {e0:.2f} | {c1:.3f} / {e1:.2f} | {t0:.1f} s | {t1:.1f} s |",
                  flush=True)


def cost(args) -> None:
    from tonno_engine.base.registry import MethodSpec
    from tonno_engine.data.synth import BrainSpec, brain_case, load_mni_brain
    from tonno_engine.methods.case import reconstruct_case_iter
    from tonno_engine.methods.settings import ReconstructionSettings
    from tonno_engine.models.checkpoint import load_checkpoint

    loaded = load_checkpoint(args.checkpoint, "cpu")
    spec = BrainSpec(max_lesions=3, lesion_radius=(3.5, 6.0))
    case = brain_case(np.random.default_rng(5), load_mni_brain((64, 64, 64)), 1, spec)
    settings = ReconstructionSettings(slices=args.slices, directions=args.directions, hemisphere=True)

    def run(names):
        start = time.perf_counter()
        for _ in reconstruct_case_iter(case.image, (1.0, 1.0, 1.0), loaded, [MethodSpec(n) for n in names], settings):
            pass
        return time.perf_counter() - start

    run(["tonno"])  # warm-up
    pairs = [(run(["tonno"]), run(["tonno", "tonno-iterative"])) for _ in range(args.repeats)]
    ratios = [b / a for a, b in pairs]
    print(f"64³ brain, {loaded.description.slice_size}² slices, M={args.slices}, L={args.directions} (hemisphere), "
          "the registered tonno-iterative (20 CGLS iterations at most); pairs (ToNNO, ToNNO + iterative): "
          + ", ".join(f"({a:.1f} s, {b:.1f} s)" for a, b in pairs))
    print(f"time ratio iterative ÷ filtered backprojection, network included: {np.exp(np.mean(np.log(ratios))):.2f} "
          "(geometric mean; the target is <= 1.5)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    check = sub.add_parser("selfcheck")
    check.add_argument("--directions", default="2000,500,200,100")
    check.add_argument("--slices", type=int, default=64)
    check.add_argument("--slice-size", type=int, default=64)
    check.add_argument("--iterations", type=int, default=20)
    check.add_argument("--geometries", default="paper,physical")
    spend = sub.add_parser("cost")
    spend.add_argument("checkpoint")
    spend.add_argument("--slices", type=int, default=24)
    spend.add_argument("--directions", type=int, default=192)
    spend.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    selfcheck(args) if args.mode == "selfcheck" else cost(args)


if __name__ == "__main__":
    main()
