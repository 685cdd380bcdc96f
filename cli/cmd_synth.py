"""``tonno synth``: write synthetic weak-label data (volumes, masks, labels.csv)."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from .options import QuietOpt, engine_errors, fail, finite


def synth(
    out: Path = typer.Argument(..., help="Output folder (must be empty or new)."),
    kind: str = typer.Option("phantom", help="phantom, brain or petct (two channels: PET and CT; lesions are hot "
                                             "spots that only CT tells from physiological uptake)."),
    n: int = typer.Option(40, "--n", min=2, help="Number of cases (half positive), at least 2."),
    seed: int = typer.Option(0, min=0, help="Random seed."),
    shape: str = typer.Option("", help="Volume shape as D,H,W (default 64,64,64 phantom and petct; 64,76,64 "
                                         "brain)."),
    max_lesions: int = typer.Option(3, min=1, help="Positive cases hold 1 to this many lesions."),
    difficulty: str = typer.Option("ms", help="brain: large (the demo's lesions), ms (MS-like small lesions) or hard "
                                                "(smaller, fainter lesions among lesion-like blobs in grey matter in "
                                                "every case)."),
    lesion_radius: str = typer.Option("", help="Brain lesion semi-axes MIN,MAX in voxels per 64 voxels of the template "
                                               "grid (default: the difficulty's; ms is 1.8,3.8, the demo uses 3.5,6)."),
    spacing: str = typer.Option("", help="Re-acquire every case with voxels of this size in mm, e.g. 0.8,0.8,4 "
                                         "(thick slices average, like CT): the same anatomy on an anisotropic grid."),
    oblique: float = typer.Option(0.0, min=-89.0, max=89.0, help="Tilt the affine by this many degrees (oblique scans)."),
    contrast_scale: float = typer.Option(1.0, min=0.01, callback=finite,
                                         help="brain: multiply the lesions' contrast (0.5: half as bright above "
                                              "white matter)."),
    bias_field: float = typer.Option(0.0, min=0.0, max=2.0, help="brain: a slowly varying multiplicative field "
                                                                "exp(b·g), g of unit std (0.3: ±30 %% across the head)."),
    image_format: str = typer.Option("nifti", "--format", help="Images as nifti (.nii.gz) or dicom (one series folder "
                                                              "per case; not petct); masks are NIfTI either way."),
    findings: str = typer.Option("", help="brain: several findings, each in half the cases independently: "
                                           "bright (ovoids), ring (dark core, bright rim), elongated; comma-separated "
                                           "(or 'all'). A column and a mask per finding (docs/findings.md)."),
    unknown: float = typer.Option(0.0, min=0.0, max=0.99, help="--findings: the fraction of finding labels left "
                                                               "blank (unknown) in labels.csv."),
    prevalence: float = typer.Option(0.5, min=0.01, max=0.99, help="--findings: the fraction of cases each finding "
                                                                  "is present in (e.g. 0.15: a rare finding)."),
    overwrite: bool = typer.Option(False, help="Write into a non-empty folder."),
    quiet: QuietOpt = False,
) -> None:
    """Write synthetic weak-label volumes, lesion masks and labels.csv (the project's benchmark data)."""
    from tonno_engine.base.atomic import make_output_folder
    from tonno_engine.data.synth import DIFFICULTIES, FINDING_TYPES, IMAGE_FORMATS, KINDS, SynthRequest, synthesize
    from tonno_engine.tomography.frames import check_spacing

    from .progress import show_progress

    try:
        dims = tuple(int(k) for k in shape.replace("x", ",").split(",")) if shape else None
    except ValueError:
        raise typer.BadParameter(f"shape must look like 64,64,64, got {shape!r}", param_hint="--shape") from None
    if dims is not None and (len(dims) != 3 or min(dims) < 16):
        raise typer.BadParameter(f"shape must be three sizes >= 16, got {shape!r}", param_hint="--shape")
    try:
        mm = check_spacing(spacing.replace("x", ",").split(",")) if spacing else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--spacing") from None
    try:
        radius = tuple(float(r) for r in lesion_radius.split(",")) if lesion_radius else None
    except ValueError:
        radius = ()
    if radius is not None and (len(radius) != 2 or not 0 < radius[0] <= radius[1] < math.inf):
        raise typer.BadParameter(f"must be MIN,MAX with 0 < MIN <= MAX, got {lesion_radius!r}", param_hint="--lesion-radius")
    if kind not in KINDS:
        raise typer.BadParameter(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}", param_hint="--kind")
    if difficulty not in DIFFICULTIES:
        raise typer.BadParameter(f"unknown difficulty {difficulty!r}; valid: {', '.join(DIFFICULTIES)}",
                                 param_hint="--difficulty")
    if image_format not in IMAGE_FORMATS:
        raise typer.BadParameter(f"unknown format {image_format!r}; valid: {', '.join(IMAGE_FORMATS)}", param_hint="--format")
    if kind == "petct" and image_format == "dicom":
        raise typer.BadParameter("petct writes two channels (PET and CT) per case, and a DICOM series holds one: "
                                 "use --format nifti", param_hint="--format")
    types = FINDING_TYPES if findings == "all" else tuple(f.strip() for f in findings.split(",")) if findings else ()
    if any(t not in FINDING_TYPES for t in types) or len(set(types)) != len(types):
        raise typer.BadParameter(f"must be distinct names of {', '.join(FINDING_TYPES)} (or all), got {findings!r}",
                                 param_hint="--findings")
    if types and kind != "brain":
        raise typer.BadParameter("findings are made in brains: add --kind brain", param_hint="--findings")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        fail(f"{out}: folder is not empty (use --overwrite)")
    with engine_errors():
        make_output_folder(out)
        request = SynthRequest(kind=kind, n=n, seed=seed, shape=dims, max_lesions=max_lesions, lesion_radius=radius,
                               spacing=mm, oblique=oblique, image_format=image_format, difficulty=difficulty,
                               contrast_scale=contrast_scale, bias_field=bias_field, findings=types, unknown=unknown,
                               prevalence=prevalence)
        events = synthesize(out, request)
        for _ in show_progress(events, f"synth {kind}", quiet=quiet):
            pass
    also = f"; findings {','.join(types)}: train with --findings {','.join(types)}" if types else ""
    print(f"wrote {n} {kind} cases to {out} (labels: {out / 'labels.csv'}{also})")
