"""``tonno reconstruct``: heatmaps for a file, a folder or a labels CSV, with any method."""

from __future__ import annotations

from pathlib import Path

import typer

from tonno_engine.catalog import QUALITY_PRESETS, preset_help

from .app import app
from .options import DeviceOpt, QuietOpt, fail, parse_methods, resolve_device_or_exit


def _method_help() -> str:
    from tonno_engine.catalog import METHODS

    return "Method(s), repeatable or comma-separated. " + "; ".join(f"{k}: {v}" for k, v in METHODS.items()) + "."


@app.command()
def reconstruct(
    source: Path = typer.Option(..., "--input", "-i", help="A NIfTI file, a folder of them, or a labels CSV."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for heatmaps, summary.csv and run.json."),
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="A checkpoint written by `tonno train`."),
    method: list[str] = typer.Option(["tonno"], "--method", "-m", help=_method_help()),
    cam: str = typer.Option("layercam", help="CAM for averaged-cam/tomographic-cam: gradcam, layercam, gradcam++, scorecam."),
    layer: int = typer.Option(2, min=1, max=4, help="Encoder layer (1-4) the CAMs read."),
    axes: int = typer.Option(1, help="Slice-wise CAMs: 1 = axial slices, 3 = mean over the three axes."),
    preset: str = typer.Option("paper", help=preset_help() + " (preview: a fast CPU preview)."),
    slices: int = typer.Option(None, help="M: slices per direction (M+2 are cut); overrides the preset."),
    angles: int = typer.Option(None, help="L: directions; overrides the preset."),
    hemisphere: bool = typer.Option(None, "--hemisphere/--sphere", help="Directions on a hemisphere (same planes, "
                                                                       "half the cost) or the sphere; overrides the preset."),
    slice_size: int = typer.Option(None, help="Slice side in pixels (default: the checkpoint's)."),
    batch_size: int = typer.Option(None, help="Slices per network call (default 64 on CPU, 1024 on GPU)."),
    device: DeviceOpt = "auto",
    resume: bool = typer.Option(False, "--continue", help="Skip cases whose output already exists."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo cases whose output already exists."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the network, slicing and backprojection "
                                                          "(GPU; compiles once per shape, tens of seconds)."),
    quiet: QuietOpt = False,
) -> None:
    """Reconstruct 3D heatmaps; a bad case is reported and the batch goes on (exit 1 at the end)."""
    from tonno_engine.batch import BatchConfig, BatchResult, reconstruct_batch_iter
    from tonno_engine.errors import DataError

    from .progress import show_progress

    dev = resolve_device_or_exit(device)
    if preset not in QUALITY_PRESETS:
        raise typer.BadParameter(f"unknown preset {preset!r}; valid: {', '.join(QUALITY_PRESETS)}", param_hint="--preset")
    quality = QUALITY_PRESETS[preset]
    slices = quality["slices"] if slices is None else slices
    angles = quality["angles"] if angles is None else angles
    hemisphere = quality["hemisphere"] if hemisphere is None else hemisphere
    specs = parse_methods(method, cam=cam, layer=layer, axes=axes)
    cfg = BatchConfig(methods=specs, slices=slices, angles=angles, hemisphere=hemisphere, slice_size=slice_size,
                      batch_size=batch_size, device=str(dev), resume=resume, overwrite=overwrite,
                      compile=compile)
    print(f"device: {dev}", flush=True)
    result = None
    try:
        for event in show_progress(reconstruct_batch_iter(source, out, checkpoint, cfg), "reconstruct", quiet=quiet):
            if isinstance(event, BatchResult):
                result = event
            elif event.stage == "cases":
                for row in event.info["rows"]:
                    if row["status"] == "failed":
                        typer.echo(f"failed: {row['case']} ({row['method']}): {row['error']}", err=True)
            elif event.stage == "oom":
                typer.echo(f"out of memory on {event.info['case']}: retrying with batch size {event.info['batch_size']}",
                           err=True)
    except (DataError, ValueError) as exc:
        fail(str(exc))
    print(f"{result.count('ok')} done, {result.count('skipped')} skipped, {result.count('failed')} failed; "
          f"heatmaps, summary.csv and run.json in {result.out}")
    if result.failed:
        for row in result.failed:
            typer.echo(f"  failed: {row['case']} ({row['method']}): {row['error']}", err=True)
        raise typer.Exit(1)
