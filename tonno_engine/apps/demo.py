"""The CPU demo's settings: sized so that data, training, every method and the evaluation take a
few minutes on 2 CPU cores (measured in bench/RESULTS.md), while lesions stay visible in the heatmaps."""

from __future__ import annotations

from ..base.defaults import DEMO_LESION_RADIUS, DEMO_STEPS
from ..methods.settings import PRESETS
from ..training.config import recipe_config
from .benchmark import BenchmarkConfig, default_methods

__all__ = ["DEMO_LESION_RADIUS", "demo_config"]  # the lesion radius is defined in base/defaults.py


def demo_config(device, *, steps: int = DEMO_STEPS) -> BenchmarkConfig:
    """The ``small-lesions`` training recipe (64² slices, batch norm: no ImageNet weights offline) for
    ``steps``, the ``demo`` quality preset (M=24, L=192, hemisphere)."""
    train = recipe_config("small-lesions", dict(steps=steps, val_every=100, device=str(device), seed=0))
    return BenchmarkConfig(train=train, methods=default_methods(2), settings=PRESETS["demo"], device=str(device), seed=0)
