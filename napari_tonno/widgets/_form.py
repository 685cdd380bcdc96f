"""The form shared by the widgets that score an image layer with a checkpoint."""

from __future__ import annotations

from magicgui.widgets import ComboBox, Container, FileEdit, Label, SpinBox

from .._torch_import import ensure_torch
from ._common import DIRECTIONS, default_checkpoint, direction_vector, layers_of, prepare


class ModelForm(Container):
    """Image layer + checkpoint fields, a status line, and :meth:`prepared` to load both."""

    def __init__(self, napari_viewer, status_label: str = "status"):
        ensure_torch()
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.image = ComboBox(label="image", choices=layers_of(napari_viewer, "Image"))
        self.checkpoint = FileEdit(label="checkpoint", filter="*.pt", value=default_checkpoint(napari_viewer))
        self.status = Label(label=status_label, value="")
        napari_viewer.layers.events.inserted.connect(self.image.reset_choices)
        napari_viewer.layers.events.removed.connect(self.image.reset_choices)

    def prepared(self, device: str = "auto"):
        """``(source layer, volume, model, meta, device)``, or ``None`` with the reason in the status."""
        source = self.image.value
        if source is None:
            self.status.value = "choose an image layer"
            return None
        try:
            return (source, *prepare(source, self.checkpoint.value, device))
        except Exception as exc:  # noqa: BLE001 - any failure to load is shown to the user
            self.status.value = f"error: {exc}"
            return None


class DirectionForm(ModelForm):
    """:class:`ModelForm` plus a direction (an array axis or a lattice direction) and M."""

    def __init__(self, napari_viewer, *, direction: str, slices: int, status_label: str = "status"):
        super().__init__(napari_viewer, status_label)
        self.direction = ComboBox(label="direction", choices=list(DIRECTIONS), value=direction)
        self.index = SpinBox(label="lattice index", min=0, max=99999, value=0)
        self.angles = SpinBox(label="lattice size", min=1, max=100000, value=192)
        self.slices = SpinBox(label="slices (M)", min=3, max=2000, value=slices)

    def chosen_normal(self):
        """The chosen unit normal ``(3,)`` float64."""
        return direction_vector(self.direction.value, self.index.value, self.angles.value)
