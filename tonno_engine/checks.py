"""The R_Σ check (paper §3.4): with the slice integral in place of the network, ``G ≈ V``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch

from .devices import resolve_device, synchronize
from .events import Progress
from .phantoms import balls_phantom, unit_ball_mask
from .reconstruction import reconstruct_iter
from .scorers import radon_sum

#: name -> (volume size, slices M, angles L, slice size). "quick" runs in ~10 s on 2 CPU cores;
#: "paper" is DESIGN.md's reference setting (~2 min on 2 CPU cores, well under a second on a GPU).
PRESETS = {"quick": (32, 64, 800, 64), "paper": (64, 96, 2000, 96)}
MIN_CORRELATION = 0.97
MAX_RELATIVE_ERROR = 0.2


def quality_in_unit_ball(heatmap: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """Pearson correlation and relative L2 error ``|G - V| / |V|`` over voxels with ``|x| <= 1``."""
    mask = unit_ball_mask(tuple(truth.shape)).to(heatmap.device)
    g, v = heatmap[mask].double(), truth.to(heatmap.device)[mask].double()
    corr = torch.corrcoef(torch.stack([g, v]))[0, 1].item()
    return corr, ((g - v).norm() / v.norm()).item()


@dataclass(frozen=True)
class SelfcheckResult:
    preset: str
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


def selfcheck_iter(preset: str = "quick", *, device=None, hemisphere: bool = False) -> Iterator[Progress | SelfcheckResult]:
    """Reconstruct the two-balls phantom with :func:`radon_sum`; yields progress, then the result."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    dev = resolve_device(device)
    size, slices, angles, slice_size = PRESETS[preset]
    volume = balls_phantom((size,) * 3)
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
    yield SelfcheckResult(preset, str(dev), (size,) * 3, slices, angles, slice_size, hemisphere, corr, rel, seconds)


def fake_cam_check(
    kernels=(2, 4, 8, 16), *, size: int = 32, slices: int = 32, angles: int = 400, slice_size: int = 64,
    device=None,
) -> dict[tuple[str, int], float]:
    """Paper Fig. 4: average-pool each slice as a fake CAM and reconstruct the input.

    Pooling a ``slice_size²`` slice with kernel ``k`` gives a map at the resolution of a layer with
    stride ``k`` (a 224² ResNet input: layers 1–4 are kernels 4, 8, 16, 32). Returns the
    correlation in the unit ball between the two-balls phantom (``size³``) and each
    reconstruction: ``{(formula, kernel): correlation}``.
    """
    import torch.nn.functional as F

    from .cam_reconstruction import cam_reconstruct_iter
    from .reconstruction import final_result

    volume = balls_phantom((size,) * 3)
    out = {}
    for kernel in kernels:
        def pooled(batch, k=kernel):
            return F.avg_pool2d(batch[:, None], k)[:, 0]

        for formula in ("averaged-cam", "tomographic-cam"):
            heatmap = final_result(cam_reconstruct_iter(
                volume, pooled, formula, slices=slices, angles=angles, slice_size=slice_size,
                device=device, partials=False, batch_size=512))
            out[formula, kernel] = quality_in_unit_ball(heatmap, volume)[0]
    return out
