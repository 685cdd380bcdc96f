"""Random slice geometry and intensity augmentation for training (docs/training.md).

Geometry: uniform random normal on the sphere, uniform offset in ``[-1, 1]``, random in-plane
rotation, optional mirror, per-axis scale and shear of ``(u, v)`` (they stop being unit and
orthogonal, which :func:`~tonno_engine.tomography.slicing.extract_slices` allows). All random numbers come
from one ``torch.Generator`` on the CPU, so a run is reproducible and resumable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..tomography.geometry import orthonormal_basis


@dataclass(frozen=True)
class Augmentation:
    scale: tuple[float, float] = (0.85, 1.15)
    shear: float = 0.1
    mirror: bool = True
    contrast: tuple[float, float] = (0.9, 1.1)
    brightness: float = 0.1
    noise: float = 0.03

    @classmethod
    def off(cls) -> Augmentation:
        return cls(scale=(1.0, 1.0), shear=0.0, mirror=False, contrast=(1.0, 1.0), brightness=0.0, noise=0.0)


def random_planes(count: int, gen: torch.Generator, aug: Augmentation):
    """``count`` random slice planes: offsets ``(count,)``, ``n, u, v`` each ``(count, 3)`` float64."""
    n = torch.randn(count, 3, generator=gen, dtype=torch.float64)
    n = n / n.norm(dim=1, keepdim=True).clamp_min(1e-12)
    offsets = torch.rand(count, generator=gen, dtype=torch.float64) * 2 - 1
    return (offsets, n, *in_plane_axes(n, gen, aug))


def in_plane_axes(n: torch.Tensor, gen: torch.Generator, aug: Augmentation) -> tuple[torch.Tensor, torch.Tensor]:
    """Random in-plane axes ``(u, v)`` ``(count, 3)`` for the normals ``n``: rotated, scaled, sheared, mirrored."""
    count = len(n)
    u, v = orthonormal_basis(n)
    phi = torch.rand(count, 1, generator=gen, dtype=torch.float64) * 2 * math.pi
    u, v = torch.cos(phi) * u + torch.sin(phi) * v, -torch.sin(phi) * u + torch.cos(phi) * v
    lo, hi = aug.scale
    su, sv = (torch.rand(2, count, 1, generator=gen, dtype=torch.float64) * (hi - lo) + lo)
    shear = (torch.rand(count, 1, generator=gen, dtype=torch.float64) * 2 - 1) * aug.shear
    u, v = u * su, (v + shear * u) * sv
    if aug.mirror:
        sign = torch.where(torch.rand(count, 1, generator=gen) < 0.5, -1.0, 1.0).double()
        v = v * sign
    return u, v


def neighbour_planes(offsets: torch.Tensor, n: torch.Tensor, gen: torch.Generator, aug: Augmentation, *,
                     tilt_degrees: float, shift: float):
    """A second view of each plane ``(offsets, n)``: its normal tilted by up to about ``tilt_degrees``,
    its offset moved by up to ``shift`` (in ``[-1, 1]`` units), new in-plane axes; as :func:`random_planes`."""
    tilt = torch.randn(n.shape, generator=gen, dtype=torch.float64) * math.radians(tilt_degrees) / 2
    m = n + tilt - (tilt * n).sum(1, keepdim=True) * n  # a tangent step: the tilt is about its size
    m = m / m.norm(dim=1, keepdim=True).clamp_min(1e-12)
    moved = (offsets + (torch.rand(len(n), generator=gen, dtype=torch.float64) * 2 - 1) * shift).clamp(-1, 1)
    return (moved, m, *in_plane_axes(m, gen, aug))


def augment_intensity(slices: torch.Tensor, gen: torch.Generator, aug: Augmentation) -> torch.Tensor:
    """Per-slice contrast, brightness and Gaussian noise on ``(B, h, w)``."""
    b = len(slices)
    lo, hi = aug.contrast
    a = (torch.rand(b, 1, 1, generator=gen) * (hi - lo) + lo).to(slices.device)
    c = ((torch.rand(b, 1, 1, generator=gen) * 2 - 1) * aug.brightness).to(slices.device)
    out = slices * a + c
    if aug.noise > 0:
        sigma = (torch.rand(b, 1, 1, generator=gen) * aug.noise).to(slices.device)
        noise = torch.randn(slices.shape, generator=gen).to(slices.device)
        out = out + sigma * noise
    return out
