"""``tonno evaluate``: lesion-wise precision/recall/F1, Dice, MaxIoU and balanced accuracy."""

from __future__ import annotations

from pathlib import Path

import typer

from tonno_engine.base.defaults import CONNECTIVITY

from .options import FindingsOpt, IdColumnOpt, QuietOpt, engine_errors, finite, parse_findings


def evaluate(
    pred: Path = typer.Argument(..., help="A heatmap NIfTI or a folder of them (<case>[_<method>].nii.gz)."),
    gt: Path = typer.Argument(..., help="Ground-truth masks: a NIfTI, a folder (<case>.nii.gz) or a labels CSV with masks."),
    out: Path = typer.Option(Path("metrics.csv"), "--out", "-o", help="CSV: one row per case, then the summary."),
    threshold: str = typer.Option("otsu", help="otsu, fixed:X (or X), percentile:P, each optionally with ,relative:F "
                                               "(raised to F × each heatmap's maximum); ignored with --val-pred."),
    val_pred: Path = typer.Option(None, help="Validation heatmaps: calibrate a fixed threshold (the level whose lesion "
                                             "F1, averaged with its neighbouring levels', is highest)."),
    val_gt: Path = typer.Option(None, help="Ground truth for --val-pred."),
    connectivity: int = typer.Option(CONNECTIVITY, min=6, max=26, help="Lesion connectivity: 6, 18 or 26."),
    masks: Path = typer.Option(None, help="Write the binary masks into this folder."),
    metrics: str = typer.Option("paper", help="paper (connected components, Table 2), instances (one-to-one matched "
                                              "lesions, PQ, HD95 and surface Dice in mm; the eval extra) or all."),
    iou_threshold: float = typer.Option(0.5, min=0.0, max=1.0, help="--metrics instances: IoU a match needs "
                                                                      "(below 0.5: optimal one-to-one assignment)."),
    tolerance_mm: float = typer.Option(2.0, min=0.0, callback=finite, help="--metrics instances: surface Dice tolerance in mm."),
    min_mm3: float = typer.Option(0.0, min=0.0, callback=finite, help="Drop predicted components smaller than this (mm³) before "
                                                    "scoring (e.g. a segmenter's speckles; docs/segmenter.md)."),
    missing_as_empty: bool = typer.Option(False, "--missing-as-empty", help="A ground-truth case without a heatmap "
                                          "(e.g. a failed reconstruction) counts as nothing detected instead of failing."),
    findings: FindingsOpt = None,
    id_column: IdColumnOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Binarise heatmaps and compare them with ground truth (docs/evaluation.md); exit 1 if a case fails. A heatmap
    folder that a run is still writing is evaluated as it stands, with a warning naming the run."""
    from tonno_engine.base.atomic import write_text_atomic
    from tonno_engine.evaluation.evaluate import (
        METRIC_SETS,
        EvaluationResult,
        InstanceOptions,
        being_written,
        calibrate_on_files,
        evaluate_iter,
        lesions_csv,
        lesions_path,
        pair_files,
        write_metrics_csv,
    )
    from tonno_engine.evaluation.metrics import Threshold

    from .progress import show_progress

    if connectivity not in (6, 18, 26):
        raise typer.BadParameter("must be 6, 18 or 26", param_hint="--connectivity")
    if metrics not in METRIC_SETS:
        raise typer.BadParameter(f"unknown metrics {metrics!r}; valid: {', '.join(METRIC_SETS)}", param_hint="--metrics")
    if iou_threshold <= 0:
        raise typer.BadParameter("must be > 0", param_hint="--iou-threshold")
    if (val_pred is None) != (val_gt is None):
        raise typer.BadParameter("give both --val-pred and --val-gt", param_hint="--val-pred/--val-gt")
    try:
        rule = Threshold.parse(threshold)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--threshold") from exc
    names = parse_findings(findings)
    failed = False
    with engine_errors():
        pairs = pair_files(pred, gt, findings=names, id_column=id_column)
        val_pairs = pair_files(val_pred, val_gt, findings=names, id_column=id_column) if val_pred is not None else None
        for notice in being_written(pred, val_pred):
            typer.echo(f"warning: {notice.message}", err=True)
        for finding in names or [""]:
            target = out.with_name(f"{out.stem}_{finding}{out.suffix}") if finding else out
            mine = [p for p in pairs if p.finding in (finding, "?")] if finding else pairs
            own_rule = rule
            if val_pairs is not None:
                own_rule, f1 = calibrate_on_files([p for p in val_pairs if p.finding == finding],
                                                  connectivity=connectivity)
                print(f"{finding + ': ' if finding else ''}calibrated threshold {own_rule.value:.6g} "
                      f"(validation lesion F1 {f1:.3f})")
            result = None
            events = evaluate_iter(mine, own_rule, connectivity=connectivity, masks_out=masks, metrics=metrics,
                                   instances=InstanceOptions(iou_threshold, tolerance_mm),
                                   missing_as_empty=missing_as_empty, min_mm3=min_mm3)
            for event in show_progress(events, "evaluate", quiet=quiet):
                if isinstance(event, EvaluationResult):
                    result = event
            write_metrics_csv(target, result)
            write_text_atomic(lesions_path(target), lesions_csv(result.lesions))
            failed |= _report(result, own_rule, metrics, iou_threshold, tolerance_mm, target, masks, finding)
    if failed:
        raise typer.Exit(1)


def _report(result, rule, metrics: str, iou_threshold: float, tolerance_mm: float, out: Path, masks, finding: str) -> bool:
    """Print the failures and the summary of one finding (or of all heatmaps); whether a case failed."""
    from tonno_engine.evaluation.evaluate import lesions_path

    lead = f"{finding}: " if finding else ""
    for row in result.failed:
        typer.echo(f"failed: {row['case']} ({row['heatmap']}): {row['error']}", err=True)
    for row in (r for r in result.rows if r["status"] == "missing"):
        typer.echo(f"missing: {row['case']} ({row['heatmap']}): counted as nothing detected", err=True)
    s = result.summary
    if s and metrics != "instances":
        print(f"{lead}{s['cases']} cases, {s['lesions']} lesions, threshold {rule}: precision {s['precision']:.3f}, "
              f"recall {s['recall']:.3f}, F1 {s['f1']:.3f}, Dice {s['dice']:.3f}, "
              f"balanced accuracy {s['balanced_accuracy']:.3f}")
    if s and metrics != "paper":
        print(f"{lead}instances (IoU > {iou_threshold:g}): precision {s['inst_precision']:.3f}, "
              f"recall {s['inst_recall']:.3f}, F1 {s['inst_f1']:.3f}, PQ {s['pq']:.3f}, SQ {s['sq']:.3f}; "
              f"HD95 {s['hd95_mm']:.2f} mm, surface Dice at {tolerance_mm:g} mm {s['nsd']:.3f}")
    print(f"{lead}metrics: {out}; lesions: {lesions_path(out)}" + (f"; masks: {masks}" if masks else ""))
    return bool(result.failed)
