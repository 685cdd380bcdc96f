"""``tonno selfcheck``: the paper's R_Σ check on a phantom of balls."""

from __future__ import annotations

import json

import typer

from tonno_engine.base.defaults import DEVICE, FIELD_OF_VIEW, GEOMETRY

from .options import DeviceOpt, QuietOpt, renamed, resolve_device_or_exit


def selfcheck(
    device: DeviceOpt = DEVICE,
    size: str = typer.Option("quick", help="Problem size: quick (32³, ~10 s on 2 CPU cores) or paper "
                                           "(64³, M=96, L=2000)."),
    preset: str = typer.Option(None, hidden=True, help="Deprecated spelling of --size."),
    hemisphere: bool = typer.Option(False, help="Use a hemisphere of directions."),
    geometry: str = typer.Option(GEOMETRY, help="paper: the two-balls phantom, judged in the unit ball; physical: balls "
                                               "in mm at 1 x 1 x 3 mm, two near the corners, judged over the whole volume."),
    field_of_view: str = typer.Option(FIELD_OF_VIEW, help="Physical geometry: full (every voxel in the unit ball) or ball."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    quiet: QuietOpt = False,
) -> None:
    """Reconstruct a phantom with the slice integral in place of the network; exit 1 if the correlation is
    below 0.97 or the relative error above 0.2 (physical geometry: 0.95 and 0.35 over the whole volume)."""
    from tonno_engine.apps.selfcheck import LIMITS, SIZES, SelfcheckResult, selfcheck_iter
    from tonno_engine.tomography.frames import FIELDS_OF_VIEW

    from .progress import show_progress

    size = renamed("--preset", "--size", preset, size)
    if size not in SIZES:
        raise typer.BadParameter(f"unknown size {size!r}; valid: {', '.join(SIZES)}", param_hint="--size")
    if geometry not in LIMITS:
        raise typer.BadParameter(f"unknown geometry {geometry!r}; valid: {', '.join(LIMITS)}", param_hint="--geometry")
    if field_of_view not in FIELDS_OF_VIEW:
        raise typer.BadParameter(f"unknown field of view {field_of_view!r}; valid: {', '.join(FIELDS_OF_VIEW)}",
                                 param_hint="--field-of-view")
    dev = resolve_device_or_exit(device)
    result = None
    events = selfcheck_iter(size, device=dev, hemisphere=hemisphere, geometry=geometry, field_of_view=field_of_view)
    for event in show_progress(events, "selfcheck", quiet=quiet):
        if isinstance(event, SelfcheckResult):
            result = event
    if as_json:
        print(json.dumps(result.as_dict()))
    else:
        verdict = "PASS" if result.passed else "FAIL"
        low, high = result.limits
        corners = (", corner balls at " + " and ".join(f"{c:.0%}" for c in result.corner_recovery) + " of their value"
                   if result.corner_recovery else "")
        shape = "×".join(str(k) for k in result.shape)
        print(f"selfcheck {verdict}: correlation {result.correlation:.4f} (>= {low}), "
              f"relative error {result.relative_error:.4f} (<= {high}){corners}, "
              f"{result.seconds:.1f} s on {result.device} "
              f"[{result.geometry} geometry, {shape} phantom, M={result.slices}, L={result.directions}, "
              f"{result.slice_size}² slices{', hemisphere' if result.hemisphere else ''}]")
    raise typer.Exit(0 if result.passed else 1)
