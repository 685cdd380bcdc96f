"""Slice-wise CAM baselines (paper §4.3): a CAM on every slice of an axis, stacked back.

Every slice perpendicular to axis ``a`` is resampled to ``slice_size`` (the same trilinear slicing
as :func:`extract_slices`, with ``n = e_a`` and ``(u, v)`` the two other axes in increasing order,
so pixel rows follow the lower axis), its map is mapped back onto the slice's voxels with cells at
``align_corners=False`` centres, and the maps are stacked along ``a``. With several axes the
volumes are averaged.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..base.devices import resolve_device
from ..base.events import Partial, Progress
from ..base.inputs import as_volume
from ..tomography.geometry import axis_coords
from ..tomography.plan import Plan
from ..tomography.reconstruction import default_batch_size
from ..tomography.scorers import scorer_context
from ..tomography.slicing import extract_slices, slice_stacks
from .extractor import cam_to_plane


def slicewise_iter(volume, cam, plan: Plan = Plan(), axes=(2,)) -> Iterator[Progress | Partial]:
    """Slice-wise CAM of ``volume`` ``(D, H, W)`` along each of ``axes``; the mean over axes.

    ``cam``: slices ``(B, h, w)`` → raw maps ``(B, a, b)``, or ``(B, F, a, b)`` for ``F`` findings; a ``cam`` with a
    ``context`` (2.5D input) gets each slice between its neighbours along the axis, that many of the slice's
    pixels away, ``(B, C, h, w)``. Yields
    ``Progress("scoring")`` per batch and a final ``Partial`` with a tuple of ``(D, H, W)`` float32 heatmaps (one,
    or ``F`` for maps of several findings). ``plan``: its slice size, device, batch size and geometry (the
    slices are the volume's own planes: its offsets and directions do not apply). In physical geometry
    (:mod:`tonno_engine.tomography.frames`) each slice is a square in mm that holds the whole
    plane of the volume (the shorter in-plane side padded with zeros), so pixels are isotropic;
    the maps are read back on the volume's own voxels of that plane.
    """
    dev = resolve_device(plan.device)
    vol = as_volume(volume, dev, channels=True)
    grid = tuple(vol.shape[-3:])  # a scan of several images (I, D, H, W) is cut image by image (slice_stacks)
    size = plan.size
    axes = tuple(sorted({int(a) for a in axes}))
    if not axes or any(a not in (0, 1, 2) for a in axes):
        raise ValueError(f"axes must be a non-empty subset of 0, 1, 2; got {axes}")
    batch_size = plan.batch_size or default_batch_size(dev)
    eye = torch.eye(3, dtype=torch.float64)
    scale = plan.frame(grid).scale
    total = sum(grid[a] for a in axes)
    context = scorer_context(cam)
    done = 0
    out = None  # (D, H, W), or (F, D, H, W) once the maps say they are of F findings
    for axis in axes:
        b, c = (k for k in range(3) if k != axis)
        half = max(scale[b], scale[c])  # the slice's half-side, in the units of the x space
        extent = (scale[b] / half, scale[c] / half)  # the share of the slice the volume's plane covers
        u, v = eye[b] / extent[0], eye[c] / extent[1]
        offsets = axis_coords(grid[axis], torch.float64)
        # a slice pixel along this axis, in its t units: the x pitch 2·half/(h - 1) over d_axis
        pixel = 2.0 * half / (size[0] - 1) / scale[axis]
        planes = []
        for start in range(0, len(offsets), batch_size):
            s = offsets[start:start + batch_size]
            rows = len(s)
            basis = (eye[axis].expand(rows, 3), u.expand(rows, 3), v.expand(rows, 3))
            batch = (slice_stacks(vol, s, basis, size, context, pixel=pixel) if context or vol.ndim == 4
                     else extract_slices(vol, s, *basis, size))
            maps = cam(batch).float()
            plane = cam_to_plane(maps.flatten(0, maps.ndim - 3), (grid[b], grid[c]), extent)
            planes.append(plane.unflatten(0, maps.shape[:-2]))  # (rows[, F], D_b, D_c)
            done += rows
            yield Progress("scoring", done, total, "slices", detail=True)
        stack = torch.cat(planes)
        stack = stack.movedim(0, axis) if stack.ndim == 3 else stack.movedim(1, 0).movedim(1, axis + 1)
        out = stack if out is None else out + stack
    out = out / len(axes)
    yield Partial((out,) if out.ndim == 3 else tuple(out), 1, 1, final=True)
