"""``tonno convert mosmed|autopet|duke RAW OUT``: a public data set, as its provider lays it out, as a labels CSV."""

from __future__ import annotations

from pathlib import Path

import typer

from .options import QuietOpt, engine_errors, fail

convert_app = typer.Typer(help="Write labels.csv (images referenced in place) and a report for a public data set, from "
                               "its provider's layout (docs/datasets.md).", no_args_is_help=True)

CheckOpt = typer.Option(False, "--check", help="Show the counts against the data set's published totals and list what "
                                               "is missing or unexpected; exit 1 when anything differs.")
#: how many entries of each list the terminal shows (report.md and report.json hold them all)
SHOWN = 20


def _lines(title: str, items: tuple[str, ...]) -> None:
    if items:
        typer.echo(f"{title} ({len(items)}):")
        for item in items[:SHOWN]:
            typer.echo(f"  {item}")
        if len(items) > SHOWN:
            typer.echo(f"  … and {len(items) - SHOWN} more (see the report)")


def _show(result, check: bool) -> None:
    """The summary of a finished conversion; with ``check``, the comparison, and exit 1 when it differs."""
    typer.echo(f"wrote {result.cases} cases to {result.csv} (report: {result.report})")
    for item in result.left_out[:SHOWN]:
        typer.echo(f"warning: left out {item}", err=True)
    if len(result.left_out) > SHOWN:
        typer.echo(f"warning: … and {len(result.left_out) - SHOWN} more left out (see the report)", err=True)
    if not check:
        return
    found = dict(result.found)
    typer.echo(f"check against the published totals of {result.published.name} ({result.published.source}):")
    for what, total in result.published.totals:
        typer.echo(f"  {what:<20} {found.get(what, 0):>6} of {total}{'' if found.get(what, 0) == total else '  ≠'}")
    _lines("missing", result.missing)
    _lines("unexpected", result.unexpected)
    if result.check_passed:
        typer.echo("check: matches the published totals")
        return
    fail(f"check: differs from the published totals ({len(result.differences)} count(s), {len(result.missing)} missing, "
         f"{len(result.unexpected)} unexpected; {result.report})")


def _run(events, name: str, check: bool, quiet: bool) -> None:
    from tonno_engine.data.convert.common import ConvertResult

    from .progress import show_progress

    result = None
    with engine_errors("nothing was written; run it again"):
        for event in show_progress(events, f"convert {name}", quiet=quiet):
            if isinstance(event, ConvertResult):
                result = event
    if result is None:  # pragma: no cover - every converter ends with its result
        fail(f"convert {name} ended without a result")
    _show(result, check)


@convert_app.command("mosmed")
def mosmed(
    raw: Path = typer.Argument(..., help="MosMedData's COVID19_1110 folder (studies/CT-0 … CT-4, masks/)."),
    out: Path = typer.Argument(..., help="Output folder: labels.csv (case,label,image,mask,grade[,split]), report."),
    check: bool = CheckOpt,
    paper_split: bool = typer.Option(False, "--paper-split", help="Add a split column: validation for every masked "
                                                                  "study (the paper's validation set), blank otherwise."),
    quiet: QuietOpt = False,
) -> None:
    """MosMedData: label 0 for CT-0, 1 otherwise; grade 0-4; the mask where one exists."""
    from tonno_engine.data.convert.mosmed import convert_mosmed

    _run(convert_mosmed(raw, out, paper_split=paper_split), "mosmed", check, quiet)


@convert_app.command("autopet")
def autopet(
    raw: Path = typer.Argument(..., help="AutoPET's NIfTI folder (PETCT_<id>/<study>/{CT,CTres,PET,SUV,SEG}.nii.gz)."),
    out: Path = typer.Argument(..., help="Output folder: labels.csv (case,label,image_0000,image_0001,mask,group), "
                                         "report."),
    check: bool = CheckOpt,
    quiet: QuietOpt = False,
) -> None:
    """AutoPET II: channels SUV and CTres, label 1 when SEG is not empty, SEG as the mask, group = patient."""
    from tonno_engine.data.convert.autopet import convert_autopet

    _run(convert_autopet(raw, out), "autopet", check, quiet)


@convert_app.command("duke")
def duke(
    raw: Path = typer.Argument(..., help="TCIA's Duke-Breast-Cancer-MRI download (Breast_MRI_NNN/<study>/<series>/)."),
    out: Path = typer.Argument(..., help="Output folder: images/ and masks/ (one NIfTI per breast), labels.csv "
                                         "(case,label,image,mask,group), report."),
    boxes: Path = typer.Option(..., "--boxes", help="The box sheet: Annotation_Boxes.xlsx (needs openpyxl) or CSV."),
    sequence: list[str] = typer.Option(None, "--sequence", help="Text of the series description to choose "
                                                                "(case-insensitive), repeatable: the first that a "
                                                                "patient's series hold wins. Default: 1st, 1ax, 1/ax "
                                                                "(the first post-contrast pass)."),
    check: bool = CheckOpt,
    quiet: QuietOpt = False,
) -> None:
    """Duke breast MRI: each breast a case (split at the body's midline), label 1 for the side holding the lesion's
    box, the box as its mask (for the box-based MaxIoU), group = patient."""
    from tonno_engine.data.convert.duke import DEFAULT_SEQUENCES, DukeRequest, convert_duke

    texts = tuple(s.strip() for s in sequence or ()) or DEFAULT_SEQUENCES
    if not all(texts):
        raise typer.BadParameter("must not be empty", param_hint="--sequence")
    _run(convert_duke(raw, out, DukeRequest(boxes, texts)), "duke", check, quiet)
