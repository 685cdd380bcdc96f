"""The CPU demo's settings: sized so that data, training, every method and the evaluation take a
few minutes on 2 CPU cores (measured in bench/RESULTS.md), while lesions stay visible in the heatmaps."""

from __future__ import annotations

from ..methods.settings import PRESETS
from ..training.config import recipe_config
from .benchmark import BenchmarkConfig, default_methods

#: lesion semi-axes (voxels per 64) for the demo: larger than the MS-like default so that a model
#: trained from scratch for a few hundred CPU steps learns them
DEMO_LESION_RADIUS = (3.5, 6.0)


def demo_config(device, *, steps: int = 400) -> BenchmarkConfig:
    """The ``small-lesions`` training recipe (64² slices, batch norm: no ImageNet weights offline) for
    ``steps``, the ``demo`` quality preset (M=24, L=192, hemisphere)."""
    train = recipe_config("small-lesions", dict(steps=steps, val_every=100, device=str(device), seed=0))
    return BenchmarkConfig(train=train, methods=default_methods(2), settings=PRESETS["demo"], device=str(device), seed=0)
