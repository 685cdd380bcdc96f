"""The napari Reconstruct widget and ``tonno reconstruct`` take the same road (``reconstruct_case_iter``):
the same scan and checkpoint give the same heatmap. The case that once split them: a checkpoint that
resamples to 2 mm, in physical geometry, on a 1 × 1 × 4 mm volume (the widget then sliced the resampled
array with the layer's original voxel size)."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from napari_tonno.io import read_image
from tonno_cli.app import app
from tonno_engine.data.images import load_image
from tonno_engine.data.nifti import save_nifti
from tonno_engine.models.checkpoint import CheckpointDescription, save_checkpoint
from tonno_engine.models.encoders import create_encoder
from tonno_engine.tomography.phantoms import balls_phantom


@pytest.fixture
def resampling_checkpoint(tmp_path):
    torch.manual_seed(0)
    description = CheckpointDescription(model="resnet10t", norm="gn", slice_size=32, geometry="physical",
                                        preprocessing={"intensity": "none", "params": {}, "spacing": 2.0})
    return save_checkpoint(tmp_path / "resamples.pt", create_encoder("resnet10t", norm="gn"), description)


def test_the_widget_and_the_cli_give_the_same_heatmap(make_napari_viewer, qtbot, tmp_path, resampling_checkpoint):
    from napari_tonno.widgets.reconstruct import ReconstructWidget

    scan = tmp_path / "thick.nii.gz"
    save_nifti(scan, balls_phantom((24, 20, 8)).numpy(), np.diag([1.0, 1.0, 4.0, 1.0]))
    res = CliRunner().invoke(app, ["reconstruct", "-i", str(scan), "-o", str(tmp_path / "out"), "-c",
                                   str(resampling_checkpoint), "--slices", "6", "--directions", "16", "--hemisphere",
                                   "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    from_cli = load_image(tmp_path / "out" / "thick_tonno.nii.gz").array

    viewer = make_napari_viewer()
    data, kwargs, _ = read_image(scan)[0]
    layer = viewer.add_image(data, **kwargs)
    widget = ReconstructWidget(viewer)
    widget.image.value, widget.checkpoint.value = layer, resampling_checkpoint
    widget.slices.value, widget.directions.value, widget.hemisphere.value, widget.device.value = 6, 16, True, "cpu"
    widget.run()
    with qtbot.waitSignal(widget.worker.finished, timeout=120_000):
        pass
    from_widget = widget.output.data
    assert widget.output.metadata["complete"] and from_widget.shape == from_cli.shape == (24, 20, 8)
    assert widget.output.metadata["tonno"]["slice_size"] == 32 and widget.output.metadata["tonno"]["geometry"] == "physical"
    assert np.abs(from_cli).max() > 0
    np.testing.assert_allclose(from_widget, from_cli, rtol=1e-4, atol=1e-5 * np.abs(from_cli).max())
