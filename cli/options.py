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


def parse_methods(method: list[str] | None, *, cam: str, layer: int, axes: int = 1) -> list:
    """``--method`` values (repeatable, comma-separated) as distinct ``MethodSpec``s, in order;
    a bad name, CAM, layer or axes is a usage error naming the option."""
    from tonno_engine.methods import MethodSpec

    names = [n.strip() for item in (method or []) for n in item.split(",") if n.strip()]
    try:
        return list(dict.fromkeys(MethodSpec(n, cam=cam, layer=layer, axes=axes) for n in names))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--method/--cam/--axes") from exc
