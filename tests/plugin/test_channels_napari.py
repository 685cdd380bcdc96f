"""napari: a checkpoint of two images per case takes its second image from another layer (pytest-qt, Xvfb)."""

import numpy as np
import pytest

pytestmark = pytest.mark.gui


@pytest.fixture
def two_image_viewer(make_napari_viewer, tmp_path):
    """A viewer holding a phantom as two layers (two contrasts of it) and a GroupNorm checkpoint of 2 input channels
    (T1, FLAIR), named in the first layer's metadata."""
    import torch

    from tonno_engine.models.checkpoint import CheckpointDescription, save_checkpoint
    from tonno_engine.models.encoders import create_encoder
    from tonno_engine.tomography.phantoms import balls_phantom

    torch.manual_seed(0)
    channels = [{"name": "T1", "intensity": "none"}, {"name": "FLAIR", "intensity": "none"}]
    description = CheckpointDescription(model="resnet10t", norm="gn", slice_size=32, in_chans=2,
                                        preprocessing={"intensity": "none", "spacing": None, "channels": channels})
    path = save_checkpoint(tmp_path / "two.pt", create_encoder("resnet10t", norm="gn", in_chans=2), description)
    viewer = make_napari_viewer()
    volume = balls_phantom((20, 22, 24)).numpy()
    viewer.add_image(volume, name="t1", scale=(2.0, 1.0, 1.5), metadata={"tonno_checkpoint": str(path)})
    viewer.add_image(np.sqrt(volume) * 3.0, name="flair", scale=(2.0, 1.0, 1.5))
    viewer.add_image(volume[:10], name="other grid")
    return viewer


def _widget(viewer):
    from napari_tonno.widgets.reconstruct import ReconstructWidget

    widget = ReconstructWidget(viewer)
    widget.slices.value, widget.directions.value, widget.device.value = 8, 32, "cpu"
    widget.image.value = viewer.layers["t1"]
    return widget


def test_reconstruct_feeds_the_chosen_layers_as_the_cases_images(two_image_viewer, qtbot):
    widget = _widget(two_image_viewer)
    widget.more_images.value = [two_image_viewer.layers["flair"]]
    errors = []
    widget.run()
    widget.worker.errored.connect(errors.append)
    with qtbot.waitSignal(widget.worker.finished, timeout=120_000):
        pass
    assert errors == [] and widget.output.metadata["complete"]
    assert widget.output.data.shape == (20, 22, 24) and np.isfinite(widget.output.data).all()
    assert np.abs(widget.output.data).max() > 0


def test_one_layer_for_a_two_image_checkpoint_is_refused_by_name(two_image_viewer, qtbot):
    widget = _widget(two_image_viewer)
    with qtbot.capture_exceptions() as raised:  # the worker's error reaches the status line and the event loop
        widget.run()
        with qtbot.waitSignal(widget.worker.finished, timeout=60_000):
            pass
    assert "layer t1: the checkpoint takes 2 images per case (T1, FLAIR); this case has 1" in widget.status.value
    assert [type(e[1]).__name__ for e in raised] == ["DataError"]


def test_a_layer_on_another_grid_is_refused_before_any_work(two_image_viewer):
    widget = _widget(two_image_viewer)
    widget.more_images.value = [two_image_viewer.layers["other grid"]]
    widget.run()
    assert widget.worker is None and "other grid: not on the grid of t1" in widget.status.value
