"""Cutting 2D slices out of a 3D volume (paper eq. 4).

Convention: ``S(s, n, u, v)(i, j) = Ṽ(s·n + i'·u + j'·v)`` with ``i' = 2i/(h-1) - 1`` and
``j' = 2j/(w-1) - 1``; ``Ṽ`` is the trilinear interpolation of the ``(D, H, W)`` volume on
``[-1, 1]^3`` (``align_corners=True``) and zero outside. ``n, u, v`` are ``(x0, x1, x2)``.
``u`` and ``v`` need be neither unit nor orthogonal (scale and shear augmentation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .geometry import CUBE_BOUND, axis_coords, inside_interval, to_grid_sample_order


def extract_slices(
    volume: torch.Tensor,
    offsets: torch.Tensor,
    normals: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    size: tuple[int, int],
    *,
    compile: bool = False,
) -> torch.Tensor:
    """Trilinear slices of ``volume`` ``(D, H, W)``, zero outside: returns ``(B, h, w)``.

    One ``grid_sample`` call for the whole batch; the caller chunks ``B`` to its memory budget
    (the grid takes ``12·B·h·w`` bytes in float32). ``compile``: the ``torch.compile``-d
    fused kernel of :mod:`tonno_engine.tomography.fused` instead (no grid; same values to rounding).
    """
    dtype, dev = volume.dtype, volume.device
    if compile:
        from .fused import compiled_kernel as fused_kernel

        vectors = (t.to(dev, dtype) for t in (offsets, normals, u, v))
        return fused_kernel("trilinear_slices")(volume, *vectors, *size)
    # Flip the (B, 3) vectors into grid_sample's (x2, x1, x0) order rather than the points: the
    # points are linear in them.
    n, uu, vv = (to_grid_sample_order(t.to(dev, dtype)) for t in (normals, u, v))
    ii, jj = axis_coords(size[0], dtype, dev), axis_coords(size[1], dtype, dev)
    # Row i of slice b is the line a + j'·v with a = s·n + i'·u.
    a = (offsets.to(dev, dtype)[:, None] * n)[:, None, :] + ii[None, :, None] * uu[:, None, :]  # (B, h, 3)
    # The points as three planes (3, B, h, w), handed to grid_sample as a strided (..., 3) view:
    # building them plane by plane runs 6× faster than a (B, h, w, 3) grid with its inner size 3.
    planes = torch.empty(3, *a.shape[:2], size[1], dtype=dtype, device=dev)
    torch.add(a.permute(2, 0, 1)[..., None], jj * vv.T[:, :, None, None], out=planes)
    # PyTorch's CPU kernel for 5D grid_sample runs its batch axis in parallel and each batch
    # element on one thread; the same volume expanded (no copy) over `parts` batch elements, each
    # reading its share of the points, keeps every core busy (2× on 2 cores, same numbers).
    points = planes[0].numel()
    parts = _cpu_parts(points) if dev.type == "cpu" else 1
    out = F.grid_sample(volume[None, None].expand(parts, 1, *volume.shape),
                        planes.view(3, points).T.view(parts, 1, 1, points // parts, 3),
                        mode="bilinear", padding_mode="zeros", align_corners=True).view(planes.shape[1:])
    # grid_sample's zero padding fades over the voxel beyond the border; Ṽ is 0 outside [-1, 1]^3
    # exactly (paper §3.3), so points outside are masked. On each row the j' inside are an
    # interval: two comparisons per point instead of a pass over its three coordinates.
    lo, hi = inside_interval(a, vv[:, None, :], CUBE_BOUND)
    return out.masked_fill_((jj < lo[..., None]) | (jj > hi[..., None]), 0.0)


def _cpu_parts(points: int) -> int:
    """How many equal parts of ``points`` to hand to the CPU's threads (a divisor, at most 4×)."""
    parts = 4 * torch.get_num_threads()
    while points % parts:
        parts -= 1
    return parts


#: input channels of a network that sees ``context``: the plane below, the plane, the plane above
CONTEXT_CHANNELS = 3


def input_channels(context: float, channels: int = 1) -> int:
    """A network's input channels for ``context`` (slice pixels; 0: one plane) on a scan of ``channels`` images
    (PET and CT, several MR sequences): each image's plane, or its three planes with a context."""
    return (CONTEXT_CHANNELS if context else 1) * channels


def plane_channel(context: float) -> int:
    """The input channel that holds the first image's plane itself (the middle of its 2.5D stack)."""
    return CONTEXT_CHANNELS // 2 if context else 0


def slice_stacks(
    volume: torch.Tensor,
    offsets: torch.Tensor,
    basis: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    size: tuple[int, int],
    context: float = 0.0,
    *,
    pixel: float | None = None,
    compile: bool = False,
) -> torch.Tensor:
    """A network's input ``(B, C, h, w)``: each plane of ``basis`` = ``(normals, u, v)`` (each ``(B, 3)``) as
    :func:`extract_slices` cuts it (``C = 1``; a scan of several images ``(I, D, H, W)`` gives each image's
    stack side by side, image-major, ``C = I·`` what one image gives), or with
    ``context`` > 0 the parallel planes ``context`` pixels below and above it beside it (``C = 3``, in the order
    below, plane, above): their offsets are ``offsets ± context·pixel``. ``pixel``: a slice pixel in the units of
    ``offsets``, by default ``2/(h - 1)``, a pixel of the ``[-1, 1]`` patch when ``u`` and the normals are unit
    vectors of the space the offsets are measured in (the ``x`` space of
    :mod:`~tonno_engine.tomography.frames`). 2.5D input: a small blob fades a pixel off the plane, a vessel
    across it does not."""
    if volume.ndim == 4:
        # one call per image: grid_sample would take the images as its channel axis, but the CPU-parallel split
        # of extract_slices expands the volume over its batch axis; the points are cheap beside the sampling
        return torch.cat([slice_stacks(image, offsets, basis, size, context, pixel=pixel, compile=compile)
                          for image in volume], dim=1)
    if not context:
        return extract_slices(volume, offsets, *basis, size, compile=compile)[:, None]
    step = float(context) * (2.0 / (size[0] - 1) if pixel is None else pixel)
    # the three planes of every stack in one call: (3·B, h, w), below / plane / above, then (B, 3, h, w)
    shifted = torch.cat([offsets - step, offsets, offsets + step])
    cut = extract_slices(volume, shifted, *(w.repeat(3, 1) for w in basis), size, compile=compile)
    return cut.view(CONTEXT_CHANNELS, len(offsets), *cut.shape[1:]).transpose(0, 1)
