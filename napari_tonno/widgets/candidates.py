"""Lesion candidates: the components of a heatmap above a threshold, in a sortable table; go to one,
accept, reject or merge them into an editable annotation layer; save it as NIfTI with a decisions CSV,
or add it to a ``tonno export nnunet`` data set, where it replaces that case's pseudo-label.

The components are found and measured in a thread worker (progress in napari's activity dock); the
GUI thread only fills the table and writes chosen components into the annotation layer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSlider, Label, LineEdit, ProgressBar, PushButton, Table

from .._torch_import import ensure_torch
from ._common import fill_table, geometry_of, layers_of
from ._jobs import start_job

RULES = ("percentile", "fixed", "calibrated")
COLUMNS = ("id", "volume mm³", "peak", "mean", "x mm", "y mm", "z mm", "decision")


class LesionCandidatesWidget(Container):
    """``find()`` lists the candidates of the chosen heatmap; ``go_to(id)``; ``decide("accept"|"reject")``
    and ``merge()`` act on the selected rows; ``save(path)`` writes the annotation and its decisions;
    ``add_to_export(folder, case)`` lays them over that case's pseudo-label in an export."""

    def __init__(self, napari_viewer):
        ensure_torch()
        super().__init__(labels=True)
        self.viewer = viewer = napari_viewer
        self.heatmap = ComboBox(label="heatmap", choices=layers_of(viewer, "Image"), nullable=True)
        self.rule = ComboBox(label="threshold", choices=list(RULES), value="percentile")
        self.value = FloatSlider(label="level / percentile", value=99.9, min=90.0, max=100.0, step=0.01)
        self.thresholds = FileEdit(label="thresholds.json", filter="*.json", mode="r")
        self.find_button = PushButton(text="Find candidates")
        self.progress = ProgressBar(label="progress", value=0, max=1)
        self.table = Table(value={c: [] for c in COLUMNS})
        self.accept_button = PushButton(text="Accept")
        self.reject_button = PushButton(text="Reject")
        self.merge_button = PushButton(text="Merge")
        self.out = FileEdit(label="save annotation as", filter="*.nii.gz", mode="w")
        self.save_button = PushButton(text="Save annotation")
        self.export = FileEdit(label="export data set", mode="d")
        self.case = LineEdit(label="case")
        self.export_button = PushButton(text="Add to export")
        self.status = Label(label="status", value="")
        actions = Container(widgets=[self.accept_button, self.reject_button, self.merge_button], layout="horizontal",
                            labels=False)
        self.extend([self.heatmap, self.rule, self.value, self.thresholds, self.find_button, self.progress, self.table,
                     actions, self.out, self.save_button, self.export, self.case, self.export_button, self.status])
        self.table.native.setSortingEnabled(True)
        self.table.native.setSelectionBehavior(self.table.native.SelectionBehavior.SelectRows)
        self.table.native.setEditTriggers(self.table.native.EditTrigger.NoEditTriggers)
        self.table.native.cellClicked.connect(lambda row, _col: self.go_to(self.row_id(row)))
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self.heatmap.reset_choices)
        self.find_button.changed.connect(self.find)
        self.heatmap.changed.connect(self._rescale)
        self.rule.changed.connect(self._rescale)
        from qtpy.QtCore import QTimer

        # moving the slider finds the candidates again once it rests for 400 ms
        self._debounce = QTimer(self.native, singleShot=True, interval=400)
        self._debounce.timeout.connect(self.find)
        self.value.changed.connect(lambda _value: self._debounce.start() if self.heatmap.value is not None else None)
        self.accept_button.changed.connect(lambda: self.decide("accept"))
        self.reject_button.changed.connect(lambda: self.decide("reject"))
        self.merge_button.changed.connect(self.merge)
        self.save_button.changed.connect(lambda: self.save(self.out.value))
        self.export_button.changed.connect(lambda: self.add_to_export(self.export.value, self.case.value))
        self.found = None  # the CandidateSet shown
        self.source = None  # the heatmap layer it came from
        self.annotation = None  # the Labels layer the decisions go into
        self.decisions: dict[int, dict] = {}
        self.earlier: list[dict] = []  # decisions made on candidates of an earlier threshold
        self.worker = None
        self.table_ready = True
        # a first Labels layer imports 0.6 s of modules: do it while the widget is built, not on a result
        from napari.layers import Labels

        Labels(np.zeros((2, 2, 2), np.uint8))

    # -- finding -------------------------------------------------------------------------------
    def _rescale(self, *_):
        """Slider range: 90–100 for a percentile; the heatmap's value range for a fixed level."""
        layer = self.heatmap.value
        if self.rule.value == "fixed" and layer is not None:
            lo, hi = (float(v) for v in layer.contrast_limits_range)
            hi = hi if hi > lo else lo + 1.0
            # widen first: magicgui refuses a minimum above the current maximum (and the reverse)
            self.value.min, self.value.max = min(lo, self.value.min), max(hi, self.value.max)
            self.value.min, self.value.max, self.value.step = lo, hi, (hi - lo) / 1000
            self.value.value = lo + 0.5 * (hi - lo)
        elif self.rule.value == "percentile":
            self.value.min, self.value.max = min(90.0, self.value.min), max(100.0, self.value.max)
            self.value.min, self.value.max, self.value.step = 90.0, 100.0, 0.01
            self.value.value = 99.9

    def threshold(self, layer):
        """The fixed or calibrated ``Threshold`` the form asks for; ``None`` for a percentile (computed in the worker)
        or (reason in the status) when it cannot be had."""
        from tonno_engine.apps.provenance import source_mismatches
        from tonno_engine.evaluation.metrics import Threshold
        from tonno_engine.evaluation.thresholds_file import read_thresholds

        if self.rule.value == "fixed":
            return Threshold("fixed", float(self.value.value))
        if self.rule.value == "calibrated":
            label = layer.metadata.get("tonno_method") or layer.name
            path = self.thresholds.value if str(self.thresholds.value) not in ("", ".") else \
                layer.metadata.get("thresholds_json")
            try:
                calibration = read_thresholds(path) if path else None
                threshold = calibration.threshold_for(label) if calibration else None
            except ValueError as exc:
                self.status.value = str(exc)
                return None
            source = layer.metadata.get("source_path")
            mismatch = source_mismatches([Path(source)], calibrated_on=calibration.checkpoint_sha256,
                                         calibration=str(path)) if source and calibration else []
            if mismatch:  # another model's level on this heatmap would list the wrong candidates
                self.status.value = f"{mismatch[0]}: choose the thresholds.json of the model that made this heatmap"
                return None
            return threshold
        return None

    def find(self, *_):
        """Find and measure the candidates of the chosen heatmap in a thread worker."""
        from tonno_engine.evaluation.candidates import CandidateSet, candidates_iter, percentile_level

        self._debounce.stop()
        if self.worker is not None and self.worker.is_running:
            self.worker.quit()  # a newer threshold supersedes it
        layer = self.heatmap.value
        if layer is None:
            self.status.value = "choose a heatmap layer"
            return
        threshold = self.threshold(layer)
        if threshold is None and self.rule.value != "percentile":
            self.status.value = self.status.value or "give a thresholds.json from tonno benchmark"
            return
        data, affine = layer.data, geometry_of(layer)["affine_nifti"]
        percentile = float(self.value.value)

        def job():
            chosen = percentile_level(data, percentile) if threshold is None else threshold.level(data)
            yield from candidates_iter(data, chosen, affine)

        def shown(event):
            if isinstance(event, CandidateSet):
                self._show(layer, event)

        self.status.value = "finding candidates"
        self.worker = start_job(job(), desc="Lesion candidates", on_event=shown, bar=self.progress,
                                on_error=lambda exc: setattr(self.status, "value", f"error: {exc}"))

    def _show(self, layer, found) -> None:
        from tonno_engine.apps.export_review import case_of_heatmap

        self.earlier += list(self.decisions.values())
        self.found, self.source, self.decisions = found, layer, {}
        finding = layer.metadata.get("tonno_finding") or ""  # a heatmap of one finding of several
        self.case.value = case_of_heatmap(layer.metadata.get("source_path") or layer.name, finding)
        self._fill_table()
        self._annotation_layer(layer)
        of = f" of {finding}" if finding else ""
        self.status.value = f"{len(found.candidates)} candidates{of} above {found.level:.4g}"

    def _fill_table(self) -> None:
        rows = [[c.id, round(c.volume_mm3, 1), round(c.peak, 4), round(c.mean, 4), *(round(v, 1) for v in c.centroid_mm),
                 self.decisions.get(c.id, {}).get("decision", "")] for c in self.found.candidates]
        self.table_ready = False
        fill_table(self.table, rows, list(COLUMNS), on_done=lambda: setattr(self, "table_ready", True))

    def row_id(self, row: int) -> int:
        """The candidate id shown in table row ``row`` (after any sorting)."""
        return int(float(self.table.native.item(row, 0).text()))

    def selected_ids(self) -> list[int]:
        rows = sorted({index.row() for index in self.table.native.selectionModel().selectedRows()})
        return [self.row_id(r) for r in rows]

    # -- navigating and deciding ---------------------------------------------------------------
    def go_to(self, cid: int) -> None:
        """Move the viewer to candidate ``cid``: the slice through its centroid, centred (3D: the camera)."""
        from ..overlays import go_to

        go_to(self.viewer, self.source, self.found.by_id(cid).centroid_voxel)

    def _annotation_layer(self, layer):
        name = f"{layer.name} annotation"
        if name in self.viewer.layers:
            self.annotation = self.viewer.layers[name]
            return
        geo = geometry_of(layer)
        self.annotation = self.viewer.add_labels(
            np.zeros(layer.data.shape, np.uint16), name=name, scale=geo["scale"], translate=geo["translate"],
            affine=geo["affine"], opacity=0.5, metadata={"affine": geo["affine_nifti"],
                                                         "header": layer.metadata.get("header")})

    def decide(self, decision: str, ids: list[int] | None = None) -> None:
        """Accept (write each component into the annotation with its own label) or reject (clear it there)."""
        from tonno_engine.evaluation.candidates import decision_row

        for cid in ids if ids is not None else self.selected_ids():
            mask = self.found.labels == cid
            label = self._next_label() if decision == "accept" else 0
            self._paint(mask, label)
            self.decisions[cid] = decision_row(self.found.by_id(cid), decision, label, self.found.level)
        self._fill_table()

    def merge(self, ids: list[int] | None = None) -> None:
        """Accept the selected candidates as one lesion: one annotation label for all of them."""
        from tonno_engine.evaluation.candidates import decision_row

        ids = ids if ids is not None else self.selected_ids()
        if len(ids) < 2:
            self.status.value = "select two or more candidates to merge"
            return
        label = self._next_label()
        for cid in ids:
            self._paint(self.found.labels == cid, label)
            self.decisions[cid] = decision_row(self.found.by_id(cid), "merge", label, self.found.level)
        self._fill_table()

    def _next_label(self) -> int:
        return int(np.max(self.annotation.data)) + 1

    def _paint(self, mask: np.ndarray, label: int) -> None:
        data = self.annotation.data
        data[mask] = label
        self.annotation.data = data  # the layer notices and redraws (also keeps its undo history usable)

    # -- saving ----------------------------------------------------------------------------------
    def save(self, path) -> list[str]:
        """Write the annotation through the plugin's NIfTI writer (the heatmap's affine) and
        ``<name>_decisions.csv`` beside it; returns both paths."""
        from tonno_engine.base.atomic import write_text_atomic
        from tonno_engine.evaluation.candidates import decisions_csv

        if self.annotation is None or str(path) in ("", "."):
            self.status.value = "find candidates and choose a file first"
            return []
        path = Path(str(path))
        if not str(path).endswith((".nii", ".nii.gz")):
            path = path.with_name(path.name + ".nii.gz")
        written = self.annotation.save(str(path), plugin="napari-tonno")
        stem = path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem
        table = path.with_name(f"{stem}_decisions.csv")
        write_text_atomic(table, decisions_csv(self.earlier + list(self.decisions.values())))
        self.status.value = f"saved {path.name} and {table.name}"
        return [*written, str(table)]

    def add_to_export(self, folder, case: str):
        """In a thread worker: the annotation and decisions replace ``case``'s pseudo-label in the export
        ``folder`` (a ``Dataset<id>_<name>`` of ``tonno export nnunet``); returns the worker."""
        from tonno_engine.apps.export_review import add_review

        if self.annotation is None or str(folder) in ("", ".") or not case:
            self.status.value = "find candidates, then choose the export folder and the case"
            return None
        annotation = np.asarray(self.annotation.data).copy()
        decisions = self.earlier + list(self.decisions.values())

        def job():
            yield add_review(folder, case, annotation, decisions)

        def added(entry):
            self.status.value = (f"{case}: label replaced in {Path(str(folder)).name} ({entry['lesion']} lesion, "
                                 f"{entry['ignore']} ignored voxels)")

        self.status.value = f"adding {case} to the export"
        return start_job(job(), desc="Add to export", on_event=added, bar=self.progress,
                         on_error=lambda exc: setattr(self.status, "value", f"error: {exc}"))
