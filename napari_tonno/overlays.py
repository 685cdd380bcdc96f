"""How heatmaps are shown: a colormap whose low end is transparent, robust limits, 3D and side by side.

The anatomy stays readable under a lesion: below the lower contrast limit (by default the heatmap's
95th percentile, from :func:`tonno_engine.evaluation.candidates.display_limits`) the overlay is fully
transparent, and opacity rises with the value; ``translucent`` blending keeps the image's own grey
levels instead of adding colour to the whole brain.
"""

from __future__ import annotations

import numpy as np

HEAT_COLORMAP_NAME = "tonno heat"


def camera_of(viewer):
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def grid_of(viewer):
    """The viewer's grid settings (``viewer.canvas.grid`` from napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def heat_colormap():
    """napari ``Colormap``: transparent at the low end, then dark red → orange → yellow → white, opaque."""
    from napari.utils import Colormap

    colors = np.array([[0.5, 0.0, 0.0, 0.0], [0.8, 0.1, 0.0, 0.55], [1.0, 0.5, 0.0, 0.8], [1.0, 0.9, 0.1, 0.95],
                       [1.0, 1.0, 0.9, 1.0]])
    return Colormap(colors=colors, controls=np.linspace(0, 1, len(colors)), name=HEAT_COLORMAP_NAME)


def heat_layer_kwargs(limits: tuple[float, float]) -> dict:
    """``add_image`` keywords for a heatmap overlay with contrast ``limits`` ``(low, high)``."""
    return {"colormap": heat_colormap(), "contrast_limits": tuple(float(v) for v in limits), "blending": "translucent",
            "opacity": 1.0, "interpolation2d": "linear", "interpolation3d": "linear"}


def style_heatmap(layer, limits: tuple[float, float]) -> None:
    """Apply :func:`heat_layer_kwargs` to an existing layer."""
    for key, value in heat_layer_kwargs(limits).items():
        setattr(layer, key, value)


def show_3d(viewer, heatmaps, image=None, outlines=(), *, level: float | None = None) -> None:
    """3D view: the image as an attenuated MIP, each heatmap as an iso-surface at ``level`` (default its
    lower contrast limit), Labels ``outlines`` filled (napari draws no contours in 3D), the camera
    turned to an oblique view."""
    for labels in outlines:
        labels.contour = 0
    viewer.dims.ndisplay = 3
    if image is not None:
        image.rendering = "attenuated_mip"
        image.attenuation = 0.5
    for layer in heatmaps:
        layer.rendering = "iso"
        layer.iso_threshold = float(layer.contrast_limits[0] if level is None else level)
        layer.blending = "translucent_no_depth"
    camera_of(viewer).angles = (0.0, -30.0, 55.0)


def show_2d(viewer, heatmaps, image=None, outlines=()) -> None:
    """Back to 2D slices, the heatmaps as translucent overlays and ``outlines`` as contours."""
    viewer.dims.ndisplay = 2
    for labels in outlines:
        labels.contour = 1
    if image is not None:
        image.rendering = "mip"
    for layer in heatmaps:
        layer.rendering = "mip"
        layer.blending = "translucent"


def side_by_side(viewer, on: bool, stride: int = 2) -> None:
    """napari grid mode with ``stride`` consecutive layers per cell (image, heatmap[, ground truth]), all
    cells on one dims slider: the same slice and the same cursor position in every method."""
    grid = grid_of(viewer)
    grid.stride = stride if on else 1
    grid.enabled = on


def go_to(viewer, layer, voxel) -> None:
    """Centre the view on voxel index ``voxel`` ``(3,)`` of ``layer``: in 2D the slice through it, centred;
    in 3D the camera's centre of rotation."""
    world = np.asarray(layer.data_to_world(np.asarray(voxel, dtype=float)), dtype=float)[-3:]
    axes = list(range(viewer.dims.ndim))[-3:]
    viewer.dims.set_point(axes, tuple(float(w) for w in world))
    shown = [world[d - (viewer.dims.ndim - 3)] for d in viewer.dims.displayed]
    camera_of(viewer).center = tuple(shown) if len(shown) == 3 else (0.0, *shown)
