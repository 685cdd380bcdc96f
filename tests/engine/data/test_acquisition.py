"""Re-acquiring synthetic volumes on anisotropic and oblique grids keeps the anatomy in millimetres."""

import nibabel as nib
import numpy as np
import pytest

from tonno_engine.data.acquisition import resample_like_a_scanner, spacing_of, tilt
from tonno_engine.data.synth import SynthRequest, synthesize
from tonno_engine.tomography.phantoms import balls_phantom_mm


def _world_centre_of_mass(mask, affine):
    idx = np.argwhere(mask > 0.5).mean(axis=0)
    return affine[:3, :3] @ idx + affine[:3, 3]


def test_thick_slices_keep_extent_volume_and_position():
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = (-30.0, -20.0, -25.0)
    ball = balls_phantom_mm((61, 41, 51), (1, 1, 1), [((4.0, -3.0, 5.0), 8.0, 1.0)]).numpy()
    thick, new_affine = resample_like_a_scanner(ball, affine, (1.0, 2.0, 4.0))
    assert thick.shape == (61, 21, 13)
    np.testing.assert_allclose(spacing_of(new_affine), (1.0, 2.0, 4.0))
    np.testing.assert_allclose(new_affine[:3, 3], affine[:3, 3])  # the first voxel centre stays put
    mm3 = ball.sum()
    assert abs((thick > 0.5).sum() * 8.0 - mm3) / mm3 < 0.15
    np.testing.assert_allclose(_world_centre_of_mass(thick, new_affine), _world_centre_of_mass(ball, affine), atol=1.0)
    assert 0 < thick.max() <= 1.0 and (0 < thick).sum() > (thick > 0.99).sum()  # partial volume at the edge


def test_tilt_rotates_about_the_volume_centre():
    affine = np.diag([2.0, 1.0, 3.0, 1.0])
    out = tilt(affine, 30.0, (10, 20, 5))
    np.testing.assert_allclose(spacing_of(out), (2.0, 1.0, 3.0))
    centre = np.array([4.5, 9.5, 2.0])
    np.testing.assert_allclose(out[:3, :3] @ centre + out[:3, 3], affine[:3, :3] @ centre + affine[:3, 3])
    cos = (out[:3, 1] @ affine[:3, 1]) / (np.linalg.norm(out[:3, 1]) * np.linalg.norm(affine[:3, 1]))
    assert cos == pytest.approx(np.cos(np.radians(30.0)))


def test_synth_writes_anisotropic_oblique_cases_of_the_same_anatomy(tmp_path):
    list(synthesize(tmp_path / "iso", SynthRequest(kind="phantom", n=2, seed=4, shape=(32, 32, 32))))
    list(synthesize(tmp_path / "thick", SynthRequest(kind="phantom", n=2, seed=4, shape=(32, 32, 32), spacing=(1.0, 1.0, 3.0))))
    list(synthesize(tmp_path / "tilted", SynthRequest(kind="phantom", n=2, seed=4, shape=(32, 32, 32), spacing=(1.0, 1.0, 3.0),
                                                         oblique=15.0)))
    for name in ("phantom_0000", "phantom_0001"):
        iso, thick, tilted = (nib.load(str(tmp_path / d / "images" / f"{name}.nii.gz")) for d in ("iso", "thick", "tilted"))
        assert thick.shape == (32, 32, 11) and thick.header.get_zooms() == (1.0, 1.0, 3.0)
        gt = nib.load(str(tmp_path / "thick" / "masks" / f"{name}.nii.gz"))
        np.testing.assert_array_equal(gt.affine, thick.affine)
        # the same anatomy: the mask's centre of mass at the same millimetres
        iso_gt = nib.load(str(tmp_path / "iso" / "masks" / f"{name}.nii.gz"))
        if np.asarray(iso_gt.dataobj).any():
            np.testing.assert_allclose(_world_centre_of_mass(np.asarray(gt.dataobj), gt.affine),
                                       _world_centre_of_mass(np.asarray(iso_gt.dataobj), iso_gt.affine), atol=1.0)
        np.testing.assert_array_equal(np.asarray(tilted.dataobj), np.asarray(thick.dataobj))
        np.testing.assert_allclose(spacing_of(tilted.affine), (1.0, 1.0, 3.0), atol=1e-6)
        assert not np.allclose(tilted.affine, thick.affine)
    meta = (tmp_path / "tilted" / "dataset.json").read_text()
    assert '"oblique": 15.0' in meta and '"spacing": [' in meta
