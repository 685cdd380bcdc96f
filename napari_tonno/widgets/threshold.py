"""Threshold: a heatmap → Labels layer with a slider, and metrics against a ground-truth layer."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSlider, Label

from tonno_engine.base.defaults import CONNECTIVITY

from .._torch_import import ensure_torch
from ._common import geometry_of, layers_of


class ThresholdWidget(Container):
    """Moving ``level`` updates the mask layer and, with a ground truth, the lesion metrics."""

    def __init__(self, napari_viewer):
        ensure_torch()
        super().__init__(labels=True)
        self.viewer = viewer = napari_viewer
        self.heatmap = ComboBox(label="heatmap", choices=layers_of(viewer, "Image"), nullable=True)
        labels = layers_of(viewer, "Labels")
        self.truth = ComboBox(label="ground truth", choices=lambda w=None: [None] + [
            layer for layer in labels() if not layer.name.endswith(" mask")], nullable=True)
        self.level = FloatSlider(label="threshold", min=0.0, max=1.0, value=0.5, step=0.001)
        self.connectivity = ComboBox(label="connectivity", choices=[26, 18, 6], value=CONNECTIVITY)
        self.metrics = Label(label="metrics", value="")
        self.extend([self.heatmap, self.truth, self.level, self.connectivity, self.metrics])
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self.heatmap.reset_choices)
            event.connect(self.truth.reset_choices)
        self.heatmap.changed.connect(self._rescale)
        self.level.changed.connect(self.apply)
        self.truth.changed.connect(self.apply)
        self.connectivity.changed.connect(self.apply)
        self.mask_layer = None
        self.last_metrics = None
        # nothing is binarised until a heatmap is chosen or the slider moves
        self.heatmap.value = next((layer for layer in reversed(self.heatmap.choices)
                                   if "tonno" in getattr(layer, "metadata", {})), None)

    def _rescale(self, *_):
        layer = self.heatmap.value
        if layer is None:
            return
        lo, hi = float(np.min(layer.data)), float(np.max(layer.data))
        hi = hi if hi > lo else lo + 1.0
        self.level.min, self.level.max = lo, hi
        self.level.step = (hi - lo) / 1000
        self.level.value = lo + 0.5 * (hi - lo)
        self.apply()

    def apply(self, *_):
        """Binarise the heatmap at the slider's level; show metrics against the ground truth."""
        from tonno_engine.evaluation.metrics import case_metrics, summarize

        layer = self.heatmap.value
        if layer is None:
            return
        mask = (np.asarray(layer.data) > self.level.value).astype(np.uint8)
        name = f"{layer.name} mask"
        if name in self.viewer.layers:
            self.mask_layer = self.viewer.layers[name]
            self.mask_layer.data = mask
        else:
            geo = geometry_of(layer)
            self.mask_layer = self.viewer.add_labels(mask, name=name, scale=geo["scale"], translate=geo["translate"],
                                                     affine=geo["affine"], opacity=0.6,
                                                     metadata={"affine": geo["affine_nifti"]})
        self.mask_layer.metadata["threshold"] = float(self.level.value)
        truth = self.truth.value
        if truth is None or np.shape(truth.data) != mask.shape:
            self.last_metrics = None
            self.metrics.value = f"{int(mask.sum())} voxels" + ("" if truth is None else "; ground truth shape differs")
            return
        m = case_metrics(mask > 0, np.asarray(truth.data) > 0, connectivity=int(self.connectivity.value))
        s = summarize([m])
        self.last_metrics = {**m.as_dict(), **s}
        self.metrics.value = (f"lesions {m.detected}/{m.n_gt} found, {m.tp_pred}/{m.n_pred} components right; "
                              f"P {s['precision']:.2f} R {s['recall']:.2f} F1 {s['f1']:.2f} Dice {m.dice:.2f}")
