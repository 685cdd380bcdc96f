"""Shapes the synthetic kinds draw with (:mod:`tonno_engine.data.synth`, :mod:`tonno_engine.data.synth_petct`):
voxel grids, random rotations, soft-edged ellipsoids and smooth noise, all in voxels."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def grid(shape):
    """Voxel coordinates ``(3, D, H, W)`` in voxels."""
    return np.indices(shape, dtype=np.float32)


def random_rotation(rng) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
    ])


def ellipsoid_distance(grid, centre, radii, rot) -> np.ndarray:
    """Normalised ellipsoidal radius ``(D, H, W)``: 1 on the surface of the rotated ellipsoid."""
    rel = grid - np.asarray(centre, np.float32)[:, None, None, None]
    local = np.tensordot(rot.T.astype(np.float32), rel, axes=1)
    return np.sqrt(sum((local[i] / radii[i]) ** 2 for i in range(3)))


def soft(dist, edge=0.15) -> np.ndarray:
    """A blob with a soft edge from an ellipsoidal distance (1 inside, 0 outside)."""
    return np.clip((1.0 + edge - dist) / (2 * edge), 0.0, 1.0)


def smooth_noise(rng, shape, sigma, amplitude) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.normal(size=shape).astype(np.float32), sigma)
    return field * (amplitude / (field.std() + 1e-8))


def pick_centre(rng, candidates: np.ndarray) -> np.ndarray:
    return candidates[rng.integers(len(candidates))].astype(np.float32)
