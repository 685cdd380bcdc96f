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

from ..base.defaults import CAM_DIRECTIONS, MEMORY_BUDGET
from ..base.registry import MethodRecord, register_method
from ..tomography.backprojection import reconstruction_scale, second_difference
from ..tomography.geometry import axis_coords
from . import maps  # noqa: F401 - the CAMs these methods read are registered with them

#: bytes of temporaries per (voxel, direction) pair in :func:`backproject_stack`
_BYTES_PER_PAIR = 48


def backproject_stack(stack, basis: tuple, first: float, step: float, out: torch.Tensor, *,
                      memory_budget: int = MEMORY_BUDGET, cells: str = "bilinear") -> torch.Tensor:
    """:func:`backproject_stack_passes` (the same arguments) run to its end. Returns ``out``."""
    for _ in backproject_stack_passes(stack, basis, first, step, out, memory_budget=memory_budget, cells=cells):
        pass
    return out


def backproject_stack_passes(
    stack: torch.Tensor,
    basis: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    first: float,
    step: float,
    out: torch.Tensor,
    *,
    memory_budget: int = MEMORY_BUDGET,
    cells: str = "bilinear",
) -> Iterator[None]:
    """Add ``Σ_l p̃_l(x·n_l, x·u_l, x·v_l)`` for every voxel ``x`` of ``out`` into ``out``, one slab at a
    time: yields after each slab is added (the points where a reconstruction can be cancelled).

    ``cells``: how a voxel reads the CAM cells across the slice and the maps along ``s``: ``bilinear``
    (trilinear in the stack; the default) or ``nearest`` (each cell a constant block).

    ``stack``: ``(L, K, a, b)``, map ``k`` of direction ``l`` at offset ``first + k·step``;
    ``basis`` = ``(normals, u, v)``, each ``(L, 3)`` in ``(x0, x1, x2)``; ``out``: ``(D, H, W)``
    accumulator (voxels at ``align_corners=True`` coordinates). Chunked over slabs of axis 0 to
    keep temporaries under ``memory_budget`` bytes. Several stacks at once (one per finding): ``stack``
    ``(C, L, K, a, b)`` into ``out`` ``(C, D, H, W)``, one interpolation of ``C`` channels.
    """
    channels = stack.shape[0] if stack.ndim == 5 else None
    directions, k = stack.shape[-4:-2]
    device, dtype = out.device, out.dtype
    stack = stack.to(device, dtype)
    # (L, C, K, a, b): grid_sample's (N, C, D, H, W)
    stack = stack[:, None] if channels is None else stack.transpose(0, 1)
    n, uu, vv = (t.to(device, dtype) for t in basis)
    depth, height, width = out.shape[-3:]
    x0, x1, x2 = (axis_coords(size, dtype, device) for size in out.shape[-3:])

    def project(w: torch.Tensor, start: int, stop: int) -> torch.Tensor:  # x · w for the slab
        inplane = w[:, 1, None, None] * x1[None, :, None] + w[:, 2, None, None] * x2[None, None, :]
        return w[:, 0, None, None, None] * x0[None, start:stop, None, None] + inplane[:, None]

    per_pair = _BYTES_PER_PAIR + 8 * ((channels or 1) - 1)  # each further channel: its value, and where it is kept
    slab = max(1, memory_budget // (per_pair * directions * height * width))
    for start in range(0, depth, slab):
        stop = min(depth, start + slab)
        t = (project(n, start, stop) - first) / step  # fractional map index along s
        su, sv = project(uu, start, stop), project(vv, start, stop)
        inside = (t >= -1e-4) & (t <= k - 1 + 1e-4) & (su.abs() <= 1 + 1e-6) & (sv.abs() <= 1 + 1e-6)
        # grid_sample with align_corners=False reads index t at (2t + 1)/K - 1; (x=b↔v, y=a↔u, z=k↔s)
        grid = torch.stack((sv, su, (2.0 * t.clamp(0, k - 1) + 1.0) / k - 1.0), dim=-1)
        val = F.grid_sample(stack, grid, mode=cells, padding_mode="border", align_corners=False)
        if channels is None:
            out[start:stop] += torch.where(inside, val[:, 0], 0.0).sum(0)
        else:
            out[:, start:stop] += torch.where(inside[:, None], val, 0.0).sum(0)
        yield


class AveragedCam:
    """Averaged CAM: the mean over directions of the interpolated raw map stacks (eq. 12). ``cells``: see
    :func:`backproject_stack`. A :class:`~tonno_engine.tomography.reconstruction.Formula`."""

    def __init__(self, cells: str = "bilinear"):
        self.cells = cells

    channels = True  # takes several stacks at once (C, L, M + 2, a, b) into (C, D, H, W)

    def accumulate(self, stack, directions, acc, *, memory_budget, compile):  # eager only: no fused kernel
        delta = 2.0 / (stack.shape[-3] - 3)
        return backproject_stack_passes(stack, directions, -1.0 - delta, delta, acc, memory_budget=memory_budget,
                                        cells=self.cells)

    def scale(self, directions: int) -> float:
        return 1.0 / directions


class TomographicCam:
    """Tomographic CAM: per-cell second difference along ``m``, ToNNO's constant (eq. 13). ``cells``: see
    :func:`backproject_stack`. A :class:`~tonno_engine.tomography.reconstruction.Formula`."""

    def __init__(self, cells: str = "bilinear"):
        self.cells = cells

    channels = True  # takes several stacks at once (C, L, M + 2, a, b) into (C, D, H, W)

    def accumulate(self, stack, directions, acc, *, memory_budget, compile):  # eager only: no fused kernel
        slices = stack.shape[-3] - 2
        q = second_difference(stack, slices, dim=stack.ndim - 3)
        return backproject_stack_passes(q, directions, -1.0, 2.0 / (slices - 1), acc, memory_budget=memory_budget,
                                        cells=self.cells)

    def scale(self, directions: int) -> float:
        return reconstruction_scale(directions)


AVERAGED_CAM, TOMOGRAPHIC_CAM = AveragedCam(), TomographicCam()

register_method(MethodRecord(
    "averaged-cam", title="Averaged {cam} (layer {layer})", label="averaged-{cam}-l{layer}", kind="tomographic",
    needs="cam", default_directions=CAM_DIRECTIONS,
    description="Averaged CAM, raw CAM maps of the same slices averaged over directions (eq. 12)",
    equation="eq. 12: mean over directions of the map stack read at (x·n_l, x·u_l, x·v_l)",
    formula=AVERAGED_CAM))
register_method(MethodRecord(
    "tomographic-cam", title="Tomographic {cam} (layer {layer})", label="tomographic-{cam}-l{layer}",
    kind="tomographic", needs="cam", default_directions=CAM_DIRECTIONS,
    description="Tomographic CAM, per-cell second difference then backprojection (eq. 13)",
    equation="eq. 13: eq. 11 applied to every CAM cell (a, b) of the map stack",
    formula=TOMOGRAPHIC_CAM))
