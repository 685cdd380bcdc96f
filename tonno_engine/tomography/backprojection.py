"""Filtered backprojection of plane-integral profiles (paper eqs. 8–11, docs/methods.md).

``G(x) = c · (|S²| / L) · Σ_l q̃_l(x · n_l)`` with ``c = -1/(8π²)``, ``|S²| = 4π``;
``q_m = (p_{m+1} + p_{m-1} - 2 p_m) / Δ²``, ``Δ = 2/(M-1)``; ``q̃_l`` is the linear
interpolation of ``q_·(n_l)`` at ``s_m = 2m/(M-1) - 1`` (``m = 0 … M-1``), zero outside
``[-1, 1]``. Output voxels sit at ``align_corners=True`` coordinates of the output shape.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ..base.defaults import MEMORY_BUDGET
from .geometry import axis_coords, inside_interval, profile_limit

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


def backproject(q: torch.Tensor, normals: torch.Tensor, out: torch.Tensor, *, memory_budget: int = MEMORY_BUDGET,
                compile: bool = False) -> torch.Tensor:
    """:func:`backproject_passes` (the same arguments) run to its end. Returns ``out``."""
    for _ in backproject_passes(q, normals, out, memory_budget=memory_budget, compile=compile):
        pass
    return out


def _fused_sum(q: torch.Tensor, normals: torch.Tensor, out: torch.Tensor) -> None:
    """``compile``: the fused kernel of :mod:`tonno_engine.tomography.fused` adds each channel ``q`` ``(C, L, M)``
    into ``out`` ``(C, D, H, W)``."""
    from .fused import compiled_kernel as fused_kernel

    for q_c, out_c in zip(q, out):
        axes = (axis_coords(k, out.dtype, out.device) for k in out_c.shape)
        out_c.add_(fused_kernel("backprojection_sum")(q_c.to(out.device, out.dtype), normals.to(out.device, out.dtype),
                                                      *axes))


def backproject_passes(
    q: torch.Tensor,
    normals: torch.Tensor,
    out: torch.Tensor,
    *,
    memory_budget: int = MEMORY_BUDGET,
    compile: bool = False,
) -> Iterator[None]:
    """Add ``Σ_l q̃_l(x · n_l)`` for every voxel ``x`` of ``out`` into ``out`` (in place), one slab at
    a time: yields after each slab is added (the points where a reconstruction can be cancelled).

    ``q``: ``(L, M)`` second differences; ``normals``: ``(L, 3)`` in ``(x0, x1, x2)`` order;
    ``out``: ``(D, H, W)`` accumulator on the device that does the work. Chunked over slabs of
    axis 0 so that temporaries stay under ``memory_budget`` bytes. ``compile``: the
    ``torch.compile``-d fused kernel of :mod:`tonno_engine.tomography.fused` instead (no temporaries, so
    no slabs, one pass; same values to rounding). Several profiles at once (one per finding): ``q``
    ``(C, L, M)`` into ``out`` ``(C, D, H, W)``, sharing every position and mask (one interpolation of
    ``C`` channels).
    """
    if q.ndim == 2:  # one profile per direction: the same as one channel
        yield from backproject_passes(q[None], normals, out[None], memory_budget=memory_budget, compile=compile)
        return
    channels, directions, samples = q.shape
    device, dtype = out.device, out.dtype
    if compile:
        _fused_sum(q, normals, out)
        yield
        return
    # Linear interpolation of each profile by grid_sample: direction l is batch element l, its q
    # a 1 × M image per channel, read at x = s (align_corners=True puts s_m = 2m/(M-1) - 1 on sample m)
    # and y = 0. One fused kernel instead of floor/frac/two gathers/lerp as separate passes.
    image = q.to(device, dtype).permute(1, 0, 2)[:, :, None, :]  # (L, C, 1, M)
    n = normals.to(device, dtype)
    depth, height, width = out.shape[-3:]
    x0, x1, x2 = (axis_coords(k, dtype, device) for k in out.shape[-3:])
    # s = x · n is separable: the in-plane part is shared by every slab of axis 0.
    s12 = n[:, 1, None, None] * x1[None, :, None] + n[:, 2, None, None] * x2[None, None, :]
    limit = profile_limit(samples)  # q̃ is zero outside [-1, 1]
    per_pair = _BYTES_PER_PAIR + 4 * (channels - 1)  # each further channel: its interpolated value
    slab = max(1, memory_budget // (per_pair * directions * height * width))
    # one grid buffer for every slab (its y channel stays 0): fresh zeroed memory per slab cost
    # as much as the interpolation on the CPU
    buffer = torch.zeros(directions * min(slab, depth) * height * width * 2, dtype=dtype, device=device)
    for start in range(0, depth, slab):
        stop = min(depth, start + slab)
        grid = buffer[: directions * (stop - start) * height * width * 2].view(directions, stop - start, height, width, 2)
        torch.add(s12[:, None], n[:, 0, None, None, None] * x0[None, start:stop, None, None], out=grid[..., 0])
        val = F.grid_sample(image, grid.view(directions, 1, -1, 2), mode="bilinear", padding_mode="zeros",
                            align_corners=True).view(directions, channels, stop - start, height, width)
        # Along x2, s is linear: per (direction, x0, x1) row the x2 with |s| <= limit are an interval.
        a = n[:, 0, None, None] * x0[None, start:stop, None] + n[:, 1, None, None] * x1[None, None, :]  # (L, d, H)
        lo, hi = inside_interval(a[..., None], n[:, 2, None, None, None], limit)
        outside = (x2 < lo[..., None]) | (x2 > hi[..., None])
        out[:, start:stop] += val.masked_fill_(outside[:, None], 0.0).sum(0)
        yield
