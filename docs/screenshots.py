"""Screenshots of each dock widget in use, from a real napari window (run under Xvfb).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots.py CHECKPOINT [--browser-only]

CHECKPOINT: a trained model (e.g. ``tonno-demo/model/checkpoint_best.pt`` from ``make demo``); the
Results browser opens the demo folder it lies in (``tonno-demo/``). Writes ``docs/screenshots/*.png``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

OUT = Path(__file__).resolve().parent / "screenshots"


def settle(viewer, seconds=0.3):
    import time

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()


def shot(viewer, name):
    settle(viewer)
    viewer.window.screenshot(str(OUT / f"{name}.png"), canvas_only=False, flash=False)
    print("wrote", OUT / f"{name}.png")


def wait_worker(widget, viewer, timeout: float = 900.0):
    """Process events until the widget's job has finished (its worker may not have started yet)."""
    done = []
    widget.worker.finished.connect(lambda: done.append(True))
    start = time.perf_counter()
    while not done and (widget.worker.is_running or time.perf_counter() - start < 5) \
            and time.perf_counter() - start < timeout:
        settle(viewer, 0.1)
    settle(viewer, 0.5)


def main(checkpoint: str) -> None:
    from napari_tonno.samples import brain_sample
    from napari_tonno.widgets.direction_slices import DirectionSlicesWidget
    from napari_tonno.widgets.profiles import LogitProfileWidget
    from napari_tonno.widgets.reconstruct import ReconstructWidget
    from napari_tonno.widgets.threshold import ThresholdWidget
    from napari_tonno.widgets.train import TrainWidget
    from tonno_engine.evaluation.thresholds_file import calibrated_threshold

    OUT.mkdir(exist_ok=True)
    viewer = napari.Viewer(title="tonno", show=True)
    viewer.window._qt_window.resize(1500, 950)
    for data, kwargs, kind in brain_sample():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    viewer.window.screenshot(str(OUT / ".warmup.png"), canvas_only=False, flash=False)  # first one is black
    (OUT / ".warmup.png").unlink()
    lesions = viewer.layers["lesions (ground truth)"].data
    axial = int(lesions.sum(axis=(0, 1)).argmax())  # the axial slice with the most lesion
    viewer.dims.order = (2, 0, 1)  # slide along axis 2: axial planes on screen
    viewer.dims.set_point(2, float(viewer.layers[0].data_to_world((0, 0, axial))[2]))
    viewer.layers["lesions (ground truth)"].contour = 1
    viewer.reset_view()

    rec = ReconstructWidget(viewer)
    dock = viewer.window.add_dock_widget(rec, name="Reconstruct", area="right")
    rec.checkpoint.value = checkpoint
    rec.slices.value, rec.directions.value = 24, 192
    rec.run()
    while rec.updates < 3:
        settle(viewer, 0.05)
    shot(viewer, "reconstruct_live")
    wait_worker(rec, viewer)
    shot(viewer, "reconstruct_done")
    heat = rec.output

    viewer.window.remove_dock_widget(dock)
    thr = ThresholdWidget(viewer)
    dock = viewer.window.add_dock_widget(thr, name="Threshold", area="right")
    thr.heatmap.value = heat
    thr.truth.value = viewer.layers["lesions (ground truth)"]
    calibrated = Path(checkpoint).resolve().parents[1] / "thresholds.json"  # from `tonno demo`
    data = np.asarray(heat.data)
    level = calibrated_threshold(calibrated, "tonno").level(data) if calibrated.exists() else None
    thr.level.value = level if level is not None else float(np.percentile(data, 99.9))
    shot(viewer, "threshold")

    viewer.window.remove_dock_widget(dock)
    viewer.layers.remove(thr.mask_layer)
    dock = candidates_shots(viewer, heat, calibrated)

    viewer.window.remove_dock_widget(dock)
    viewer.dims.ndisplay = 2
    prof = LogitProfileWidget(viewer)
    dock = viewer.window.add_dock_widget(prof, name="Logit profiles", area="right")
    prof.image.value = viewer.layers[0]
    prof.checkpoint.value = checkpoint
    prof.direction.value = "axis 2"
    prof.compute()
    wait_worker(prof, viewer)
    prof.go_to(2 * axial / (lesions.shape[2] - 1) - 1)
    shot(viewer, "logit_profiles")

    viewer.window.remove_dock_widget(dock)
    shown = viewer
    viewer = napari.Viewer(title="tonno", show=True)  # the stack has its own geometry: a viewer of its own
    viewer.window._qt_window.resize(1500, 950)
    viewer.add_image(shown.layers[0].data, name=shown.layers[0].name, scale=shown.layers[0].scale)
    dirs = DirectionSlicesWidget(viewer)
    dock = viewer.window.add_dock_widget(dirs, name="Direction slices", area="right")
    dirs.image.value = viewer.layers[0]
    dirs.checkpoint.value = checkpoint
    dirs.slices.value, dirs.index.value = 24, 7
    dirs.show_slices()
    wait_worker(dirs, viewer)
    viewer.layers.remove(viewer.layers[0])  # the slices alone (the widget already read the volume)
    viewer.reset_view()
    viewer.dims.set_point(0, 12.0)
    dirs._update_text()
    shot(viewer, "direction_slices")

    viewer.window.remove_dock_widget(dock)
    train = TrainWidget(viewer)
    viewer.window.add_dock_widget(train, name="Train", area="right")
    data_dir = Path(checkpoint).resolve().parents[1] / "data"
    train.data.value, train.out.value = data_dir, Path("/tmp/tonno-screenshot-run")
    train.steps.value = 200
    train.start()
    while "train (train)" not in train.log.value:
        settle(viewer, 0.2)
    settle(viewer, 4)
    shot(viewer, "train")
    train.stop()
    viewer.close()
    browser_shots(Path(checkpoint).resolve().parents[1])


def candidates_shots(viewer, heat, calibrated: Path):
    """Lesion candidates of the reconstructed heatmap at the calibrated level: the table, the viewer on
    the first candidate, it accepted into the annotation; then the same in 3D."""
    from napari_tonno.overlays import show_3d
    from napari_tonno.widgets.candidates import LesionCandidatesWidget

    cand = LesionCandidatesWidget(viewer)
    dock = viewer.window.add_dock_widget(cand, name="Lesion candidates", area="right")
    cand.heatmap.value = heat
    if calibrated.exists():
        cand.rule.value, cand.thresholds.value = "calibrated", calibrated
    else:
        cand.rule.value, cand.value.value = "percentile", 99.9
    cand.find()
    while cand.found is None or cand.worker.is_running or not cand.table_ready:
        settle(viewer, 0.1)
    cand.table.native.selectRow(0)
    cand.table.native.cellClicked.emit(0, 0)
    cand.decide("accept")
    shot(viewer, "candidates")
    show_3d(viewer, [heat], viewer.layers[0], [layer for layer in viewer.layers if type(layer).__name__ == "Labels"],
            level=cand.found.level)
    viewer.reset_view()
    shot(viewer, "candidates_3d")
    return dock


def browser_shots(folder: Path) -> None:
    """The Results browser on the demo's output folder: a case with every method, then side by side."""
    from napari_tonno.widgets.results import ResultsBrowserWidget

    viewer = napari.Viewer(title="tonno", show=True)
    viewer.window._qt_window.resize(1600, 950)
    browser = ResultsBrowserWidget(viewer)
    viewer.window.add_dock_widget(browser, name="Results browser", area="right")
    browser.open(folder)
    positive = next(k for k, c in enumerate(browser.results.cases) if c.mask is not None and c.status == "ok"
                    and c.metrics and _has_lesion(c.mask))  # a test case: scored at the calibrated thresholds
    browser.show(positive)
    while not browser.layers or browser.worker.is_running:
        settle(viewer, 0.1)
    settle(viewer, 0.5)
    truth = next(layer for layer in browser.layers if layer.name.endswith("ground truth"))
    axial = int(np.asarray(truth.data).sum(axis=(0, 1)).argmax())
    viewer.dims.order = (2, 0, 1)
    viewer.dims.set_point(2, float(truth.data_to_world((0, 0, axial))[2]))
    for layer in browser.layers[1:-1]:
        layer.visible = layer.metadata.get("tonno_method") == "tonno"  # ToNNO alone over the image
    viewer.reset_view()
    shot(viewer, "browser")
    for layer in browser.layers:
        layer.visible = True
    browser.grid.value = True
    viewer.dims.order = (2, 0, 1)  # reordering the layers for the grid resets the dims order
    viewer.dims.set_point(2, float(truth.data_to_world((0, 0, axial))[2]))
    viewer.reset_view()
    shot(viewer, "browser_grid")
    viewer.close()


def _has_lesion(path) -> bool:
    from tonno_engine.data.images import load_image

    return bool((load_image(path).array > 0.5).any())


if __name__ == "__main__":
    if "--browser-only" in sys.argv:
        browser_shots(Path(sys.argv[1]).resolve().parents[1])
    else:
        main(sys.argv[1])
