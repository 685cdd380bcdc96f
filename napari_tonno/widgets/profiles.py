"""Logit profiles (paper Fig. 2b): the logits of the M+2 slices along one direction, following
the viewer's position; clicking the plot moves the viewer to that slice."""

from __future__ import annotations

from magicgui.widgets import PushButton

from ._common import move_to, normalised_point
from ._form import DirectionForm


class LogitProfileWidget(DirectionForm):
    """``compute()`` scores the slices (in a thread worker); ``offsets``/``logits`` hold the profile."""

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer, direction="axis 0", slices=48)
        self.compute_button = PushButton(text="Compute profile")
        self.extend([self.image, self.more_images, self.checkpoint, self.direction, self.index, self.directions, self.slices,
                     self.compute_button, self.cancel_button, self.progress, self.status])
        self.compute_button.changed.connect(self.compute)
        napari_viewer.dims.events.current_step.connect(self._follow)
        self.offsets = self.logits = self.normal = None
        self._canvas = self._figure = self._marker = None

    def _plot_area(self):
        """A matplotlib canvas in the dock (created on first use, so that importing needs no Qt)."""
        if self._canvas is None:
            from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
            from matplotlib.figure import Figure

            self._figure = Figure(figsize=(4, 2.4), tight_layout=True)
            self._canvas = FigureCanvasQTAgg(self._figure)
            self._canvas.setMinimumHeight(200)
            self._canvas.mpl_connect("button_press_event", self._on_click)
            self.native.layout().addWidget(self._canvas)
        return self._figure

    def compute(self, *_):
        """Score the chosen direction's slices in a thread worker; the plot appears when done."""
        job = self.stack_job(keep_images=False)
        if job is None:
            return
        self.status.value = "scoring slices…"
        self.start(job(), lambda event: self._show(event.value) if event.final else None, desc="Logit profiles")

    def _busy(self, busy: bool) -> None:
        self.compute_button.enabled = not busy

    def _show(self, stack):
        self.normal = stack.normal
        self.logits = stack.scores.numpy()
        self.offsets = stack.offsets.numpy()
        fig = self._plot_area()
        fig.clear()
        ax = fig.add_subplot(111)
        ax.plot(self.offsets, self.logits, ".-", lw=1)
        ax.set_xlabel("s (offset along the direction)")
        ax.set_ylabel("logit")
        n = self.normal.numpy()
        ax.set_title(f"{self.direction.value}: n = ({n[0]:.2f}, {n[1]:.2f}, {n[2]:.2f})", fontsize=8)
        self._marker = ax.axvline(self.current_offset(), color="red", lw=1)
        self._canvas.draw_idle()
        self.status.value = f"{len(self.logits)} slices; max logit {self.logits.max():.2f}"

    def current_offset(self) -> float:
        """The viewer's position projected on the direction: ``s = x · n``."""
        source = self.image.value
        if source is None or self.normal is None:
            return 0.0
        return float(normalised_point(self.viewer, source) @ self.normal.numpy())

    def _follow(self, *_):
        if self._marker is not None:
            s = self.current_offset()
            self._marker.set_xdata([s, s])
            self._canvas.draw_idle()

    def _on_click(self, event):
        if event.xdata is not None:
            self.go_to(float(event.xdata))

    def go_to(self, s: float) -> None:
        """Move the viewer to the slice at offset ``s``: along the normal from the current point."""
        source = self.image.value
        if source is None or self.normal is None:
            return
        from tonno_engine.tomography.geometry import point_at_offset

        move_to(self.viewer, source, point_at_offset(normalised_point(self.viewer, source), self.normal.numpy(), s))
