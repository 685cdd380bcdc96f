"""Shared wiring for the dock widgets: layer choices, checkpoint defaults, layer geometry."""

from __future__ import annotations

import numpy as np

from tonno_engine.base.defaults import PROBE_DIRECTIONS


def device_choices() -> list[str]:
    """``auto`` and every device torch sees (``cpu``, ``cuda:N``, ``mps``)."""
    from tonno_engine.base.defaults import DEVICE
    from tonno_engine.base.devices import describe_devices

    return [DEVICE] + [d.split(" ")[0] for d in describe_devices()]


def layers_of(viewer, kind: str):
    """A magicgui ``choices`` callable listing the viewer's layers of ``kind`` ("Image", "Labels")."""

    def choices(_widget=None):
        return [layer for layer in viewer.layers if type(layer).__name__ == kind]

    return choices


def default_checkpoint(viewer) -> str:
    """A checkpoint named in an image layer's metadata (sample data), else the cached demo model."""
    from ..samples import demo_checkpoint_path

    for layer in viewer.layers:
        path = getattr(layer, "metadata", {}).get("tonno_checkpoint")
        if path:
            return path
    return str(demo_checkpoint_path()) if demo_checkpoint_path().exists() else ""


def geometry_of(layer) -> dict:
    """``scale``/``translate``/``affine``/metadata affine of ``layer`` for a derived layer."""
    from ..io import layer_affine

    meta = {"scale": layer.scale, "translate": layer.translate, "affine": layer.affine.affine_matrix,
            "metadata": layer.metadata}
    return {"scale": tuple(layer.scale), "translate": tuple(layer.translate),
            "affine": np.asarray(layer.affine.affine_matrix), "affine_nifti": layer_affine(meta)}


def spacing_of(layer) -> tuple[float, float, float]:
    return tuple(float(abs(s)) for s in layer.scale[-3:])


def load_iter(checkpoint: str, device: str):
    """Load the checkpoint onto ``device``; yields one ``Progress("load")`` and returns the engine's
    ``LoadedCheckpoint``. Runs in a worker."""
    from tonno_engine.base.events import Progress
    from tonno_engine.models.checkpoint import load_checkpoint

    loaded = load_checkpoint(str(checkpoint), device)
    yield Progress("load", 1, 1, "checkpoints")
    return loaded


DIRECTIONS = ("axis 0", "axis 1", "axis 2", "lattice")


def direction_vector(choice: str, index: int = 0, directions: int = PROBE_DIRECTIONS):
    """A unit normal ``(3,)`` float64 in ``(x0, x1, x2)``: an array axis or lattice direction ``index``."""
    import torch

    from tonno_engine.tomography.reconstruction import make_directions

    if choice.startswith("axis"):
        return torch.eye(3, dtype=torch.float64)[int(choice[-1])]
    lattice = make_directions(directions, hemisphere=True)
    return lattice.normals[int(index) % directions]


def normalised_point(viewer, layer) -> np.ndarray:
    """The viewer's current position in ``layer``'s ``[-1, 1]³`` coordinates (align_corners)."""
    if viewer.dims.ndim < 3 or layer not in viewer.layers:
        return np.zeros(3)
    from tonno_engine.tomography.geometry import index_to_normalised

    return index_to_normalised(layer.world_to_data(viewer.dims.point), layer.data.shape)


def move_to(viewer, layer, x: np.ndarray) -> None:
    """Put the viewer at normalised point ``x`` ``(3,)`` of ``layer`` (nearest voxel)."""
    from tonno_engine.tomography.geometry import normalised_to_index

    world = layer.data_to_world(normalised_to_index(x, layer.data.shape))
    axes = list(range(viewer.dims.ndim))[-3:]
    viewer.dims.set_point(axes, tuple(float(w) for w in world[-3:]))


def fill_table(table, rows: list[list], columns: list[str], *, chunk: int = 200, on_done=None,
               sortable: bool = True) -> None:
    """Put ``rows`` into a magicgui ``Table``, ``chunk`` rows per turn of the event loop (thousands of
    candidates would otherwise hold the GUI thread for most of a second); ``on_done()`` after the last.

    Numbers are stored as numbers, so that clicking a header sorts them by value ("67.5" before "490.0").
    A newer fill of the same table cancels an unfinished one.
    """
    from qtpy.QtCore import Qt, QTimer
    from qtpy.QtWidgets import QStyledItemDelegate, QTableWidgetItem

    native = table.native
    if type(native.itemDelegate()) is not QStyledItemDelegate:
        # magicgui's delegate formats a cell through int() first, which shows 0.081 as "0"
        native.setItemDelegate(QStyledItemDelegate(native))
    native.tonno_fills = mine = getattr(native, "tonno_fills", 0) + 1
    native.setSortingEnabled(False)
    native.clearContents()
    native.setColumnCount(len(columns))
    native.setHorizontalHeaderLabels(columns)
    native.setRowCount(len(rows))

    def add(start: int) -> None:
        if native.tonno_fills != mine:
            return
        for r in range(start, min(start + chunk, len(rows))):
            for c, value in enumerate(rows[r]):
                item = QTableWidgetItem()
                number = isinstance(value, int | float) and not isinstance(value, bool)
                item.setData(Qt.ItemDataRole.DisplayRole, value if number else str(value))
                native.setItem(r, c, item)
        if start + chunk < len(rows):
            QTimer.singleShot(0, lambda: add(start + chunk))
        else:
            native.setSortingEnabled(sortable)
            native.resizeColumnsToContents()
            if on_done is not None:
                on_done()

    add(0)
