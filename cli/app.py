"""The ``tonno`` Typer app. Each command validates its arguments, calls the engine, renders the result."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="tonno",
    help="ToNNO: 3D heatmaps from a 2D slice classifier by tomographic reconstruction.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # Commands live in their own modules; importing them registers them on `app`.
    from . import (  # noqa: F401
        cmd_benchmark,
        cmd_demo,
        cmd_evaluate,
        cmd_export,
        cmd_info,
        cmd_methods,
        cmd_pretrain,
        cmd_reconstruct,
        cmd_segment,
        cmd_selfcheck,
        cmd_synth,
        cmd_train,
    )


def main() -> None:
    """Console-script entry point."""
    app()


_register()
