"""Every default defined once: engine signatures, CLI options and settings objects read
:mod:`tonno_engine.base.defaults` (the widgets' initial values: tests/plugin/test_napari.py), and a scan
of the source finds no second, literal spelling of one (shown failing on a planted copy)."""

import ast
import inspect
import shutil
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from tonno_engine.base import defaults as D
from tonno_engine.base.registry import MethodSpec
from tonno_engine.cams.extractor import CamExtractor
from tonno_engine.cams.slicewise import slicewise_iter
from tonno_engine.methods.case import reconstruct_case_iter
from tonno_engine.methods.run import CaseRun, passes_iter, run_methods
from tonno_engine.methods.settings import PRESETS, ReconstructionSettings
from tonno_engine.models.checkpoint import CheckpointDescription, load_checkpoint
from tonno_engine.tomography.plan import Plan
from tonno_engine.tomography.profiles import direction_stack_iter, profiles
from tonno_engine.tomography.reconstruction import default_batch_size, reconstruct, reconstruct_iter
from tonno_engine.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("tonno_engine", "cli", "napari_tonno")
#: parameters, dataclass fields and widget values that carry one of the defaults wherever they appear: the
#: reconstruction's (directions: the probe widgets' lattice too), evaluation's, the solver's, the benchmark's,
#: the pseudo-labels', the segmenter's patch and the demo's
SETTINGS = {"slices", "directions", "slice_size", "device", "layer", "cam", "quality", "geometry", "field_of_view",
            "connectivity", "strength", "resamples", "test_fraction", "band", "margin_mm", "steps", "cases", "patch"}
#: functions whose own problem size is not a default of the reconstruction (the Fig. 4 check's phantom)
OWN_SIZES = {"fake_cam_check"}
#: (class, field) pairs whose literal is the one definition of another default: training's steps (the
#: recipes override them), and no regulariser's strength 0 (SOLVER_STRENGTH is the weight when one is chosen)
OWN_FIELDS = {("TrainConfig", "steps"), ("SolverSettings", "strength")}


def _literal(node):
    """The constant ``node`` spells (also as ``typer.Option(<constant>, ...)``), or ``None``."""
    if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "Option":
        return _literal(node.args[0]) if node.args else None
    if isinstance(node, ast.Constant) and node.value is not None and node.value is not ...:
        return node
    return None


def spelled_defaults(root: Path) -> list[str]:
    """Every literal default for one of :data:`SETTINGS` under ``root``'s packages: a function's parameter
    (a CLI option's ``typer.Option(<literal>)`` included), a class's field (dataclasses, settings objects)
    or a widget's initial value (``self.<name> = Widget(..., value=<literal>)``); ``None`` ("not given")
    is allowed."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                pairs = []
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name not in OWN_SIZES:
                    args = node.args
                    positional = args.posonlyargs + args.args
                    pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
                    pairs = [(a.arg, d, node.lineno) for a, d in pairs]
                    pairs += [(a.arg, d, node.lineno) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
                elif isinstance(node, ast.ClassDef):
                    pairs = [(s.target.id, s.value, s.lineno) for s in node.body if isinstance(s, ast.AnnAssign)
                             and isinstance(s.target, ast.Name) and s.value is not None
                             and (node.name, s.target.id) not in OWN_FIELDS]
                elif (isinstance(node, ast.Assign) and len(node.targets) == 1
                      and isinstance(node.targets[0], ast.Attribute) and isinstance(node.value, ast.Call)):
                    pairs = [(node.targets[0].attr, k.value, node.lineno) for k in node.value.keywords if k.arg == "value"]
                found += [f"{path.relative_to(root).as_posix()}:{line} {getattr(node, 'name', '')}"
                          f"({name}={literal.value!r})" for name, d, line in pairs
                          if name in SETTINGS and (literal := _literal(d)) is not None]
    return found


def _default(fn, name):
    return inspect.signature(fn).parameters[name].default


def test_engine_signatures_read_the_defaults():
    plan = Plan()  # the core's settings: every field the reconstruction's default
    assert (plan.slices, plan.directions, plan.slice_size, plan.device) == (D.SLICES, D.TONNO_DIRECTIONS, D.SLICE_SIZE,
                                                                           D.DEVICE)
    assert (plan.geometry, plan.field_of_view, plan.hemisphere) == (D.GEOMETRY, D.FIELD_OF_VIEW, False)
    assert (plan.directions_per_update, plan.memory_budget) == (D.DIRECTIONS_PER_UPDATE, D.MEMORY_BUDGET)
    for fn in (reconstruct_iter, reconstruct, profiles, direction_stack_iter, slicewise_iter):
        assert _default(fn, "plan") == plan, fn
    for fn in (run_methods, passes_iter, load_checkpoint):
        assert _default(fn, "device") == D.DEVICE, fn
    assert CaseRun().memory_budget == D.MEMORY_BUDGET and CaseRun().directions_per_update is None  # None: the Plan's
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


def test_evaluation_benchmark_and_demo_read_the_defaults():
    """Connectivity, calibration, bootstrap, test fraction, pseudo-labels, demo and probe lattice: one definition."""
    from napari_tonno.widgets._common import direction_vector
    from tonno_engine.apps.benchmark import BenchmarkConfig
    from tonno_engine.apps.demo import DEMO_LESION_RADIUS, demo_config
    from tonno_engine.evaluation import candidates, evaluate, instances, metrics, pseudo_labels
    from tonno_engine.evaluation.auc import auc_interval
    from tonno_engine.evaluation.bootstrap import bootstrap_intervals

    for fn in (metrics.label_components, metrics.case_metrics, metrics.calibrate_threshold,
               metrics.keep_large_components, metrics.lesion_records, candidates.candidates_iter,
               candidates.find_candidates, evaluate.calibrate_on_files, evaluate.calibrate_min_size,
               evaluate.calibrated_scores, evaluate.evaluate_iter, instances.instance_metrics, pseudo_labels.apply_review):
        assert _default(fn, "connectivity") == D.CONNECTIVITY, fn
    rule = pseudo_labels.PseudoLabelRule()
    assert (rule.connectivity, rule.band, rule.margin_mm) == (D.CONNECTIVITY, D.PSEUDO_LABEL_BAND, D.PSEUDO_LABEL_MARGIN_MM)
    assert _default(metrics.calibrate_threshold, "candidates") == _default(metrics.calibration_levels, "candidates") \
        == metrics.CALIBRATION_CANDIDATES and f"{metrics.CALIBRATION_CANDIDATES} quantile" in metrics.CALIBRATION_RULE
    bench = BenchmarkConfig()
    assert (bench.connectivity, bench.resamples, bench.test_fraction) == (D.CONNECTIVITY, D.BOOTSTRAP_RESAMPLES,
                                                                          D.TEST_FRACTION)
    assert _default(bootstrap_intervals, "resamples") == D.BOOTSTRAP_RESAMPLES
    assert _default(auc_interval, "resamples") == D.AUC_RESAMPLES
    assert _default(demo_config, "steps") == D.DEMO_STEPS and DEMO_LESION_RADIUS is D.DEMO_LESION_RADIUS
    assert _default(direction_vector, "directions") == D.PROBE_DIRECTIONS


def test_solver_strength_reads_the_default():
    from tonno_cli.options import StrengthOpt, solver_settings

    assert solver_settings(iterations=20, regulariser="tv", strength=None, nonnegative=False).strength == D.SOLVER_STRENGTH
    assert solver_settings(iterations=20, regulariser="none", strength=None, nonnegative=False).strength == 0.0
    assert f"default {D.SOLVER_STRENGTH:g} with one" in StrengthOpt.__metadata__[0].help


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
    benchmark = {p.name: p.default for p in commands["benchmark"].params}
    assert {k: benchmark[k] for k in ("recipe", "model", "norm", "weights", "slice_size", "steps", "geometry",
                                      "field_of_view", "seed")} == dict.fromkeys(("recipe", "model", "norm", "weights",
                                      "slice_size", "steps", "geometry", "field_of_view", "seed"))  # not given, as train
    assert (benchmark["resamples"], benchmark["test_fraction"], benchmark["band"], benchmark["margin_mm"]) == \
        (D.BOOTSTRAP_RESAMPLES, D.TEST_FRACTION, D.PSEUDO_LABEL_BAND, D.PSEUDO_LABEL_MARGIN_MM)
    demo = {p.name: p.default for p in commands["demo"].params}
    assert (demo["cases"], demo["steps"]) == (D.DEMO_CASES, D.DEMO_STEPS)
    assert {p.name: p.default for p in commands["evaluate"].params}["connectivity"] == D.CONNECTIVITY
    nnunet = {p.name: p.default for p in commands["export"].commands["nnunet"].params}
    assert (nnunet["band"], nnunet["margin_mm"]) == (D.PSEUDO_LABEL_BAND, D.PSEUDO_LABEL_MARGIN_MM)
    selfcheck = {p.name: p.default for p in commands["selfcheck"].params}
    assert (selfcheck["geometry"], selfcheck["field_of_view"]) == (D.GEOMETRY, D.FIELD_OF_VIEW)


@pytest.mark.parametrize("options", [[], ["--recipe", "small-lesions", "--seed", "3", "--geometry", "physical"]])
def test_benchmark_resolves_training_options_not_given_as_before(monkeypatch, tmp_path, options):
    """``tonno benchmark``'s training options default to "not given"; its TrainConfig (and seed) are those the
    old explicit ``DEFAULTS.*`` gave: the recipe, then TrainConfig, decide."""
    from tonno_cli import cmd_benchmark
    from tonno_cli.app import app
    from tonno_engine.training.config import DEFAULTS, recipe_config

    seen = {}
    monkeypatch.setattr(cmd_benchmark, "run_benchmark", lambda data, out, cfg, quiet: seen.setdefault("cfg", cfg))
    monkeypatch.setattr(cmd_benchmark, "print_result", lambda result: None)
    res = CliRunner().invoke(app, ["benchmark", str(tmp_path), "--out", str(tmp_path / "out"), "--device", "cpu",
                                   *options])
    assert res.exit_code == 0, res.output
    given = dict(zip(options[::2], options[1::2]))
    old = recipe_config(given.get("--recipe", "paper"), dict(
        model=DEFAULTS.model, device="cpu", seed=int(given.get("--seed", DEFAULTS.seed)),
        geometry=given.get("--geometry", DEFAULTS.geometry), field_of_view=DEFAULTS.field_of_view))
    assert seen["cfg"].train == old and seen["cfg"].seed == old.seed


def test_no_signature_spells_a_default_itself():
    """A literal default for one of these parameters anywhere in the engine, the CLI or the plugin would
    be a second definition (``None``, "not given", is allowed)."""
    assert spelled_defaults(ROOT) == []


PLANTS = {  # (file, code appended to it, what the scan reports after the file's name and line)
    "connectivity": ("tonno_engine/evaluation/metrics.py", "def f(mask, connectivity=26): ...", "f(connectivity=26)"),
    "dataclass": ("tonno_engine/apps/benchmark.py", "@dataclass\nclass Other:\n    test_fraction: float = 0.3",
                  "Other(test_fraction=0.3)"),
    "cli option": ("cli/cmd_demo.py", "def g(steps: int = typer.Option(400, min=1)): ...", "g(steps=400)"),
    "widget": ("napari_tonno/widgets/_form.py",
               "class W:\n    def __init__(self):\n        self.directions = SpinBox(label='L', value=192)",
               "(directions=192)"),
}


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_a_default_spelled_a_second_time_is_caught(tmp_path, plant):
    """The same scan on a copy of the packages with one default spelled again: it reports that place."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    file, code, reported = PLANTS[plant]
    target = tmp_path / file
    text = target.read_text()
    target.write_text(text + "\n\n" + code + "\n")
    planted_line = text.count("\n") + 3 + next(i for i, line in enumerate(code.split("\n")) if "=" in line)
    assert spelled_defaults(tmp_path) == [f"{file}:{planted_line} {reported}"]


def test_recipe_help_names_every_recipe():
    """The --recipe help of train and benchmark is built from the recipes, so a new one cannot be left out."""
    from tonno_cli.app import app
    from tonno_engine.training.config import RECIPE_PURPOSES, RECIPES

    assert set(RECIPE_PURPOSES) == set(RECIPES)
    commands = typer.main.get_command(app).commands
    for command in ("train", "benchmark"):
        help_text = {p.name: p.help for p in commands[command].params}["recipe"]
        assert all(f"{name} (" in help_text for name in RECIPES), (command, help_text)
