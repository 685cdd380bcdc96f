"""Reconstruct dock widget: any method on an image layer, live in a thread worker, with cancel."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, PushButton, SpinBox

from tonno_engine.base.defaults import (
    CAM,
    CAM_LAYER,
    DEMO_CASES,
    DEMO_STEPS,
    DEVICE,
    SLICES,
    SOLVER_ITERATIONS,
    SOLVER_STRENGTH,
    TONNO_DIRECTIONS,
    WIDGET_QUALITY,
)
from tonno_engine.base.registry import CAMS, LAYERS, METHODS
from tonno_engine.base.solver_settings import REGULARISERS
from tonno_engine.methods.settings import PRESETS

from ._common import device_choices, geometry_of, spacing_of
from ._form import ModelForm, stacked


class ReconstructWidget(ModelForm):
    """Choose an image, a checkpoint, a method and a quality preset; the heatmap layer appears at once
    and refines as directions accumulate. ``run()``/``cancel()`` drive it; ``worker`` is the running
    worker. Changing the form during a run does not affect the run. The job is the engine's
    ``reconstruct_case_iter``, the road ``tonno reconstruct`` takes. A checkpoint of several findings
    gives one layer per finding from the one pass (:attr:`outputs`); the ``live finding`` picker says
    whose partial heatmaps refine during the run (every layer is filled at the end)."""

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self.method = ComboBox(label="method", choices=list(METHODS), value="tonno")
        self.cam = ComboBox(label="CAM", choices=list(CAMS), value=CAM)
        self.layer = SpinBox(label="layer", min=min(LAYERS), max=max(LAYERS), value=CAM_LAYER)
        self.quality = ComboBox(label="quality", choices=list(PRESETS), value=WIDGET_QUALITY)
        self.slices = SpinBox(label="slices (M; 0: one per voxel)", min=0, max=2000, value=SLICES)
        self.directions = SpinBox(label="directions (L)", min=1, max=100000, value=TONNO_DIRECTIONS)
        self.hemisphere = CheckBox(text="hemisphere")
        # the iterative methods' solver (enabled when one is chosen)
        self.iterations = SpinBox(label="iterations", min=0, max=1000, value=SOLVER_ITERATIONS)
        self.regulariser = ComboBox(label="regulariser", choices=list(REGULARISERS), value="none")
        self.strength = FloatSpinBox(label="strength", min=0.001, max=100.0, step=0.05, value=SOLVER_STRENGTH)
        self.nonnegative = CheckBox(text="heatmap >= 0")
        self.device = ComboBox(label="device", choices=device_choices(), value=DEVICE)
        # filled from the checkpoint when a run loads it; read by the worker through ``_live``
        self.finding = ComboBox(label="live finding", choices=[], nullable=True)
        self.finding.changed.connect(lambda value: setattr(self, "_live", value))
        self._live = None
        self.run_button = PushButton(text="Reconstruct")
        self.demo_button = PushButton(text="Make demo checkpoint (~3 min on CPU, cached)")
        self.extend([self.image, self.more_images, self.checkpoint, self.method, self.cam, self.layer, self.quality, self.slices,
                     self.directions, self.hemisphere, self.iterations, self.regulariser, self.strength,
                     self.nonnegative, self.device, self.finding, self.run_button, self.cancel_button, self.progress,
                     self.status, self.demo_button])
        self.quality.changed.connect(self.apply_quality)
        self.method.changed.connect(self.apply_quality)
        self.method.changed.connect(self._enable_solver)
        self.regulariser.changed.connect(self._enable_solver)
        self._enable_solver()
        self.demo_button.changed.connect(self.make_demo_checkpoint)
        self.run_button.changed.connect(self.run)
        self.apply_quality()
        self.output = None
        self.outputs: dict[str, object] = {}  # finding ("" for a one-logit checkpoint) -> its heatmap layer
        self.updates = 0  # partial heatmaps shown so far

    def apply_quality(self, *_):
        """Fill M, L and the hemisphere box from the chosen preset (L: the method's own default when
        the preset leaves it open)."""
        settings = PRESETS[self.quality.value]
        self.slices.value = settings.slices or 0
        self.directions.value = settings.directions_for(METHODS[self.method.value].default_directions)
        self.hemisphere.value = settings.hemisphere

    def _enable_solver(self, *_):
        solves = METHODS[self.method.value].solves
        for widget in (self.iterations, self.regulariser, self.nonnegative):
            widget.enabled = solves
        self.strength.enabled = solves and self.regulariser.value != "none"

    def spec(self):
        from tonno_engine.base.registry import MethodSpec
        from tonno_engine.base.solver_settings import SolverSettings

        spec = MethodSpec(self.method.value, cam=self.cam.value, layer=int(self.layer.value))
        if not spec.solves:
            return spec
        regulariser = self.regulariser.value
        solver = SolverSettings(iterations=int(self.iterations.value), regulariser=regulariser,
                                strength=float(self.strength.value) if regulariser != "none" else 0.0,
                                nonnegative=bool(self.nonnegative.value))
        return MethodSpec(spec.name, cam=spec.cam, layer=spec.layer, solver=solver)

    def settings(self):
        """The form's reconstruction settings (slice size and geometry: the checkpoint's)."""
        from tonno_engine.methods.settings import ReconstructionSettings

        return ReconstructionSettings(slices=int(self.slices.value) or None, directions=int(self.directions.value),
                                      hemisphere=bool(self.hemisphere.value))

    def run(self, *_):
        """Start the reconstruction of the chosen image layer in a thread worker."""
        from tonno_engine.base.events import Partial, Progress
        from tonno_engine.evaluation.candidates import display_limits
        from tonno_engine.methods.case import CasePrepared, Scan, reconstruct_case_iter
        from tonno_engine.methods.run import CaseRun

        from ..overlays import heat_layer_kwargs

        ready = self.inputs(self.device.value)
        if ready is None:
            return
        source, arrays, load = ready
        spec, settings = self.spec(), self.settings()  # read once: the run keeps them whatever the form shows later
        geo = geometry_of(source)
        params = {"method": spec.as_dict(), **settings.as_dict(), "quality": self.quality.value,
                  "checkpoint": str(self.checkpoint.value), "source": source.name}
        self._layer_args = dict(**heat_layer_kwargs((0.0, 1.0)), scale=geo["scale"], translate=geo["translate"],
                                affine=geo["affine"])
        self._shape, self._specs = source.data.shape, {"": spec}
        self._source_path = source.metadata.get("source_path")  # a DICOM source: the heatmap saves as a Parametric Map
        self.output = self._heat_layer(source.name, spec, params, geo["affine_nifti"])
        self.outputs = {"": self.output}
        affine, spacing, name = geo["affine_nifti"], spacing_of(source), source.name
        run = CaseRun(partials=True, directions_per_update=max(1, settings.directions // 8))

        def job():
            scan = replace(Scan.with_affine(stacked(arrays), affine, spacing), source=f"layer {name}")
            loaded = yield from load
            params.update(device=str(loaded.device), checkpoint_sha256=loaded.sha256())
            unit = "directions"  # partial heatmaps come per chunk of directions, then per solver iteration
            for event in reconstruct_case_iter(scan, loaded, [spec], settings, run=run):
                if isinstance(event, CasePrepared):  # what the heatmap is made with, kept with the layer
                    params.update(event.case.settings.as_dict())
                    labels = {s.finding: s.label for s in event.specs}
                    if loaded.description.findings:  # the GUI adds a layer per finding and fills the picker
                        yield "findings", list(event.specs), None
                elif isinstance(event, Progress):
                    unit = "iterations" if event.stage == "solving" else unit
                    yield event
                elif isinstance(event, Partial):  # the arrays and their display limits are made here, off the GUI thread
                    live = self._live if self._live in labels else next(iter(labels))
                    shown = {f: event.value[label].float().cpu().numpy() for f, label in labels.items()
                             if event.final or f == live}
                    yield event, {f: (heat, display_limits(heat)) for f, heat in shown.items()}, unit

        self.updates = 0
        self._started = time.perf_counter()
        self.status.value = "loading the model and preprocessing"
        self.start(job(), lambda shown: self._show(*shown, source.name, params, geo["affine_nifti"]),
                   desc=f"Reconstruct {spec.label}")

    def _heat_layer(self, source: str, spec, params: dict, affine_nifti):
        """An empty heatmap layer for ``spec`` over the image ``source`` (GUI thread)."""
        return self.viewer.add_image(
            np.zeros(self._shape, np.float32), name=f"{source} {spec.label}",
            **self._layer_args, metadata={"tonno": {**params, "method": spec.as_dict()}, "affine": affine_nifti,
                                          "complete": False, "tonno_method": spec.label, "tonno_finding": spec.finding,
                                          "source_path": getattr(self, "_source_path", None)})

    def _busy(self, busy: bool) -> None:
        self.run_button.enabled = self.demo_button.enabled = not busy

    def _show(self, event, maps, unit, source=None, params=None, affine_nifti=None):
        """GUI side: the checkpoint's findings (one layer each, the first in the layer made at the start), or a
        partial or final heatmap per finding into its layer (robust display limits)."""
        if event == "findings":
            specs, first = maps, self.outputs.pop("")
            first.name, first.metadata["tonno_method"] = f"{source} {specs[0].label}", specs[0].label
            first.metadata.update(tonno_finding=specs[0].finding, tonno={**params, "method": specs[0].as_dict()})
            self.outputs = {specs[0].finding: first}
            self._specs = {s.finding: s for s in specs}
            for spec in specs[1:]:
                self.outputs[spec.finding] = self._heat_layer(source, spec, params, affine_nifti)
            self.finding.choices = [s.finding for s in specs]
            return
        for finding, (data, limits) in maps.items():
            output = self.outputs[finding]
            output.data = data
            output.contrast_limits = limits
            if event.final:  # what made it, with the settings the checkpoint resolved
                output.metadata.update(complete=True, tonno={**params, "method": self._specs[finding].as_dict()})
        if event.final:
            self.status.value = f"done in {time.perf_counter() - self._started:.1f} s"
        else:
            self.updates += 1
            self.status.value = f"{event.done}/{event.total} {unit}"

    def make_demo_checkpoint(self, *_, steps: int = DEMO_STEPS, cases: int = DEMO_CASES):
        """Train the sample data's demo model in a thread worker (cached for next time)."""
        from ..samples import demo_checkpoint_path, make_demo_checkpoint

        def done():
            if demo_checkpoint_path().exists():
                self.checkpoint.value = demo_checkpoint_path()
                self.status.value = f"demo checkpoint ready: {demo_checkpoint_path()}"

        self.status.value = "making the demo checkpoint"
        self.start(make_demo_checkpoint(steps, cases), lambda event: None, on_done=done, desc="Demo checkpoint")
