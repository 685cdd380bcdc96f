"""``tonno train``: weak-label training of a slice classifier."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import app
from .options import DeviceOpt, QuietOpt, fail, resolve_device_or_exit


@app.command()
def train(
    data: Path = typer.Argument(..., help="labels CSV (case,label,image[,mask]) or a folder holding labels.csv."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder for checkpoints, metrics and curves."),
    model: str = typer.Option("resnet10t", help="Any timm model name."),
    norm: str = typer.Option("frozen_bn", help="frozen_bn (paper), bn or gn."),
    weights: Path = typer.Option(None, help="Local ImageNet weights file for the model (nothing downloads)."),
    slice_size: int = typer.Option(224, help="Slice side in pixels (224 on GPU; 64-128 on CPU)."),
    steps: int = typer.Option(2000, help="Training steps."),
    batch_volumes: int = typer.Option(8, help="Volumes drawn (with replacement) per step."),
    slices_per_volume: int = typer.Option(8, help="Random slices per drawn volume."),
    lr: float = typer.Option(1e-3, help="AdamW learning rate (peak of the cosine schedule)."),
    preset: str = typer.Option(None, help="Preprocessing: ct, mr, pet or none (default: the data set's)."),
    val_every: int = typer.Option(50, help="Validate every this many steps."),
    checkpoint_every: int = typer.Option(25, help="Write checkpoint_last.pt every this many steps."),
    device: DeviceOpt = "auto",
    seed: int = typer.Option(0, help="Random seed."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from checkpoint_last.pt."),
    quiet: QuietOpt = False,
) -> None:
    """Train a 2D slice classifier on randomly oriented slices, labelled by their volume's label."""
    from tonno_engine.training import TrainConfig, train_iter

    from .progress import show_progress

    dev = resolve_device_or_exit(device)
    cfg = TrainConfig(model=model, norm=norm, weights=str(weights) if weights else None, slice_size=slice_size,
                      steps=steps, batch_volumes=batch_volumes, slices_per_volume=slices_per_volume, lr=lr,
                      preset=preset, val_every=val_every, checkpoint_every=checkpoint_every, device=device,
                      seed=seed)
    print(f"training on {dev}" + (" (resuming)" if resume else ""), flush=True)
    last = None
    try:
        for event in show_progress(train_iter(data, out, cfg, resume=resume), "train", quiet=quiet):
            if event.stage == "train":
                last = event
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    if last is not None:
        info = last.info
        auc = f", val volume AUC {info['val_volume_auc']:.3f}" if "val_volume_auc" in info else ""
        print(f"done: step {last.done}/{last.total}, loss {info['loss']:.4f}{auc}; run folder {out}")
