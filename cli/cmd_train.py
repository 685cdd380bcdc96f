"""``tonno train``: weak-label training of a slice classifier."""

from __future__ import annotations

from pathlib import Path

import typer

from tonno_engine.base.defaults import DEVICE
from tonno_engine.training.config import DEFAULTS, OBJECTIVES, RECIPES

from .options import (
    FIELD_OF_VIEW_HELP,
    GEOMETRY_HELP,
    RECIPE_HELP,
    FindingsOpt,
    IdColumnOpt,
    QuietOpt,
    check_encoder,
    check_geometry,
    check_named,
    engine_errors,
    finite,
    is_rank_zero,
    parse_findings,
    positive,
    renamed,
    resolve_device_or_exit,
)

INTENSITY_HELP = ("Intensity normalisation: ct, mr, pet, robust or none (default: the recipe's, else the data set's "
                  "dataset.json, else none). Cases of several images: one per image (e.g. pet,ct) replaces the modes "
                  "dataset.json gives its channels; one mode serves the images it gives none (else robust).")
CHANNELS_HELP = ("Names of a case's images (the CSV's image_0000, image_0001, … columns), e.g. SUV,CT. Default: "
                 "dataset.json's channels, else the column names. A checkpoint refuses cases whose images are named "
                 "otherwise.")


def check_intensities(intensity: str | None) -> str | None:
    """``--intensity``: one mode, or one per image separated by commas; a usage error naming the unknown one."""
    from tonno_engine.data.preprocessing import INTENSITIES

    for mode in (intensity.split(",") if intensity else ()):
        check_named(mode.strip(), INTENSITIES, "intensity mode", "--intensity")
    return intensity


def parse_channel_names(text: str | None) -> tuple[str, ...]:
    """``--channels SUV,CT`` → ``("SUV", "CT")``; a usage error for an empty or repeated name."""
    from tonno_engine.data.channels import parse_names

    try:
        return parse_names(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--channels") from None


def train(
    data: Path = typer.Argument(..., help="labels CSV (case,label,image[,mask]) or a folder holding labels.csv."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder for checkpoints, metrics and curves."),
    model: str = typer.Option(None, help=f"Any timm model name (default {DEFAULTS.model})."),
    recipe: str = typer.Option(None, help=RECIPE_HELP + " Default: paper."),
    norm: str = typer.Option(None, help="frozen_bn (paper), bn or gn. Default: the recipe's."),
    weights: str = typer.Option(None, help="Starting weights: a local file (.pth/.bin/.safetensors), 'imagenet' (timm's "
                                           "published weights for --model; needs internet or the Hugging Face cache) "
                                           "or a timm tag such as resnet10t.c3_in1k. Default: random init."),
    slice_size: int = typer.Option(None, min=16, help="Slice side in pixels (paper: 224; small-lesions: 64)."),
    steps: int = typer.Option(None, min=1, help="Training steps (paper: 2000; small-lesions: 800)."),
    batch_volumes: int = typer.Option(None, min=1, help="Volumes drawn (with replacement) per step (paper: 8)."),
    slices_per_volume: int = typer.Option(None, min=1, help="Random slices per drawn volume (paper: 8)."),
    lr: float = typer.Option(None, callback=positive, help=f"AdamW learning rate (cosine peak), > 0 (default {DEFAULTS.lr:g})."),
    intensity: str = typer.Option(None, help=INTENSITY_HELP),
    channels: str = typer.Option(None, help=CHANNELS_HELP),
    preset: str = typer.Option(None, hidden=True, help="Deprecated spelling of --intensity."),
    val_every: int = typer.Option(None, min=1, help=f"Validate every this many steps (default {DEFAULTS.val_every})."),
    val_slices: int = typer.Option(None, min=1, help="Fixed random planes per validation volume; a volume scores "
                                                      f"its largest logit (default {DEFAULTS.val_slices}; "
                                                      "small-lesions: 64). More planes, steadier volume scores."),
    checkpoint_every: int = typer.Option(None, min=1, help="Write checkpoint_last.pt every this many steps "
                                                                f"(default {DEFAULTS.checkpoint_every})."),
    geometry: str = typer.Option(None, help=GEOMETRY_HELP + f" Default: {DEFAULTS.geometry}."),
    objective: str = typer.Option(None, help="slice: every slice carries its volume's label (paper); mil: one loss "
                                             "per volume on a smooth maximum of its slices (small-lesions)."),
    anchors: int = typer.Option(None, min=0, help="Planes through bright spots: every training plane passes through one "
                                                  "of its volume's this many brightest blob-like spots (small bright "
                                                  "lesions among look-alikes; default: the recipe's, off: 0)."),
    candidates: int = typer.Option(None, min=0, help="Top-k sampling: score this many random slices of each drawn "
                                                     "volume and train on its --slices-per-volume highest-scoring "
                                                     "ones (finds lesions of a few voxels; default: the recipe's, "
                                                     "off: 0)."),
    context: float = typer.Option(None, min=0.0, callback=finite,
                                  help="2.5D input: the network also sees the planes this many slice pixels below and "
                                       "above each plane (three channels; default: the recipe's, off: 0). Tells small "
                                       "blobs from vessels across the plane."),
    field_of_view: str = typer.Option(None, help=FIELD_OF_VIEW_HELP + f" Default: {DEFAULTS.field_of_view}."),
    crop: bool = typer.Option(None, "--crop/--no-crop", help="Cut every scan to the box of its foreground (tissue "
                                                              "above Otsu's threshold) before slicing, in training "
                                                              "and reconstruction alike. Default: the recipe's."),
    device: str = typer.Option(None, help=f"auto, cpu, cuda or cuda:N (default {DEVICE}: CUDA when present)."),
    seed: int = typer.Option(None, min=0, help=f"Random seed (default {DEFAULTS.seed})."),
    cache_gb: float = typer.Option(None, min=0.01, callback=finite,
                                   help="Stream the volumes instead of loading them all: at most this many GB of host "
                                        "memory for volumes (pool and read-ahead)."),
    pool_volumes: int = typer.Option(None, min=1, help="Streaming: volumes kept on the training device "
                                                       "(default: three quarters of --cache-gb)."),
    loader_workers: int = typer.Option(None, min=0, help="Streaming: processes reading volumes ahead "
                                                              f"(default {DEFAULTS.loader_workers})."),
    disk_cache: Path = typer.Option(None, help="Streaming: a folder for preprocessed float16 copies of the volumes, "
                                               "so later epochs skip decoding (safe to share between runs)."),
    ema: float = typer.Option(None, min=0.0, max=0.9999, help="Average the weights over the steps (an exponential "
                                                             "moving average with this decay per step, e.g. 0.99); "
                                                             "validation and the checkpoints then hold the average. "
                                                             "Default: the recipe's (off: 0)."),
    keep_checkpoints: bool = typer.Option(None, "--keep-checkpoints", help="Also keep the weights of every validated "
                                                                          "step in checkpoints/step_NNNNNN.pt."),
    findings: FindingsOpt = None,
    id_column: IdColumnOpt = None,
    pos_weight: bool = typer.Option(None, "--pos-weight", help="Weigh each finding's positive volumes by its "
                                                               "negatives ÷ positives (for rare findings)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from checkpoint_last.pt."),
    quiet: QuietOpt = False,
    events: bool = typer.Option(False, "--events", help="Print every event (load progress, each step with its loss, "
                                                       "learning rate and validation) as a JSON line on stdout."),
) -> None:
    """Train a 2D slice classifier on randomly oriented slices, labelled by their volume's label."""
    from tonno_engine.training.config import recipe_config

    intensity = check_intensities(renamed("--preset", "--intensity", preset, intensity))
    check_geometry(geometry, field_of_view)
    check_named(recipe, RECIPES, "recipe", "--recipe")
    recipe = recipe or "paper"
    check_named(objective, OBJECTIVES, "objective", "--objective")
    check_encoder(model, norm)
    dev = resolve_device_or_exit(device or DEVICE)
    given = dict(model=model, norm=norm, weights=weights or None, slice_size=slice_size,
                 steps=steps, batch_volumes=batch_volumes, slices_per_volume=slices_per_volume, lr=lr,
                 intensity=intensity, val_every=val_every, val_slices=val_slices, checkpoint_every=checkpoint_every,
                 device=device,
                 seed=seed, geometry=geometry, field_of_view=field_of_view, crop=crop, objective=objective,
                 anchors=anchors, candidates=candidates, context=context, cache_gb=cache_gb, pool_volumes=pool_volumes,
                 loader_workers=loader_workers,
                 disk_cache=str(disk_cache) if disk_cache else None, ema=ema, keep_checkpoints=keep_checkpoints,
                 findings=parse_findings(findings), id_column=id_column, pos_weight=pos_weight,
                 channels=parse_channel_names(channels) or None)
    cfg = recipe_config(recipe, given)
    if 0 < cfg.candidates <= cfg.slices_per_volume:
        raise typer.BadParameter(f"must be 0 (off) or more than --slices-per-volume ({cfg.slices_per_volume}), "
                                 f"got {cfg.candidates}", param_hint="--candidates")
    run_training(data, out, cfg, given, command="train", device=dev, resume=resume, quiet=quiet, events=events)


def run_training(data: Path, out: Path, cfg, given: dict, *, command: str, device, resume: bool, quiet: bool,
                 events: bool) -> None:
    """Run ``cfg`` (``given``: the options the user set), rendering its events; shared by ``tonno train``
    and ``tonno pretrain`` (``command``)."""
    from tonno_engine.apps.training_run import train_run_iter
    from tonno_engine.base.events import Note, Notice
    from tonno_engine.training.loop import ENCODER_FILE, TrainStep, TrainStopped

    from .events import event_line
    from .progress import show_progress

    if resume:
        _check_resume(out, given)
        if given.get("steps") is None:
            cfg = None  # a resumed run keeps its own settings; only --steps may extend it
    if is_rank_zero():
        print(f"{command}ing on {device}" + (" (resuming)" if resume else ""), flush=True)
    last = stopped = None
    quiet = quiet or not is_rank_zero()  # under torchrun one rank draws the progress
    again = f"`tonno {command} ... --out {out} --resume`"
    hint = f"checkpoint_last.pt keeps the last checkpointed step: continue with {again}"
    with engine_errors(interrupted=hint):
        for event in show_progress(train_run_iter(data, out, cfg, resume=resume), command, quiet=quiet or events):
            if events and is_rank_zero():
                print(event_line(event), flush=True)
            if isinstance(event, TrainStep):
                last = event
            elif isinstance(event, TrainStopped):
                stopped = event
            elif isinstance(event, Notice) and is_rank_zero() and not events:
                typer.echo(f"warning: {event.message}", err=True)
            elif isinstance(event, Note) and is_rank_zero() and not events:
                print(event.message, flush=True)
    if stopped is not None:
        if is_rank_zero():
            print(f"stopped by {stopped.signal} after step {stopped.done}/{stopped.total}; checkpoint_last.pt holds it: "
                  f"continue with {again}", flush=True)
        return
    if last is not None and is_rank_zero():
        auc = f", val volume AUC {last.validation.describe()}" if last.validation else ""
        encoder = out / ENCODER_FILE
        made = f"; encoder weights {encoder} (for `tonno train --weights`)" if encoder.exists() else ""
        print(f"done: step {last.done}/{last.total}, loss {last.loss:.4f}{auc}; run folder {out}{made}")


def _check_resume(out: Path, given: dict) -> None:
    """A resumed run keeps its own settings: an option that differs from them is a usage error listing each."""
    from tonno_engine.training.run_folder import RESUMABLE_CHANGES, resume_conflicts

    with engine_errors():
        conflicts = resume_conflicts(out, given)
    if conflicts:
        raise typer.BadParameter(f"--resume continues the run in {out} with its own settings; these options differ from "
                                 f"them: {'; '.join(conflicts)}. Drop them (only {', '.join(RESUMABLE_CHANGES)} may "
                                 "change), or start a new run with another --out", param_hint="--resume")
