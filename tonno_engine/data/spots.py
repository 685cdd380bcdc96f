"""Bright blob-like spots of a volume: where a lesion of a few voxels may sit (training's anchored planes)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..tomography.geometry import index_to_normalised


def bright_spots(volume: np.ndarray, count: int | None = None, *, fine: float = 1.0, coarse: float = 3.0) -> np.ndarray:
    """The ``count`` (``None``: all) strongest local maxima of ``volume`` ``(D, H, W)`` filtered by a difference of Gaussians
    (σ ``fine`` minus σ ``coarse`` voxels: blobs of about 2–5 voxels across stand out, smooth anatomy and
    single-voxel noise do not), strongest first, as index coordinates ``t`` in ``[-1, 1]`` per axis
    (``align_corners`` convention) ``(n, 3)`` float64, ``n ≤ count`` (fewer when fewer maxima exist)."""
    array = np.asarray(volume, dtype=np.float32)
    dog = ndimage.gaussian_filter(array, fine) - ndimage.gaussian_filter(array, coarse)
    peaks = (dog == ndimage.maximum_filter(dog, size=5)) & (dog > 0)
    where = np.argwhere(peaks)
    strongest = where[np.argsort(-dog[peaks], kind="stable")[:count]]
    return index_to_normalised(strongest, array.shape)
