"""Every default defined once: engine signatures, CLI options and settings objects read
:mod:`tonno_engine.base.defaults` (the widgets' initial values: tests/plugin/test_napari.py)."""

import ast
import inspect
from pathlib import Path

import typer.main

from tonno_engine.base import defaults as D
from tonno_engine.base.registry import MethodSpec
from tonno_engine.cams.extractor import CamExtractor
from tonno_engine.cams.slicewise import slicewise_iter
from tonno_engine.methods.case import reconstruct_case_iter
from tonno_engine.methods.run import methods_iter, run_methods
from tonno_engine.methods.settings import PRESETS, ReconstructionSettings
from tonno_engine.models.checkpoint import CheckpointDescription, load_checkpoint
from tonno_engine.tomography.profiles import direction_stack_iter, profiles
from tonno_engine.tomography.reconstruction import default_batch_size, reconstruct, reconstruct_iter
from tonno_engine.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[3]
#: parameters that carry one of the reconstruction's defaults wherever they appear
SETTINGS = {"slices", "directions", "slice_size", "device", "layer", "cam", "quality", "geometry", "field_of_view"}
#: functions whose own problem size is not a default of the reconstruction (the Fig. 4 check's phantom,
#: the widgets' direction lattice)
OWN_SIZES = {"fake_cam_check", "direction_vector"}


def _default(fn, name):
    return inspect.signature(fn).parameters[name].default


def test_engine_signatures_read_the_defaults():
    for fn in (reconstruct_iter, reconstruct, profiles, direction_stack_iter):
        assert _default(fn, "slices") == D.SLICES and _default(fn, "slice_size") == D.SLICE_SIZE, fn
    for fn in (reconstruct_iter, reconstruct, profiles, direction_stack_iter, slicewise_iter, methods_iter,
               run_methods, load_checkpoint):
        assert _default(fn, "device") == D.DEVICE, fn
    assert _default(reconstruct_iter, "directions") == D.TONNO_DIRECTIONS
    assert _default(reconstruct_iter, "directions_per_update") == D.DIRECTIONS_PER_UPDATE
    assert _default(reconstruct_iter, "memory_budget") == D.MEMORY_BUDGET
    assert _default(reconstruct_case_iter, "settings") == PRESETS[D.QUALITY] == ReconstructionSettings()
    assert _default(CamExtractor.__init__, "layer") == D.CAM_LAYER == MethodSpec().layer
    assert _default(CamExtractor.__init__, "method") == D.CAM == MethodSpec().cam
    assert ReconstructionSettings().slices == D.SLICES and ReconstructionSettings().directions is None
    assert TrainConfig().slice_size == D.SLICE_SIZE == CheckpointDescription(model="m", norm="gn").slice_size
    assert TrainConfig().device == D.DEVICE and TrainConfig().geometry == D.GEOMETRY
    assert {r.name: r.default_directions for r in __import__("tonno_engine").METHODS.values()
            if r.kind == "tomographic"} == {"tonno": D.TONNO_DIRECTIONS, "tonno-iterative": D.TONNO_DIRECTIONS,
                                            "averaged-cam": D.CAM_DIRECTIONS, "tomographic-cam": D.CAM_DIRECTIONS,
                                            "iterative-cam": D.CAM_DIRECTIONS}
    import torch

    assert default_batch_size(torch.device("cpu")) == D.CPU_BATCH_SIZE
    assert D.QUALITY in PRESETS and D.WIDGET_QUALITY in PRESETS


def test_cli_options_read_the_defaults():
    from tonno_cli.app import app

    commands = typer.main.get_command(app).commands
    expected = {"cam": D.CAM, "layer": D.CAM_LAYER, "quality": D.QUALITY, "device": D.DEVICE}
    for command in ("reconstruct", "benchmark"):
        params = {p.name: p.default for p in commands[command].params}
        assert {k: params[k] for k in expected} == expected, command
        assert params["slices"] is None and params["directions"] is None  # unset: the preset's
    for command in ("selfcheck", "demo"):
        assert {p.name: p.default for p in commands[command].params}["device"] == D.DEVICE
    train = {p.name: p.default for p in commands["train"].params}
    given = [k for k, v in train.items() if v is not None and k not in ("data", "out", "resume", "quiet", "events")]
    assert given == []  # every training option defaults to "not given": the recipe and TrainConfig decide


def test_no_signature_spells_a_default_itself():
    """A literal default for one of these parameters anywhere in the engine, the CLI or the plugin would
    be a second definition (``None``, "not given", is allowed)."""
    found = []
    for package in ("tonno_engine", "cli", "napari_tonno"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.name in OWN_SIZES:
                    continue
                args = node.args
                positional = args.posonlyargs + args.args
                pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
                pairs += list(zip(args.kwonlyargs, args.kw_defaults))
                found += [f"{path.relative_to(ROOT)}:{node.lineno} {node.name}({a.arg}={d.value!r})" for a, d in pairs
                          if a.arg in SETTINGS and isinstance(d, ast.Constant) and d.value is not None]
    assert found == []


def test_recipe_help_names_every_recipe():
    """The --recipe help of train and benchmark is built from the recipes, so a new one cannot be left out."""
    from tonno_cli.app import app
    from tonno_engine.training.config import RECIPE_PURPOSES, RECIPES

    assert set(RECIPE_PURPOSES) == set(RECIPES)
    commands = typer.main.get_command(app).commands
    for command in ("train", "benchmark"):
        help_text = {p.name: p.help for p in commands[command].params}["recipe"]
        assert all(f"{name} (" in help_text for name in RECIPES), (command, help_text)
