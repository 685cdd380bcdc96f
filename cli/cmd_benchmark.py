"""``tonno benchmark``: the paper's Table 2 and Fig. 6 on a data set with masks."""

from __future__ import annotations

from pathlib import Path

import typer

from tonno_engine.base.defaults import (
    BOOTSTRAP_RESAMPLES,
    CAM,
    CAM_LAYER,
    DEVICE,
    PSEUDO_LABEL_BAND,
    PSEUDO_LABEL_MARGIN_MM,
    QUALITY,
    SEGMENTER_PATCH,
    SEGMENTER_STEPS,
    SOLVER_ITERATIONS,
    TEST_FRACTION,
)
from tonno_engine.training.config import DEFAULTS, RECIPES

from .options import (
    FIELD_OF_VIEW_HELP,
    GEOMETRY_HELP,
    RECIPE_HELP,
    DeviceOpt,
    FindingsOpt,
    IdColumnOpt,
    IterationsOpt,
    NonnegativeOpt,
    QuietOpt,
    RegulariserOpt,
    StrengthOpt,
    cam_help,
    check_encoder,
    check_geometry,
    check_named,
    engine_errors,
    fail,
    finite,
    parse_findings,
    parse_methods,
    quality_help,
    quality_settings,
    renamed,
    resolve_device_or_exit,
    segmenter_patch,
    solver_settings,
)


def run_benchmark(data: Path, out: Path, cfg, *, quiet: bool):
    """Render a benchmark's events; return its result (shared with ``tonno demo``)."""
    from tonno_engine.apps.benchmark import BenchmarkResult, MethodScored, benchmark_iter
    from tonno_engine.base.events import Note, Notice

    from .progress import show_progress

    with engine_errors():
        for event in show_progress(benchmark_iter(data, out, cfg), "benchmark", quiet=quiet):
            if isinstance(event, BenchmarkResult):
                return event
            if isinstance(event, Notice):
                typer.echo(f"warning: {event.message}", err=True)
            elif isinstance(event, Note):
                print(event.message, flush=True)
            if isinstance(event, MethodScored):
                print(f"  {event.title:36s} F1 {event.f1:.2f}  precision {event.precision:.2f}  "
                      f"recall {event.recall:.2f}  Dice {event.dice:.2f}", flush=True)
    fail("benchmark ended without a result")  # pragma: no cover


def print_result(result) -> None:
    print()
    print(result.table_md.read_text())
    print(f"table: {result.table_md} and {result.table_csv}")
    if result.figure:
        print(f"figure: {result.figure}" + (" (and one per finding)" if len(result.classifications) > 1 else ""))
    print(f"checkpoint: {result.checkpoint}")


def benchmark(
    data: Path = typer.Argument(..., help="Labels CSV (with masks) or a folder holding labels.csv."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (model, heatmaps, table, figure)."),
    checkpoint: Path = typer.Option(None, "--checkpoint", "-c", help="Use this model instead of training one."),
    method: list[str] = typer.Option(None, "--method", "-m", help="Methods to compare (repeatable or comma-separated; "
                                     "default: Table 2's GradCAM, LayerCAM, ToNNO, Averaged and Tomographic LayerCAM)."),
    cam: str = typer.Option(CAM, help=cam_help()),
    layer: int = typer.Option(CAM_LAYER, min=1, max=4, help="Layer for the CAM methods."),
    layers: str = typer.Option("", help="Several layers, e.g. 1,2,3,4: every CAM row once per layer (overrides --layer); "
                                        "differences are to LayerCAM at the first."),
    resamples: int = typer.Option(BOOTSTRAP_RESAMPLES, min=100,
                                   help="Bootstrap resamples of the test cases for the 95 % intervals."),
    recipe: str = typer.Option(None, help=RECIPE_HELP + " Default: paper."),
    steps: int = typer.Option(None, min=1, help="Training steps (when no checkpoint is given; default: the recipe's)."),
    slice_size: int = typer.Option(None, min=16,
                                   help="Slice side for training (reconstruction uses the checkpoint's; default: the recipe's)."),
    norm: str = typer.Option(None, help="frozen_bn (paper), bn or gn (default: the recipe's)."),
    model: str = typer.Option(None, help=f"Any timm model name (default {DEFAULTS.model})."),
    weights: str = typer.Option(None, help="Starting weights: a local file, 'imagenet' or a timm tag (see tonno train)."),
    quality: str = typer.Option(QUALITY, help=quality_help()),
    slices: int = typer.Option(None, min=3, help="M for the tomographic methods; overrides the preset."),
    directions: int = typer.Option(None, min=1, help="L: directions; overrides the preset."),
    angles: int = typer.Option(None, min=1, hidden=True, help="Deprecated spelling of --directions."),
    hemisphere: bool = typer.Option(None, "--hemisphere/--sphere", help="Directions on a hemisphere (half the cost) "
                                                                       "or the sphere; overrides the preset."),
    test_fraction: float = typer.Option(TEST_FRACTION, min=0.0, max=1.0, help="Share of cases held out for testing (0 < f < 1)."),
    geometry: str = typer.Option(None, help=GEOMETRY_HELP + f" Default: {DEFAULTS.geometry}."),
    field_of_view: str = typer.Option(None, help=FIELD_OF_VIEW_HELP + f" Default: {DEFAULTS.field_of_view}."),
    iterations: IterationsOpt = SOLVER_ITERATIONS,
    regulariser: RegulariserOpt = "none",
    strength: StrengthOpt = None,
    nonnegative: NonnegativeOpt = False,
    device: DeviceOpt = DEVICE,
    seed: int = typer.Option(None, min=0, help=f"Random seed (split and training; default {DEFAULTS.seed})."),
    stage2: bool = typer.Option(False, "--stage2", help="Add a second stage: pseudo-labels of the non-test cases, a 3D "
                                                       "U-Net trained on them, its row in the table (docs/segmenter.md)."),
    stage2_from: str = typer.Option("best", help="--stage2: the method whose heatmaps become pseudo-labels, or best "
                                                 "(highest validation F1)."),
    stage2_steps: int = typer.Option(SEGMENTER_STEPS, min=1, help="--stage2: segmenter training steps."),
    stage2_rounds: int = typer.Option(1, min=1, help="--stage2: rounds of self-training (each round learns from the "
                                                    "last one's predictions)."),
    stage2_patch: int = typer.Option(SEGMENTER_PATCH, min=8, callback=segmenter_patch,
                                     help="--stage2: segmenter patch side in voxels (a multiple of 8)."),
    band: float = typer.Option(PSEUDO_LABEL_BAND, min=0.0, max=1.0, help="--stage2: ignore band (see tonno export nnunet)."),
    margin_mm: float = typer.Option(PSEUDO_LABEL_MARGIN_MM, min=0.0, callback=finite,
                                    help="--stage2: ignore shell around each lesion, in mm."),
    findings: FindingsOpt = None,
    id_column: IdColumnOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train, reconstruct with every method, calibrate thresholds on validation cases, evaluate on test cases."""
    from tonno_engine.apps.benchmark import BenchmarkConfig, default_methods
    from tonno_engine.base.registry import CAMS
    from tonno_engine.training.config import recipe_config

    if not 0.0 < test_fraction < 1.0:
        raise typer.BadParameter(f"must be between 0 and 1 (exclusive), got {test_fraction}", param_hint="--test-fraction")
    settings = quality_settings(quality, slices=slices, directions=renamed("--angles", "--directions", angles, directions),
                                hemisphere=hemisphere)
    try:
        chosen = tuple(dict.fromkeys(int(k) for k in layers.split(","))) if layers else (layer,)
    except ValueError:
        chosen = ()
    if not chosen or not all(1 <= k <= 4 for k in chosen):
        raise typer.BadParameter(f"must be layers 1 to 4 like 1,2,3,4, got {layers!r}", param_hint="--layers")
    check_named(cam, CAMS, "CAM", "--cam")
    solver = solver_settings(iterations=iterations, regulariser=regulariser, strength=strength, nonnegative=nonnegative)
    specs = list({s.label: s for k in chosen for s in parse_methods(method, cam=cam, layer=k, solver=solver)}.values()) \
        or default_methods(layers=chosen)
    check_named(stage2_from, ("best", *(s.label for s in specs)), "method", "--stage2-from")
    check_geometry(geometry, field_of_view)
    check_named(recipe, RECIPES, "recipe", "--recipe")
    check_encoder(model, norm)
    dev = resolve_device_or_exit(device)
    print(f"device: {dev}", flush=True)
    # training options not given stay None: the recipe, then TrainConfig, decide (as in `tonno train`)
    train = recipe_config(recipe or "paper", dict(model=model, norm=norm, weights=weights or None, slice_size=slice_size,
                                                  steps=steps, device=str(dev), seed=seed, geometry=geometry,
                                                  field_of_view=field_of_view, findings=parse_findings(findings),
                                                  id_column=id_column))
    seed = train.seed  # the split's and the second stage's seed too
    second = None
    if stage2:
        from tonno_engine.apps.benchmark_stage2 import Stage2Config
        from tonno_engine.evaluation.pseudo_labels import PseudoLabelRule
        from tonno_engine.training.segmenter import SegmenterConfig

        with engine_errors():
            second = Stage2Config(source=stage2_from, rule=PseudoLabelRule(band=band, margin_mm=margin_mm), rounds=stage2_rounds,
                                  segmenter=SegmenterConfig(steps=stage2_steps, patch=stage2_patch, seed=seed, device=str(dev)))
    cfg = BenchmarkConfig(checkpoint=checkpoint, train=train, methods=specs, settings=settings,
                          test_fraction=test_fraction, device=str(dev), seed=seed, resamples=resamples, stage2=second)
    print_result(run_benchmark(data, out, cfg, quiet=quiet))
