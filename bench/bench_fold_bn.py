"""The scorer with batch norms folded into the convolutions vs as trained, side by side in one run.

    .venv/bin/python bench/bench_fold_bn.py [--device auto] [--slice-size 128] [--batch-size 64] [--repeats 6]

For resnet10t with ``bn`` and with ``frozen_bn`` (the training default): seconds to score 8
batches with ``ModuleScorer(model, fold_bn=False)`` and with the default ``fold_bn=True``, in
interleaved pairs of alternating order; prints the geometric mean of the pairs' speed-ups.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tonno_engine import resolve_device
from tonno_engine.devices import device_name, synchronize
from tonno_engine.models import create_encoder
from tonno_engine.scorers import ModuleScorer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--slice-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=6, help="pairs (even: as many in each order)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    x = torch.randn(args.batch_size, args.slice_size, args.slice_size, device=device)
    print(f"{device_name(device)}, threads {torch.get_num_threads()}, 8 batches of {args.batch_size} × "
          f"{args.slice_size}², resnet10t")
    for norm in ("bn", "frozen_bn"):
        model = create_encoder("resnet10t", norm=norm).to(device)
        scorers = {"as trained": ModuleScorer(model, fold_bn=False), "folded": ModuleScorer(model)}

        def seconds(scorer) -> float:
            scorer(x)  # warm-up
            synchronize(device)
            t = time.perf_counter()
            for _ in range(8):
                scorer(x)
            synchronize(device)
            return time.perf_counter() - t

        speedups = []
        for r in range(args.repeats):
            order = ("as trained", "folded") if r % 2 == 0 else ("folded", "as trained")
            times = {name: seconds(scorers[name]) for name in order}
            speedups.append(times["as trained"] / times["folded"])
        print(f"{norm:10s}: speed-up of folding {statistics.geometric_mean(speedups):.3f} "
              f"(pairs: {' '.join(f'{s:.2f}' for s in speedups)})")


if __name__ == "__main__":
    main()
