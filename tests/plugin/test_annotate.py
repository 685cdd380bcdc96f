"""Lesion candidates, the results browser, overlays and 3D, under Xvfb with real napari viewers."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.plugin.geometry import rotated_affine
from tonno_cli.app import app

pytestmark = pytest.mark.filterwarnings("ignore:Non-orthogonal slicing")


def _oblique_affine():
    return rotated_affine(15, (0.8, 1.0, 2.5), (-20.0, 8.0, 30.0))


@pytest.fixture
def heat_file(tmp_path):
    """A heatmap ``(40, 36, 24)`` with two blobs: big/strong around voxel (10, 10, 6), small/weak at (28, 25, 16)."""
    heat = np.zeros((40, 36, 24), np.float32)
    heat[7:14, 7:14, 4:9] = 2.0
    heat[27:30, 24:27, 15:18] = 1.0
    path = tmp_path / "case_tonno.nii.gz"
    nib.save(nib.Nifti1Image(heat, _oblique_affine()), path)
    return path


def _open(viewer, path):
    [layer] = viewer.open(str(path), plugin="napari-tonno")
    return layer


def _found(qtbot, widget):
    widget.find()
    qtbot.waitUntil(lambda: widget.found is not None and not widget.worker.is_running and widget.table_ready,
                    timeout=20000)


def test_clicking_a_candidate_moves_the_viewer_there(make_napari_viewer, qtbot, heat_file):
    from napari.utils import progress

    from napari_tonno.overlays import camera_of
    from napari_tonno.widgets.candidates import LesionCandidatesWidget

    viewer = make_napari_viewer()
    layer = _open(viewer, heat_file)
    widget = LesionCandidatesWidget(viewer)
    widget.heatmap.value, widget.rule.value, widget.value.value = layer, "fixed", 0.5
    _found(qtbot, widget)
    assert [(c.id, c.voxels) for c in widget.found.candidates] == [(1, 245), (2, 27)]  # by decreasing peak
    assert widget.found.candidates[0].volume_mm3 == pytest.approx(245 * 0.8 * 1.0 * 2.5)
    assert widget.progress.value == widget.progress.max == 3
    assert not [p for p in progress._all_instances if p.desc.startswith("Lesion candidates")]  # dock bar closed
    widget.table.native.sortItems(1)  # by volume, ascending: the small candidate comes first
    assert widget.row_id(0) == 2
    widget.table.native.cellClicked.emit(0, 0)
    small = np.array([28.0, 25.0, 16.0])
    world = (_oblique_affine() @ np.r_[small, 1])[:3]
    np.testing.assert_allclose(widget.found.by_id(2).centroid_mm, world, atol=1e-6)
    np.testing.assert_allclose(np.asarray(viewer.dims.point)[-3:], world, atol=1.5)  # the slice through it
    shown = [world[d] for d in viewer.dims.displayed]
    np.testing.assert_allclose(np.asarray(camera_of(viewer).center)[-2:], shown, atol=1e-6)  # centred
    viewer.dims.ndisplay = 3
    widget.go_to(1)
    big = (_oblique_affine() @ np.r_[10.0, 10.0, 6.0, 1])[:3]
    np.testing.assert_allclose(camera_of(viewer).center, [big[d] for d in viewer.dims.displayed], atol=1e-6)


def test_accept_reject_merge_and_save_with_the_source_affine(make_napari_viewer, qtbot, heat_file, tmp_path):
    from napari_tonno.widgets.candidates import LesionCandidatesWidget

    viewer = make_napari_viewer()
    layer = _open(viewer, heat_file)
    widget = LesionCandidatesWidget(viewer)
    widget.heatmap.value, widget.rule.value, widget.value.value = layer, "percentile", 99.0
    _found(qtbot, widget)
    assert widget.found.level == pytest.approx(np.percentile(layer.data, 99.0))
    widget.table.native.selectRow(0)
    widget.decide("accept")  # the selected row
    annotation = widget.annotation
    assert annotation.name == "case_tonno annotation" and type(annotation).__name__ == "Labels"
    big = widget.found.labels == 1
    assert (annotation.data[big] == 1).all() and annotation.data.sum() == big.sum()
    widget.decide("reject", [2])
    assert annotation.data.max() == 1
    widget.merge([1, 2])
    assert set(np.unique(annotation.data[widget.found.labels > 0])) == {2}
    annotation.data[0, 0, 0] = 7  # the annotation stays editable by hand
    written = widget.save(tmp_path / "out" / "reader")
    saved = nib.load(tmp_path / "out" / "reader.nii.gz")
    np.testing.assert_allclose(saved.affine, _oblique_affine(), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(saved.dataobj), annotation.data)
    with open(tmp_path / "out" / "reader_decisions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["candidate"], r["decision"], r["annotation_label"]) for r in rows] == [("1", "merge", "2"),
                                                                                    ("2", "merge", "2")]
    assert len(written) == 2
    # moving the slider finds the candidates above the new level once it rests; earlier decisions are kept
    widget.rule.value = "fixed"  # the slider now spans the heatmap's values
    assert (widget.value.min, widget.value.max) == (0.0, 2.0)
    widget.value.value = 1.5
    qtbot.waitUntil(lambda: widget.found.level == 1.5 and widget.table_ready, timeout=20000)
    assert [c.id for c in widget.found.candidates] == [1] and widget.decisions == {} and len(widget.earlier) == 2


def test_calibrated_level_from_thresholds_json(make_napari_viewer, qtbot, heat_file, tmp_path):
    from napari_tonno.widgets.candidates import LesionCandidatesWidget

    viewer = make_napari_viewer()
    layer = _open(viewer, heat_file)
    (tmp_path / "thresholds.json").write_text('{"tonno": 1.5, "layercam-l2": 0.1}')
    widget = LesionCandidatesWidget(viewer)
    widget.heatmap.value, widget.rule.value = layer, "calibrated"
    widget.thresholds.value = tmp_path / "thresholds.json"
    _found(qtbot, widget)
    assert widget.found.level == 1.5 and [c.id for c in widget.found.candidates] == [1]  # only the strong blob
    # a level with its share of the heatmap's maximum (2): 0.5 alone would take the weak blob too, 0.6 × 2 does not
    (tmp_path / "thresholds.json").write_text('{"tonno": {"level": 0.5, "relative": 0.6}}')
    widget.found = None
    _found(qtbot, widget)
    assert widget.found.level == pytest.approx(1.2) and [c.id for c in widget.found.candidates] == [1]
    layer.name = "case other-method"
    widget.found = None
    widget.find()
    assert widget.found is None and "no calibrated threshold for 'case other-method'" in widget.status.value


@pytest.fixture
def results_folder(tiny_cases, tiny_checkpoint, tmp_path):
    """A real ``tonno reconstruct`` output (two methods, four cases) with ``tonno evaluate``'s metrics.csv."""
    out = tmp_path / "results"
    runner = CliRunner()
    done = runner.invoke(app, ["reconstruct", "-i", str(tiny_cases), "-o", str(out), "-c", str(tiny_checkpoint),
                               "--method", "tonno,layercam", "--slices", "6", "--directions", "8", "--device", "cpu", "-q"])
    assert done.exit_code == 0, done.output
    scored = runner.invoke(app, ["evaluate", str(out), str(tiny_cases), "-o", str(out / "metrics.csv"), "-q"])
    assert scored.exit_code == 0, scored.output
    return out


def _canvas_not_black(viewer) -> float:
    viewer.window.screenshot(canvas_only=False, flash=False)  # the first screenshot of a hidden viewer is black
    shot = viewer.screenshot(canvas_only=True, flash=False)
    return float((shot[..., :3].max(axis=-1) > 20).mean())


def test_browser_loads_a_reconstruct_folder_case_by_case(make_napari_viewer, qtbot, results_folder, tiny_cases):
    from napari_tonno.widgets.results import ResultsBrowserWidget

    viewer = make_napari_viewer()
    widget = ResultsBrowserWidget(viewer)
    widget.open(results_folder)
    assert widget.table.shape[0] == 4 and widget.results.methods == ["tonno", "layercam-l2"]
    assert "tonno dice" in widget.table.column_headers and "layercam-l2 found" in widget.table.column_headers
    from qtpy.QtCore import QLocale

    native = widget.table.native
    shown = [native.itemDelegate().displayText(native.item(r, 2).data(0), QLocale()) for r in range(4)]
    seconds = [round(c.seconds, 1) for c in widget.results.cases]
    assert [float(text) for text in shown] == seconds and any(s % 1 for s in seconds)  # not truncated to integers
    widget.table.native.cellClicked.emit(1, 0)
    qtbot.waitUntil(lambda: len(widget.layers) == 4, timeout=20000)
    names = [layer.name for layer in widget.layers]
    case = widget.results.cases[1].case
    assert names == [case, f"{case} tonno", f"{case} layercam-l2", f"{case} ground truth"]
    source = nib.load(tiny_cases / "images" / f"{case}.nii.gz")
    for layer in widget.layers:
        np.testing.assert_allclose(layer.data_to_world([1, 2, 3]), (source.affine @ [1, 2, 3, 1])[:3], atol=1e-6)
    heat = widget.layers[1]
    assert heat.colormap.colors[0, 3] == 0.0 and heat.blending == "translucent"  # low end transparent
    lo, hi = heat.contrast_limits
    assert np.mean(heat.data < lo) >= 0.9 and hi <= heat.data.max()  # robust: most of the volume below
    page_down = next(func for key, func in viewer.keymap.items() if str(key).endswith("PageDown"))
    page_down(viewer)  # the next case, as the key would
    qtbot.waitUntil(lambda: widget.layers and widget.layers[0].name == widget.results.cases[2].case, timeout=20000)
    assert len([x for x in viewer.layers if x.name.startswith(case)]) == 0  # the previous case's layers are gone
    widget.grid.value = True
    from napari_tonno.overlays import grid_of

    assert grid_of(viewer).enabled and grid_of(viewer).stride == 3 and len(widget.layers) == 6
    assert _canvas_not_black(viewer) > 0.01
    widget.grid.value = False
    widget.three_d.value = True
    assert viewer.dims.ndisplay == 3 and widget.layers[1].rendering == "iso"
    assert _canvas_not_black(viewer) > 0.01  # the 3D view renders


def test_browser_names_a_folder_that_is_not_a_result(make_napari_viewer, tmp_path):
    from napari_tonno.widgets.results import ResultsBrowserWidget

    widget = ResultsBrowserWidget(make_napari_viewer())
    widget.open(tmp_path)
    assert "no summary.csv" in widget.status.value and widget.results is None


def test_browser_shows_the_stage2_prediction_beside_the_heatmaps(make_napari_viewer, qtbot, results_folder, tiny_cases,
                                                                  tmp_path):
    from napari_tonno.widgets.results import ResultsBrowserWidget
    from tonno_engine.apps.stage2 import PredictResult, predict_iter
    from tonno_engine.models.segmenter import build_unet, save_segmenter

    checkpoint = save_segmenter(tmp_path / "segmenter.pt", build_unet(),
                                {"channels": [16, 32, 64, 128], "strides": [2, 2, 2], "res_units": 1, "patch": 16,
                                   "preprocessing": {"intensity": "robust"}})
    done = list(predict_iter(checkpoint, tiny_cases, results_folder))[-1]
    assert isinstance(done, PredictResult) and len(done.written) == 4
    viewer = make_napari_viewer()
    widget = ResultsBrowserWidget(viewer)
    widget.open(results_folder)
    assert widget.results.methods == ["tonno", "layercam-l2", "stage2"]
    widget.show(0)
    qtbot.waitUntil(lambda: len(widget.layers) == 5, timeout=20000)
    case = widget.results.cases[0].case
    stage2 = next(layer for layer in widget.layers if layer.name == f"{case} stage2")
    expected = np.asarray(nib.load(results_folder / f"{case}_stage2.nii.gz").dataobj)
    np.testing.assert_array_equal(stage2.data, expected)
    assert stage2.metadata["tonno_method"] == "stage2"


def test_a_review_is_added_to_an_export(make_napari_viewer, qtbot, tmp_path, masked_phantoms):
    from napari_tonno.widgets.candidates import LesionCandidatesWidget
    from tonno_engine.apps.export_nnunet import ExportConfig, ExportResult, export_nnunet_iter

    cases, heat = masked_phantoms(4)
    export = list(export_nnunet_iter(cases, [], heat, tmp_path / "raw", ExportConfig(method="tonno", level=0.5)))[-1]
    assert isinstance(export, ExportResult)
    positive = next(c for c in cases if c.label)
    label_path = export.folder / "labelsTr" / f"{positive.case}.nii.gz"
    before = np.asarray(nib.load(label_path).dataobj)
    viewer = make_napari_viewer()
    layer = _open(viewer, heat / f"{positive.case}_tonno.nii.gz")
    widget = LesionCandidatesWidget(viewer)
    widget.heatmap.value, widget.rule.value = layer, "fixed"
    widget.value.value = 0.5
    _found(qtbot, widget)
    assert widget.case.value == positive.case  # taken from the heatmap's file name
    ids = [c.id for c in widget.found.candidates]
    widget.decide("reject", ids)  # the annotator says the heatmap's lesions are none
    widget.annotation.data[1:3, 1:3, 1:3] = 1  # and paints one it missed
    worker = widget.add_to_export(export.folder, widget.case.value)
    qtbot.waitUntil(lambda: not worker.is_running and not widget.status.value.startswith("adding"), timeout=20000)
    assert widget.status.value.startswith(f"{positive.case}: label replaced"), widget.status.value
    after = np.asarray(nib.load(label_path).dataobj)
    assert (before[widget.found.labels > 0] == 1).all() and (after[widget.found.labels > 0] == 0).all()
    assert (after[1:3, 1:3, 1:3] == 1).all() and (export.folder / "reviews" / f"{positive.case}_decisions.csv").exists()


def test_calibrated_level_of_another_checkpoint_is_refused(make_napari_viewer, qtbot, tmp_path):
    """thresholds.json calibrated on one checkpoint's heatmaps, a heatmap another checkpoint made: no candidates at
    a level that does not belong to it, and the status says why."""
    from napari_tonno.widgets.candidates import LesionCandidatesWidget
    from tonno_engine.data.nifti import save_nifti
    from tonno_engine.evaluation.metrics import Threshold
    from tonno_engine.evaluation.thresholds_file import write_thresholds

    heat = np.zeros((20, 20, 20), np.float32)
    heat[5:9, 5:9, 5:9] = 2.0
    path = save_nifti(tmp_path / "case_tonno.nii.gz", heat, _oblique_affine(),
                      provenance={"fingerprint": "x", "parts": {"checkpoint_sha256": "a" * 64}})
    thresholds = write_thresholds(tmp_path / "thresholds.json", {"tonno": Threshold("calibrated", 1.0)},
                                  checkpoint="other.pt", checkpoint_sha256="b" * 64)
    viewer = make_napari_viewer()
    layer = _open(viewer, path)
    widget = LesionCandidatesWidget(viewer)
    widget.heatmap.value, widget.rule.value = layer, "calibrated"
    widget.thresholds.value = thresholds
    widget.find()
    assert widget.found is None and "calibrated on heatmaps of checkpoint bbbbbbbbbbbb" in widget.status.value
    write_thresholds(thresholds, {"tonno": Threshold("calibrated", 1.0)}, checkpoint="same.pt",
                     checkpoint_sha256="a" * 64)
    _found(qtbot, widget)
    assert [c.id for c in widget.found.candidates] == [1]
