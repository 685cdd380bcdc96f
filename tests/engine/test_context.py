"""2.5D input (``--context``): every path that feeds the network slices hands it the plane with its
neighbours, from training through reconstruction, the CAMs and classification, and the checkpoint says so."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tonno_cli.app import app
from tonno_engine.apps.classification import volume_score
from tonno_engine.base.errors import DataError
from tonno_engine.base.events import Partial
from tonno_engine.base.registry import MethodSpec
from tonno_engine.cams.slicewise import slicewise_iter
from tonno_engine.data.augment import Augmentation
from tonno_engine.data.dataset import Case, read_cases
from tonno_engine.methods.case import Scan, reconstruct_case_iter
from tonno_engine.methods.run import run_method
from tonno_engine.methods.settings import ReconstructionSettings
from tonno_engine.models.checkpoint import CheckpointDescription, load_checkpoint, read_checkpoint, save_checkpoint
from tonno_engine.models.encoders import create_encoder
from tonno_engine.tomography.frames import Frame
from tonno_engine.tomography.geometry import axis_coords
from tonno_engine.tomography.phantoms import balls_phantom
from tonno_engine.tomography.plan import Plan
from tonno_engine.tomography.reconstruction import reconstruct
from tonno_engine.tomography.scorers import radon_sum
from tonno_engine.training.config import TrainConfig
from tonno_engine.training.sampling import LoadedCase, sample_batch

NONE = {"intensity": "none", "params": {}, "spacing": None}


@pytest.fixture
def context_checkpoint(tmp_path):
    torch.manual_seed(0)
    description = CheckpointDescription(model="resnet10t", norm="gn", slice_size=32, in_chans=3, context=1.5,
                                        preprocessing=NONE)
    return load_checkpoint(save_checkpoint(tmp_path / "c.pt", create_encoder("resnet10t", norm="gn", in_chans=3),
                                           description), "cpu")


def test_training_draws_the_plane_between_its_neighbours():
    vols = [LoadedCase(Case("a", 1, "a.nii.gz"), balls_phantom((20, 20, 20)), Frame())]
    plain = TrainConfig(slice_size=16, batch_volumes=2, slices_per_volume=3, channels_last=False)
    with_context = replace(plain, context=1.0)
    x1, y1 = sample_batch(vols, plain, torch.Generator().manual_seed(3), Augmentation.off(), torch.device("cpu"))
    x3, y3 = sample_batch(vols, with_context, torch.Generator().manual_seed(3), Augmentation.off(), torch.device("cpu"))
    assert x1.shape == (6, 1, 16, 16) and x3.shape == (6, 3, 16, 16) and torch.equal(y1, y3)
    torch.testing.assert_close(x3[:, 1], x1[:, 0])  # the same planes; the neighbours differ from them
    assert not torch.allclose(x3[:, 0], x3[:, 1]) and not torch.allclose(x3[:, 2], x3[:, 1])


def test_every_method_feeds_a_context_checkpoint_its_three_channels(context_checkpoint):
    """A 3-channel network fails on one channel, so each heatmap shows its path cut the stacks."""
    scan = balls_phantom((18, 16, 14)).numpy()
    specs = [MethodSpec("tonno"), MethodSpec("tomographic-cam", cam="layercam", layer=2),
             MethodSpec("layercam", layer=2), MethodSpec("scorecam", layer=4)]
    settings = ReconstructionSettings(slices=5, directions=12, hemisphere=True)
    final = list(reconstruct_case_iter(Scan(scan, (1.0, 1.0, 1.0)), context_checkpoint, specs, settings))[-1]
    assert isinstance(final, Partial) and set(final.value) == {s.label for s in specs}
    for heat in final.value.values():
        assert heat.shape == (18, 16, 14) and torch.isfinite(heat).all() and heat.abs().max() > 0


def test_a_model_called_by_hand_with_the_wrong_context_is_refused_by_name(context_checkpoint):
    scan = balls_phantom((12, 12, 12))
    settings = ReconstructionSettings(slices=5, directions=4, hemisphere=True, slice_size=32)
    with pytest.raises(ValueError, match=r"3 input channel\(s\) but context=0 cuts 1"):
        run_method(MethodSpec("tonno"), scan, context_checkpoint.model, settings)
    one_plane = create_encoder("resnet10t", norm="gn", in_chans=1).eval()
    with pytest.raises(ValueError, match=r"1 input channel\(s\) but context=1.5 cuts 3"):
        run_method(MethodSpec("layercam", layer=2), scan, one_plane, settings, context=1.5)
    heat = run_method(MethodSpec("tonno"), scan, context_checkpoint.model, settings, context=1.5)
    assert heat.shape == (12, 12, 12) and torch.isfinite(heat).all()


def test_the_neighbours_of_a_slicewise_slice_lie_context_pixels_along_its_axis():
    seen = []

    class Recorder:
        context = 2.0

        def __call__(self, slices):
            seen.append(slices)
            return torch.zeros(len(slices), 4, 4)

    ramp = axis_coords(14, torch.float32).view(1, 1, 14).expand(10, 12, 14).contiguous()  # value = t along axis 2
    list(slicewise_iter(ramp, Recorder(), Plan(slice_size=21, device="cpu"), axes=(2,)))
    stacks = torch.cat(seen)
    assert stacks.shape == (14, 3, 21, 21)
    inner = stacks[2:-2, :, 10, 10]  # away from the ends, where a neighbour leaves the volume
    torch.testing.assert_close(inner[:, 2] - inner[:, 1], torch.full((10,), 2.0 * 2.0 / 20), atol=1e-5, rtol=0)


def test_a_scorer_with_context_sees_the_same_planes_in_its_middle_channel():
    """The slice-mean check through the 2.5D path: the middle channel is the plane ToNNO reconstructs from."""
    volume = balls_phantom((16, 16, 16))

    def middle(slices):
        assert slices.shape[1] == 3
        return radon_sum(slices[:, 1])

    middle.context = 1.0
    options = dict(slices=8, directions=40, slice_size=24, device="cpu")
    torch.testing.assert_close(reconstruct(volume, middle, Plan(**options)), reconstruct(volume, radon_sum, Plan(**options)))


def test_train_with_context_records_it_and_a_checkpoint_that_contradicts_it_is_refused(tiny_cases, tmp_path):
    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", str(tiny_cases), "--out", str(run), "--slice-size", "32", "--steps", "2",
                                   "--batch-volumes", "2", "--slices-per-volume", "2", "--norm", "gn", "--val-every",
                                   "2", "--device", "cpu", "--context", "1.5", "-q"])
    assert res.exit_code == 0, res.output
    meta = read_checkpoint(run / "checkpoint_last.pt")["meta"]
    assert meta["context"] == 1.5 and meta["in_chans"] == 3 and meta["version"] == 4
    assert json.loads((run / "run.json").read_text())["meta"]["train_args"]["context"] == 1.5
    out = tmp_path / "heat"
    res = CliRunner().invoke(app, ["reconstruct", "-i", str(tiny_cases / "images"), "-o", str(out), "-c",
                                   str(run / "checkpoint_last.pt"), "--slices", "5", "--directions", "12", "--device",
                                   "cpu", "-q"])
    assert res.exit_code == 0, res.output
    assert len(list(out.glob("*_tonno.nii.gz"))) == 4
    with pytest.raises(DataError, match="'context'"):
        CheckpointDescription.from_meta({**meta, "in_chans": 1}, "c.pt")
    with pytest.raises(DataError, match="'context'"):
        CheckpointDescription.from_meta({**meta, "context": -1.0}, "c.pt")
    older = CheckpointDescription.from_meta({k: v for k, v in meta.items() if k != "context"} | {"in_chans": 1,
                                                                                                 "version": 2}, "c.pt")
    assert older.context == 0.0 and older.in_chans == 1
    logits, _ = volume_score(read_cases(tiny_cases)[0], load_checkpoint(run / "checkpoint_last.pt", "cpu"),
                             ReconstructionSettings())
    assert len(logits) == 1 and np.isfinite(logits[0])


def test_one_plane_weights_do_not_load_into_a_context_network(tmp_path):
    torch.save(create_encoder("resnet10t", norm="bn").state_dict(), tmp_path / "encoder.pth")
    with pytest.raises(DataError, match="encoder.pth"):
        create_encoder("resnet10t", norm="bn", in_chans=3, weights=tmp_path / "encoder.pth")
