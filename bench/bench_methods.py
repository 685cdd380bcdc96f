"""Seconds per volume for every method at equal L, on the same volume, side by side in one run.

    .venv/bin/python bench/bench_methods.py [--device auto] [--slices 32] [--directions 100]
        [--slice-size 64] [--layer 2] [--skip-tomographic-scorecam]

The volume is one synthetic ``brain`` case (64×76×64, MR preset); the model is a randomly
initialised resnet10t (speed does not depend on the weights). Tomographic methods use the same
M and L; slice-wise methods cut every axial slice. Prints seconds and the ratio to ToNNO.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from timing import timed

from tonno_engine import resolve_device
from tonno_engine.base.registry import MethodSpec
from tonno_engine.data.preprocessing import Preprocessing
from tonno_engine.data.synth import brain_case, load_mni_brain
from tonno_engine.methods.run import run_method
from tonno_engine.methods.settings import ReconstructionSettings
from tonno_engine.models.encoders import create_encoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--slices", type=int, default=32)
    ap.add_argument("--directions", type=int, default=100)
    ap.add_argument("--slice-size", type=int, default=64)
    ap.add_argument("--layer", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--skip-tomographic-scorecam", action="store_true",
                    help="ScoreCAM costs one forward pass per channel of every slice")
    args = ap.parse_args()

    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = create_encoder("resnet10t", norm="gn").to(device)
    case = brain_case(np.random.default_rng(0), load_mni_brain((64, 76, 64)), label=1)
    volume = Preprocessing("mr")(case.image)
    specs = [MethodSpec("tonno")]
    for cam in ("gradcam", "layercam", "gradcam++", "scorecam"):
        if cam == "scorecam" and args.skip_tomographic_scorecam:
            continue
        specs += [MethodSpec("averaged-cam", cam=cam, layer=args.layer),
                  MethodSpec("tomographic-cam", cam=cam, layer=args.layer)]
    specs += [MethodSpec(cam, layer=args.layer) for cam in ("gradcam", "layercam", "gradcam++", "scorecam")]
    specs += [MethodSpec("layercam", layer=args.layer, axes=3)]

    print(f"device {device}, volume {tuple(volume.shape)}, M={args.slices}, L={args.directions}, "
          f"{args.slice_size}² slices, resnet10t, layer {args.layer}")
    results = {}
    settings = ReconstructionSettings(slices=args.slices, directions=args.directions, slice_size=args.slice_size,
                                      batch_size=args.batch_size)
    for spec in specs:
        results[spec.label] = timed(device, run_method, spec, volume, model, settings, device=device).wall
        print(f"  {spec.label:28s} {results[spec.label]:8.2f} s   ratio to tonno {results[spec.label] / results['tonno']:6.2f}",
              flush=True)


if __name__ == "__main__":
    main()
