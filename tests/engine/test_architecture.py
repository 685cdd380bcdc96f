"""Import boundaries: the engine stays free of GUI and CLI libraries."""

import json
import subprocess
import sys

FORBIDDEN = ("PyQt5", "PyQt6", "PySide2", "PySide6", "qtpy", "napari", "magicgui", "typer", "vispy")


def _loaded_after(statement: str) -> list[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_engine_imports_no_gui_or_cli_modules():
    loaded = _loaded_after("import tonno_engine, tonno_engine.apps.selfcheck")
    bad = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    assert bad == []


def test_cli_help_does_not_import_torch():
    loaded = _loaded_after("import tonno_cli.app")
    assert "torch" not in loaded
