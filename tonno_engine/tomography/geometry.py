"""Directions, bases, offsets and voxel coordinates.

Convention: a volume is indexed ``(D, H, W)`` (axis 0 first, as nibabel/numpy give it).
Normalised coordinates ``x = (x0, x1, x2)`` live in ``[-1, 1]^3`` with ``x_a = -1`` at index 0
and ``+1`` at index ``N_a - 1`` (torch ``align_corners=True``). Directions ``n`` and in-plane
vectors ``u, v`` are given in the same ``(x0, x1, x2)`` order. The only place where the order
is reversed for ``grid_sample`` is :func:`to_grid_sample_order`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))
#: points with every |coordinate| <= CUBE_BOUND are inside [-1, 1]^3 (a hair of rounding slack)
CUBE_BOUND = 1.0 + 1e-6


def fibonacci_directions(angles: int, *, hemisphere: bool = False) -> torch.Tensor:
    """Unit normals on the Fibonacci lattice, shape ``(angles, 3)``, float64.

    Full sphere (paper): ``y_l = 2l/(L-1) - 1``, ``n_l = (r cos θ_l, y_l, r sin θ_l)``.
    Hemisphere (``y > 0``): ``y_l = (l + 1/2)/L``, the midpoint rule, so that every point stands
    for the same solid angle ``2π/L`` and, with its antipode, for ``4π/(2L)`` of the sphere.
    """
    if angles < 1:
        raise ValueError(f"angles must be >= 1, got {angles}")
    idx = torch.arange(angles, dtype=torch.float64)
    if hemisphere:
        y = (idx + 0.5) / angles
    elif angles == 1:
        y = torch.zeros(1, dtype=torch.float64)
    else:
        y = 2.0 * idx / (angles - 1) - 1.0
    r = torch.sqrt(torch.clamp(1.0 - y * y, min=0.0))
    theta = idx * GOLDEN_ANGLE
    return torch.stack([r * torch.cos(theta), y, r * torch.sin(theta)], dim=1)


def orthonormal_basis(normals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """In-plane vectors ``(u, v)`` with ``(n, u, v)`` orthonormal and right-handed.

    ``normals``: ``(L, 3)`` unit vectors in ``(x0, x1, x2)`` order. ``u = normalise(a × n)``
    with ``a`` the coordinate axis least aligned with ``n``, and ``v = n × u``. Slicing and CAM
    back-mapping must both use this function so that they agree on ``(u, v)``.
    """
    n = normals / normals.norm(dim=-1, keepdim=True)
    helper = torch.zeros_like(n)
    helper.scatter_(-1, n.abs().argmin(dim=-1, keepdim=True), 1.0)
    u = torch.linalg.cross(helper, n)
    u = u / u.norm(dim=-1, keepdim=True)
    v = torch.linalg.cross(n, u)
    return u, v


def spread_order(normals: torch.Tensor, *, hemisphere: bool = False) -> torch.Tensor:
    """A permutation of ``normals`` whose every prefix is well spread over the sphere.

    Greedy farthest-point ordering (a 2-approximation of the best covering for every prefix
    length). Written here because neither scipy nor scikit-image offers it; O(L²) time and O(L)
    memory, about 0.1 s for L = 2000. With ``hemisphere`` the distance is between axes
    (``n`` and ``-n`` are the same plane family), i.e. ``1 - |n·m|``.
    Returns int64 indices, shape ``(L,)``, starting at index 0.
    """
    pts = normals.detach().cpu().to(torch.float64).numpy()
    count = len(pts)
    order = np.empty(count, dtype=np.int64)
    best = np.full(count, np.inf)
    current = 0
    for k in range(count):
        order[k] = current
        cos = pts @ pts[current]
        dist = 1.0 - (np.abs(cos) if hemisphere else cos)
        np.minimum(best, dist, out=best)
        best[current] = -np.inf
        current = int(np.argmax(best))
    return torch.from_numpy(order)


def slice_offsets(slices: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Plane offsets ``s_m = 2m/(M-1) - 1`` for ``m = -1 … M``: shape ``(M + 2,)``."""
    if slices < 3:
        raise ValueError(f"slices must be >= 3 (the second difference needs them), got {slices}")
    m = torch.arange(-1, slices + 1, dtype=dtype)
    return 2.0 * m / (slices - 1) - 1.0


def axis_coords(n: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Normalised coordinates of ``n`` samples along one axis, ``align_corners=True``: ``(n,)``."""
    if n == 1:
        return torch.zeros(1, dtype=dtype, device=device)
    return torch.linspace(-1.0, 1.0, n, dtype=dtype, device=device)


def voxel_coords(shape: tuple[int, int, int], dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised ``(x0, x1, x2)`` of every voxel of a ``(D, H, W)`` grid: ``(D*H*W, 3)``."""
    axes = [axis_coords(n, dtype, device) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


def index_to_normalised(index, shape) -> np.ndarray:
    """Voxel indices ``(3,)`` or ``(n, 3)`` (may be fractional) → ``(x0, x1, x2)`` in ``[-1, 1]`` (align_corners),
    the same shape."""
    size = np.maximum(np.asarray(shape[-3:], float) - 1, 1)
    return 2.0 * np.asarray(index, float)[..., -3:] / size - 1.0


def normalised_to_index(x, shape) -> np.ndarray:
    """``(x0, x1, x2)`` → the nearest voxel's indices ``(3,)`` (clipped into the volume)."""
    size = np.asarray(shape[-3:], float) - 1
    return np.rint((np.clip(np.asarray(x, float), -1, 1) + 1) / 2 * size)


def point_at_offset(x, normal, s: float) -> np.ndarray:
    """Move point ``x`` along ``normal`` onto the plane ``x · n = s``: ``x + (s - x·n) n``."""
    x, n = np.asarray(x, float), np.asarray(normal, float)
    return x + (s - x @ n) * n


def to_grid_sample_order(points: torch.Tensor) -> torch.Tensor:
    """Reverse the last dimension, ``(x0, x1, x2) -> (x2, x1, x0)``, as ``grid_sample`` wants.

    This is the one place in the project where the flip happens.
    """
    return points.flip(-1)


def inside_interval(a: torch.Tensor, v: torch.Tensor, bound: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The interval of ``t`` with ``|a + t·v| <= bound`` in every component of the last axis.

    ``a``, ``v``: broadcastable ``(..., K)``. Returns ``lo, hi`` shaped ``(...)`` (``lo > hi``
    when empty; ``±inf`` when unbounded). Used to zero the points of a line outside
    ``[-1, 1]^K`` with two comparisons instead of a pass over every point's coordinates.
    """
    a, v = torch.broadcast_tensors(a, v)
    flat = v == 0
    safe = torch.where(flat, torch.ones_like(v), v)
    t1, t2 = (-bound - a) / safe, (bound - a) / safe
    inf = torch.full_like(a, float("inf"))
    kept = a.abs() <= bound  # where v = 0: all of the line or none of it
    lo = torch.where(flat, torch.where(kept, -inf, inf), torch.minimum(t1, t2))
    hi = torch.where(flat, torch.where(kept, inf, -inf), torch.maximum(t1, t2))
    return lo.amax(dim=-1), hi.amin(dim=-1)


def profile_limit(samples: int) -> float:
    """``|s|`` beyond which ``q̃`` is zero: 1, plus a hair of rounding slack (``samples`` = M)."""
    return 1.0 + 2e-4 / max(1, samples - 1)
