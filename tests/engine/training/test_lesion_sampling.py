"""Sampling for small lesions among look-alikes: top-k (``candidates``) and planes through bright spots (``anchors``)."""

import json

import torch

from tonno_engine.data.augment import Augmentation
from tonno_engine.data.dataset import Case
from tonno_engine.tomography.frames import Frame
from tonno_engine.training.config import TrainConfig
from tonno_engine.training.sampling import LoadedCase, sample_batch, top_slices


class BrightestScorer(torch.nn.Module):
    """Scores a slice ``(N, 1, h, w)`` by its largest pixel; a batch norm in front records whether it was
    called in training mode (its running mean would move)."""

    def __init__(self):
        super().__init__()
        self.norm = torch.nn.BatchNorm2d(1)

    def forward(self, x):
        self.norm(x)
        return x.amax(dim=(1, 2, 3))[:, None]


def _volume_with_a_spot() -> torch.Tensor:
    """A dim 32³ volume with a bright 3-voxel spot off centre: few random planes pass through it."""
    vol = torch.full((32, 32, 32), 0.1)
    vol[20:23, 8:11, 12:15] = 5.0
    return vol


def test_top_slices_keeps_the_highest_scoring_and_leaves_the_batch_norm_alone():
    scorer = BrightestScorer().train()
    slices = torch.rand(10, 1, 8, 8)
    slices[[3, 7], 0, 2, 2] = torch.tensor([4.0, 9.0])
    kept = top_slices(slices, scorer, TrainConfig(slices_per_volume=2, channels_last=False))
    assert torch.equal(kept, slices[[7, 3]])
    assert scorer.training and scorer.norm.num_batches_tracked.item() == 0


def test_candidates_find_the_spot_that_random_slices_miss():
    cfg = TrainConfig(slice_size=32, batch_volumes=4, slices_per_volume=4, candidates=96, channels_last=False)
    vols = [LoadedCase(Case("a", 1, "a.nii.gz"), _volume_with_a_spot(), Frame())]
    aug, scorer = Augmentation.off(), BrightestScorer()
    random_x, y = sample_batch(vols, cfg, torch.Generator().manual_seed(0), aug, torch.device("cpu"))
    top_x, y_top = sample_batch(vols, cfg, torch.Generator().manual_seed(0), aug, torch.device("cpu"), scorer=scorer)
    assert top_x.shape == random_x.shape == (16, 1, 32, 32) and torch.equal(y, y_top)
    hits = lambda x: int((x.amax(dim=(1, 2, 3)) > 2.0).sum())  # noqa: E731
    assert hits(top_x) == 16 and hits(random_x) < 8


def test_train_with_candidates_and_anchors_records_them_and_refuses_too_few_candidates(tiny_cases, tmp_path):
    from typer.testing import CliRunner

    from tonno_cli.app import app

    common = ["train", str(tiny_cases), "--slice-size", "32", "--steps", "2", "--batch-volumes", "2",
              "--slices-per-volume", "2", "--norm", "gn", "--device", "cpu", "--objective", "mil", "-q"]
    res = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "run"), "--candidates", "6", "--anchors", "5"])
    assert res.exit_code == 0, res.output
    args = json.loads((tmp_path / "run" / "run.json").read_text())["meta"]["train_args"]
    assert (args["candidates"], args["anchors"]) == (6, 5)
    bad = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "bad"), "--candidates", "2"], env={"COLUMNS": "300"})
    assert bad.exit_code == 2 and "more than --slices-per-volume (2), got 2" in bad.output
    assert not (tmp_path / "bad").exists()


def test_bright_spots_finds_blobs_strongest_first_in_index_coordinates():
    from tonno_engine.data.spots import bright_spots

    vol = torch.full((33, 33, 33), 0.2)
    vol[8:11, 16:19, 24:27] = 3.0  # a strong blob centred on voxel (9, 17, 25)
    vol[23:26, 4:7, 4:7] = 1.0  # a weaker one at (24, 5, 5)
    vol[:, :, 30:] = 0.9  # a smooth slab: no blob
    spots = bright_spots(vol.numpy(), 5)
    expected = [[-1 + 2 * i / 32 for i in centre] for centre in ((9, 17, 25), (24, 5, 5))]
    assert spots.shape[1] == 3 and len(spots) >= 2
    assert torch.allclose(torch.from_numpy(spots[:2]), torch.tensor(expected, dtype=torch.float64))
    assert len(bright_spots(torch.zeros(8, 8, 8).numpy(), 5)) == 0  # nothing to find: none, not noise


def test_anchored_planes_pass_through_the_spot_in_either_geometry():
    from tonno_engine.tomography.frames import make_frame

    for frame in (Frame(), make_frame((32, 32, 32), geometry="physical", spacing=(3.0, 1.0, 1.0))):
        # 128 pixels: under 1 mm per pixel in the physical frame (its patch spans the 51 mm half-diagonal)
        cfg = TrainConfig(slice_size=128, batch_volumes=4, slices_per_volume=8, anchors=3, channels_last=False)
        vols = [LoadedCase(Case("a", 1, "a.nii.gz"), _volume_with_a_spot(), frame)]
        x, _ = sample_batch(vols, cfg, torch.Generator().manual_seed(0), Augmentation.off(), torch.device("cpu"))
        assert (x.amax(dim=(1, 2, 3)) > 2.0).all()  # every plane cuts the spot (random planes: few do)
        empty = [LoadedCase(Case("b", 0, "b.nii.gz"), torch.zeros(32, 32, 32), frame)]
        assert sample_batch(empty, cfg, torch.Generator().manual_seed(0), Augmentation.off(),
                            torch.device("cpu"))[0].shape == (32, 1, 128, 128)  # no spot: uniform planes


def test_a_bag_of_anchored_planes_cuts_every_spot():
    from tonno_engine.training.sampling import anchored_offsets

    vol = torch.full((33, 33, 33), 0.1)
    centres = ((6, 6, 6), (16, 26, 10), (26, 10, 24))
    for c in centres:
        vol[tuple(slice(i - 1, i + 2) for i in c)] = 4.0
    lc = LoadedCase(Case("a", 1, "a.nii.gz"), vol, Frame())
    gen = torch.Generator().manual_seed(3)
    for _ in range(5):
        n = torch.randn(6, 3, generator=gen, dtype=torch.float64)
        n = n / n.norm(dim=1, keepdim=True)
        offsets = anchored_offsets(lc, n, 3, gen, torch.zeros(6, dtype=torch.float64))
        points = torch.tensor([[-1 + 2 * i / 32 for i in c] for c in centres], dtype=torch.float64)
        distance = ((points @ n.T) - offsets[None, :]).abs()  # (spot, plane), in [-1, 1] units
        assert ((distance <= 3 ** 0.5 * 2 / 32).sum(1) >= 2).all()  # 6 planes, 3 spots: each spot cut twice
