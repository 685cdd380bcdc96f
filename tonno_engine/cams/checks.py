"""The paper's Fig. 4 sanity check of CAM back-mapping: an average-pooled slice as a fake CAM."""

from __future__ import annotations

import torch.nn.functional as F

from ..base.defaults import DEVICE
from ..tomography.phantoms import balls_phantom, quality_in_unit_ball
from ..tomography.plan import Plan
from ..tomography.reconstruction import reconstruct
from .iterative import ITERATIVE_CAM
from .tomographic import AVERAGED_CAM, TOMOGRAPHIC_CAM

FORMULAS = {"averaged-cam": AVERAGED_CAM, "tomographic-cam": TOMOGRAPHIC_CAM, "iterative-cam": ITERATIVE_CAM}


def fake_cam_check(
    kernels=(2, 4, 8, 16), *, size: int = 32, slices: int = 32, directions: int = 400, slice_size: int = 64,
    device=DEVICE, formulas=tuple(FORMULAS),
) -> dict[tuple[str, int], tuple[float, float]]:
    """Paper Fig. 4: average-pool each slice as a fake CAM and reconstruct the input.

    Pooling a ``slice_size²`` slice with kernel ``k`` gives a map at the resolution of a layer with
    stride ``k`` (a 224² ResNet input: layers 1–4 are kernels 4, 8, 16, 32). Returns the
    correlation in the unit ball between the two-balls phantom (``size³``) and each
    reconstruction, and the relative error there: ``{(formula, kernel): (correlation, relative error)}``
    for each of ``formulas`` (names of :data:`FORMULAS`).
    """
    volume = balls_phantom((size,) * 3)
    out = {}
    for kernel in kernels:
        def pooled(batch, k=kernel):
            return F.avg_pool2d(batch[:, None], k)[:, 0]

        plan = Plan(slices=slices, directions=directions, slice_size=slice_size, device=device, batch_size=512)
        for name in formulas:
            heatmap = reconstruct(volume, pooled, plan, FORMULAS[name])
            out[name, kernel] = quality_in_unit_ball(heatmap, volume)
    return out
