"""``tonno export nnunet``: pseudo-labels of a data set as an nnU-Net v2 raw data set (and a MONAI datalist)."""

from __future__ import annotations

from pathlib import Path

import typer

from tonno_engine.base.defaults import PSEUDO_LABEL_BAND, PSEUDO_LABEL_MARGIN_MM

from .options import IdColumnOpt, QuietOpt, engine_errors, fail, finite

export_app = typer.Typer(help="Export pseudo-labels for other tools (nnU-Net v2, MONAI).", no_args_is_help=True)


@export_app.command("nnunet")
def nnunet(
    data: Path = typer.Argument(..., help="Labels CSV or folder of the cases to label (their volume labels decide: "
                                          "a negative case is background everywhere)."),
    heatmaps: Path = typer.Option(..., "--heatmaps", help="Folder of <case>_<method>.nii.gz heatmaps (tonno reconstruct "
                                                         "or the heatmaps/ of tonno benchmark)."),
    out: Path = typer.Option(..., "--out", "-o", envvar="nnUNet_raw", help="nnU-Net's raw folder (default: $nnUNet_raw)."),
    method: str = typer.Option("tonno", help="The heatmaps' method label."),
    thresholds: Path = typer.Option(None, help="thresholds.json of tonno benchmark: the method's calibrated level "
                                               "(with its share of each heatmap's maximum)."),
    level: float = typer.Option(None, callback=finite, help="A level of your own (instead of --thresholds)."),
    percentile: float = typer.Option(None, help="Each heatmap's own level at this percentile (instead of --thresholds)."),
    test: Path = typer.Option(None, help="Cases without labels, written to imagesTs: an image, a folder of images "
                                         "(or of DICOM series) or a labels CSV (its case and image columns; labels "
                                         "are not read)."),
    annotations: Path = typer.Option(None, help="Reviewed cases from napari's Lesion candidates widget: "
                                                "<case>.nii.gz and <case>_decisions.csv; they replace the pseudo-labels."),
    band: float = typer.Option(PSEUDO_LABEL_BAND, min=0.0, max=1.0,
                               help="Ignore band: voxels above median + band·(level - median) "
                                    "that are not lesion are ignored (1: no band)."),
    margin_mm: float = typer.Option(PSEUDO_LABEL_MARGIN_MM, min=0.0, callback=finite,
                                    help="Ignore shell around each lesion component, in mm."),
    min_mm3: float = typer.Option(0.0, min=0.0, callback=finite,
                                  help="Smaller components above the level are ignored, not lesion."),
    dataset_id: int = typer.Option(501, "--id", min=1, max=999, help="nnU-Net data set id (Dataset<id>_<name>)."),
    name: str = typer.Option("TonnoLesions", help="Data set name."),
    intensity: str = typer.Option(None, help="ct (nnU-Net's CT normalisation) or mr/pet/robust (z-score); default: "
                                             "the data set's dataset.json. Cases of several images (image_0000, "
                                             "image_0001, … columns): one per image, e.g. pet,ct, or one for all "
                                             "(default: dataset.json's channels)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty data set folder."),
    allow_mismatch: bool = typer.Option(False, "--allow-mismatch",
                                        help="Export heatmaps of another checkpoint than the one --thresholds was "
                                             "calibrated on, or of several (recorded in tonno_export.json)."),
    finding: str = typer.Option(None, help="A classifier of several findings: export this finding's pseudo-labels "
                                           "(its column decides each case's class, its heatmaps <case>_<method>_"
                                           "<finding>; cases where it is unknown are left out; docs/findings.md)."),
    id_column: IdColumnOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Write Dataset<id>_<name>/ with imagesTr, labelsTr (0 background, 1 lesion, 2 ignore), imagesTs, dataset.json,
    datalist.json and tonno_export.json (docs/segmenter.md)."""
    from tonno_engine.apps.export_nnunet import (
        ExportConfig,
        ExportResult,
        dataset_name_problem,
        export_nnunet_iter,
        unlabelled_cases,
    )
    from tonno_engine.base.events import Notice
    from tonno_engine.data.channels import parse_names, resolve_channels
    from tonno_engine.data.dataset import (
        cases_of_finding,
        dataset_channel_specs,
        dataset_intensity,
        read_cases,
        read_dataset_meta,
    )
    from tonno_engine.evaluation.pseudo_labels import PseudoLabelRule
    from tonno_engine.evaluation.thresholds_file import read_thresholds
    from tonno_engine.models.checkpoint import finding_name_problem

    from .cmd_train import check_intensities
    from .progress import show_progress

    if sum(v is not None for v in (thresholds, level, percentile)) != 1:
        raise typer.BadParameter("give exactly one of --thresholds, --level, --percentile", param_hint="--thresholds")
    if percentile is not None and not 0.0 < percentile < 100.0:
        raise typer.BadParameter(f"must lie between 0 and 100, not {percentile}", param_hint="--percentile")
    check_intensities(intensity)
    if (problem := dataset_name_problem(name)) is not None:
        raise typer.BadParameter(problem, param_hint="--name")
    if not method or method != method.strip() or any(ch in method for ch in "/\\"):
        raise typer.BadParameter(f"must be a method label such as tonno or layercam-l2, got {method!r}",
                                 param_hint="--method")
    if finding is not None and (problem := finding_name_problem(finding)) is not None:
        raise typer.BadParameter(problem, param_hint="--finding")
    label = f"{method}_{finding}" if finding else method  # the heatmaps' (and thresholds.json's) method label
    with engine_errors("nothing was written; run it again"):
        if finding:
            cases, unknown = cases_of_finding(data, finding, id_column)
            if unknown:
                typer.echo(f"warning: {finding} is unknown in {len(unknown)} case(s), left out: "
                           f"{', '.join(unknown[:5])}{' …' if len(unknown) > 5 else ''}", err=True)
            if not cases:
                fail(f"{data}: {finding} is unknown in every case: nothing to export (docs/findings.md)")
        else:
            cases = read_cases(data, id_column=id_column)
        # the images of a case of several: their names and modes (dataset.json's, --intensity over them)
        specs = resolve_channels(len(cases[0].channels), dataset_channel_specs(data), (),
                                 parse_names(intensity, "--intensity", distinct=False), data)
        one = specs[0].intensity if len(specs) == 1 else None  # (a CSV of one image_0000 column)
        relative, calibrated_on, source = 0.0, None, "given"
        if thresholds is not None:
            calibration, source = read_thresholds(thresholds), str(thresholds)
            calibrated = calibration.threshold_for(label)
            level, relative = calibrated.value, calibrated.relative
            calibrated_on = calibration.checkpoint_sha256
            if calibrated_on is None:
                typer.echo(f"warning: {thresholds} names no checkpoint (written before tonno 0.4): whether it suits "
                           f"these heatmaps cannot be checked; run tonno benchmark again to get one that can",
                           err=True)
        cfg = ExportConfig(method=label, level=level, relative=relative, level_from=source, percentile=percentile,
                           rule=PseudoLabelRule(band=band, margin_mm=margin_mm, min_mm3=min_mm3), dataset_id=dataset_id,
                           name=name, intensity=None if len(specs) > 1 else one or intensity or dataset_intensity(data),
                           modality=read_dataset_meta(data).get("modality"), annotations=annotations, overwrite=overwrite,
                           calibrated_on=calibrated_on, allow_mismatch=allow_mismatch,
                           channels=tuple((s.name, s.intensity) for s in specs) if len(specs) > 1 else ())
        test_cases = unlabelled_cases(test) if test else []
        for event in show_progress(export_nnunet_iter(cases, test_cases, heatmaps, out, cfg), "export", quiet=quiet):
            if isinstance(event, Notice):
                typer.echo(f"warning: {event.message}", err=True)
            elif isinstance(event, ExportResult):
                print(f"{event.folder}: {event.training} training cases ({len(event.reviewed)} reviewed), "
                      f"{event.testing} test cases; nnU-Net integrity check: {event.nnunet_check}")
                return
    fail("export ended without a result")  # pragma: no cover
