"""``tonno reconstruct``: heatmaps for a file, a folder or a labels CSV, with any method."""

from __future__ import annotations

from pathlib import Path

import typer

from tonno_engine.base.defaults import CAM, CAM_LAYER, DEVICE, QUALITY, SOLVER_ITERATIONS

from .options import (
    FIELD_OF_VIEW_HELP,
    GEOMETRY_HELP,
    INPUT_URL_HELP,
    DeviceOpt,
    FormatOpt,
    IdColumnOpt,
    IterationsOpt,
    NonnegativeOpt,
    QuietOpt,
    RegulariserOpt,
    StoreOpt,
    StrengthOpt,
    cam_help,
    check_format,
    check_geometry,
    engine_errors,
    is_rank_zero,
    method_help,
    parse_findings,
    parse_methods,
    quality_help,
    quality_settings,
    renamed,
    resolve_device_or_exit,
    solver_settings,
)


def reconstruct(
    source: str = typer.Option(..., "--input", "-i", help="A NIfTI file, a DICOM series folder, a folder of them, or "
                                                          "a labels CSV (its case and image columns; labels are not "
                                                          "read)." + INPUT_URL_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for heatmaps, summary.csv and run.json."),
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="A checkpoint written by `tonno train`."),
    method: list[str] = typer.Option(["tonno"], "--method", "-m", help=method_help()),
    cam: str = typer.Option(CAM, help=cam_help()),
    layer: int = typer.Option(CAM_LAYER, min=1, max=4, help="Encoder layer (1-4) the CAMs read."),
    axes: int = typer.Option(1, min=1, max=3, help="Slice-wise CAMs: 1 = axial slices, 3 = mean over the three axes."),
    quality: str = typer.Option(QUALITY, help=quality_help()),
    preset: str = typer.Option(None, hidden=True, help="Deprecated spelling of --quality."),
    slices: int = typer.Option(None, min=3, help="M: slices per direction (M+2 are cut); overrides the preset."),
    directions: int = typer.Option(None, min=1, help="L: directions; overrides the preset."),
    angles: int = typer.Option(None, min=1, hidden=True, help="Deprecated spelling of --directions."),
    hemisphere: bool = typer.Option(None, "--hemisphere/--sphere", help="Directions on a hemisphere (same planes, "
                                                                       "half the cost) or the sphere; overrides the preset."),
    slice_size: int = typer.Option(None, min=2, help="Slice side in pixels (default: the checkpoint's)."),
    batch_size: int = typer.Option(None, min=1, help="Slices per network call (default 64 on CPU, 1024 on GPU)."),
    geometry: str = typer.Option(None, help=GEOMETRY_HELP + " Default: the checkpoint's."),
    field_of_view: str = typer.Option(None, help=FIELD_OF_VIEW_HELP + " Default: the checkpoint's."),
    iterations: IterationsOpt = SOLVER_ITERATIONS,
    regulariser: RegulariserOpt = "none",
    strength: StrengthOpt = None,
    nonnegative: NonnegativeOpt = False,
    device: DeviceOpt = DEVICE,
    resume: bool = typer.Option(False, "--continue", help="Skip cases whose output already exists."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo cases whose output already exists."),
    num_parts: int = typer.Option(1, min=1, help="Split the cases into this many parts, balanced by volume size "
                                                  "(a job array; under torchrun the ranks are the parts)."),
    part_id: int = typer.Option(0, min=0, help="Which part (0-based) this process reconstructs; with --num-parts."),
    shard_directions: bool = typer.Option(False, "--shard-directions",
                                          help="Under torchrun: every rank takes a well-spread subset of the "
                                               "directions of each case; rank 0 sums them and writes (one huge volume)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the network, slicing and backprojection "
                                                          "(GPU; compiles once per shape, tens of seconds)."),
    findings: str = typer.Option(None, "--findings", help="A classifier of several findings: make heatmaps of these "
                                                          "(comma-separated; default: every finding, each "
                                                          "<case>_<method>_<finding>.nii.gz, from one pass)."),
    id_column: IdColumnOpt = None,
    output_format: FormatOpt = "nifti",
    thresholds: Path = typer.Option(None, "--thresholds", help="With --format dicom: a thresholds.json of tonno "
                                                                "benchmark; each heatmap binarised at its method's "
                                                                "calibrated level is written as a DICOM SEG too."),
    store: StoreOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Reconstruct 3D heatmaps; a bad case is reported and the batch goes on (exit 1 at the end)."""
    from tonno_engine.apps.batch import BatchConfig, BatchResult, BatchSizeHalved, CaseFinished, reconstruct_batch_iter
    from tonno_engine.apps.dicom_outputs import DicomOptions
    from tonno_engine.base.events import Notice

    from .progress import show_progress

    geometry, field_of_view = check_geometry(geometry, field_of_view)
    check_format(output_format)
    settings = quality_settings(renamed("--preset", "--quality", preset, quality), slices=slices,
                                directions=renamed("--angles", "--directions", angles, directions),
                                hemisphere=hemisphere, slice_size=slice_size, batch_size=batch_size,
                                compile=compile or None, geometry=geometry, field_of_view=field_of_view)
    specs = parse_methods(method, cam=cam, layer=layer, axes=axes,
                          solver=solver_settings(iterations=iterations, regulariser=regulariser, strength=strength,
                                                 nonnegative=nonnegative))
    if resume and overwrite:
        raise typer.BadParameter("--continue and --overwrite exclude each other", param_hint="--continue/--overwrite")
    if part_id >= num_parts:
        raise typer.BadParameter(f"must be in 0..{num_parts - 1} (--num-parts {num_parts})", param_hint="--part-id")
    dev = resolve_device_or_exit(device)
    cfg = BatchConfig(methods=specs, settings=settings, device=str(dev), resume=resume, overwrite=overwrite,
                      num_parts=num_parts, part_id=part_id, shard_directions=shard_directions,
                      findings=parse_findings(findings), id_column=id_column,
                      dicom=DicomOptions(output_format, thresholds, store))
    if is_rank_zero():  # under torchrun one rank reports
        print(f"device: {dev}", flush=True)
    quiet = quiet or not is_rank_zero()
    result = None
    hint = f"the heatmaps written so far are complete; finish with the same command and --continue (into {out})"
    with engine_errors(interrupted=hint):
        for event in show_progress(reconstruct_batch_iter(source, out, checkpoint, cfg), "reconstruct", quiet=quiet):
            if isinstance(event, Notice):
                typer.echo(f"warning: {event.message}", err=True)
            elif isinstance(event, BatchResult):
                result = event
            elif isinstance(event, CaseFinished):
                for f in event.failures:
                    typer.echo(f"failed: {f.case} ({f.method}): {f.error}", err=True)
            elif isinstance(event, BatchSizeHalved):
                typer.echo(f"out of memory on {event.case}: retrying with batch size {event.batch_size}", err=True)
    if not result.writer:  # a rank that only contributed directions: rank 0 reports
        return
    part = f"part {result.part + 1} of {result.parts}: " if result.parts > 1 else ""
    print(f"{part}{result.count('ok')} done, {result.count('skipped')} skipped, {result.count('failed')} failed; "
          f"heatmaps, summary.csv and run.json in {result.out}")
    if result.stored:
        from tonno_engine.data.dicomweb import public_url

        print(f"stored {result.stored} DICOM object(s) at {public_url(store)}")
    if result.failures:
        for f in result.failures:
            typer.echo(f"  failed: {f.case} ({f.method}): {f.error}", err=True)
        raise typer.Exit(1)
