"""Training throughput vs the encoder's own forward+backward+step on the same batch, in one run.

    .venv/bin/python bench/bench_train_throughput.py [--device auto] [--slice-size 64] [--steps 30]

Both sides use resnet10t, the same batch (8 volumes × 8 slices), AdamW and (on CUDA) bf16
autocast. The training side runs the real loop (`train_iter`: random planes sliced on the device,
intensity augmentation, loss, step, metrics row); the encoder side feeds a fixed tensor. Target:
training ≥ 0.8 × the encoder's throughput.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from tonno_engine import resolve_device
from tonno_engine.base.devices import synchronize
from tonno_engine.data.synth import SynthRequest, synthesize
from tonno_engine.models.encoders import create_encoder
from tonno_engine.training.config import TrainConfig
from tonno_engine.training.loop import train_iter
from tonno_engine.training.sampling import optimisation_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--slice-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    device = resolve_device(args.device)
    cfg = TrainConfig(norm="bn", slice_size=args.slice_size, steps=args.steps, val_every=10**9,
                      checkpoint_every=10**9, device=str(device), seed=0)
    batch = cfg.batch_volumes * cfg.slices_per_volume
    use_amp = device.type == "cuda"
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        list(synthesize(data, SynthRequest(kind="phantom", n=12, seed=0)))
        model = create_encoder("resnet10t", norm="bn").to(device).to(memory_format=torch.channels_last).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x = torch.randn(batch, 1, args.slice_size, args.slice_size, device=device).contiguous(
            memory_format=torch.channels_last)
        y = (torch.rand(batch, 1, device=device) < 0.5).float()
        loss_fn = torch.nn.BCEWithLogitsLoss()

        def encoder_steps(n):  # the very step train_iter takes, on a fixed batch
            for _ in range(n):
                optimisation_step(model, x, y, loss_fn, opt, use_amp)
            synchronize(device)

        encoder_steps(3)  # warm-up
        results = {"encoder": [], "training": []}
        for rep in range(2):  # interleaved so that machine noise hits both alike
            t = time.perf_counter()
            encoder_steps(args.steps)
            results["encoder"].append(args.steps * batch / (time.perf_counter() - t))
            run = Path(tmp) / f"run{rep}"
            events = train_iter(data, run, cfg)
            t = None
            steps = 0
            for event in events:
                if event.stage == "train":
                    if t is None:  # time from the first finished step: loading and warm-up excluded
                        t, steps = time.perf_counter(), 0
                    else:
                        steps += 1
            synchronize(device)
            results["training"].append(steps * batch / (time.perf_counter() - t))
    enc, tr = max(results["encoder"]), max(results["training"])
    print(f"device {device}, resnet10t, batch {batch} of {args.slice_size}², {args.steps} steps")
    print(f"encoder forward+backward+step: {enc:8.1f} slices/s")
    print(f"training loop (train_iter)   : {tr:8.1f} slices/s")
    print(f"ratio training/encoder: {tr / enc:.3f}  (target >= 0.8)")


if __name__ == "__main__":
    main()
