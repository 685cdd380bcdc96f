"""Peak memory of a reconstruction: host RSS on the CPU (256³), GPU memory on CUDA (512³).

    .venv/bin/python bench/bench_memory.py [--device cpu] [--size 256] [--slices 10] [--directions 8]

Memory does not grow with L (directions are accumulated chunk by chunk) nor with M beyond one
scorer batch, so a small L and M measure the peak of a full run. Runs in this process; start it
fresh. Targets: <= 4 GB host memory for 256³ on the CPU; <= 16 GB GPU memory for 512³ at the
paper's settings (M=100, L=2000, 224² slices, batch 1024).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from tonno_engine import reconstruct, resolve_device
from tonno_engine.models.encoders import create_encoder
from tonno_engine.tomography.plan import Plan
from tonno_engine.tomography.scorers import ModuleScorer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--slices", type=int, default=10)
    ap.add_argument("--directions", type=int, default=8)
    ap.add_argument("--slice-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=None)
    args = ap.parse_args()
    device = resolve_device(args.device)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    volume = torch.rand((args.size,) * 3)
    model = create_encoder("resnet10t", norm="gn").to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t = time.perf_counter()
    heat = reconstruct(volume, ModuleScorer(model), Plan(slices=args.slices, directions=args.directions,
                                                         slice_size=args.slice_size, device=device,
                                                         batch_size=args.batch_size))
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"device {device}, volume {args.size}³, M={args.slices}, L={args.directions}, {args.slice_size}² slices, "
          f"{seconds:.1f} s, output {tuple(heat.shape)}")
    print(f"peak host RSS: {peak:.2f} GiB (after imports {before:.2f} GiB)"
          + ("  (target <= 4 GiB for 256³ on the CPU)" if device.type == "cpu" else ""))
    if device.type == "cuda":
        gpu = torch.cuda.max_memory_allocated(device) / 2**30
        print(f"peak GPU memory allocated: {gpu:.2f} GiB  (target <= 16 GiB for 512³)")


if __name__ == "__main__":
    main()
