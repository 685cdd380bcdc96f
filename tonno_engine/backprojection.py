"""Filtered backprojection of plane-integral profiles (paper eqs. 8–11, DESIGN.md §4).

``G(x) = c · (|S²| / L) · Σ_l q̃_l(x · n_l)`` with ``c = -1/(8π²)``, ``|S²| = 4π``;
``q_m = (p_{m+1} + p_{m-1} - 2 p_m) / Δ²``, ``Δ = 2/(M-1)``; ``q̃_l`` is the linear
interpolation of ``q_·(n_l)`` at ``s_m = 2m/(M-1) - 1`` (``m = 0 … M-1``), zero outside
``[-1, 1]``. Output voxels sit at ``align_corners=True`` coordinates of the output shape.
"""

from __future__ import annotations

import math

import torch

from .geometry import axis_coords

RECONSTRUCTION_CONSTANT = -1.0 / (8.0 * math.pi**2)
SPHERE_AREA = 4.0 * math.pi
#: bytes of temporaries per (voxel, direction) pair in :func:`backproject`
_BYTES_PER_PAIR = 32


def second_difference(profiles: torch.Tensor, slices: int, dim: int = -1) -> torch.Tensor:
    """``q`` from profiles ``p``: ``M + 2`` offsets along ``dim`` → ``M``, divided by ``Δ²``."""
    if profiles.shape[dim] != slices + 2:
        raise ValueError(f"profiles have {profiles.shape[dim]} offsets, expected slices + 2 = {slices + 2}")
    p = profiles.movedim(dim, -1)
    delta = 2.0 / (slices - 1)
    q = (p[..., 2:] + p[..., :-2] - 2.0 * p[..., 1:-1]) / (delta * delta)
    return q.movedim(-1, dim)


def reconstruction_scale(directions: int) -> float:
    """The factor ``c · |S²| / L`` that turns ``Σ_l q̃_l`` into the heatmap.

    The same holds for ``L`` directions on a hemisphere: each stands for ``2π/L`` of solid angle
    and for its antipode, whose profile is the mirror image.
    """
    return RECONSTRUCTION_CONSTANT * SPHERE_AREA / directions


def backproject(
    q: torch.Tensor,
    normals: torch.Tensor,
    out: torch.Tensor,
    *,
    memory_budget: int = 256 * 2**20,
) -> torch.Tensor:
    """Add ``Σ_l q̃_l(x · n_l)`` for every voxel ``x`` of ``out`` into ``out`` (in place).

    ``q``: ``(L, M)`` second differences; ``normals``: ``(L, 3)`` in ``(x0, x1, x2)`` order;
    ``out``: ``(D, H, W)`` accumulator on the device that does the work. Chunked over slabs of
    axis 0 so that temporaries stay under ``memory_budget`` bytes. Returns ``out``.
    """
    directions, samples = q.shape
    device, dtype = out.device, out.dtype
    q = q.to(device, dtype)
    n = normals.to(device, dtype)
    depth, height, width = out.shape
    x0, x1, x2 = (axis_coords(k, dtype, device) for k in out.shape)
    # s = x · n is separable: the in-plane part is shared by every slab of axis 0.
    s12 = n[:, 1, None, None] * x1[None, :, None] + n[:, 2, None, None] * x2[None, None, :]
    half = 0.5 * (samples - 1)
    base = (torch.arange(directions, device=device) * samples)[:, None, None, None]
    flat = q.reshape(-1)
    slab = max(1, memory_budget // (_BYTES_PER_PAIR * directions * height * width))
    for start in range(0, depth, slab):
        stop = min(depth, start + slab)
        s = n[:, 0, None, None, None] * x0[None, start:stop, None, None] + s12[:, None]
        t = (s + 1.0) * half
        inside = (t >= -1e-4) & (t <= samples - 1 + 1e-4)
        i0 = t.floor().clamp_(0, samples - 2)
        frac = (t - i0).clamp_(0.0, 1.0)
        idx = i0.long() + base
        val = torch.lerp(flat[idx], flat[idx + 1], frac)
        out[start:stop] += torch.where(inside, val, 0.0).sum(0)
    return out
