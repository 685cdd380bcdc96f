"""``tonno pretrain``: self-supervised pretraining of the slice encoder on the volumes (no labels read)."""

from __future__ import annotations

from pathlib import Path

import typer

from tonno_engine.base.defaults import DEVICE
from tonno_engine.training.config import PRETRAINING, TrainConfig

from .cmd_train import INTENSITY_HELP, check_intensities, run_training
from .options import (
    GEOMETRY_HELP,
    IdColumnOpt,
    QuietOpt,
    check_encoder,
    check_geometry,
    finite,
    positive,
    resolve_device_or_exit,
)

_D = TrainConfig(**PRETRAINING)


def pretrain(
    data: Path = typer.Argument(..., help="labels CSV (case,image; a label column is not read) or a folder holding "
                                          "labels.csv."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: encoder.pth (the weights), checkpoints, metrics."),
    model: str = typer.Option(None, help=f"Any timm model name (default {_D.model})."),
    norm: str = typer.Option(None, help=f"bn, gn or frozen_bn (default {_D.norm})."),
    weights: str = typer.Option(None, help="Starting weights, as for tonno train (default: random init)."),
    slice_size: int = typer.Option(None, min=16, help=f"Slice side in pixels (default {_D.slice_size})."),
    steps: int = typer.Option(None, min=1, help=f"Steps (default {_D.steps})."),
    batch_volumes: int = typer.Option(None, min=1, help=f"Volumes drawn per step (default {_D.batch_volumes})."),
    slices_per_volume: int = typer.Option(None, min=1, help="Planes per drawn volume, each with its neighbour "
                                                               f"(default {_D.slices_per_volume}); with "
                                                               "--batch-volumes at least 2 planes a step."),
    lr: float = typer.Option(None, callback=positive, help=f"AdamW learning rate (cosine peak), > 0 (default {_D.lr:g})."),
    temperature: float = typer.Option(None, min=0.01, callback=finite, help=f"NT-Xent temperature (default {_D.temperature:g})."),
    view_tilt: float = typer.Option(None, min=0.0, max=90.0, help="Degrees a view's neighbour plane tilts "
                                                                 f"(default {_D.view_tilt:g})."),
    view_shift: float = typer.Option(None, min=0.0, max=1.0, help="How far it moves, in [-1, 1] units "
                                                                 f"(default {_D.view_shift:g})."),
    intensity: str = typer.Option(None, help=INTENSITY_HELP.replace("the recipe's", f"{_D.intensity}")),
    geometry: str = typer.Option(None, help=GEOMETRY_HELP + f" Default: {_D.geometry}."),
    checkpoint_every: int = typer.Option(None, min=1, help=f"Write checkpoint_last.pt every this many steps "
                                                                f"(default {_D.checkpoint_every})."),
    device: str = typer.Option(None, help=f"auto, cpu, cuda or cuda:N (default {DEVICE})."),
    seed: int = typer.Option(None, min=0, help=f"Random seed (default {_D.seed})."),
    cache_gb: float = typer.Option(None, min=0.01, callback=finite,
                                   help="Stream the volumes: at most this many GB of host memory (as tonno train)."),
    pool_volumes: int = typer.Option(None, min=1, help="Streaming: volumes kept on the device."),
    loader_workers: int = typer.Option(None, min=0, help="Streaming: processes reading volumes ahead."),
    disk_cache: Path = typer.Option(None, help="Streaming: a folder for preprocessed float16 copies."),
    id_column: IdColumnOpt = None,
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from checkpoint_last.pt."),
    quiet: QuietOpt = False,
    events: bool = typer.Option(False, "--events", help="Every event as a JSON line on stdout."),
) -> None:
    """SimCLR on pairs of neighbouring, differently oriented slices of every volume; writes encoder.pth for
    `tonno train --weights` (docs/training.md, 'Self-supervised pretraining')."""
    from tonno_engine.training.config import pretrain_config

    check_intensities(intensity)
    check_encoder(model, norm)
    check_geometry(geometry, None)
    dev = resolve_device_or_exit(device or DEVICE)
    given = dict(model=model, norm=norm, weights=weights or None, slice_size=slice_size, steps=steps,
                 batch_volumes=batch_volumes, slices_per_volume=slices_per_volume, lr=lr, temperature=temperature,
                 view_tilt=view_tilt, view_shift=view_shift, intensity=intensity, geometry=geometry,
                 checkpoint_every=checkpoint_every, device=device, seed=seed, cache_gb=cache_gb,
                 pool_volumes=pool_volumes, loader_workers=loader_workers,
                 disk_cache=str(disk_cache) if disk_cache else None, id_column=id_column)
    try:
        cfg = pretrain_config(given)
    except ValueError as exc:  # 1 × 1 planes: a contrastive loss without negatives
        raise typer.BadParameter(str(exc), param_hint="--batch-volumes/--slices-per-volume") from exc
    run_training(data, out, cfg, given, command="pretrain", device=dev, resume=resume, quiet=quiet, events=events)
