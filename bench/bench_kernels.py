"""The kernels under the pipeline, side by side in one run (numbers in bench/RESULTS.md).

    .venv/bin/python bench/bench_kernels.py [--device cpu]

- slicing one batch (64 slices of 128² from 64³): eager ``extract_slices`` vs the fused
  ``torch.compile``-d kernel (``compile=True``), and building the sample points as three planes
  vs as a ``(B, h, w, 3)`` grid;
- ``grid_sample``: the 3D kernel with the points in one batch element vs split over 8 (what
  ``extract_slices`` does on a CPU), and the 3D kernel (trilinear) vs the 2D one (bilinear);
- the fused backprojection's peak host memory (96³, 64 directions, M=100) with Inductor's default
  ``realize_reads_threshold`` and with the 64 that ``tonno_engine.tomography.fused`` sets (each in a fresh
  process, since peak RSS only grows).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys

import torch
import torch.nn.functional as F
from timing import timed

from tonno_engine import make_directions, resolve_device, slice_offsets
from tonno_engine.tomography.geometry import axis_coords
from tonno_engine.tomography.slicing import extract_slices


def _ms(device, fn, *args, repeats: int = 10, **kwargs) -> float:
    fn(*args, **kwargs)  # warm-up (compiles, for compiled kernels)
    return 1000 * min(timed(device, fn, *args, **kwargs).wall for _ in range(repeats))


def _backprojection_peak(threshold: int | None) -> None:
    """In this (fresh) process: MiB of peak RSS that one compiled 96³ backprojection adds."""
    from tonno_engine import fused

    options = {} if threshold is None else {"realize_reads_threshold": threshold}
    kernel = torch.compile(fused.backprojection_sum, options=options)
    q = torch.randn(64, 100)
    n = torch.nn.functional.normalize(torch.randn(64, 3), dim=1)
    for shape in ((8, 8, 8), (9, 10, 11)):  # the static, then the dynamic-shape compilation
        kernel(q, n, *(axis_coords(k) for k in shape))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kernel(q, n, *(axis_coords(96) for _ in range(3)))
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backprojection-peak", default=None, help=argparse.SUPPRESS)  # child process mode
    args = ap.parse_args()
    if args.backprojection_peak is not None:
        _backprojection_peak(None if args.backprojection_peak == "default" else int(args.backprojection_peak))
        return
    device = resolve_device(args.device)
    torch.manual_seed(0)
    volume = torch.rand(64, 64, 64, device=device)
    dirs, offsets = make_directions(20), slice_offsets(20)
    k, b = len(offsets), 64
    planes = [t.to(device, torch.float32)[:b] for t in (offsets.repeat(20), *(d.repeat_interleave(k, 0) for d in
                                                                            (dirs.normals, dirs.u, dirs.v)))]
    size = (128, 128)
    print(f"{device}, threads {torch.get_num_threads()}; best of 10")
    with torch.inference_mode():
        eager = _ms(device, extract_slices, volume, *planes, size)
        fused = _ms(device, extract_slices, volume, *planes, size, compile=True)
        print(f"slicing 64 × 128² from 64³: eager {eager:.1f} ms, fused compiled {fused:.1f} ms "
              f"({eager / fused:.1f}×)")
        s, n, u, v = planes
        ii, jj = axis_coords(128, device=device), axis_coords(128, device=device)

        def grid() -> torch.Tensor:  # (B, h, w, 3), inner size 3
            return ((s[:, None] * n)[:, None, None, :] + ii[None, :, None, None] * u[:, None, None, :]
                    + jj[None, None, :, None] * v[:, None, None, :])

        def as_planes() -> torch.Tensor:  # (3, B, h, w), as extract_slices builds them
            a = (s[:, None] * n)[:, None, :] + ii[None, :, None] * u[:, None, :]
            out = torch.empty(3, b, 128, 128, device=device)
            return torch.add(a.permute(2, 0, 1)[..., None], jj * v.T[:, :, None, None], out=out)

        g, p = _ms(device, grid), _ms(device, as_planes)
        print(f"sample points: (B, h, w, 3) grid {g:.2f} ms, three planes {p:.2f} ms ({g / p:.1f}×)")
        points = b * 128 * 128
        grid3 = as_planes().reshape(3, points).T.reshape(8, 1, 1, points // 8, 3)  # the slices' own points
        tall = torch.rand(1, 1, 64 * 64, 64, device=device).expand(8, 1, 64 * 64, 64)
        t1 = _ms(device, F.grid_sample, volume[None, None], grid3.reshape(1, 1, 1, points, 3), align_corners=True)
        t3 = _ms(device, F.grid_sample, volume[None, None].expand(8, 1, 64, 64, 64), grid3, align_corners=True)
        print(f"3D grid_sample, {points} points: one batch element {t1:.1f} ms, the volume expanded into 8 "
              f"parts {t3:.1f} ms ({t1 / t3:.1f}×)")
        t2 = _ms(device, F.grid_sample, tall, grid3[..., :2].reshape(8, 1, points // 8, 2), align_corners=True)
        print(f"grid_sample, {points} points in 8 parts: 3D {t3:.1f} ms, 2D {t2:.1f} ms ({t3 / t2:.1f}× per point)")
    for threshold in ("default", "64"):
        out = subprocess.run([sys.executable, __file__, "--backprojection-peak", threshold], capture_output=True,
                             text=True, check=True).stdout.split()[-1]
        print(f"fused backprojection 96³ × 64 directions, realize_reads_threshold {threshold}: "
              f"+{float(out):.0f} MiB peak RSS (materialised (d, H, W, L) would be {64 * 96**3 * 4 / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
