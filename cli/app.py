"""The ``tonno`` Typer app, assembled here in one place. Each command lives in its own ``cmd_*`` module as a
plain typer-annotated function (or, for ``export`` and ``segment``, a group of them) that validates its
arguments, calls the engine and renders the result; no command module imports this one."""

from __future__ import annotations

import typer

from . import (
    cmd_benchmark,
    cmd_convert,
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

#: the commands in the order ``tonno --help`` lists them
COMMANDS = (cmd_benchmark.benchmark, cmd_demo.demo, cmd_evaluate.evaluate, cmd_info.info, cmd_methods.methods,
            cmd_train.train, cmd_pretrain.pretrain, cmd_reconstruct.reconstruct, cmd_selfcheck.selfcheck,
            cmd_synth.synth)
#: the command groups, by name
GROUPS = {"convert": cmd_convert.convert_app, "export": cmd_export.export_app, "segment": cmd_segment.segment_app}

app = typer.Typer(
    name="tonno",
    help="ToNNO: 3D heatmaps from a 2D slice classifier by tomographic reconstruction.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for _command in COMMANDS:
    app.command()(_command)
for _name, _group in GROUPS.items():
    app.add_typer(_group, name=_name)


def main() -> None:
    """Console-script entry point."""
    app()
