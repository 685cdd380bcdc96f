"""The longest gap between two events of a reconstruction (what a Cancel may wait for), and its total time.

Side by side, in alternating pairs: the engine as it is (an event after every backprojection slab)
and the same run with each direction chunk backprojected at once, with no event in between (ToNNO's
formula wrapped to run its passes to the end). The scorer is the slice mean (no network), so the
gaps are the engine's own. The napari Reconstruct widget asks for a partial heatmap every
``directions // 8`` directions, so its chunks are that long.

    .venv/bin/python bench/bench_cancel_points.py [--shape 128 128 128] [--directions 256] [--slices 16]
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from tonno_engine.tomography.plan import Plan
from tonno_engine.tomography.reconstruction import TONNO, reconstruct_iter


class AtOnce:
    """ToNNO's formula with a chunk's passes run to the end before ``accumulate`` yields once."""

    def accumulate(self, *args, **kwargs):
        for _ in TONNO.accumulate(*args, **kwargs):
            pass
        yield

    def scale(self, directions: int) -> float:
        return TONNO.scale(directions)


def run(volume, args, whole_chunks: bool) -> tuple[float, float]:
    """``(total seconds, longest seconds between two events)``."""
    start = last = time.perf_counter()
    longest = 0.0
    plan = Plan(slices=args.slices, directions=args.directions, slice_size=args.slice_size, device="cpu",
                directions_per_update=max(1, args.directions // 8))
    for _ in reconstruct_iter(volume, lambda s: s.mean(dim=(1, 2)), plan, (AtOnce() if whole_chunks else TONNO,)):
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    return time.perf_counter() - start, longest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(128, 128, 128))
    parser.add_argument("--directions", type=int, default=256)
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--slice-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    volume = torch.rand(*args.shape, generator=torch.Generator().manual_seed(0))
    print(f"volume {tuple(args.shape)}, {args.directions} directions in chunks of {max(1, args.directions // 8)}, "
          f"M = {args.slices}, slices {args.slice_size}², torch threads {torch.get_num_threads()}")
    pairs = []
    for r in range(args.repeats):
        order = (False, True) if r % 2 == 0 else (True, False)
        got = {whole: run(volume, args, whole) for whole in order}
        pairs.append((got[False], got[True]))
        print(f"  pair {r + 1}: slab events {got[False][0]:.2f} s (longest gap {got[False][1] * 1e3:.0f} ms), "
              f"whole chunks {got[True][0]:.2f} s (longest gap {got[True][1] * 1e3:.0f} ms)")
    ratio = math.exp(sum(math.log(a[0] / b[0]) for a, b in pairs) / len(pairs))
    print(f"longest gap: slab events {max(a[1] for a, _ in pairs) * 1e3:.0f} ms, "
          f"whole chunks {max(b[1] for _, b in pairs) * 1e3:.0f} ms")
    print(f"total time, slab events ÷ whole chunks (geometric mean of {len(pairs)} pairs): {ratio:.3f}")


if __name__ == "__main__":
    main()
