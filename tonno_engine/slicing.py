"""Cutting 2D slices out of a 3D volume (paper eq. 4).

Convention: ``S(s, n, u, v)(i, j) = Ṽ(s·n + i'·u + j'·v)`` with ``i' = 2i/(h-1) - 1`` and
``j' = 2j/(w-1) - 1``; ``Ṽ`` is the trilinear interpolation of the ``(D, H, W)`` volume on
``[-1, 1]^3`` (``align_corners=True``) and zero outside. ``n, u, v`` are ``(x0, x1, x2)``.
``u`` and ``v`` need be neither unit nor orthogonal (scale and shear augmentation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .geometry import axis_coords, to_grid_sample_order


def slice_grid(
    offsets: torch.Tensor,
    normals: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    size: tuple[int, int],
) -> torch.Tensor:
    """Sampling points of ``B`` slices in ``(x0, x1, x2)`` order: shape ``(B, h, w, 3)``.

    ``offsets``: ``(B,)``; ``normals``, ``u``, ``v``: ``(B, 3)``; all on one device and dtype.
    """
    h, w = size
    ii = axis_coords(h, normals.dtype, normals.device)
    jj = axis_coords(w, normals.dtype, normals.device)
    centre = (offsets[:, None] * normals)[:, None, None, :]
    return centre + ii[None, :, None, None] * u[:, None, None, :] + jj[None, None, :, None] * v[:, None, None, :]


def extract_slices(
    volume: torch.Tensor,
    offsets: torch.Tensor,
    normals: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    size: tuple[int, int],
) -> torch.Tensor:
    """Trilinear slices of ``volume`` ``(D, H, W)``, zero outside: returns ``(B, h, w)``.

    One ``grid_sample`` call for the whole batch; the caller chunks ``B`` to its memory budget
    (the grid takes ``12·B·h·w`` bytes in float32).
    """
    dtype, dev = volume.dtype, volume.device
    # Flip the (B, 3) vectors into grid_sample's (x2, x1, x0) order rather than the (B, h, w, 3)
    # grid: the grid is linear in them, and this saves a pass over the grid.
    n, uu, vv = (to_grid_sample_order(t.to(dev, dtype)) for t in (normals, u, v))
    grid = slice_grid(offsets.to(dev, dtype), n, uu, vv, size)
    out = F.grid_sample(volume[None, None], grid[None], mode="bilinear", padding_mode="zeros",
                        align_corners=True)[0, 0]
    # grid_sample's zero padding fades over the half voxel beyond the border; Ṽ is 0 outside
    # [-1, 1]^3 exactly (paper §3.3), so points outside are masked.
    return out.masked_fill_(grid.abs().amax(dim=-1) > 1.0 + 1e-6, 0.0)
