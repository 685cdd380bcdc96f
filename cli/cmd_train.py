"""``tonno train``: weak-label training of a slice classifier."""

from __future__ import annotations

from pathlib import Path

import typer

from tonno_engine.training.config import DEFAULTS, OBJECTIVES

from .app import app
from .options import (
    FIELD_OF_VIEW_HELP,
    GEOMETRY_HELP,
    DeviceOpt,
    QuietOpt,
    check_geometry,
    engine_errors,
    renamed,
    resolve_device_or_exit,
)

INTENSITY_HELP = "Intensity normalisation: ct, mr, pet or none (default: the data set's dataset.json, else none)."


@app.command()
def train(
    data: Path = typer.Argument(..., help="labels CSV (case,label,image[,mask]) or a folder holding labels.csv."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder for checkpoints, metrics and curves."),
    model: str = typer.Option(DEFAULTS.model, help="Any timm model name."),
    norm: str = typer.Option(DEFAULTS.norm, help="frozen_bn (paper), bn or gn."),
    weights: str = typer.Option(None, help="Starting weights: a local file (.pth/.bin/.safetensors), 'imagenet' (timm's "
                                           "published weights for --model; needs internet or the Hugging Face cache) "
                                           "or a timm tag such as resnet10t.c3_in1k. Default: random init."),
    slice_size: int = typer.Option(DEFAULTS.slice_size, min=16, help="Slice side in pixels (224 on GPU; 64-128 on CPU)."),
    steps: int = typer.Option(DEFAULTS.steps, min=1, help="Training steps."),
    batch_volumes: int = typer.Option(DEFAULTS.batch_volumes, min=1, help="Volumes drawn (with replacement) per step."),
    slices_per_volume: int = typer.Option(DEFAULTS.slices_per_volume, min=1, help="Random slices per drawn volume."),
    lr: float = typer.Option(DEFAULTS.lr, min=0.0, help="AdamW learning rate (peak of the cosine schedule), > 0."),
    intensity: str = typer.Option(None, help=INTENSITY_HELP),
    preset: str = typer.Option(None, hidden=True, help="Deprecated spelling of --intensity."),
    val_every: int = typer.Option(DEFAULTS.val_every, min=1, help="Validate every this many steps."),
    checkpoint_every: int = typer.Option(DEFAULTS.checkpoint_every, min=1,
                                         help="Write checkpoint_last.pt every this many steps."),
    geometry: str = typer.Option(DEFAULTS.geometry, help=GEOMETRY_HELP),
    objective: str = typer.Option(DEFAULTS.objective, help="slice: every slice carries its volume's label (the paper); "
                                                          "mil: one loss per volume on a smooth maximum of its slices."),
    field_of_view: str = typer.Option(DEFAULTS.field_of_view, help=FIELD_OF_VIEW_HELP),
    device: DeviceOpt = "auto",
    seed: int = typer.Option(DEFAULTS.seed, min=0, help="Random seed."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from checkpoint_last.pt."),
    quiet: QuietOpt = False,
) -> None:
    """Train a 2D slice classifier on randomly oriented slices, labelled by their volume's label."""
    from tonno_engine.apps.training_run import train_run_iter
    from tonno_engine.data.preprocessing import INTENSITIES
    from tonno_engine.training.config import TrainConfig
    from tonno_engine.training.loop import TrainStep

    from .progress import show_progress

    if lr <= 0:
        raise typer.BadParameter(f"must be > 0, got {lr}", param_hint="--lr")
    intensity = renamed("--preset", "--intensity", preset, intensity)
    if intensity is not None and intensity not in INTENSITIES:
        raise typer.BadParameter(f"unknown intensity mode {intensity!r}; valid: {', '.join(INTENSITIES)}",
                                 param_hint="--intensity")
    check_geometry(geometry, field_of_view)
    if objective not in OBJECTIVES:
        raise typer.BadParameter(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}", param_hint="--objective")
    dev = resolve_device_or_exit(device)
    cfg = TrainConfig(model=model, norm=norm, weights=weights or None, slice_size=slice_size,
                      steps=steps, batch_volumes=batch_volumes, slices_per_volume=slices_per_volume, lr=lr,
                      intensity=intensity, val_every=val_every, checkpoint_every=checkpoint_every, device=device,
                      seed=seed, geometry=geometry, field_of_view=field_of_view, objective=objective)
    print(f"training on {dev}" + (" (resuming)" if resume else ""), flush=True)
    last = None
    with engine_errors():
        for event in show_progress(train_run_iter(data, out, cfg, resume=resume), "train", quiet=quiet):
            if isinstance(event, TrainStep):
                last = event
    if last is not None:
        auc = f", val volume AUC {last.validation.val_volume_auc:.3f}" if last.validation else ""
        print(f"done: step {last.done}/{last.total}, loss {last.loss:.4f}{auc}; run folder {out}")
