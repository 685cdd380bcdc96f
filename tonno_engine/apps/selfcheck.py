"""The R_Σ check (paper §3.4): with the slice integral in place of the network, ``G ≈ V``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch

from ..base.defaults import DEVICE, FIELD_OF_VIEW, GEOMETRY
from ..base.devices import resolve_device, synchronize
from ..base.events import Progress
from ..tomography.phantoms import (
    CORNER_BALLS_MM,
    anisotropic_phantom,
    ball_masks_mm,
    balls_phantom,
    quality_in_unit_ball,
)
from ..tomography.plan import Plan
from ..tomography.reconstruction import reconstruct_iter
from ..tomography.scorers import radon_sum

#: problem size: name -> (side of the paper geometry's two-balls phantom, slices M, directions L, slice size).
#: "quick" runs in ~10 s on 2 CPU cores; "paper" is the reference setting of docs/methods.md (~2 min on
#: 2 CPU cores, well under a second on a GPU). Physical geometry always uses :func:`anisotropic_phantom`.
SIZES = {"quick": (32, 64, 800, 64), "paper": (64, 96, 2000, 96)}
#: geometry -> (minimum correlation, maximum relative error). Physical geometry is judged over the
#: whole anisotropic volume, whose voxelised balls at 3 mm blur more than those of an isotropic cube.
LIMITS = {"paper": (0.97, 0.2), "physical": (0.95, 0.35)}
MIN_CORRELATION, MAX_RELATIVE_ERROR = LIMITS["paper"]


@dataclass(frozen=True)
class SelfcheckResult:
    size: str
    geometry: str
    device: str
    shape: tuple[int, int, int]
    slices: int
    directions: int
    slice_size: int
    hemisphere: bool
    correlation: float
    relative_error: float
    seconds: float
    #: physical geometry: mean recovered value of each corner ball ÷ its true value
    corner_recovery: tuple[float, ...] = ()

    @property
    def limits(self) -> tuple[float, float]:
        return LIMITS[self.geometry]

    @property
    def passed(self) -> bool:
        return self.correlation >= self.limits[0] and self.relative_error <= self.limits[1]

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def selfcheck_iter(size: str = "quick", *, device=DEVICE, hemisphere: bool = False, geometry: str = GEOMETRY,
                   field_of_view: str = FIELD_OF_VIEW) -> Iterator[Progress | SelfcheckResult]:
    """The R_Σ check (:func:`radon_sum` in place of the network); yields progress, then the result.

    Paper geometry: the two-balls phantom, judged inside the unit ball. Physical geometry: balls
    defined in mm sampled at 1 × 1 × 3 mm, two near the corners (:func:`anisotropic_phantom`),
    judged over the whole volume.
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; valid: {', '.join(SIZES)}")
    if geometry not in LIMITS:
        raise ValueError(f"unknown geometry {geometry!r}; valid: {', '.join(LIMITS)}")
    dev = resolve_device(device)
    side, slices, directions, slice_size = SIZES[size]
    if geometry == "physical":
        volume, spacing = anisotropic_phantom()
    else:
        volume, spacing = balls_phantom((side,) * 3), None
    start = time.perf_counter()
    plan = Plan(slices=slices, directions=directions, slice_size=slice_size, hemisphere=hemisphere, device=dev,
                batch_size=512, geometry=geometry, spacing=spacing, field_of_view=field_of_view)
    for event in reconstruct_iter(volume, radon_sum, plan, partials=False):
        if isinstance(event, Progress):
            yield event
        elif event.final:
            (heatmap,) = event.value
    synchronize(dev)
    seconds = time.perf_counter() - start
    corners: tuple[float, ...] = ()
    if geometry == "physical":
        heat, truth = heatmap.cpu().double().flatten(), volume.double().flatten()
        corr = torch.corrcoef(torch.stack([heat, truth]))[0, 1].item()
        rel = ((heat - truth).norm() / truth.norm()).item()
        masks = ball_masks_mm(volume.shape, spacing)[1:]
        corners = tuple(heatmap.cpu()[m].mean().item() / value for m, (_, _, value) in zip(masks, CORNER_BALLS_MM[1:]))
    else:
        corr, rel = quality_in_unit_ball(heatmap, volume)
    yield SelfcheckResult(size, geometry, str(dev), tuple(volume.shape), slices, directions, slice_size, hemisphere, corr,
                          rel, seconds, corners)
