"""napari with a classifier of several findings: one heatmap layer per finding from one run, a live-finding
picker, and the Results browser one finding at a time."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tonno_cli.app import app

FINDINGS = ("a", "b", "c")


@pytest.fixture(scope="module")
def three_finding_checkpoint(tmp_path_factory):
    from tonno_engine.models.checkpoint import CheckpointDescription, save_checkpoint
    from tonno_engine.models.encoders import create_encoder

    torch.manual_seed(0)
    model = create_encoder("resnet10t", norm="gn", outputs=3)
    description = CheckpointDescription(model="resnet10t", norm="gn", slice_size=32, findings=FINDINGS,
                                        preprocessing={"intensity": "none", "params": {}, "spacing": None})
    return save_checkpoint(tmp_path_factory.mktemp("ckpt3") / "three.pt", model, description)


def test_reconstruct_widget_makes_a_layer_per_finding_from_one_run(make_napari_viewer, qtbot, three_finding_checkpoint):
    from napari_tonno.widgets.reconstruct import ReconstructWidget
    from tonno_engine.tomography.phantoms import balls_phantom

    viewer = make_napari_viewer()
    viewer.add_image(balls_phantom((20, 22, 24)).numpy(), name="phantom",
                     metadata={"tonno_checkpoint": str(three_finding_checkpoint)})
    widget = ReconstructWidget(viewer)
    widget.slices.value, widget.directions.value, widget.device.value = 8, 64, "cpu"
    widget.run()
    with qtbot.waitSignal(widget.worker.finished, timeout=120_000):
        pass
    assert list(widget.outputs) == list(FINDINGS) and [c for c in widget.finding.choices if c] == list(FINDINGS)
    layers = [widget.outputs[f] for f in FINDINGS]
    assert [layer.name for layer in layers] == [f"phantom tonno_{f}" for f in FINDINGS]
    assert all(layer in viewer.layers and layer.metadata["complete"] for layer in layers)
    assert [layer.metadata["tonno"]["method"]["finding"] for layer in layers] == list(FINDINGS)
    assert all(np.abs(layer.data).max() > 0 for layer in layers)
    assert not np.allclose(layers[0].data, layers[1].data)  # each finding's own logit
    assert widget.updates >= 2  # the live finding refined while the others waited for the end


def test_results_browser_shows_one_finding_at_a_time(make_napari_viewer, qtbot, tiny_cases, three_finding_checkpoint,
                                                     tmp_path):
    from napari_tonno.widgets.results import ALL_FINDINGS, ResultsBrowserWidget

    out = tmp_path / "results"
    done = CliRunner().invoke(app, ["reconstruct", "-i", str(tiny_cases), "-o", str(out), "-c",
                                    str(three_finding_checkpoint), "--slices", "6", "--directions", "8",
                                    "--device", "cpu", "-q"])
    assert done.exit_code == 0, done.output
    widget = ResultsBrowserWidget(make_napari_viewer())
    widget.open(out)
    assert list(widget.finding.choices) == [ALL_FINDINGS, *FINDINGS]
    assert widget.results.methods == [f"tonno_{f}" for f in FINDINGS]
    widget.finding.value = "b"
    widget.show(0)
    qtbot.waitUntil(lambda: len(widget.layers) == 3, timeout=20000)  # image, b's heatmap, ground truth
    case = widget.results.cases[0].case
    assert [layer.name for layer in widget.layers] == [case, f"{case} tonno_b", f"{case} ground truth"]
    widget.finding.value = ALL_FINDINGS  # the case again, with every finding's heatmap
    qtbot.waitUntil(lambda: len(widget.layers) == 5, timeout=20000)
