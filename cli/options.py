"""Options and helpers shared by several commands."""

from __future__ import annotations

from typing import Annotated

import typer

DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def resolve_device_or_exit(device: str):
    """The torch device for ``device``, or a clean usage error naming the bad value."""
    from tonno_engine.devices import resolve_device

    try:
        return resolve_device(device)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--device") from exc


def fail(message: str, code: int = 1):
    """Print ``message`` as an error on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
