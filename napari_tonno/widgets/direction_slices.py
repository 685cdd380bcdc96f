"""Direction slices: the M+2 slices the network sees along one direction, as an image stack, with
each slice's logit shown while browsing the stack."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import PushButton

from ._form import DirectionForm


class DirectionSlicesWidget(DirectionForm):
    """``show_slices()`` cuts and scores the slices (in a thread worker, with progress and cancel); the
    stack layer's metadata holds offsets and logits."""

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer, direction="lattice", slices=24, status_label="logit")
        self.show_button = PushButton(text="Show slices")
        self.extend([self.image, self.more_images, self.checkpoint, self.direction, self.index, self.directions, self.slices,
                     self.show_button, self.cancel_button, self.progress, self.status])
        self.show_button.changed.connect(self.show_slices)
        napari_viewer.dims.events.current_step.connect(self._update_text)
        self.stack = None

    def show_slices(self, *_):
        """Cut and score the chosen direction's slices in a thread worker; the stack appears when done."""
        job = self.stack_job(keep_images=True)
        if job is None:
            return
        name = f"{self.image.value.name} slices {self.direction.value}" + (
            f" {self.index.value}" if "lattice" in self.direction.value else "")
        self.status.value = "cutting and scoring slices…"
        self.start(job(), lambda event: self._show(name, event.value) if event.final else None, desc="Direction slices")

    def _busy(self, busy: bool) -> None:
        self.show_button.enabled = not busy

    def _show(self, name: str, stack) -> None:
        data = stack.images.numpy()
        meta_out = {"offsets": stack.offsets.numpy(), "logits": stack.scores.numpy(), "normal": stack.normal.numpy(),
                    "u": stack.u.numpy(), "v": stack.v.numpy()}
        if name in self.viewer.layers:
            self.viewer.layers[name].data = data
            self.viewer.layers[name].metadata.update(meta_out)
            self.stack = self.viewer.layers[name]
        else:
            self.stack = self.viewer.add_image(data, name=name, colormap="gray", metadata=meta_out)
        self._overlay().visible = True
        self._update_text()

    def _overlay(self):
        """The canvas text overlay (``viewer.canvas.overlays.text`` since napari 0.9)."""
        canvas = getattr(self.viewer, "canvas", None)
        overlays = getattr(canvas, "overlays", None)
        return overlays.text if overlays is not None and hasattr(overlays, "text") else self.viewer.text_overlay

    def current_text(self) -> str:
        if self.stack is None or self.stack not in self.viewer.layers:
            return ""
        position = self.stack.world_to_data(self.viewer.dims.point)
        m = int(np.clip(np.rint(position[0]), 0, len(self.stack.metadata["logits"]) - 1))
        s = self.stack.metadata["offsets"][m]
        return f"slice {m - 1} (s = {s:+.3f}): logit {self.stack.metadata['logits'][m]:+.3f}"

    def _update_text(self, *_):
        text = self.current_text()
        if text:
            self.status.value = text
            self._overlay().text = text
