"""``tonno demo``: synthetic brains with lesions → training → every method → Table 2 and Fig. 6."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from tonno_engine.base.defaults import DEMO_CASES, DEMO_LESION_RADIUS, DEMO_STEPS, DEVICE

from .options import DeviceOpt, QuietOpt, engine_errors, resolve_device_or_exit


def demo(
    out: Path = typer.Option(Path("tonno-demo"), "--out", "-o", help="Folder for data, model, heatmaps, table, figure."),
    cases: int = typer.Option(DEMO_CASES, min=10, help="Synthetic brain volumes (half with lesions); at least 10."),
    steps: int = typer.Option(DEMO_STEPS, min=1, help="Training steps."),
    device: DeviceOpt = DEVICE,
    napari: bool = typer.Option(False, "--napari", help="Open the results in napari at the end."),
    quiet: QuietOpt = False,
) -> None:
    """The whole method on a laptop CPU in minutes: lesions found from volume labels alone."""
    from tonno_engine.apps.demo import demo_config
    from tonno_engine.base.atomic import make_output_folder
    from tonno_engine.data.synth import SynthRequest, synthesize

    from .cmd_benchmark import print_result, run_benchmark
    from .progress import show_progress

    dev = resolve_device_or_exit(device)
    start = time.perf_counter()
    data = out / "data"
    print(f"device: {dev}\n1/3 synthesising {cases} brain volumes into {data}", flush=True)
    if not (data / "labels.csv").exists():
        with engine_errors():
            make_output_folder(out)
            request = SynthRequest(kind="brain", n=cases, seed=0, lesion_radius=DEMO_LESION_RADIUS, max_lesions=3)
            for _ in show_progress(synthesize(data, request), "synth", quiet=quiet):
                pass
    print("2/3 training a slice classifier on volume labels; 3/3 reconstructing and evaluating", flush=True)
    result = run_benchmark(data, out, demo_config(dev, steps=steps), quiet=quiet)
    print_result(result)
    print(f"demo finished in {time.perf_counter() - start:.0f} s")
    if napari:
        from napari_tonno.demo_viewer import show_demo

        show_demo(out, result)
