"""Affines the plugin tests share."""

from __future__ import annotations

import numpy as np


def rotated_affine(degrees: float, zooms, origin) -> np.ndarray:
    """A voxel-to-mm affine ``(4, 4)``: rotation by ``degrees`` about axis 2 after scaling by ``zooms``."""
    angle = np.deg2rad(degrees)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(zooms)
    affine[:3, 3] = origin
    return affine
