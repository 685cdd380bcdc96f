"""ToNNO at the paper's settings on one GPU: seconds per volume, overhead, sphere vs hemisphere.

    python bench/bench_paper_settings.py [--device cuda] [--shape 128 256 256] [--slices 100]
        [--directions 2000] [--slice-size 224] [--batch-size 1024] [--variants fp32,bf16,bf16-compile]

Per variant (``fp32``: eager float32; ``bf16``: bf16 autocast + channels_last, the default;
``bf16-compile``: the same with ``compile=True``: the network, slicing and backprojection under
torch.compile), side by side in one run:

- the encoder alone on as many slices (one batch of real slices scored ``ceil(n / batch)``
  times: the floor),
- ``reconstruct()`` over the full sphere (``angles`` directions) and over the hemisphere
  (``angles / 2``: the same planes, half the slices),

and prints seconds, slices/s, the whole/encoder ratio (target <= 1.15), the issue's targets
(sphere <= 2.5 s, hemisphere <= 1.3 s) and the correlation of the hemisphere's heatmap with the
sphere's. The network is a randomly initialised resnet10t (speed does not depend on weights);
the volume a two-ball phantom with noise. ``--check`` adds the R_Σ reconstruction check (the
slice mean as scorer) on both direction sets: correlation with the volume in the unit ball.
Runs on a CPU too, with small settings, to try it out.
"""

from __future__ import annotations

import argparse
import math

import torch
from timing import timed

from tonno_engine import make_directions, radon_sum, reconstruct, resolve_device, slice_offsets
from tonno_engine.base.devices import device_name
from tonno_engine.models.encoders import create_encoder
from tonno_engine.tomography.phantoms import balls_phantom, quality_in_unit_ball
from tonno_engine.tomography.scorers import ModuleScorer
from tonno_engine.tomography.slicing import extract_slices

VARIANTS = {"fp32": {"autocast": False, "compile": False}, "bf16": {"autocast": True, "compile": False},
            "bf16-compile": {"autocast": True, "compile": True}}


def _score(scorer, batch: torch.Tensor, count: int, batch_size: int) -> None:
    """The encoder alone on ``count`` slices: ``batch`` scored ``ceil(count / batch_size)`` times."""
    for start in range(0, count, batch_size):
        scorer(batch[: min(batch_size, count - start)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--shape", type=int, nargs=3, default=(128, 256, 256))
    ap.add_argument("--slices", type=int, default=100)
    ap.add_argument("--directions", type=int, default=2000)
    ap.add_argument("--slice-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--variants", default="fp32,bf16,bf16-compile")
    ap.add_argument("--check", action="store_true", help="also the R_Σ check on sphere and hemisphere")
    args = ap.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    volume = (balls_phantom(args.shape) + 0.05 * torch.rand(args.shape)).to(device)
    model = create_encoder("resnet10t", norm="bn").to(device)
    k = args.slices + 2
    print(f"{device_name(device)}: volume {tuple(args.shape)}, M={args.slices}, L={args.directions} sphere / "
          f"{args.directions // 2} hemisphere, {args.slice_size}² slices, batch {args.batch_size}, resnet10t, "
          f"torch {torch.__version__}", flush=True)

    dirs = make_directions(1)
    offsets = slice_offsets(args.slices)
    one_batch = extract_slices(volume, offsets.repeat(math.ceil(args.batch_size / k))[: args.batch_size],
                               dirs.normals.expand(args.batch_size, 3), dirs.u.expand(args.batch_size, 3),
                               dirs.v.expand(args.batch_size, 3), (args.slice_size,) * 2)
    paper = (tuple(args.shape), args.slices, args.directions, args.slice_size) == ((128, 256, 256), 100, 2000, 224)
    common = {"slices": args.slices, "slice_size": args.slice_size, "device": device, "batch_size": args.batch_size}
    for name in args.variants.split(","):
        options = VARIANTS[name]
        scorer = ModuleScorer(model, autocast=options["autocast"], compile=options["compile"])
        t = timed(device, reconstruct, volume, scorer, directions=48, compile=options["compile"], **common).wall
        print(f"[{name}] warm-up (compiles when compiling): {t:.1f} s", flush=True)
        rows = {}
        for label, angles, hemisphere in (("sphere", args.directions, False), ("hemisphere", args.directions // 2, True)):
            n = angles * k
            # compiled code meets each new batch shape once (the last, partial batches): run both
            # sides once untimed so that no compilation lands inside a timing
            for _ in range(2 if options["compile"] else 1):
                enc = timed(device, _score, scorer, one_batch, n, args.batch_size).wall
                whole, _, heat = timed(device, reconstruct, volume, scorer, directions=angles, hemisphere=hemisphere,
                                       compile=options["compile"], **common)
            rows[label] = heat
            target = 2.5 if label == "sphere" else 1.3
            verdict = ("met" if whole <= target else "not met") if paper else "applies at the paper's settings"
            print(f"[{name}] {label:10s}: whole {whole:7.2f} s ({n / whole:8.0f} slices/s), encoder alone {enc:7.2f} s, "
                  f"ratio {whole / enc:.3f} (target <= 1.15); target {target} s: {verdict}", flush=True)
        corr = torch.corrcoef(torch.stack([rows["sphere"].flatten(), rows["hemisphere"].flatten()]))[0, 1].item()
        print(f"[{name}] correlation hemisphere vs sphere heatmap: {corr:.4f}", flush=True)
        if device.type == "cuda":
            print(f"[{name}] peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB", flush=True)
    if args.check:
        for label, angles, hemisphere in (("sphere", args.directions, False), ("hemisphere", args.directions // 2, True)):
            t, _, heat = timed(device, reconstruct, volume, radon_sum, directions=angles, hemisphere=hemisphere, **common)
            corr, rel = quality_in_unit_ball(heat, volume)
            print(f"R_Σ check, {label}: correlation {corr:.4f}, relative error {rel:.4f} ({t:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
