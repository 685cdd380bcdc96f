"""A training run as the CLI and the benchmark start it: the training core plus its figure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..base.distributed import current_world
from ..base.events import Progress
from ..training.config import TrainConfig
from ..training.loop import TrainStep, train_iter
from .figures import plot_curves


def train_run_iter(data, out, config: TrainConfig | None = None, *, resume: bool = False) -> Iterator[Progress]:
    """The events of :func:`~tonno_engine.training.loop.train_iter`; ``out/curves.png`` is redrawn
    after every validation and at the end."""
    out = Path(out)
    for event in train_iter(data, out, config, resume=resume):
        if isinstance(event, TrainStep) and event.validation is not None and current_world().is_main:
            plot_curves(out / "metrics.csv", out / "curves.png")
        yield event
    if current_world().is_main:  # under torchrun rank 0 owns the run folder
        plot_curves(out / "metrics.csv", out / "curves.png")
