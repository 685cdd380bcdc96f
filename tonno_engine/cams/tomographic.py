"""Averaged CAM and Tomographic CAM (paper §3.5, eqs. 12–13; docs/methods.md).

For each direction ``n_l`` the ``M + 2`` slices give a stack of raw CAM maps ``p_m^{ab}``
``(M + 2, a, b)``. A voxel ``x`` reads the stack by trilinear interpolation at
``(x·n_l, x·u_l, x·v_l)``, with the very ``(u_l, v_l)`` that cut the slices:

- Averaged CAM: ``G(x) = (1/L) Σ_l p̃_l(x·n_l, x·u_l, x·v_l)`` (a mean: the paper's eq. 12
  carries ToNNO's negative constant, which would only flip and rescale it).
- Tomographic CAM: ``q_m^{ab}`` = second difference along ``m`` per cell, then
  ``G(x) = c·|S²|/L · Σ_l q̃_l(...)`` with ToNNO's constant.

Along ``s`` the maps sit at the offsets ``s_m`` (``align_corners=True`` spacing ``Δ``); across the
slice, cell ``(a, b)`` covers a block, so cells sit at ``align_corners=False`` centres of
``[-1, 1]²``. Zero where ``x·n`` is outside the stack or ``x`` outside the slice patch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ..tomography.backprojection import reconstruction_scale, second_difference
from ..tomography.geometry import axis_coords
from ..tomography.reconstruction import Formula, tomography_iter

#: bytes of temporaries per (voxel, direction) pair in :func:`backproject_stack`
_BYTES_PER_PAIR = 48


def backproject_stack(stack, normals, u, v, first: float, step: float, out: torch.Tensor, **options) -> torch.Tensor:
    """:func:`backproject_stack_passes` (the same arguments) run to its end. Returns ``out``."""
    for _ in backproject_stack_passes(stack, normals, u, v, first, step, out, **options):
        pass
    return out


def backproject_stack_passes(
    stack: torch.Tensor,
    normals: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    first: float,
    step: float,
    out: torch.Tensor,
    *,
    memory_budget: int = 256 * 2**20,
    cells: str = "bilinear",
) -> Iterator[None]:
    """Add ``Σ_l p̃_l(x·n_l, x·u_l, x·v_l)`` for every voxel ``x`` of ``out`` into ``out``, one slab at a
    time: yields after each slab is added (the points where a reconstruction can be cancelled).

    ``cells``: how a voxel reads the CAM cells across the slice and the maps along ``s``: ``bilinear``
    (trilinear in the stack; the default) or ``nearest`` (each cell a constant block).

    ``stack``: ``(L, K, a, b)``, map ``k`` of direction ``l`` at offset ``first + k·step``;
    ``normals``, ``u``, ``v``: ``(L, 3)`` in ``(x0, x1, x2)``; ``out``: ``(D, H, W)``
    accumulator (voxels at ``align_corners=True`` coordinates). Chunked over slabs of axis 0 to
    keep temporaries under ``memory_budget`` bytes.
    """
    directions, k = stack.shape[:2]
    device, dtype = out.device, out.dtype
    stack = stack.to(device, dtype)[:, None]  # (L, 1, K, a, b): grid_sample's (N, C, D, H, W)
    n, uu, vv = (t.to(device, dtype) for t in (normals, u, v))
    depth, height, width = out.shape
    x0, x1, x2 = (axis_coords(size, dtype, device) for size in out.shape)

    def project(w: torch.Tensor, start: int, stop: int) -> torch.Tensor:  # x · w for the slab
        inplane = w[:, 1, None, None] * x1[None, :, None] + w[:, 2, None, None] * x2[None, None, :]
        return w[:, 0, None, None, None] * x0[None, start:stop, None, None] + inplane[:, None]

    slab = max(1, memory_budget // (_BYTES_PER_PAIR * directions * height * width))
    for start in range(0, depth, slab):
        stop = min(depth, start + slab)
        t = (project(n, start, stop) - first) / step  # fractional map index along s
        su, sv = project(uu, start, stop), project(vv, start, stop)
        inside = (t >= -1e-4) & (t <= k - 1 + 1e-4) & (su.abs() <= 1 + 1e-6) & (sv.abs() <= 1 + 1e-6)
        # grid_sample with align_corners=False reads index t at (2t + 1)/K - 1; (x=b↔v, y=a↔u, z=k↔s)
        grid = torch.stack((sv, su, (2.0 * t.clamp(0, k - 1) + 1.0) / k - 1.0), dim=-1)
        val = F.grid_sample(stack, grid, mode=cells, padding_mode="border", align_corners=False)[:, 0]
        out[start:stop] += torch.where(inside, val, 0.0).sum(0)
        yield


class AveragedCam(Formula):
    """Averaged CAM: the mean over directions of the interpolated raw map stacks (eq. 12). ``cells``: see
    :func:`backproject_stack`."""

    name = "averaged-cam"

    def __init__(self, cells: str = "bilinear"):
        self.cells = cells

    def accumulate(self, stack, dirs, acc, memory_budget, compiled=False):  # eager only
        slices = stack.shape[1] - 2
        delta = 2.0 / (slices - 1)
        return backproject_stack_passes(stack, *dirs, -1.0 - delta, delta, acc, memory_budget=memory_budget,
                                        cells=self.cells)

    def scale(self, angles: int) -> float:
        return 1.0 / angles


class TomographicCam(Formula):
    """Tomographic CAM: per-cell second difference along ``m``, ToNNO's constant (eq. 13). ``cells``: see
    :func:`backproject_stack`."""

    name = "tomographic-cam"

    def __init__(self, cells: str = "bilinear"):
        self.cells = cells

    def accumulate(self, stack, dirs, acc, memory_budget, compiled=False):  # eager only
        slices = stack.shape[1] - 2
        q = second_difference(stack, slices, dim=1)
        return backproject_stack_passes(q, *dirs, -1.0, 2.0 / (slices - 1), acc, memory_budget=memory_budget,
                                        cells=self.cells)

    def scale(self, angles: int) -> float:
        return reconstruction_scale(angles)


#: the formulas the registry's "averaged-cam" and "tomographic-cam" records name
AVERAGED_CAM, TOMOGRAPHIC_CAM = AveragedCam(), TomographicCam()


def cam_reconstruct_iter(volume, cam, formula: str = "tomographic-cam", **options):
    """Averaged or Tomographic CAM of ``volume`` from ``cam``: slices ``(B, h, w)`` → maps ``(B, a, b)``.

    ``formula``: ``"averaged-cam"`` or ``"tomographic-cam"``; keywords and events as for
    :func:`tonno_engine.tomography.reconstruction.reconstruct_iter` (paper default for CAMs: ``angles=1000``).
    """
    formulas = {"averaged-cam": AVERAGED_CAM, "tomographic-cam": TOMOGRAPHIC_CAM}
    if formula not in formulas:
        raise ValueError(f"unknown CAM formula {formula!r}; valid: {', '.join(formulas)}")
    return tomography_iter(volume, cam, formulas[formula], **options)
