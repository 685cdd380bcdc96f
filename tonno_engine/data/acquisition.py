"""Re-acquire a synthetic volume on another voxel grid, as a scanner with thick slices would.

Written here because the resampling must keep the physical extent and the affine exactly (scipy
gives the interpolation, we give the geometry): output voxel ``j`` of axis ``a`` sits where input
index ``j·t_a/s_a`` sits (``s`` the input spacing, ``t`` the output's), so both grids start at the
same voxel centre and span the same millimetres, and the affine becomes ``A · diag(t/s)``. Along an
axis whose voxels grow, each output voxel first averages the input over its thickness (a box
filter): partial-volume effects as in thick-slice CT/MR.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..tomography.frames import check_spacing


def spacing_of(affine) -> np.ndarray:
    """Voxel size in mm along each array axis: the column norms of the affine's ``3 × 3`` part."""
    return np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)


def resample_like_a_scanner(array: np.ndarray, affine, spacing, *, order: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``array`` ``(D, H, W)`` with ``affine`` onto voxels of ``spacing`` mm: ``(array', affine')``."""
    target = np.asarray(check_spacing(spacing), float)
    source = spacing_of(affine)
    step = target / source  # input voxels per output voxel, per axis
    out = np.asarray(array, np.float32)
    for axis, k in enumerate(step):
        width = int(round(k))
        if width > 1:
            out = ndimage.uniform_filter1d(out, width, axis=axis, mode="nearest")
    shape = tuple(max(2, int(math.floor((n - 1) / k + 1e-6)) + 1) for n, k in zip(array.shape, step))
    out = ndimage.affine_transform(out, step, output_shape=shape, order=order, mode="nearest")
    new_affine = np.asarray(affine, float).copy()
    new_affine[:3, :3] = new_affine[:3, :3] * step[None, :]
    return out.astype(np.float32), new_affine


def tilt(affine, degrees: float, shape) -> np.ndarray:
    """``affine`` rotated by ``degrees`` about the world axis of array axis 0, around the volume's centre
    (an oblique acquisition: the array is unchanged, its orientation is not)."""
    affine = np.asarray(affine, float)
    theta = math.radians(degrees)
    axis = affine[:3, 0] / np.linalg.norm(affine[:3, 0])
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + math.sin(theta) * k + (1 - math.cos(theta)) * k @ k  # Rodrigues
    centre = affine[:3, :3] @ ((np.asarray(shape, float) - 1) / 2) + affine[:3, 3]
    out = affine.copy()
    out[:3, :3] = rotation @ affine[:3, :3]
    out[:3, 3] = rotation @ (affine[:3, 3] - centre) + centre
    return out
