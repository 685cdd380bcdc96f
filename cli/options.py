"""Options and helpers shared by several commands."""

from __future__ import annotations

import contextlib
import math
from typing import Annotated

import typer

from tonno_engine.base.defaults import SOLVER_STRENGTH
from tonno_engine.training.config import RECIPE_PURPOSES

DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


RECIPE_HELP = ("Training defaults: " + "; ".join(f"{name} ({purpose})" for name, purpose in RECIPE_PURPOSES.items())
               + ". Options given override it.")


def resolve_device_or_exit(device: str):
    """The torch device for ``device``, or a clean usage error naming the bad value."""
    from tonno_engine.base.devices import resolve_device

    try:
        return resolve_device(device)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--device") from exc


def fail(message: str, code: int = 1):
    """Print ``message`` as an error on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def engine_errors(interrupted: str = ""):
    """Turn the engine's errors about data and files (bad input, a missing file, an output that
    cannot be written, a full disk, a killed loader process) into one line on stderr and exit 1, never
    a traceback; Ctrl-C into ``interrupted: <hint>`` and exit 130; work a signal stopped (:class:`Stopped`) into
    its line and exit 128 + the signal's number (143 for SIGTERM)."""
    import signal

    from tonno_engine.base.errors import MissingExtra, ResourceError, Stopped

    try:
        yield
    except KeyboardInterrupt:
        fail("interrupted" + (f"; {interrupted}" if interrupted else ""), 130)
    except Stopped as exc:
        fail(str(exc), 128 + getattr(signal, exc.signal.split()[0], signal.SIGTERM))
    except (ValueError, OSError, MissingExtra, ResourceError) as exc:  # DataError is a ValueError
        fail(str(exc) if not isinstance(exc, OSError) or not exc.filename else f"{exc.filename}: {exc.strerror}")


def renamed(old: str, new: str, old_value, new_value):
    """The value of option ``new``, taking ``old``'s (a deprecated spelling) with a warning when given."""
    if old_value is None:
        return new_value
    typer.echo(f"warning: {old} is deprecated and will be removed in the next release; use {new}", err=True)
    return old_value


def finite(param: typer.CallbackParam, value: float | None) -> float | None:
    """Option callback: a usage error naming the option for ``nan`` or ``±inf``. Typer's ``min=`` and ``max=``
    refuse ``nan``, but ``inf`` passes a ``min=`` alone."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, got {value}", param_hint=param.opts[0])
    return value


def positive(param: typer.CallbackParam, value: float | None) -> float | None:
    """Option callback: a finite number > 0 (a learning rate), else a usage error naming the option."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be a finite number > 0, got {value}", param_hint=param.opts[0])
    return value


def segmenter_patch(param: typer.CallbackParam, value: int) -> int:
    """Option callback: a segmenter patch side the U-Net can take (a multiple of 8), else a usage error."""
    from tonno_engine.models.segmenter import patch_problem

    if (problem := patch_problem(value)) is not None:
        raise typer.BadParameter(problem, param_hint=param.opts[0])
    return value


def check_encoder(model: str | None, norm: str | None) -> None:
    """Usage errors for a ``--model`` timm does not know and an unknown ``--norm`` (``None``: not given)."""
    from tonno_engine.models.encoders import NORMS, model_problem

    check_named(norm, NORMS, "norm", "--norm")
    if model is not None and (problem := model_problem(model)) is not None:
        raise typer.BadParameter(problem, param_hint="--model")


IterationsOpt = Annotated[int, typer.Option(
    "--iterations", min=0, help="Iterative methods: the most CGLS steps (they stop earlier at a small residual).")]
RegulariserOpt = Annotated[str, typer.Option(
    "--regulariser", help="Iterative methods: none, tv (total variation, edge-preserving) or gradient (smooth).")]
StrengthOpt = Annotated[float, typer.Option(
    "--strength", min=0.0, callback=finite,
    help=f"Iterative methods: the regulariser's weight against the data (default {SOLVER_STRENGTH:g} with one).")]
NonnegativeOpt = Annotated[bool, typer.Option("--nonnegative", help="Iterative methods: keep the heatmap >= 0.")]


def solver_settings(*, iterations: int, regulariser: str, strength: float | None, nonnegative: bool):
    """The iterative methods' ``SolverSettings`` from their options; a bad one is a usage error."""
    from tonno_engine.base.solver_settings import SolverSettings

    if strength is None:
        strength = SOLVER_STRENGTH if regulariser != "none" else 0.0
    try:
        return SolverSettings(iterations=iterations, regulariser=regulariser, strength=strength, nonnegative=nonnegative)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--regulariser/--strength") from exc


def parse_methods(method: list[str] | None, *, cam: str, layer: int, axes: int = 1, solver=None) -> list:
    """``--method`` values (repeatable, comma-separated) as distinct ``MethodSpec``s, in order; ``solver``
    (``SolverSettings``) goes to the iterative ones, and is a usage error when none is chosen. A bad
    name, CAM, layer or axes is a usage error naming the option."""
    from tonno_engine.base.registry import MethodSpec, solving_methods
    from tonno_engine.base.solver_settings import SolverSettings

    names = [n.strip() for item in (method or []) for n in item.split(",") if n.strip()]
    try:
        specs = [MethodSpec(n, cam=cam, layer=layer, axes=axes) for n in names]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--method/--cam/--axes") from exc
    if solver is not None and solver != SolverSettings():
        if not any(s.solves for s in specs):
            raise typer.BadParameter("--iterations, --regulariser, --strength and --nonnegative apply to the iterative "
                                     f"methods ({', '.join(solving_methods())}); none is chosen", param_hint="--method")
        specs = [MethodSpec(s.name, cam=cam, layer=layer, axes=axes, solver=solver) if s.solves else s for s in specs]
    return list(dict.fromkeys(specs))


def method_help() -> str:
    from tonno_engine.base.registry import describe_methods

    return "Method(s), repeatable or comma-separated (`tonno methods` lists them): " + describe_methods() + "."


def cam_help() -> str:
    from tonno_engine.base.registry import CAMS

    return "CAM for the methods that read CAM maps: " + ", ".join(CAMS) + "."


def quality_settings(quality: str, **overrides):
    """The named reconstruction preset with the options the user set; usage errors name the option."""
    from tonno_engine.methods.settings import preset

    try:
        return preset(quality).override(overrides)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--quality") from exc


def quality_help() -> str:
    from tonno_engine.methods.settings import presets_help

    return "Reconstruction quality preset: " + presets_help() + "."


GEOMETRY_HELP = ("paper: every array axis spans [-1, 1] (the paper's); physical: one isotropic scale from the voxel "
                 "spacing, slices isometric in mm (for anisotropic CT/MR).")
FIELD_OF_VIEW_HELP = "Physical geometry: full (every voxel, corners included, inside the unit ball) or ball."


def check_named(value, valid, what: str, param_hint: str):
    """``value`` when it is ``None`` or one of ``valid``; else a usage error ``unknown <what> 'x'; valid: …``."""
    if value is not None and value not in valid:
        raise typer.BadParameter(f"unknown {what} {value!r}; valid: {', '.join(valid)}", param_hint=param_hint)
    return value


def check_choice(value, valid, param_hint: str):
    """``value`` when it is ``None`` or one of ``valid``; a usage error naming the option otherwise."""
    if value is not None and value not in valid:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(valid)}", param_hint=param_hint)
    return value


def check_geometry(geometry, field_of_view):
    """Usage errors for an unknown ``--geometry`` or ``--field-of-view``."""
    from tonno_engine.tomography.frames import FIELDS_OF_VIEW, GEOMETRIES

    return check_choice(geometry, GEOMETRIES, "--geometry"), check_choice(field_of_view, FIELDS_OF_VIEW, "--field-of-view")


def is_rank_zero() -> bool:
    """False in every process but the first under ``torchrun`` (``RANK`` set above 0)."""
    import os

    return int(os.environ.get("RANK", "0")) == 0


FindingsOpt = Annotated[str, typer.Option(
    "--findings", help="Several findings: their 0/1 columns in the labels CSV, comma-separated, one logit and one "
                       "heatmap each (blank, nan or -1: unknown; docs/findings.md). Default: the label column.")]
IdColumnOpt = Annotated[str, typer.Option(
    "--id-column", help="The labels CSV's case column when it is not 'case' (e.g. CT-RATE's VolumeName; without an "
                        "image column the id is the image's path relative to the CSV).")]


def parse_findings(text: str | None) -> list[str] | None:
    """``--findings a,b,c`` as a list (``None`` when not given); a usage error for an empty, repeated or
    unusable name."""
    if text is None:
        return None
    from tonno_engine.models.checkpoint import finding_name_problem

    names = [n.strip() for n in text.split(",")]
    for name in names:
        if (problem := finding_name_problem(name)) is not None:
            raise typer.BadParameter(problem, param_hint="--findings")
    if len(set(names)) != len(names):
        raise typer.BadParameter(f"a finding is named twice in {text!r}", param_hint="--findings")
    return names


FormatOpt = Annotated[str, typer.Option(
    "--format", help="nifti, or dicom: also each output as a DICOM object of its source series (a Parametric Map of a "
                     "heatmap, a SEG of a mask) beside the NIfTI; DICOM input only (docs/dicom.md).")]
StoreOpt = Annotated[str, typer.Option(
    "--store", help="With --format dicom: send the DICOM objects written to this DICOMweb server (STOW-RS, "
                    "https://host/dicom-web). Credentials from TONNO_DICOMWEB_TOKEN, TONNO_DICOMWEB_USER and "
                    "TONNO_DICOMWEB_PASSWORD, or netrc; never in the URL.")]
INPUT_URL_HELP = (" Or a DICOMweb series URL (https://host/dicom-web/studies/<UID>/series/<UID>), or a study URL that "
                  "holds one image series.")


def check_format(value: str) -> str:
    """``--format``: a usage error for anything but nifti or dicom."""
    from tonno_engine.apps.dicom_outputs import FORMATS

    return check_choice(value, FORMATS, "--format")
