"""``tonno selfcheck``: the paper's R_Σ check on a phantom of balls."""

from __future__ import annotations

import json

import typer

from .app import app
from .options import DeviceOpt, QuietOpt, renamed, resolve_device_or_exit


@app.command()
def selfcheck(
    device: DeviceOpt = "auto",
    size: str = typer.Option("quick", help="Problem size: quick (32³, ~10 s on 2 CPU cores) or paper "
                                           "(64³, M=96, L=2000)."),
    preset: str = typer.Option(None, hidden=True, help="Deprecated spelling of --size."),
    hemisphere: bool = typer.Option(False, help="Use a hemisphere of directions."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    quiet: QuietOpt = False,
) -> None:
    """Reconstruct a phantom with the slice integral in place of the network; exit 1 if the
    correlation inside the unit ball is below 0.97 or the relative error above 0.2."""
    from tonno_engine.apps.selfcheck import MAX_RELATIVE_ERROR, MIN_CORRELATION, SIZES, SelfcheckResult, selfcheck_iter

    from .progress import show_progress

    size = renamed("--preset", "--size", preset, size)
    if size not in SIZES:
        raise typer.BadParameter(f"unknown size {size!r}; valid: {', '.join(SIZES)}", param_hint="--size")
    dev = resolve_device_or_exit(device)
    result = None
    for event in show_progress(selfcheck_iter(size, device=dev, hemisphere=hemisphere), "selfcheck", quiet=quiet):
        if isinstance(event, SelfcheckResult):
            result = event
    if as_json:
        print(json.dumps(result.as_dict()))
    else:
        verdict = "PASS" if result.passed else "FAIL"
        print(f"selfcheck {verdict}: correlation {result.correlation:.4f} (>= {MIN_CORRELATION}), "
              f"relative error {result.relative_error:.4f} (<= {MAX_RELATIVE_ERROR}), "
              f"{result.seconds:.1f} s on {result.device} "
              f"[{result.shape[0]}³ phantom, M={result.slices}, L={result.angles}, {result.slice_size}² slices"
              f"{', hemisphere' if result.hemisphere else ''}]")
    raise typer.Exit(0 if result.passed else 1)
