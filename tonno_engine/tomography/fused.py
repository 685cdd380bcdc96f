"""Slicing and backprojection as fused kernels, for ``torch.compile`` (the ``compile`` option).

The eager paths (:func:`~tonno_engine.tomography.slicing.extract_slices`,
:func:`~tonno_engine.tomography.backprojection.backproject`) hand ``grid_sample`` a materialised grid: 12
bytes per slice pixel, 8 per (voxel, direction) pair. Here the same maths is written as plain
index arithmetic, gathers and lerps, which Inductor fuses into one kernel each that computes the
points in registers: no grid, no per-direction temporaries. Written by hand because no library
kernel samples a volume on planes given by vectors without a grid. Results equal the eager paths
to float rounding (tests compare them); eager, these functions would be slow and memory-hungry.
"""

from __future__ import annotations

import functools

import torch

from .geometry import CUBE_BOUND, axis_coords, profile_limit


def trilinear_slices(volume: torch.Tensor, offsets: torch.Tensor, normals: torch.Tensor, u: torch.Tensor,
                     v: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Eq. 4 like :func:`~tonno_engine.tomography.slicing.extract_slices`: ``(B, height, width)``.

    ``volume``: ``(D, H, W)``; ``offsets``: ``(B,)``; ``normals``, ``u``, ``v``: ``(B, 3)`` in
    ``(x0, x1, x2)``, on the volume's device and dtype. Zero outside ``[-1, 1]^3``.
    """
    dtype, dev = volume.dtype, volume.device
    ii, jj = axis_coords(height, dtype, dev), axis_coords(width, dtype, dev)
    p = ((offsets[:, None] * normals)[:, None, None, :] + ii[None, :, None, None] * u[:, None, None, :]
         + jj[None, None, :, None] * v[:, None, None, :])  # (B, h, w, 3)
    inside = (p.abs() <= CUBE_BOUND).all(dim=-1)
    value = _trilinear(volume, p)
    return torch.where(inside, value, torch.zeros((), dtype=dtype, device=dev))


def _trilinear(volume: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``volume`` ``(D, H, W)`` read at normalised points ``p`` ``(..., 3)`` (``align_corners=True``,
    clamped to the border: the caller masks what lies outside)."""
    flat = volume.reshape(-1)
    strides = (volume.shape[1] * volume.shape[2], volume.shape[2], 1)
    index, steps, weights = 0, [], []
    for k, n in enumerate(volume.shape):
        x = ((p[..., k] + 1.0) * (0.5 * (n - 1))).clamp(0, n - 1)
        lo = x.floor().clamp(max=max(n - 2, 0))
        weights.append(x - lo)
        index = index + lo.long() * strides[k]
        steps.append(strides[k] if n > 1 else 0)

    def corner(offset: int) -> torch.Tensor:
        return flat[index + offset]

    t0, t1, t2 = weights
    s0, s1, s2 = steps
    c00 = torch.lerp(corner(0), corner(s2), t2)
    c01 = torch.lerp(corner(s1), corner(s1 + s2), t2)
    c10 = torch.lerp(corner(s0), corner(s0 + s2), t2)
    c11 = torch.lerp(corner(s0 + s1), corner(s0 + s1 + s2), t2)
    return torch.lerp(torch.lerp(c00, c01, t1), torch.lerp(c10, c11, t1), t0)


def backprojection_sum(q: torch.Tensor, normals: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor,
                       x2: torch.Tensor) -> torch.Tensor:
    """``Σ_l q̃_l(x · n_l)`` on the grid ``x0 × x1 × x2``: ``(len(x0), len(x1), len(x2))``.

    ``q``: ``(L, M)`` with sample ``m`` at ``s_m = 2m/(M-1) - 1``, linear in between, zero
    outside ``[-1, 1]``; ``normals``: ``(L, 3)``; ``x0``, ``x1``, ``x2``: normalised coordinates.
    """
    directions, samples = q.shape
    # directions on the last axis: an inner reduction, which Inductor fuses with the pointwise
    # work (summing over a leading axis, it wrote the (L, d, H, W) values out first)
    s = (x0[:, None, None, None] * normals[:, 0] + x1[None, :, None, None] * normals[:, 1]
         + x2[None, None, :, None] * normals[:, 2])  # (d, H, W, L), never materialised
    t = ((s + 1.0) * (0.5 * (samples - 1))).clamp(0, samples - 1)
    lo = t.floor().clamp(max=samples - 2)
    index = torch.arange(directions, device=q.device) * samples + lo.long()
    flat = q.reshape(-1)
    value = torch.lerp(flat[index], flat[index + 1], t - lo)
    return torch.where(s.abs() <= profile_limit(samples), value, torch.zeros((), dtype=q.dtype, device=q.device)).sum(-1)


@functools.cache
def compiled_kernel(name: str):
    """The ``torch.compile``-d form of this module's function ``name``: compiled for the first
    shapes it meets, then (Dynamo's default) once more with dynamic sizes when shapes change."""
    return torch.compile(globals()[name], options={"realize_reads_threshold": 64})
