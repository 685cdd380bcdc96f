"""``tonno benchmark``: the paper's Table 2 and Fig. 6 on a data set with masks."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import app
from .options import DeviceOpt, QuietOpt, fail, parse_methods, resolve_device_or_exit


def run_benchmark(data: Path, out: Path, cfg, *, quiet: bool):
    """Render a benchmark's events; return its result (shared with ``tonno demo``)."""
    from tonno_engine.benchmark import BenchmarkResult, benchmark_iter
    from tonno_engine.errors import DataError

    from .progress import show_progress

    try:
        for event in show_progress(benchmark_iter(data, out, cfg), "benchmark", quiet=quiet):
            if isinstance(event, BenchmarkResult):
                return event
            if event.stage == "evaluate" and event.unit == "methods":
                row = event.info
                print(f"  {row['method']:36s} F1 {row['f1']:.2f}  precision {row['precision']:.2f}  "
                      f"recall {row['recall']:.2f}  Dice {row['dice']:.2f}", flush=True)
    except (DataError, ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    fail("benchmark ended without a result")  # pragma: no cover


def print_result(result) -> None:
    print()
    print(result.table_md.read_text())
    print(f"table: {result.table_md} and {result.table_csv}")
    if result.figure:
        print(f"figure: {result.figure}")
    print(f"checkpoint: {result.checkpoint}")


@app.command()
def benchmark(
    data: Path = typer.Argument(..., help="Labels CSV (with masks) or a folder holding labels.csv."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (model, heatmaps, table, figure)."),
    checkpoint: Path = typer.Option(None, "--checkpoint", "-c", help="Use this model instead of training one."),
    method: list[str] = typer.Option(None, "--method", "-m", help="Methods to compare (repeatable or comma-separated; "
                                     "default: Table 2's GradCAM, LayerCAM, ToNNO, Averaged and Tomographic LayerCAM)."),
    cam: str = typer.Option("layercam", help="CAM of averaged-cam/tomographic-cam when given with --method."),
    layer: int = typer.Option(2, min=1, max=4, help="Layer for the CAM methods."),
    steps: int = typer.Option(2000, help="Training steps (when no checkpoint is given)."),
    slice_size: int = typer.Option(224, help="Slice side for training (reconstruction uses the checkpoint's)."),
    norm: str = typer.Option("frozen_bn", help="frozen_bn (paper), bn or gn."),
    model: str = typer.Option("resnet10t", help="Any timm model name."),
    weights: Path = typer.Option(None, help="Local ImageNet weights for the model."),
    slices: int = typer.Option(100, help="M for the tomographic methods."),
    angles: int = typer.Option(None, help="L (default 2000 for ToNNO, 1000 for the CAM variants)."),
    hemisphere: bool = typer.Option(False, "--hemisphere", help="Directions on a hemisphere (half the cost)."),
    test_fraction: float = typer.Option(0.3, help="Share of cases held out for testing."),
    device: DeviceOpt = "auto",
    seed: int = typer.Option(0, help="Random seed (split and training)."),
    quiet: QuietOpt = False,
) -> None:
    """Train, reconstruct with every method, calibrate thresholds on validation cases, evaluate on test cases."""
    from tonno_engine.benchmark import BenchmarkConfig, default_methods
    from tonno_engine.training import TrainConfig

    dev = resolve_device_or_exit(device)
    specs = parse_methods(method, cam=cam, layer=layer) or default_methods(layer)
    print(f"device: {dev}", flush=True)
    train = TrainConfig(model=model, norm=norm, weights=str(weights) if weights else None, slice_size=slice_size,
                        steps=steps, device=str(dev), seed=seed)
    cfg = BenchmarkConfig(checkpoint=checkpoint, train=train, methods=specs, slices=slices,
                          angles=angles, hemisphere=hemisphere, test_fraction=test_fraction, device=str(dev), seed=seed)
    print_result(run_benchmark(data, out, cfg, quiet=quiet))
