"""The foreground of a scan: tissue apart from air or background, and the box around it.

Where one value fills a large share of the volume (a skull-stripped, masked or synthetic scan), the background
is that value and the foreground every other voxel. Otherwise the foreground is every voxel above Otsu's
threshold (``skimage.filters.threshold_otsu``, estimated on an even subsample of large volumes) with its holes
filled (``scipy.ndimage.binary_fill_holes``), so that a dark finding inside the tissue stays in it, less the
specks of noise above the threshold (connected pieces under :data:`SPECK` of the largest: two legs in a CT both
stay). Clinical scans hold noise, not a constant, outside the body (Rician noise in MR, air in CT): "every voxel
above the minimum" is then the whole box, and statistics over it describe the noise (docs/studies/foreign.md).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_fill_holes, label
from skimage.filters import threshold_otsu

#: voxels Otsu's threshold is estimated from (an even subsample of larger volumes)
SAMPLE = 2_000_000
#: pieces of the foreground smaller than this share of its largest are noise, not tissue
SPECK = 0.01
#: one value filling more than this share of a volume is its background
CONSTANT_BACKGROUND = 0.3


def foreground_mask(array) -> np.ndarray:
    """Boolean ``(D, H, W)``: the finite voxels above Otsu's threshold of ``array``, holes filled, specks dropped; or,
    where one value fills more than :data:`CONSTANT_BACKGROUND` of the volume (a skull-stripped, masked or synthetic
    scan), every voxel of another value. A volume with one value only (or none finite) has no foreground."""
    array = np.asarray(array, dtype=np.float32)
    finite = np.isfinite(array)
    values = array[finite]
    if values.size == 0 or values.min() == values.max():
        return np.zeros(array.shape, dtype=bool)
    sample = values[:: max(1, values.size // SAMPLE)]
    levels, counts = np.unique(sample, return_counts=True)
    if counts.max() > CONSTANT_BACKGROUND * sample.size:  # the background is that value, exactly
        return finite & (array != levels[counts.argmax()])
    threshold = threshold_otsu(sample)
    mask = binary_fill_holes(finite & (array > threshold))
    pieces, count = label(mask)
    if count > 1:
        sizes = np.bincount(pieces.ravel())[1:]
        mask = np.isin(pieces, 1 + np.flatnonzero(sizes >= SPECK * sizes.max()))
    return mask


def foreground_box(mask: np.ndarray, margin: int = 2) -> tuple[slice, slice, slice]:
    """The index box ``(slice, slice, slice)`` around the ``True`` voxels of ``mask`` ``(D, H, W)``, widened by
    ``margin`` voxels per side within the array (the whole array when the mask is empty)."""
    if not mask.any():
        return tuple(slice(0, n) for n in mask.shape)
    box = []
    for axis, n in enumerate(mask.shape):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(0, int(hit[0]) - margin), min(n, int(hit[-1]) + 1 + margin)))
    return tuple(box)
