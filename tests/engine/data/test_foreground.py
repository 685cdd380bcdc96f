"""The foreground behind ``robust`` intensities and ``crop`` (issue 42: scans with noise around the body)."""

import numpy as np
import pytest

from tonno_engine.data.foreground import foreground_box, foreground_mask
from tonno_engine.data.preprocessing import Preprocessing


def _noisy_head(seed: int = 0):
    """A 60³ box of Rician-like noise around a ball of tissue (a fifth of the box) holding a lesion 1.4× brighter
    than the tissue around it: ``(volume, tissue mask, lesion mask)``."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:60, :60, :60]
    tissue = (z - 30) ** 2 + (y - 28) ** 2 + (x - 33) ** 2 < 20 ** 2
    lesion = (z - 30) ** 2 + (y - 24) ** 2 + (x - 36) ** 2 < 3 ** 2
    signal = np.where(tissue, 100.0, 0.0) * np.where(lesion, 1.4, 1.0)
    noise = rng.normal(0, 3, (2,) + signal.shape)
    volume = np.hypot(signal + noise[0], noise[1]).astype(np.float32)  # magnitude of complex noise: Rician
    return volume, tissue, lesion


def test_robust_normalises_over_the_body_not_the_noise_around_it():
    volume, tissue, lesion = _noisy_head()
    old = Preprocessing.from_dict({"intensity": "robust", "params": {"z_max": 20.0}})  # a checkpoint from before 0.4
    assert old.params["foreground"] == "above-min"
    flat = old(volume)
    assert np.mean(flat[tissue] >= 20) > 0.95  # the IQR was the noise's: the body is clipped flat at +20
    assert np.median(flat[lesion]) == np.median(flat[tissue & ~lesion])  # and the lesion with it
    new = Preprocessing("robust")(volume)
    assert new[tissue].max() < 20 and abs(np.median(new[tissue])) < 0.2  # the body's own median and spread
    ring = tissue & ~lesion
    assert np.median(new[lesion]) - np.median(new[ring]) > 3  # the lesion stands out again
    assert (new[~foreground_mask(volume)] == 0).all()
    # mr z-scores over the same foreground; before 0.4 (a checkpoint without it) over the noise too
    old_mr = Preprocessing.from_dict({"intensity": "mr", "params": {}})
    assert old_mr.params["foreground"] == "above-min" and np.median(old_mr(volume)[tissue]) > 1.0
    assert abs(np.median(Preprocessing("mr")(volume)[tissue])) < 0.3


def test_the_foreground_fills_holes_and_a_constant_volume_has_none():
    volume, tissue, _ = _noisy_head()
    volume[28:33, 26:31, 31:36] = 0.0  # a dark finding inside the tissue stays in the foreground
    mask = foreground_mask(volume)
    assert mask[28:33, 26:31, 31:36].all() and (mask == tissue).mean() > 0.99
    assert not foreground_mask(np.full((8, 8, 8), 3.0)).any()
    assert foreground_box(np.zeros((4, 5, 6), bool)) == (slice(0, 4), slice(0, 5), slice(0, 6))


def test_crop_cuts_the_scan_to_its_foreground_box_and_says_where():
    volume, tissue, _ = _noisy_head()
    out = Preprocessing("robust", crop=True).run(volume, (1.0, 1.0, 2.0))
    assert out.box == (slice(9, 52), slice(7, 50), slice(12, 55))  # the ball (radius 20) plus 2 voxels, no speck
    assert out.array.shape == (43, 43, 43) and out.spacing == (1.0, 1.0, 2.0)
    np.testing.assert_array_equal(out.array, Preprocessing("robust")(volume[out.box]))
    assert Preprocessing.from_dict(Preprocessing("robust", crop=True).as_dict()).crop
    with pytest.raises(ValueError, match="unknown foreground 'brain'"):
        Preprocessing("robust", {"foreground": "brain"})
