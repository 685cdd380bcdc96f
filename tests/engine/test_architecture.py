"""The architecture, machine-checked: engine layers (import-linter), no import cycles, no GUI/CLI
libraries in the engine, a light CLI, and one method registry that everything reads."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
FORBIDDEN = ("PyQt5", "PyQt6", "PySide2", "PySide6", "qtpy", "napari", "magicgui", "typer", "vispy")


def _loaded_after(statement: str, **env) -> list[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env={**os.environ, **env}).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_every_engine_module_imports_no_gui_or_cli_modules():
    statement = ("import importlib, pkgutil, tonno_engine; "
                 "[importlib.import_module(m.name) for m in pkgutil.walk_packages(tonno_engine.__path__, 'tonno_engine.')]")
    loaded = _loaded_after(statement)
    assert "tonno_engine.apps.benchmark" in loaded and "tonno_engine.methods.run" in loaded
    assert [m for m in loaded if m.split(".")[0] in FORBIDDEN] == []


def test_the_cli_imports_no_gui_library():
    """The registry lists methods for the CLI's help (torch loads with it); Qt and napari stay out."""
    loaded = _loaded_after("import tonno_cli.app")
    assert "tonno_engine.base.registry" in loaded
    assert [m for m in loaded if m.split(".")[0] in FORBIDDEN and m.split(".")[0] != "typer"] == []


def test_layer_contracts_pass():
    res = subprocess.run([str(LINT_IMPORTS)], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 kept, 0 broken" in res.stdout


def test_layer_contracts_fail_when_a_lower_layer_imports_a_higher_one(tmp_path):
    """The same contracts on a copy of the engine with two violations planted: both are caught."""
    shutil.copytree(ROOT / "tonno_engine", tmp_path / "tonno_engine", ignore=shutil.ignore_patterns("__pycache__"))
    geometry = tmp_path / "tonno_engine" / "tomography" / "geometry.py"
    geometry.write_text(geometry.read_text() + "\nfrom ..apps import batch  # noqa: E402\n")
    run = tmp_path / "tonno_engine" / "methods" / "run.py"
    run.write_text(run.read_text() + "\nimport qtpy  # noqa: E402\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    res = subprocess.run([str(LINT_IMPORTS)], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert res.returncode == 1, res.stdout
    assert "0 kept, 2 broken" in res.stdout
    assert "tonno_engine.tomography.geometry -> tonno_engine.apps.batch" in res.stdout
    assert "tonno_engine.methods.run -> qtpy" in res.stdout


def test_no_import_cycles():
    graph = grimp.build_graph("tonno_engine")
    cycles = sorted(
        (a, b) for a in graph.modules for b in graph.find_modules_directly_imported_by(a)
        if a < b and graph.chain_exists(importer=b, imported=a)
    )
    assert cycles == []


def test_no_engine_function_is_longer_than_a_screen():
    """bench/longest_functions.py --limit 60: every engine function fits in about 60 lines."""
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "longest_functions.py"), "--limit", "60"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "| lines | function |" in res.stdout


def _signatures(root: Path) -> list[tuple[str, int, bool]]:
    """``(where, parameters, takes **kwargs)`` for every function under ``root`` (``self``/``cls`` not counted)."""
    import ast

    rows = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args = node.args
                names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs if a.arg not in ("self", "cls")]
                where = f"{path.relative_to(root.parent).as_posix()}:{node.lineno} {node.name}"
                rows.append((where, len(names), args.kwarg is not None, ast.get_docstring(node) or ""))
    return rows


def test_no_engine_function_takes_more_than_eight_parameters_or_relays_keywords():
    """A function that needs many settings takes a dataclass, not a relay of keywords: at most 8 parameters
    each, and at most one ``**kwargs``, whose docstring says why."""
    rows = _signatures(ROOT / "tonno_engine")
    assert len(rows) > 500  # the scan sees the engine
    assert [(where, count) for where, count, _, _ in rows if count > 8] == []
    relays = [(where, doc) for where, _, kwargs, doc in rows if kwargs]
    assert len(relays) <= 1, relays
    assert all("kwargs" in doc for _, doc in relays), relays


def test_the_parameter_scan_finds_a_planted_long_signature_and_relay(tmp_path):
    shutil.copytree(ROOT / "tonno_engine", tmp_path / "tonno_engine", ignore=shutil.ignore_patterns("__pycache__"))
    planted = tmp_path / "tonno_engine" / "tomography" / "geometry.py"
    planted.write_text(planted.read_text() + "\n\ndef many(a, b, c, d, e, f, g, h, i):\n    pass\n\n\n"
                       "def relay(x, **options):\n    pass\n\n\ndef relay_too(**options):\n    pass\n")
    rows = {where.split(" ")[1]: (count, kwargs) for where, count, kwargs, _ in _signatures(tmp_path / "tonno_engine")}
    assert rows["many"] == (9, False) and rows["relay"] == (1, True) and rows["relay_too"] == (0, True)
