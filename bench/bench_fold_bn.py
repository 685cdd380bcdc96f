"""The scorer with batch norms folded into the convolutions vs as trained, side by side in one run.

    .venv/bin/python bench/bench_fold_bn.py [--device auto] [--slice-size 128] [--batch-size 64] [--repeats 6]

For resnet10t with ``bn`` and with ``frozen_bn`` (the training default): seconds to score 8
batches with ``ModuleScorer(model, fold_bn=False)`` and with the default ``fold_bn=True``, in
interleaved pairs of alternating order; prints the geometric mean of the pairs' speed-ups.
"""

from __future__ import annotations

import argparse
import statistics
from functools import partial

import torch
from timing import alternating_pairs, timed

from tonno_engine import resolve_device
from tonno_engine.base.devices import device_name
from tonno_engine.models.encoders import create_encoder
from tonno_engine.tomography.scorers import ModuleScorer


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

        def eight_batches(scorer) -> None:
            for _ in range(8):
                scorer(x)

        for scorer in scorers.values():
            scorer(x)  # warm-up
        pairs = alternating_pairs(partial(timed, device, eight_batches, scorers["as trained"]),
                                  partial(timed, device, eight_batches, scorers["folded"]), args.repeats)
        speedups = [plain.wall / folded.wall for plain, folded in pairs]
        print(f"{norm:10s}: speed-up of folding {statistics.geometric_mean(speedups):.3f} "
              f"(pairs: {' '.join(f'{s:.2f}' for s in speedups)})")


if __name__ == "__main__":
    main()
