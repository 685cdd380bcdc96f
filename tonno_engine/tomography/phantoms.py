"""Analytic test volumes in normalised coordinates (see :mod:`tonno_engine.tomography.geometry`)."""

from __future__ import annotations

import torch

from .geometry import voxel_coords

#: centre ``(x0, x1, x2)``, radius, value: two disjoint balls of different size and contrast, inside the unit ball
TWO_BALLS = (((0.15, -0.1, 0.1), 0.5, 1.0), ((-0.45, 0.4, -0.2), 0.3, 2.0))


def balls_phantom(shape=(64, 64, 64), balls=TWO_BALLS) -> torch.Tensor:
    """Sum of constant-valued balls, float32 ``(D, H, W)``; coordinates in ``[-1, 1]^3``."""
    x = voxel_coords(tuple(shape), torch.float64)
    out = torch.zeros(len(x), dtype=torch.float64)
    for centre, radius, value in balls:
        inside = ((x - torch.tensor(centre, dtype=torch.float64)) ** 2).sum(-1) <= radius**2
        out += value * inside
    return out.reshape(tuple(shape)).float()


def unit_ball_mask(shape) -> torch.Tensor:
    """Boolean ``(D, H, W)``: voxels with ``|x| <= 1``, where the reconstruction is exact."""
    return (voxel_coords(tuple(shape)) ** 2).sum(-1).reshape(tuple(shape)) <= 1.0


def quality_in_unit_ball(heatmap: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """Pearson correlation and relative L2 error ``|G - V| / |V|`` over voxels with ``|x| <= 1``."""
    mask = unit_ball_mask(tuple(truth.shape)).to(heatmap.device)
    g, v = heatmap[mask].double(), truth.to(heatmap.device)[mask].double()
    corr = torch.corrcoef(torch.stack([g, v]))[0, 1].item()
    return corr, ((g - v).norm() / v.norm()).item()
