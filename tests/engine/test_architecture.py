"""The architecture, machine-checked: engine layers (import-linter), no import cycles, no GUI/CLI
libraries in the engine, a light CLI, and one method registry that everything reads."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import grimp
import pytest

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


def test_cli_help_does_not_import_torch():
    assert "torch" not in _loaded_after("import tonno_cli.app")


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


TOY = textwrap.dedent('''
    """A toy method in one file: the plain (unfiltered) backprojection of the logits."""
    from tonno_engine.base.registry import MethodRecord, register_method
    from tonno_engine.tomography.backprojection import backproject
    from tonno_engine.tomography.reconstruction import Formula


    class Unfiltered(Formula):
        name = "toy-backprojection"

        def accumulate(self, stack, dirs, acc, memory_budget, compiled=False):
            backproject(stack[:, 1:-1], dirs[0], acc, memory_budget=memory_budget)

        def scale(self, angles):
            return 1.0 / angles


    register_method(MethodRecord(
        "toy-backprojection", title="Toy backprojection", label="toy", kind="tomographic", needs="logits",
        default_angles=50, description="toy: mean of the logits over the planes through each voxel",
        formula="mean over l of p_l(x·n_l)", accumulate=Unfiltered()))
''')


def test_a_registered_method_reaches_the_cli_the_listing_and_the_engine(tmp_path):
    (tmp_path / "toy_method.py").write_text(TOY)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "COLUMNS": "250"}  # help text unwrapped

    def cli(*args):
        code = "import toy_method; from tonno_cli.app import main; main()"
        return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                              check=True).stdout

    assert "toy-backprojection" in cli("reconstruct", "--help")
    listing = json.loads(cli("methods", "--json"))
    assert "toy-backprojection" in [m["name"] for m in listing["methods"]]
    code = textwrap.dedent('''
        import toy_method, torch
        from tonno_engine.base.registry import MethodSpec
        from tonno_engine.methods.run import run_methods
        from tonno_engine.models.encoders import create_encoder
        torch.manual_seed(0)
        model = create_encoder("resnet10t", norm="gn")
        maps = run_methods([MethodSpec("toy-backprojection"), MethodSpec("tonno")], torch.rand(12, 12, 12), model,
                           slices=6, angles=8, slice_size=32, device="cpu")
        print(sorted(maps), MethodSpec("toy-backprojection").title, float(maps["toy"].abs().max()) > 0)
    ''')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "['tonno', 'toy'] Toy backprojection True"


def test_registry_titles_and_labels():
    from tonno_engine.base.registry import METHODS, MethodSpec

    assert list(METHODS)[:3] == ["tonno", "averaged-cam", "tomographic-cam"]
    assert MethodSpec("tomographic-cam", cam="gradcam++", layer=3).title == "Tomographic GradCAM++ (layer 3)"
    assert MethodSpec("layercam", layer=2, axes=3).label == "layercam-l2-axes3"
    assert MethodSpec("layercam", layer=2, axes=3).title == "LayerCAM (layer 2, 3 axes)"
    with pytest.raises(ValueError, match="valid: tonno, averaged-cam"):
        MethodSpec("nope")
