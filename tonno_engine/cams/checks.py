"""The paper's Fig. 4 sanity check of CAM back-mapping: an average-pooled slice as a fake CAM."""

from __future__ import annotations

import torch.nn.functional as F

from ..tomography.phantoms import balls_phantom, quality_in_unit_ball
from ..tomography.reconstruction import final_result
from .tomographic import cam_reconstruct_iter


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
