import gzip

import nibabel as nib
import numpy as np
import pytest

from tonno_engine.base.errors import DataError
from tonno_engine.data.nifti import load_nifti, save_nifti


def _write(path, array, affine=None):
    nib.save(nib.Nifti1Image(np.asarray(array), np.diag([2.0, 3.0, 4.0, 1.0]) if affine is None else affine), str(path))
    return path


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_round_trip_keeps_values_affine_and_spacing(tmp_path, suffix):
    array = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    affine = np.array([[0, 0, 1.5, 10], [0, 2.0, 0, -3], [-1.0, 0, 0, 7], [0, 0, 0, 1]])
    src = load_nifti(_write(tmp_path / f"a{suffix}", array, affine))
    assert src.array.shape == (5, 6, 7) and src.array.dtype == np.float32
    np.testing.assert_array_equal(src.array, array)
    np.testing.assert_allclose(src.affine, affine)
    out = save_nifti(tmp_path / f"b{suffix}", src.array * 2, src.affine, src.header)
    back = load_nifti(out)
    np.testing.assert_array_equal(back.array, array * 2)
    np.testing.assert_allclose(back.affine, affine)
    assert back.spacing == pytest.approx(src.spacing)
    assert not list(tmp_path.glob(".*part*")), "temporary files left behind"


def test_4d_with_singleton_axis_is_squeezed(tmp_path):
    assert load_nifti(_write(tmp_path / "a.nii.gz", np.zeros((4, 5, 6, 1)))).array.shape == (4, 5, 6)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "not found"),
        (lambda p: (p.write_bytes(b"not a nifti at all" * 30), p)[1], "unreadable or truncated"),
        (lambda p: _write(p, np.zeros((4, 5))), "must be 3D, got 2D"),
        (lambda p: _write(p, np.zeros((4, 5, 6, 2))), "must be 3D, got 4D"),
        (lambda p: _write(p, np.full((4, 5, 6), np.nan, np.float32)), "NaN or Inf"),
        (lambda p: _write(p, np.zeros((4, 5, 1))), "2D image stored as 3D"),
    ],
)
def test_bad_files_name_the_file_and_cause(tmp_path, make, message):
    path = make(tmp_path / "bad.nii.gz")
    with pytest.raises(DataError, match=message) as info:
        load_nifti(path)
    assert str(path) in str(info.value)


def test_truncated_gzip_is_reported(tmp_path):
    good = _write(tmp_path / "good.nii.gz", np.random.default_rng(0).random((20, 20, 20)).astype(np.float32))
    data = good.read_bytes()
    bad = tmp_path / "cut.nii.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="unreadable or truncated") as info:
        load_nifti(bad)
    assert "cut.nii.gz" in str(info.value)
    assert gzip  # the module under test reads gzip through nibabel
