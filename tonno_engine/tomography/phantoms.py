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


#: centre (mm from the volume's centre, per array axis), radius (mm), value: a large ball in the
#: middle and two small ones near opposite corners of a 63 × 47 × 39 mm box (see
#: :func:`anisotropic_phantom`), where the paper geometry's unit ball does not reach
CORNER_BALLS_MM = (((2.0, -3.0, 1.0), 11.0, 1.0), ((25.0, 17.0, 13.5), 5.5, 2.0), ((-25.0, -17.0, -13.5), 5.5, 1.5))


def balls_phantom_mm(shape, spacing, balls=CORNER_BALLS_MM) -> torch.Tensor:
    """Sum of constant balls defined in millimetres, sampled at voxel centres: float32 ``(D, H, W)``.

    Voxel ``i`` of axis ``a`` sits at ``(i - (N_a - 1)/2)·spacing_a`` mm from the volume's centre.
    """
    axes = [(torch.arange(n, dtype=torch.float64) - (n - 1) / 2) * float(s) for n, s in zip(shape, spacing)]
    x = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
    out = torch.zeros(tuple(shape), dtype=torch.float64)
    for centre, radius, value in balls:
        out += value * (((x - torch.tensor(centre, dtype=torch.float64)) ** 2).sum(-1) <= radius**2)
    return out.float()


def anisotropic_phantom() -> tuple[torch.Tensor, tuple[float, float, float]]:
    """:data:`CORNER_BALLS_MM` sampled at 1 × 1 × 3 mm on a 64 × 48 × 14 grid, and that spacing."""
    spacing = (1.0, 1.0, 3.0)
    return balls_phantom_mm((64, 48, 14), spacing), spacing


def ball_masks_mm(shape, spacing, balls=CORNER_BALLS_MM) -> list[torch.Tensor]:
    """One boolean ``(D, H, W)`` mask per ball of ``balls`` (same sampling as :func:`balls_phantom_mm`)."""
    return [balls_phantom_mm(shape, spacing, [(c, r, 1.0)]) > 0.5 for c, r, _ in balls]
