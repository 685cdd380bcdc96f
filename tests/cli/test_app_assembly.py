"""The CLI without an import circle: ``tonno_cli.app`` assembles the Typer app from command modules that
do not import it (checked on the import graph, and shown failing on a copy with the circle planted)."""

import shutil
from pathlib import Path

import grimp
import typer.main

CLI = Path(__file__).resolve().parents[2] / "cli"


def import_problems(package: str) -> tuple[list[tuple[str, str]], list[str]]:
    """``package``'s import cycles (pairs of modules that import each other, directly or not) and the
    ``cmd_*`` modules that import its ``app`` module."""
    graph = grimp.build_graph(package)
    cycles = sorted((a, b) for a in graph.modules for b in graph.find_modules_directly_imported_by(a)
                    if a < b and graph.chain_exists(importer=b, imported=a))
    app = f"{package}.app"
    commands = sorted(m for m in graph.modules if m.startswith(f"{package}.cmd_")
                      and graph.chain_exists(importer=m, imported=app))
    return cycles, commands


def test_the_cli_has_no_import_cycle_and_no_command_imports_the_app():
    cycles, commands = import_problems("tonno_cli")
    assert cycles == [] and commands == []
    assert len(grimp.build_graph("tonno_cli").find_modules_directly_imported_by("tonno_cli.app")) >= 12


def test_a_command_importing_the_app_is_caught(tmp_path, monkeypatch):
    """The same check on a copy of the CLI where one command imports the app again (the old circle)."""
    shutil.copytree(CLI, tmp_path / "planted_cli", ignore=shutil.ignore_patterns("__pycache__"))
    info = tmp_path / "planted_cli" / "cmd_info.py"
    info.write_text(info.read_text() + "\nfrom .app import app  # noqa: E402\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cycles, commands = import_problems("planted_cli")
    assert ("planted_cli.app", "planted_cli.cmd_info") in cycles
    assert commands == ["planted_cli.cmd_info"]


def test_the_app_lists_every_command_in_its_order():
    """Assembled in one place, the app holds the thirteen commands and groups, in ``tonno --help``'s order."""
    from tonno_cli.app import app

    command = typer.main.get_command(app)
    assert list(command.commands) == ["benchmark", "demo", "evaluate", "info", "methods", "train", "pretrain",
                                      "reconstruct", "selfcheck", "synth", "convert", "export", "segment"]
    assert list(command.commands["convert"].commands) == ["mosmed", "autopet", "duke"]
    assert list(command.commands["export"].commands) == ["nnunet"]
    assert sorted(command.commands["segment"].commands) == ["predict", "train"]


def _commands(group, path=()):
    """``(path, click command)`` of every command of a click ``group``, groups included."""
    for name, command in group.commands.items():
        yield (*path, name), command
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))


def test_every_commands_help_renders():
    """rich reads ``[...]`` in a help text as markup: an unbalanced one crashed ``tonno reconstruct --help``."""
    from typer.testing import CliRunner

    from tonno_cli.app import app

    root = typer.main.get_command(app)
    paths = [p for p, _ in _commands(root)]
    assert len(paths) >= 16
    for path in paths:
        res = CliRunner().invoke(app, [*path, "--help"])
        assert res.exit_code == 0 and "Usage" in res.output, (path, res.output[-400:], res.exception)
