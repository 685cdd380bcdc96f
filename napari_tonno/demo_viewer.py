"""Open ``tonno demo`` results in napari: one test case, its ground truth and every method's heatmap."""

from __future__ import annotations

from pathlib import Path


def demo_layers(out: Path, result) -> list[tuple]:
    """napari layer data tuples ``(data, kwargs, type)`` for the demo's first positive test case."""
    from tonno_engine.data.dataset import read_cases
    from tonno_engine.data.heatmap_folder import output_path
    from tonno_engine.data.images import load_image
    from tonno_engine.data.nifti import load_nifti
    from tonno_engine.evaluation.candidates import display_limits

    from .overlays import heat_layer_kwargs

    cases = {c.case: c for c in read_cases(Path(out) / "eval.csv")}
    case = next((cases[n] for n in result.test_cases if cases[n].label), cases[result.test_cases[0]])
    image = load_image(case.image)
    scale = image.spacing
    layers = [(image.array, {"name": case.case, "scale": scale, "colormap": "gray"}, "image")]
    if case.mask is not None:
        mask = load_image(case.mask, kind="mask").array.astype("uint8")
        layers.append((mask, {"name": "ground truth", "scale": scale, "opacity": 0.5}, "labels"))
    for spec in result.methods:
        heat = load_nifti(output_path(Path(out) / "heatmaps", case.case, spec), kind="heatmap").array
        layers.append((heat, {"name": spec.title, "scale": scale, **heat_layer_kwargs(display_limits(heat)),
                              "visible": spec.name == "tonno"}, "image"))
    return layers


def show_demo(out: Path, result) -> None:  # pragma: no cover - opens a window and blocks
    import napari

    from ._torch_import import ensure_torch

    ensure_torch()
    viewer = napari.Viewer(title="tonno demo")
    for data, kwargs, kind in demo_layers(out, result):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    napari.run()
