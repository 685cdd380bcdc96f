"""The form shared by the widgets that score an image layer with a checkpoint, and how they run jobs.

Long work never runs on the GUI thread: :meth:`ModelForm.start` hands a generator to napari's
thread worker, whose ``Progress`` events drive the progress bar; Cancel quits it at its next
event. Loading the checkpoint and preprocessing the volume are the job's first steps.
"""

from __future__ import annotations

from magicgui.widgets import ComboBox, Container, FileEdit, Label, ProgressBar, PushButton, Select, SpinBox

from tonno_engine.base.defaults import DEVICE, PROBE_DIRECTIONS

from .._torch_import import ensure_torch
from ._common import DIRECTIONS, default_checkpoint, direction_vector, layers_of, load_iter, spacing_of
from ._jobs import start_job


def preload_engine() -> None:
    """Import what the jobs use while the widget is built: a first import in a worker holds the GIL
    while extension modules load, which froze the GUI for a third of a second."""
    import timm.layers  # noqa: F401
    import torch.fx.experimental.optimization  # noqa: F401

    import tonno_engine.methods.run  # noqa: F401
    import tonno_engine.models.checkpoint  # noqa: F401
    import tonno_engine.tomography.profiles  # noqa: F401


def stacked(arrays: list):
    """The scan a job hands the engine: the one image ``(D, H, W)``, or the images of a case of several stacked
    ``(I, D, H, W)`` (in the job's thread: the copy stays off the GUI thread)."""
    import numpy as np

    return arrays[0] if len(arrays) == 1 else np.stack([np.asarray(a, dtype=np.float32) for a in arrays])


class ModelForm(Container):
    """Image layer + checkpoint fields, a status line, a progress bar and a Cancel button. ``more_images``: the
    layers that hold a case's other images (PET beside CT, MR sequences) for a checkpoint of several channels, in
    the layer list's order after the image; they must lie on the image's grid."""

    def __init__(self, napari_viewer, status_label: str = "status"):
        ensure_torch()
        preload_engine()
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.image = ComboBox(label="image", choices=layers_of(napari_viewer, "Image"))
        self.more_images = Select(label="more images", choices=layers_of(napari_viewer, "Image"), value=[],
                                  tooltip="For a checkpoint of several channels: the layers of the case's other images, "
                                          "in the layer list's order (the image above is the first channel)")
        self.checkpoint = FileEdit(label="checkpoint", filter="*.pt", value=default_checkpoint(napari_viewer))
        self.status = Label(label=status_label, value="")
        self.progress = ProgressBar(label="progress", value=0, max=1)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.cancel_button.changed.connect(self.cancel)
        self.worker = None
        for widget in (self.image, self.more_images):
            napari_viewer.layers.events.inserted.connect(widget.reset_choices)
            napari_viewer.layers.events.removed.connect(widget.reset_choices)

    def inputs(self, device: str = DEVICE):
        """What a job needs from the GUI, read on the GUI thread without copying or loading anything:
        ``(source layer, its data and the chosen more images' (one grid), generator loading the checkpoint)``, or
        ``None`` with the reason in the status."""
        source = self.image.value
        if source is None:
            self.status.value = "choose an image layer"
            return None
        others = [layer for layer in self.more_images.value if layer is not source]
        wrong = [layer.name for layer in others if layer.data.shape != source.data.shape]
        if wrong:
            self.status.value = (f"{', '.join(wrong)}: not on the grid of {source.name} {source.data.shape}; the images "
                                 "of a case share one grid")
            return None
        arrays = [source.data, *(layer.data for layer in others)]  # no copy: stacked in the job
        return source, arrays, load_iter(str(self.checkpoint.value), device)

    def start(self, job, on_event, *, on_done=None, on_returned=None, desc: str = "tonno") -> None:
        """Run the generator ``job`` in a thread worker; ``on_event`` gets every event but progress,
        which moves this form's bar and napari's activity dock (:func:`start_job`).

        ``job`` is an already-made generator: creating it runs nothing, so nothing runs on the GUI thread.
        """

        def finished():
            self._finished()
            if on_done is not None:
                on_done()

        self.cancel_button.enabled = True
        self._busy(True)
        self.worker = start_job(job, desc=desc, on_event=on_event, bar=self.progress, on_finished=finished,
                                on_error=lambda exc: setattr(self.status, "value", f"error: {exc}"),
                                on_returned=on_returned)

    def _busy(self, busy: bool) -> None:
        """Subclasses disable their run buttons while a job runs."""

    def _finished(self):
        self.cancel_button.enabled = False
        self._busy(False)

    def cancel(self, *_):
        """Stop the worker at its next event (every scorer batch: well under a second)."""
        if self.worker is not None:
            self.worker.quit()
            self.status.value = "cancelled"


class DirectionForm(ModelForm):
    """:class:`ModelForm` plus a direction (an array axis or a lattice direction) and M."""

    def __init__(self, napari_viewer, *, direction: str, slices: int, status_label: str = "status"):
        super().__init__(napari_viewer, status_label)
        self.direction = ComboBox(label="direction", choices=list(DIRECTIONS), value=direction)
        self.index = SpinBox(label="lattice index", min=0, max=99999, value=0)
        self.directions = SpinBox(label="lattice size (L)", min=1, max=100000, value=PROBE_DIRECTIONS)
        self.slices = SpinBox(label="slices (M)", min=3, max=2000, value=slices)

    def chosen_normal(self):
        """The chosen unit normal ``(3,)`` float64."""
        return direction_vector(self.direction.value, self.index.value, self.directions.value)

    def stack_job(self, *, keep_images: bool):
        """A job cutting and scoring the chosen direction's slices; its final event holds a
        ``DirectionStack``. ``None`` (reason in the status) when the inputs are missing."""
        ready = self.inputs()
        if ready is None:
            return None
        source, arrays, load = ready
        normal, slices, spacing = self.chosen_normal(), int(self.slices.value), spacing_of(source)

        def job():
            from dataclasses import replace

            from tonno_engine.methods.case import Scan, prepare_case
            from tonno_engine.tomography.profiles import direction_stack_iter
            from tonno_engine.tomography.scorers import ModuleScorer

            loaded = yield from load
            case = prepare_case(Scan(stacked(arrays), spacing), loaded)  # what a reconstruction would use
            scorer = ModuleScorer(loaded.model, context=loaded.description.context)
            yield from direction_stack_iter(case.volume, scorer, normal, replace(case.plan(loaded.device), slices=slices),
                                            keep_images=keep_images)

        return job
