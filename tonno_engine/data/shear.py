"""Whether a volume's voxel axes are orthogonal: the one check behind NIfTI, MetaImage/NRRD and DICOM input.

tonno slices and backprojects in index space scaled per axis (:mod:`tonno_engine.tomography.frames`), so it
assumes the affine's ``3 × 3`` part is a rotation (or reflection) times ``diag(spacing)``. A shear (a NIfTI
sform, NRRD space directions, DICOM gantry tilt) would be reconstructed on the wrong grid without a word, and
NIfTI's qform cannot hold one: a heatmap written with it has a qform that differs from its sform, and readers
that use the qform (SimpleITK for a sheared sform) place it rotated. Such inputs are refused, by name.

The measure is written here (numpy has no "non-orthogonality" of a matrix) so that DICOM's gantry tilt and a
NIfTI affine's shear are the same number: for each axis ``k``, the angle between it and the normal of the
plane of the other two axes. For a DICOM series' slice axis that is the gantry tilt; for a simple shear
``A[i, j] = s`` it is ``atan(s)``.
"""

from __future__ import annotations

import numpy as np

from ..base.defaults import SHEAR_TOLERANCE_DEG
from ..base.errors import DataError

#: what to do with a sheared volume (tonno does not resample inputs itself)
RESAMPLE_FIRST = ("tonno's slicing assumes orthogonal voxel axes: resample it onto an orthogonal grid first "
                  "(e.g. SimpleITK.Resample or nibabel.processing.resample_from_to)")


def axis_lean(axes) -> np.ndarray:
    """``axes`` ``(..., 3, 3)``: the voxel axes as columns (world mm, any non-zero length) → ``(..., 3)``:
    for axis ``k`` the angle in degrees between it and the normal of the plane of the other two axes
    (0 for orthogonal axes; 90 for a zero-length or degenerate axis)."""
    axes = np.asarray(axes, dtype=np.float64)
    out = np.empty(axes.shape[:-2] + (3,))
    for k, (i, j) in enumerate(((1, 2), (0, 2), (0, 1))):
        a = axes[..., :, k]
        normal = np.cross(axes[..., :, i], axes[..., :, j])
        with np.errstate(invalid="ignore", divide="ignore"):
            normal = normal / np.linalg.norm(normal, axis=-1, keepdims=True)
            along = np.sum(a * normal, axis=-1)
            across = np.linalg.norm(a - along[..., None] * normal, axis=-1)
            # atan2 of the two components, not arccos of a cosine: exact for angles near 0
            lean = np.degrees(np.arctan2(across, np.abs(along)))
        out[..., k] = np.where(np.isfinite(lean) & (np.linalg.norm(a, axis=-1) > 0), lean, 90.0)
    return out


def shear_of(axes) -> tuple[float, int] | None:
    """``(degrees, axis)`` of the axis that leans most (over all of ``axes``' leading dimensions; see
    :func:`axis_lean`) when it leans more than :data:`~tonno_engine.base.defaults.SHEAR_TOLERANCE_DEG`,
    else ``None``."""
    lean = axis_lean(axes).reshape(-1, 3)
    worst = lean.max(axis=0)
    k = int(np.argmax(worst))
    return (float(worst[k]), k) if worst[k] > SHEAR_TOLERANCE_DEG else None


def check_orthogonal(where, affine, what: str = "its affine") -> None:
    """:class:`DataError` naming ``where`` when the voxel axes of ``affine`` (``(4, 4)`` or its ``(3, 3)``
    part, columns = array axes ``(i, j, k)`` in world mm) are sheared beyond the tolerance."""
    axes = np.asarray(affine, dtype=np.float64)[:3, :3]
    if not np.isfinite(axes).all() or not np.linalg.norm(axes, axis=0).all():
        return  # an axis without a length or direction is no shear: the spacing checks name it
    found = shear_of(axes)
    if found is not None:
        angle, k = found
        i, j = (a for a in range(3) if a != k)
        raise DataError(where, f"{what} has a shear of {angle:.2f}° (voxel axis {k} is not perpendicular to the "
                               f"plane of axes {i} and {j}); {RESAMPLE_FIRST}")
