"""Self-supervised pretraining: the loss, the view pairs, and `tonno pretrain` → `tonno train --weights`."""

import math

import pytest
import torch
from typer.testing import CliRunner

from tonno_cli.app import app
from tonno_engine.data.augment import Augmentation, neighbour_planes, random_planes
from tonno_engine.training.contrastive import EMBEDDING, nt_xent

runner = CliRunner()


def test_nt_xent_is_low_for_matching_views_and_chance_for_random_ones():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(16, EMBEDDING, generator=gen)
    loss = nt_xent(0.2)
    matched = loss(torch.cat([z, z + 0.01 * torch.randn(16, EMBEDDING, generator=gen)]).flatten(), None)
    shuffled = loss(torch.cat([z, torch.randn(16, EMBEDDING, generator=gen)]).flatten(), None)
    assert matched < 0.5 and shuffled > 0.8 * math.log(31)  # 31 candidates for each view's partner


def test_a_neighbour_plane_is_near_its_plane():
    gen = torch.Generator().manual_seed(1)
    offsets, n, _, _ = random_planes(500, gen, Augmentation())
    moved, m, u, v = neighbour_planes(offsets, n, gen, Augmentation.off(), tilt_degrees=10.0, shift=0.03)
    angle = torch.rad2deg(torch.arccos((n * m).sum(1).clamp(-1, 1)))
    assert angle.median() < 10 and angle.max() < 40 and angle.min() >= 0
    assert (moved - offsets).abs().max() <= 0.03 + 1e-12 and moved.abs().max() <= 1
    assert torch.allclose((u * m).sum(1), torch.zeros(500, dtype=torch.float64), atol=1e-9)  # the new axes lie in the new plane


def test_pretrain_writes_an_encoder_that_train_takes(tmp_path):
    from tonno_engine.data.synth import SynthRequest, synthesize
    from tonno_engine.models.checkpoint import load_checkpoint, read_checkpoint

    data = tmp_path / "data"
    list(synthesize(data, SynthRequest(kind="phantom", n=4, seed=0, shape=(20, 20, 20))))
    run = tmp_path / "pre"
    res = runner.invoke(app, ["pretrain", str(data), "-o", str(run), "--steps", "3", "--slice-size", "32",
                              "--batch-volumes", "2", "--slices-per-volume", "4", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    assert "encoder weights" in res.output and (run / "encoder.pth").stat().st_size > 0
    with pytest.raises(ValueError, match="a pretraining checkpoint"):
        load_checkpoint(run / "checkpoint_last.pt", "cpu")
    trained = tmp_path / "train"
    res = runner.invoke(app, ["train", str(data), "-o", str(trained), "--steps", "2", "--slice-size", "32",
                              "--batch-volumes", "2", "--slices-per-volume", "2", "--norm", "bn",
                              "--weights", str(run / "encoder.pth"), "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    meta = read_checkpoint(trained / "checkpoint_last.pt")["meta"]
    assert meta["weights"]["kind"] == "file" and meta["weights"]["location"].endswith("encoder.pth")
    encoder = torch.load(run / "encoder.pth")
    start = torch.load(trained / "checkpoint_last.pt", weights_only=False)["state_dict"]
    assert start["conv1.0.weight"].shape == encoder["conv1.0.weight"].shape
    # two steps of training move the weights only a little from the pretrained ones
    assert (start["conv1.0.weight"] - encoder["conv1.0.weight"]).norm() < 0.5 * encoder["conv1.0.weight"].norm()
