"""Reconstruct dock widget: any method on an image layer, live in a thread worker, with cancel."""

from __future__ import annotations

import time

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, ProgressBar, PushButton, SpinBox

from tonno_engine.base.registry import CAMS, METHODS

from ._common import geometry_of
from ._form import ModelForm


def _devices() -> list[str]:
    from tonno_engine.base.devices import describe_devices

    return ["auto"] + [d.split(" ")[0] for d in describe_devices()]


class ReconstructWidget(ModelForm):
    """Choose an image, a checkpoint and a method; the heatmap layer appears at once and refines
    as directions accumulate. ``run()``/``cancel()`` drive it; ``worker`` is the running worker."""

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self.method = ComboBox(label="method", choices=list(METHODS), value="tonno")
        self.cam = ComboBox(label="CAM", choices=list(CAMS), value="layercam")
        self.layer = SpinBox(label="layer", min=1, max=4, value=2)
        self.slices = SpinBox(label="slices (M)", min=3, max=2000, value=24)
        self.angles = SpinBox(label="angles (L)", min=1, max=100000, value=192)
        self.hemisphere = CheckBox(text="hemisphere", value=True)
        self.device = ComboBox(label="device", choices=_devices(), value="auto")
        self.run_button = PushButton(text="Reconstruct")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", value=0, max=1)
        self.demo_button = PushButton(text="Make demo checkpoint (~3 min on CPU, cached)")
        self.extend([self.image, self.checkpoint, self.method, self.cam, self.layer, self.slices, self.angles,
                     self.hemisphere, self.device, self.run_button, self.cancel_button, self.progress, self.status,
                     self.demo_button])
        self.demo_button.changed.connect(self.make_demo_checkpoint)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.worker = None
        self.output = None
        self.updates = 0  # partial heatmaps shown so far

    def spec(self):
        from tonno_engine.methods.run import MethodSpec

        return MethodSpec(self.method.value, cam=self.cam.value, layer=int(self.layer.value))

    def run(self, *_):
        """Start the reconstruction of the chosen image layer in a thread worker."""
        from napari.qt.threading import create_worker

        from tonno_engine.methods.run import methods_iter

        ready = self.prepared(self.device.value)
        if ready is None:
            return
        source, volume, model, meta, device = ready
        spec = self.spec()
        geo = geometry_of(source)
        params = {"method": spec.as_dict(), "slices": int(self.slices.value), "angles": int(self.angles.value),
                  "hemisphere": bool(self.hemisphere.value), "slice_size": meta.get("slice_size"),
                  "checkpoint": str(self.checkpoint.value), "device": str(device), "source": source.name}
        self.output = self.viewer.add_image(
            np.zeros(source.data.shape, np.float32), name=f"{source.name} {spec.label}", colormap="turbo",
            blending="additive", opacity=0.6, scale=geo["scale"], translate=geo["translate"], affine=geo["affine"],
            metadata={"tonno": params, "affine": geo["affine_nifti"], "complete": False})
        events = methods_iter([spec], volume, model, slices=params["slices"], angles=params["angles"],
                              slice_size=meta.get("slice_size", 224), hemisphere=params["hemisphere"], device=device,
                              output_shape=source.data.shape, directions_per_update=max(1, params["angles"] // 8))
        self.updates = 0
        self._started = time.perf_counter()
        self.worker = create_worker(lambda: (yield from events), _start_thread=False)
        self.worker.yielded.connect(self._on_event)
        self.worker.finished.connect(self._on_finished)
        self.worker.errored.connect(lambda exc: setattr(self.status, "value", f"error: {exc}"))
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.status.value = f"running on {device}"
        self.worker.start()

    def _on_event(self, event):
        from tonno_engine.base.events import Partial, Progress

        if isinstance(event, Progress) and event.total:
            self.progress.max, self.progress.value = event.total, event.done
        elif isinstance(event, Partial):
            data = event.value[self.spec().label].float().cpu().numpy()
            self.output.data = data
            self.output.contrast_limits = (float(data.min()), float(data.max()) or 1.0)
            if event.final:
                self.output.metadata["complete"] = True
                self.status.value = f"done in {time.perf_counter() - self._started:.1f} s"
            else:
                self.updates += 1
                self.status.value = f"{event.done}/{event.total} directions"

    def _on_finished(self):
        self.run_button.enabled, self.cancel_button.enabled = True, False

    def make_demo_checkpoint(self, *_, steps: int = 400, cases: int = 40):
        """Train the sample data's demo model in a thread worker (cached for next time)."""
        from napari.qt.threading import create_worker

        from ..samples import demo_checkpoint_path, make_demo_checkpoint

        self.worker = create_worker(lambda: (yield from make_demo_checkpoint(steps, cases)), _start_thread=False)
        self.worker.yielded.connect(self._on_demo_event)
        self.worker.finished.connect(self._on_finished)

        def done():
            if demo_checkpoint_path().exists():
                self.checkpoint.value = demo_checkpoint_path()
                self.status.value = f"demo checkpoint ready: {demo_checkpoint_path()}"

        self.worker.finished.connect(done)
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.worker.start()

    def _on_demo_event(self, event):
        if getattr(event, "total", 0):
            self.progress.max, self.progress.value = event.total, event.done
            self.status.value = f"demo checkpoint: {event.stage} {event.done}/{event.total}"

    def cancel(self, *_):
        """Stop the worker at its next event (every scorer batch: well under a second)."""
        if self.worker is not None:
            self.worker.quit()
            self.status.value = "cancelled"
