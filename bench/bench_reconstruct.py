"""Whole ToNNO pipeline vs the scorer alone on the same slices, side by side in one run.

    .venv/bin/python bench/bench_reconstruct.py [--device auto] [--size 64] [--slices 20]
        [--directions 20] [--slice-size 128] [--batch-size 64] [--repeats 6] [--compile]

Prints seconds for ``reconstruct()`` (slicing + scoring + backprojection) and for the scorer
alone on the very slices ``reconstruct()`` cuts (materialised beforehand), and their ratio.
The speed issue's target for that ratio is <= 1.15.
"""

from __future__ import annotations

import argparse
import statistics
from functools import partial

import timm
import torch
from timing import alternating_pairs, timed

from tonno_engine import make_directions, reconstruct, resolve_device, slice_offsets
from tonno_engine.base.devices import device_name
from tonno_engine.tomography.phantoms import balls_phantom
from tonno_engine.tomography.plan import Plan
from tonno_engine.tomography.scorers import ModuleScorer
from tonno_engine.tomography.slicing import extract_slices


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--slices", type=int, default=20)
    ap.add_argument("--directions", type=int, default=20)
    ap.add_argument("--slice-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--compile", action="store_true", help="reconstruct(compile=True): fused slicing and "
                    "backprojection (the scorer stays eager on both sides)")
    ap.add_argument("--repeats", type=int, default=6, help="pairs (even: as many in each order)")
    args = ap.parse_args()

    device = resolve_device(args.device)
    model = timm.create_model("resnet10t", pretrained=False, num_classes=1, in_chans=1).to(device)
    scorer = ModuleScorer(model)
    volume = balls_phantom((args.size,) * 3).to(device) + 0.1 * torch.rand((args.size,) * 3, device=device)
    size = (args.slice_size, args.slice_size)

    dirs = make_directions(args.directions)
    offsets = slice_offsets(args.slices)
    k = len(offsets)
    all_slices = extract_slices(
        volume, offsets.repeat(args.directions), dirs.normals.repeat_interleave(k, 0),
        dirs.u.repeat_interleave(k, 0), dirs.v.repeat_interleave(k, 0), size,
    )
    plan = Plan(slices=args.slices, directions=args.directions, slice_size=args.slice_size, device=device,
                batch_size=args.batch_size, compile=args.compile)
    scorer(all_slices[: args.batch_size])  # warm-up
    reconstruct(volume, scorer, plan)  # warm-up (and compilation, with --compile)

    def score_all() -> None:
        for start in range(0, len(all_slices), args.batch_size):
            scorer(all_slices[start: start + args.batch_size])

    # On a CPU the ratio of process CPU seconds is printed too: time stolen by other tenants does
    # not count there.
    pairs = alternating_pairs(partial(timed, device, score_all), partial(timed, device, reconstruct, volume, scorer, plan),
                              args.repeats)
    ratios = [pipe.wall / enc.wall for enc, pipe in pairs]
    cpu_ratios = [pipe.cpu / enc.cpu for enc, pipe in pairs]
    n = len(all_slices)
    print(f"device {device_name(device)}, threads {torch.get_num_threads()}, volume {args.size}³, "
          f"M={args.slices}, L={args.directions}, {n} slices of {args.slice_size}², batch {args.batch_size}, "
          f"resnet10t, {args.repeats} interleaved pairs{', compile=True' if args.compile else ''}")
    enc, pipe = (statistics.median(t[k].wall for t in pairs) for k in (0, 1))
    print(f"scorer alone : {enc:8.2f} s median  ({n / enc:8.1f} slices/s)")
    print(f"reconstruct(): {pipe:8.2f} s median  ({n / pipe:8.1f} slices/s)")
    print("pair ratios  : " + " ".join(f"{r:.3f}" for r in ratios))
    print(f"ratio whole/scorer: {statistics.geometric_mean(ratios):.3f} geometric mean of pairs  (target <= 1.15)")
    if device.type == "cpu":
        print(f"ratio of process CPU seconds: {statistics.geometric_mean(cpu_ratios):.3f} geometric mean "
              f"(pairs {' '.join(f'{r:.3f}' for r in cpu_ratios)})")


if __name__ == "__main__":
    main()
