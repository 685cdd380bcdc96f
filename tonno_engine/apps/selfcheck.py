"""The R_Σ check (paper §3.4): with the slice integral in place of the network, ``G ≈ V``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from ..base.devices import resolve_device, synchronize
from ..base.events import Progress
from ..tomography.phantoms import balls_phantom, quality_in_unit_ball
from ..tomography.reconstruction import reconstruct_iter
from ..tomography.scorers import radon_sum

#: problem size: name -> (volume size, slices M, angles L, slice size). "quick" runs in ~10 s on 2 CPU cores;
#: "paper" is the reference setting of docs/methods.md (~2 min on 2 CPU cores, well under a second on a GPU).
SIZES = {"quick": (32, 64, 800, 64), "paper": (64, 96, 2000, 96)}
MIN_CORRELATION = 0.97
MAX_RELATIVE_ERROR = 0.2


@dataclass(frozen=True)
class SelfcheckResult:
    size: str
    device: str
    shape: tuple[int, int, int]
    slices: int
    angles: int
    slice_size: int
    hemisphere: bool
    correlation: float
    relative_error: float
    seconds: float

    @property
    def passed(self) -> bool:
        return self.correlation >= MIN_CORRELATION and self.relative_error <= MAX_RELATIVE_ERROR

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def selfcheck_iter(size: str = "quick", *, device=None, hemisphere: bool = False) -> Iterator[Progress | SelfcheckResult]:
    """Reconstruct the two-balls phantom with :func:`radon_sum`; yields progress, then the result."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; valid: {', '.join(SIZES)}")
    dev = resolve_device(device)
    side, slices, angles, slice_size = SIZES[size]
    volume = balls_phantom((side,) * 3)
    start = time.perf_counter()
    for event in reconstruct_iter(volume, radon_sum, slices=slices, angles=angles, slice_size=slice_size,
                                  hemisphere=hemisphere, device=dev, partials=False, batch_size=512):
        if isinstance(event, Progress):
            yield event
        elif event.final:
            heatmap = event.value
    synchronize(dev)
    seconds = time.perf_counter() - start
    corr, rel = quality_in_unit_ball(heatmap, volume)
    yield SelfcheckResult(size, str(dev), (side,) * 3, slices, angles, slice_size, hemisphere, corr, rel, seconds)
