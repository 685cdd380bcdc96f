"""Results browser: a ``tonno reconstruct`` or ``tonno benchmark`` output folder, case by case.

Opening the folder lists its cases (status, seconds, each method's Dice and detections when the
folder holds a ``metrics.csv`` from ``tonno evaluate``); heatmaps of several findings are browsed one
finding at a time (the ``finding`` picker), or all together. Choosing a case loads its image, every
method's heatmap and the ground truth in a thread worker (progress in napari's activity dock) and
replaces the previous case's layers; Page Down / Page Up (or Next / Previous) step through the cases.
"""

from __future__ import annotations

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, ProgressBar, PushButton, Table

from .._torch_import import ensure_torch
from ._common import fill_table
from ._jobs import start_job

NEXT_KEY, PREVIOUS_KEY = "PageDown", "PageUp"
#: the ``finding`` picker's entry for every finding's heatmaps together
ALL_FINDINGS = "all"


def _case_layers(case, folder, methods=None):
    """Worker side: read one case's volumes (the heatmaps of ``methods``, default all); yields progress, then
    ``[(name, volume, kind, method)]``."""
    from tonno_engine.base.events import Progress
    from tonno_engine.data.images import load_image
    from tonno_engine.data.nifti import load_nifti
    from tonno_engine.evaluation.candidates import display_limits

    heatmaps = [(m, path) for m, path in case.heatmaps.items() if methods is None or m in methods]
    todo = [("image", case.image)] * (case.image is not None) + heatmaps + \
        [("ground truth", case.mask)] * (case.mask is not None)
    loaded = []
    for done, (what, path) in enumerate(todo):
        yield Progress("load", done, len(todo), "volumes", detail=f"{case.case}: {what}")
        if what == "image":
            loaded.append((case.case, load_image(path), "image", None, None))
        elif what == "ground truth":
            # kept as it is: a label image of several findings shows each in its own colour
            loaded.append((f"{case.case} ground truth", load_image(path, kind="ground truth"), "labels", None, None))
        else:
            volume = load_nifti(path, kind="heatmap")
            loaded.append((f"{case.case} {what}", volume, "heatmap", what, display_limits(volume.array)))
    yield Progress("load", len(todo), len(todo), "volumes", detail=case.case)
    yield loaded


def _number(text: str):
    """A CSV cell as a number rounded for the table (sorts by value), or as it is."""
    try:
        return round(float(text), 3)
    except ValueError:
        return text


class ResultsBrowserWidget(Container):
    """``open(folder)`` lists the cases; ``show(index)`` loads one; ``next()``/``previous()`` step."""

    def __init__(self, napari_viewer):
        ensure_torch()  # the engine imports torch; triton must load before napari's OpenGL context is used
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.folder = FileEdit(label="output folder", mode="d")
        self.open_button = PushButton(text="Open")
        self.finding = ComboBox(label="finding", choices=[ALL_FINDINGS], value=ALL_FINDINGS)
        self.table = Table(value={"case": []})
        self.previous_button = PushButton(text="Previous (PgUp)")
        self.next_button = PushButton(text="Next (PgDn)")
        self.grid = CheckBox(text="methods side by side")
        self.three_d = CheckBox(text="3D")
        self.progress = ProgressBar(label="progress", value=0, max=1)
        self.status = Label(label="status", value="")
        steps = Container(widgets=[self.previous_button, self.next_button], layout="horizontal", labels=False)
        views = Container(widgets=[self.grid, self.three_d], layout="horizontal", labels=False)
        self.extend([self.folder, self.open_button, self.finding, self.table, steps, views, self.progress, self.status])
        native = self.table.native
        native.setSelectionBehavior(native.SelectionBehavior.SelectRows)
        native.setSelectionMode(native.SelectionMode.SingleSelection)
        native.setEditTriggers(native.EditTrigger.NoEditTriggers)
        native.cellClicked.connect(lambda row, _col: self.show(row))
        self.open_button.changed.connect(lambda: self.open(self.folder.value))
        self.next_button.changed.connect(self.next)
        self.previous_button.changed.connect(self.previous)
        self.grid.changed.connect(self._arrange)
        self.three_d.changed.connect(self._arrange)
        self.finding.changed.connect(self._choose_finding)
        napari_viewer.bind_key(NEXT_KEY, lambda _viewer: self.next(), overwrite=True)
        napari_viewer.bind_key(PREVIOUS_KEY, lambda _viewer: self.previous(), overwrite=True)
        self.results = None
        self.current = None  # index of the case shown
        self.layers: list = []  # the layers this widget added for the current case
        self.worker = None

    def open(self, folder) -> None:
        """Read the folder's summary (small files: on the GUI thread) and list its cases."""
        from tonno_engine.apps.results import ResultsFolder

        try:
            self.results = ResultsFolder.open(folder)
        except ValueError as exc:
            self.status.value = str(exc)
            return
        self.finding.changed.disconnect(self._choose_finding)  # (refilled, not chosen)
        self.finding.choices = [ALL_FINDINGS, *self.results.findings]
        self.finding.value = ALL_FINDINGS
        self.finding.changed.connect(self._choose_finding)
        self._fill_cases()

    def _methods(self) -> list[str]:
        """The methods shown: the chosen finding's, or all."""
        chosen = self.finding.value
        return self.results.methods_of(None if chosen == ALL_FINDINGS else chosen)

    def _choose_finding(self, *_) -> None:
        """Another finding: its methods in the table, and the case shown again with its heatmaps."""
        if self.results is not None:
            current = self.current
            self._fill_cases()
            if current is not None:
                self.show(current)

    def _fill_cases(self) -> None:
        """Fill the table with every case and the chosen finding's methods."""
        methods = self._methods()
        scored = any(c.metrics for c in self.results.cases)
        columns = ["case", "status", "seconds"] + [f"{m} dice" for m in methods if scored] + \
            [f"{m} found" for m in methods if scored]
        rows = []
        for case in self.results.cases:
            dice = [_number(case.metrics.get(m, {}).get("dice", "")) for m in methods] if scored else []
            found = [f"{case.metrics[m]['detected']}/{case.metrics[m]['n_gt']}" if m in case.metrics else ""
                     for m in methods] if scored else []
            rows.append([case.case, case.status, round(case.seconds, 1), *dice, *found])
        fill_table(self.table, rows, columns, sortable=False)  # row i is case i
        self.current = None
        self.status.value = f"{len(rows)} cases, methods {', '.join(methods)}"

    def show(self, index: int) -> None:
        """Load case ``index`` (table order) in a thread worker; its layers replace the previous case's."""
        if self.results is None or not 0 <= index < len(self.results.cases):
            return
        case = self.results.cases[index]
        if case.image is None:
            self.status.value = f"{case.case}: the input named in run.json is gone; showing heatmaps only"
        self.current = index
        self.table.native.selectRow(index)
        if self.worker is not None:
            self.worker.quit()

        def loaded(event):
            if isinstance(event, list):
                self._replace(event)

        self.worker = start_job(_case_layers(case, self.results.folder, self._methods()), desc=f"Open {case.case}",
                                bar=self.progress, on_event=loaded,
                                on_error=lambda exc: setattr(self.status, "value", f"error: {exc}"))

    def next(self, *_):
        if self.results is not None:
            self.show(0 if self.current is None else min(self.current + 1, len(self.results.cases) - 1))

    def previous(self, *_):
        if self.results is not None:
            self.show(0 if self.current is None else max(self.current - 1, 0))

    def _replace(self, loaded) -> None:
        """GUI side: remove the previous case's layers, add this case's with their geometry."""
        from ..io import layer_kwargs
        from ..overlays import heat_layer_kwargs

        for layer in self.layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.layers = []
        for name, volume, kind, method, limits in loaded:
            geo = layer_kwargs(volume.affine, volume.header, source_path=str(volume.path))
            geo["metadata"]["tonno_role"] = {"image": "image", "labels": "truth", "heatmap": "heatmap"}[kind]
            if kind == "image":
                layer = self.viewer.add_image(volume.array, name=name, colormap="gray", **geo)
            elif kind == "labels":
                # several findings: the label image's values (finding k + 1), each finding in its own colour
                values = volume.array.round() if self.results.findings else volume.array > 0.5
                layer = self.viewer.add_labels(values.astype("uint8"), name=name, opacity=0.7, **geo)
                layer.contour = 1
            else:
                geo["metadata"].update(tonno_method=method, thresholds_json=str(self.results.thresholds or ""),
                                       tonno_finding=self.results.method_findings.get(method, ""))
                layer = self.viewer.add_image(volume.array, name=name, **heat_layer_kwargs(limits), **geo)
            self.layers.append(layer)
        self.status.value = f"{self.results.cases[self.current].case}: {len(loaded)} layers"
        self._arrange()

    def _role(self, role: str):
        return [layer for layer in self.layers if layer.metadata.get("tonno_role") == role]

    def _copy(self, layer):
        """Another layer over the same array (no copy of the data) for another grid cell."""
        kwargs = {"name": f"{layer.name} ·", "scale": layer.scale, "translate": layer.translate,
                  "affine": layer.affine.affine_matrix, "metadata": {"tonno_copy": True}}
        if type(layer).__name__ == "Labels":
            copy = self.viewer.add_labels(layer.data, opacity=layer.opacity, **kwargs)
            copy.contour = layer.contour
        else:
            copy = self.viewer.add_image(layer.data, colormap=layer.colormap, contrast_limits=layer.contrast_limits,
                                         **kwargs)
        self.layers.append(copy)
        return copy

    def _arrange(self, *_):
        """Side by side: one cell per method (image, heatmap, ground truth), one dims slider for all;
        3D: attenuated-MIP image and iso-surface heatmaps."""
        from ..overlays import show_2d, show_3d, side_by_side

        if self.current is None or not self.layers:
            return
        for layer in [x for x in self.layers if x.metadata.get("tonno_copy")]:
            self.viewer.layers.remove(layer)
            self.layers.remove(layer)
        image, truth = next(iter(self._role("image")), None), next(iter(self._role("truth")), None)
        heatmaps = self._role("heatmap")
        grid = bool(self.grid.value) and image is not None and len(heatmaps) > 1
        if grid:
            order: list = []
            for k, heat in enumerate(heatmaps):
                cell = [image if k == 0 else self._copy(image), heat]
                if truth is not None:
                    cell.append(truth if k == 0 else self._copy(truth))
                order += cell
            self.viewer.layers[:] = [layer for layer in self.viewer.layers if layer not in order] + order
        side_by_side(self.viewer, grid, stride=2 + (truth is not None))
        outlines = [layer for layer in self.layers if type(layer).__name__ == "Labels"]
        (show_3d if self.three_d.value else show_2d)(self.viewer, heatmaps, image, outlines)
        self.viewer.reset_view()
