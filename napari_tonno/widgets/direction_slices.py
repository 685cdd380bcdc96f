"""Direction slices: the M+2 slices the network sees along one direction, as an image stack, with
each slice's logit shown while browsing the stack."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import PushButton

from ._form import DirectionForm


class DirectionSlicesWidget(DirectionForm):
    """``show()`` cuts and scores the slices; the stack layer's metadata holds offsets and logits."""

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer, direction="lattice", slices=24, status_label="logit")
        self.show_button = PushButton(text="Show slices")
        self.extend([self.image, self.checkpoint, self.direction, self.index, self.angles, self.slices,
                     self.show_button, self.status])
        self.show_button.changed.connect(self.show_slices)
        napari_viewer.dims.events.current_step.connect(self._update_text)
        self.stack = None

    def show_slices(self, *_):
        import torch

        from tonno_engine.tomography.geometry import orthonormal_basis, slice_offsets
        from tonno_engine.tomography.scorers import ModuleScorer
        from tonno_engine.tomography.slicing import extract_slices
        from tonno_engine.base.inputs import as_size2

        ready = self.prepared()
        if ready is None:
            return
        source, volume, model, meta, device = ready
        n = self.chosen_normal()[None]
        u, v = orthonormal_basis(n)
        offsets = slice_offsets(int(self.slices.value))
        k = len(offsets)
        vol = torch.as_tensor(volume, dtype=torch.float32, device=device)
        with torch.inference_mode():
            cut = extract_slices(vol, offsets, n.expand(k, 3), u.expand(k, 3), v.expand(k, 3),
                                 as_size2(meta.get("slice_size", 224)))
            logits = ModuleScorer(model)(cut).cpu().numpy()
        name = f"{source.name} slices {self.direction.value}" + (f" {self.index.value}" if "lattice" in
                                                                  self.direction.value else "")
        meta_out = {"offsets": offsets.numpy(), "logits": logits, "normal": n[0].numpy(), "u": u[0].numpy(),
                    "v": v[0].numpy()}
        if name in self.viewer.layers:
            self.viewer.layers[name].data = cut.cpu().numpy()
            self.viewer.layers[name].metadata.update(meta_out)
            self.stack = self.viewer.layers[name]
        else:
            self.stack = self.viewer.add_image(cut.cpu().numpy(), name=name, colormap="gray", metadata=meta_out)
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
