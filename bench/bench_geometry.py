"""Paper vs physical geometry on the anisotropic phantom (balls in mm at 1 × 1 × 3 mm, two near
the corners): the R_Σ check over the whole volume and in the corner balls, and the cost of each
geometry at the same M, L and slice size, side by side in one run (interleaved repeats, fastest counts).

    .venv/bin/python bench/bench_geometry.py [--slices 64 --directions 800 --slice-size 64] [--device cpu]
"""

from __future__ import annotations

import argparse

import torch
from timing import timed

from tonno_engine import radon_sum, reconstruct, resolve_device
from tonno_engine.tomography.phantoms import CORNER_BALLS_MM, anisotropic_phantom, ball_masks_mm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=64)
    ap.add_argument("--directions", type=int, default=800)
    ap.add_argument("--slice-size", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    device = resolve_device(args.device)
    volume, spacing = anisotropic_phantom()
    masks = ball_masks_mm(volume.shape, spacing)
    kw = dict(slices=args.slices, directions=args.directions, slice_size=args.slice_size, device=device, batch_size=512,
              spacing=spacing)
    print(f"{tuple(volume.shape)} voxels at {spacing} mm, M={args.slices}, L={args.directions}, {args.slice_size}² slices,"
          f" device {device}")
    settings = (("paper", "full"), ("physical", "ball"), ("physical", "full"))
    runs = {s: [] for s in settings}
    for _ in range(args.repeats):  # interleaved, so that a busy moment of the machine hits every setting
        for geometry, fov in settings:
            runs[geometry, fov].append(timed(device, reconstruct, volume, radon_sum, geometry=geometry,
                                             field_of_view=fov, **kw))
    seconds = {}
    for (geometry, fov), done in runs.items():
        run = min(done, key=lambda r: r.wall)
        heat = run.result.cpu().double()
        corr = torch.corrcoef(torch.stack([heat.flatten(), volume.double().flatten()]))[0, 1].item()
        rel = ((heat - volume.double()).norm() / volume.double().norm()).item()
        corners = [heat[m].mean().item() / value for m, (_, _, value) in zip(masks[1:], CORNER_BALLS_MM[1:])]
        name = geometry if geometry == "paper" else f"{geometry}, {fov}"
        seconds[name] = run.wall
        print(f"{name:15s} whole volume: correlation {corr:.4f}, relative error {rel:.3f}; corner balls at "
              f"{corners[0]:.0%} and {corners[1]:.0%} of their value; {run.wall:.1f} s (fastest of {len(done)})",
              flush=True)
    print(f"cost physical (full) ÷ paper: {seconds['physical, full'] / seconds['paper']:.2f}")


if __name__ == "__main__":
    main()
