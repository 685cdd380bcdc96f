"""The CPU preview preset against the full-quality heatmap, on a 128³ brain with the demo model.

    .venv/bin/python bench/bench_preview.py [CHECKPOINT] [--device cpu] [--full-directions 2000]
        [--full-slices 100] [--full-cache FILE.pt] [--candidates 40x224 24x384 ...] [--profile]

CHECKPOINT defaults to ``tonno-demo/model/checkpoint_best.pt`` (``make demo``). Prints the
preview's seconds (target <= 30 s on 2 CPU cores) and its Pearson correlation with the
paper-setting ToNNO heatmap (M=100, L=2000, full sphere) of the same volume.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from tonno_engine import resolve_device
from tonno_engine.apps.demo import DEMO_LESION_RADIUS
from tonno_engine.base.registry import MethodSpec
from tonno_engine.data.preprocessing import Preprocessing
from tonno_engine.data.synth import BrainSpec, brain_case, load_mni_brain
from tonno_engine.methods.run import run_method
from tonno_engine.methods.settings import PRESETS, ReconstructionSettings
from tonno_engine.models.checkpoint import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?", default="tonno-demo/model/checkpoint_best.pt")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--full-directions", type=int, default=2000)
    ap.add_argument("--full-slices", type=int, default=100, help="M of the reference (100: the paper's)")
    ap.add_argument("--full-cache", default=None, help="reuse (or write) the full-quality heatmap here (.pt)")
    ap.add_argument("--candidates", nargs="*", default=[], metavar="MxL",
                    help="further hemisphere settings to compare, e.g. 40x224 24x384")
    ap.add_argument("--profile", action="store_true", help="print cProfile's top functions of the preview run")
    args = ap.parse_args()
    device = resolve_device(args.device)
    model, meta = load_model(args.checkpoint, device)
    spec = BrainSpec(max_lesions=3, lesion_radius=DEMO_LESION_RADIUS)
    case = brain_case(np.random.default_rng(5), load_mni_brain((128, 128, 128)), 1, spec)
    volume = Preprocessing.from_dict(meta.preprocessing)(case.image)
    spec, size = MethodSpec("tonno"), meta.slice_size
    run_method(spec, volume, model, ReconstructionSettings(slices=8, directions=4, slice_size=size), device=device)  # warm-up
    print(f"device {device}, 128³ brain, demo model ({size}² slices), threads {torch.get_num_threads()}")
    preview = PRESETS["preview"]
    settings = [("preview", preview.override(slice_size=size))] + [
        (c, ReconstructionSettings(slices=int(c.split("x")[0]), directions=int(c.split("x")[1]), hemisphere=True,
                                   slice_size=size)) for c in args.candidates]
    maps = {}
    for name, setting in settings:
        profiler = cProfile.Profile() if args.profile and name == "preview" else None
        t = time.perf_counter()
        if profiler:
            profiler.enable()
        maps[name] = run_method(spec, volume, model, setting, device=device).cpu().numpy()
        if profiler:
            profiler.disable()
        print(f"{name} {setting.describe()}: {time.perf_counter() - t:.1f} s  (target <= 30 s)", flush=True)
        if profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats("backproject|extract_slices|forward", 6)
    t = time.perf_counter()
    if args.full_cache and Path(args.full_cache).exists():
        full = torch.load(args.full_cache)
    else:
        full = run_method(spec, volume, model, ReconstructionSettings(slices=args.full_slices, directions=args.full_directions,
                                                                      hemisphere=PRESETS["paper"].hemisphere,
                                                                      slice_size=size), device=device)
        if args.full_cache:
            torch.save(full.cpu(), args.full_cache)
    full_seconds = time.perf_counter() - t
    lesion = case.mask > 0
    cached = args.full_cache and full_seconds < 1.0
    print(f"reference (M={args.full_slices}, L={args.full_directions}, sphere): "
          f"{'read from ' + args.full_cache if cached else f'{full_seconds:.1f} s'}")
    f = full.cpu().numpy()
    print("lesion contrast = (mean inside lesions - mean outside) / std outside")
    for name, p in maps.items():
        for sigma in (0.0, 2.0):
            # the same Gaussian on both: how far they agree beyond voxel-scale noise
            ps, fs = (ndimage.gaussian_filter(a, sigma) if sigma else a for a in (p, f))
            print(f"{name}, {'raw' if not sigma else f'both smoothed (sigma {sigma:g} voxels)'}: correlation with "
                  f"the reference {np.corrcoef(ps.ravel(), fs.ravel())[0, 1]:.3f}; lesion contrast "
                  f"{_contrast(ps, lesion):.2f} (reference {_contrast(fs, lesion):.2f})")


def _contrast(h: np.ndarray, lesion: np.ndarray) -> float:
    return float((h[lesion].mean() - h[~lesion].mean()) / h[~lesion].std())


if __name__ == "__main__":
    main()
