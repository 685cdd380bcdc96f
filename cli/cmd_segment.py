"""``tonno segment train|predict``: the second stage, a 3D U-Net learnt from exported pseudo-labels."""

from __future__ import annotations

from pathlib import Path

import typer

from tonno_engine.base.defaults import DEVICE, SEGMENTER_LR, SEGMENTER_PATCH, SEGMENTER_STEPS

from .options import (
    INPUT_URL_HELP,
    DeviceOpt,
    FormatOpt,
    IdColumnOpt,
    QuietOpt,
    StoreOpt,
    check_format,
    engine_errors,
    fail,
    positive,
    resolve_device_or_exit,
    segmenter_patch,
)

segment_app = typer.Typer(help="Second stage: a 3D U-Net trained on pseudo-labels (the eval extra: MONAI).",
                          no_args_is_help=True)


@segment_app.command("train")
def train(
    export: Path = typer.Argument(..., help="A data set folder written by tonno export nnunet."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (segmenter.pt, segmenter_last.pt, metrics.csv, run.json)."),
    steps: int = typer.Option(SEGMENTER_STEPS, min=1, help="Optimisation steps (a resumed run may be extended)."),
    patch: int = typer.Option(SEGMENTER_PATCH, min=8, callback=segmenter_patch,
                              help="Patch side in voxels (a multiple of 8: the U-Net halves it three times)."),
    batch_size: int = typer.Option(2, min=1, help="Patches per step."),
    lr: float = typer.Option(SEGMENTER_LR, callback=positive, help="Learning rate (AdamW, polynomial decay), > 0."),
    lesion_fraction: float = typer.Option(0.33, min=0.0, max=1.0, help="Share of patches centred on a lesion voxel."),
    cache_cases: int = typer.Option(64, min=1, help="Volumes kept in memory (the rest load when drawn)."),
    intensity: str = typer.Option("robust", help="Intensity mode of the input (ct, mr, pet, robust, none; docs/data.md); "
                                                 "an export of cases of several images normalises each by the mode it "
                                                 "records for it, this one where it records none."),
    seed: int = typer.Option(0, min=0, help="Random seed."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped."),
    device: DeviceOpt = DEVICE,
    quiet: QuietOpt = False,
) -> None:
    """Train the segmenter; the ignore label (2) is left out of the loss (docs/segmenter.md)."""
    from tonno_engine.data.preprocessing import INTENSITIES
    from tonno_engine.training.segmenter import SegmenterConfig, SegmenterResult, SegmenterStopped, train_segmenter_iter

    from .progress import show_progress

    if intensity not in INTENSITIES:
        raise typer.BadParameter(f"unknown intensity mode {intensity!r}; valid: {', '.join(INTENSITIES)}",
                                 param_hint="--intensity")
    dev = resolve_device_or_exit(device)
    with engine_errors(f"continue with: tonno segment train {export} --out {out} --resume"):
        cfg = SegmenterConfig(steps=steps, patch=patch, batch_size=batch_size, lr=lr, lesion_fraction=lesion_fraction,
                              cache_cases=cache_cases, seed=seed, device=str(dev), intensity=intensity)
        for event in show_progress(train_segmenter_iter(export, out, cfg, resume=resume), "segment train", quiet=quiet):
            if isinstance(event, SegmenterStopped):
                fail(f"stopped by {event.signal} after step {event.done}; continue with --resume", 143)
            if isinstance(event, SegmenterResult):
                print(f"segmenter: {event.checkpoint} ({event.steps} steps)")
                return
    fail("training ended without a result")  # pragma: no cover


@segment_app.command("predict")
def predict(
    checkpoint: Path = typer.Argument(..., help="segmenter.pt of tonno segment train."),
    source: str = typer.Argument(..., help="An image, a DICOM series folder, a folder of images or a labels CSV (its "
                                           "case and image columns, or image_0000, image_0001, … for a segmenter of "
                                           "several images per case; labels are not read)." + INPUT_URL_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: <case>_stage2.nii.gz lesion probabilities."),
    overlap: float = typer.Option(0.25, min=0.0, max=0.9, help="Sliding-window overlap."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the predictions in --out that another "
                                                              "segmenter made (refused without it)."),
    id_column: IdColumnOpt = None,
    output_format: FormatOpt = "nifti",
    store: StoreOpt = None,
    device: DeviceOpt = DEVICE,
    quiet: QuietOpt = False,
) -> None:
    """Predict lesion probabilities; rerunning skips what is up to date; exit 1 if a case failed. One segmenter's
    predictions per folder, one writer at a time (docs/faults.md)."""
    from tonno_engine.apps.dicom_outputs import DicomOptions
    from tonno_engine.apps.stage2 import PredictResult, predict_iter
    from tonno_engine.base.events import Notice

    from .progress import show_progress

    check_format(output_format)
    dev = resolve_device_or_exit(device)
    with engine_errors():
        events = predict_iter(checkpoint, source, out, device=str(dev), overlap=overlap, overwrite=overwrite,
                              id_column=id_column, dicom=DicomOptions(output_format, store=store))
        for event in show_progress(events, "predict", quiet=quiet):
            if isinstance(event, Notice):
                typer.echo(f"warning: {event.message}", err=True)
            if isinstance(event, PredictResult):
                print(f"{out}: {len(event.written)} written, {len(event.skipped)} up to date, {len(event.failed)} failed")
                if event.stored:
                    from tonno_engine.data.dicomweb import public_url

                    print(f"stored {event.stored} DICOM SEG object(s) at {public_url(store)}")
                for case, error in event.failed:
                    typer.echo(f"failed: {case}: {error}", err=True)
                if event.failed:
                    raise typer.Exit(1)
                return
    fail("prediction ended without a result")  # pragma: no cover
