"""Fault injection, geometry (docs/faults.md): a sheared input is refused in every format by the one check of
:mod:`tonno_engine.data.shear`, and a heatmap's qform and sform hold the input's geometry, so SimpleITK places it
where the input is."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation
from typer.testing import CliRunner

from tonno_cli.app import app
from tonno_engine.base.errors import DataError

runner = CliRunner()
FAST = ["--slices", "6", "--directions", "60", "--device", "cpu", "-q"]
RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0])


def _sheared_affine(shear: float = 0.5) -> np.ndarray:
    """RAS ``(4, 4)``: slice axis 2 (2.5 mm) leans by ``atan(shear / 2.5)`` towards axis 1 (11.31° for 0.5 mm),
    the geometry of a CT series with that gantry tilt."""
    affine = np.diag([1.0, 1.0, 2.5, 1.0])
    affine[1, 2] = shear
    return affine


def _oblique_affine() -> np.ndarray:
    """RAS ``(4, 4)``: rotated (not sheared), anisotropic, off-centre."""
    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("xyz", [8, -5, 12], degrees=True).as_matrix() @ np.diag([0.7, 0.8, 2.5])
    affine[:3, 3] = (-12.0, 30.5, -40.0)
    return affine


def _write_nifti(path, array, affine):
    """As a scanner's converter writes it: the sform holds ``affine``; the qform (which cannot hold a shear)
    its shear-free part."""
    img = nib.Nifti1Image(np.asarray(array, np.float32), affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    nib.save(img, str(path))
    return path


def _write_mha(path, array, affine):
    """``array`` ``(D, H, W)`` with the RAS ``affine``, its direction matrix sheared as well: ITK reads it as is."""
    lps = RAS_FROM_LPS @ affine[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    image = sitk.GetImageFromArray(np.asarray(array, np.float32).transpose(2, 1, 0))
    image.SetSpacing(spacing.tolist())
    image.SetDirection((lps / spacing).ravel().tolist())
    image.SetOrigin((RAS_FROM_LPS @ affine[:3, 3]).tolist())
    sitk.WriteImage(image, str(path))
    return path


def _phantom(tiny_cases):
    return np.asarray(nib.load(str(tiny_cases / "images" / "phantom_0000.nii.gz")).dataobj, np.float32)


# a NIfTI whose sform has a shear: refused by name before anything is computed, nothing written
def test_reconstruct_refuses_a_sheared_nifti_naming_the_file_and_the_shear(tiny_cases, tiny_checkpoint, tmp_path):
    src = _write_nifti(tmp_path / "sheared.nii.gz", _phantom(tiny_cases), _sheared_affine())
    out = tmp_path / "out"
    res = runner.invoke(app, ["reconstruct", "-i", str(src), "-o", str(out), "-c", str(tiny_checkpoint), *FAST])
    assert res.exit_code == 1, res.output
    assert "sheared.nii.gz" in res.output and "shear" in res.output and "11.31°" in res.output
    assert "Traceback" not in res.output
    assert not list(out.glob("*.nii*"))  # run.json and summary.csv say it failed; no heatmap


# the same geometry in NIfTI, MetaImage and DICOM: refused by the one check, with the same angle
def test_the_same_sheared_geometry_is_refused_in_every_format_with_the_same_angle(tmp_path):
    from tonno_engine.data.dicom_write import write_dicom_series
    from tonno_engine.data.images import load_image

    array, affine = np.zeros((20, 18, 12), np.float32), _sheared_affine()
    write_dicom_series(tmp_path / "series", array, affine)
    inputs = {"NIfTI": _write_nifti(tmp_path / "s.nii.gz", array, affine),
              "MetaImage": _write_mha(tmp_path / "s.mha", array, affine), "DICOM": tmp_path / "series"}
    causes = {}
    for name, path in inputs.items():
        with pytest.raises(DataError) as err:
            load_image(path)
        assert err.value.where == str(path), name
        causes[name] = err.value.cause
    assert "gantry tilt of 11.31°" in causes["DICOM"]
    for name in ("NIfTI", "MetaImage"):
        assert "shear of 11.31°" in causes[name] and "resample" in causes[name], causes[name]


# the tolerance: a shear of 0.1° is refused; a rotation rounded to float32 (an oblique scan's sform) is not
def test_a_shear_just_beyond_the_tolerance_is_refused_and_float32_rounding_is_not(tmp_path):
    from tonno_engine.data.nifti import load_nifti

    array = np.zeros((8, 9, 10), np.float32)
    with pytest.raises(DataError, match=r"shear of 0\.10°"):
        load_nifti(_write_nifti(tmp_path / "s.nii.gz", array, _sheared_affine(2.5 * np.tan(np.radians(0.1)))))
    oblique = _oblique_affine()
    assert np.allclose(load_nifti(_write_nifti(tmp_path / "o.nii.gz", array, oblique)).affine, oblique, atol=1e-5)


# tonno never writes a NIfTI whose qform and sform disagree (the qform cannot hold a shear)
def test_save_nifti_refuses_an_affine_its_qform_cannot_hold(tmp_path):
    from tonno_engine.data.nifti import save_nifti

    header = nib.Nifti1Image(np.zeros((8, 9, 10), np.float32), np.eye(4)).header
    with pytest.raises(DataError, match="shear"):
        save_nifti(tmp_path / "h.nii.gz", np.zeros((8, 9, 10)), _sheared_affine(), header)
    assert not (tmp_path / "h.nii.gz").exists()


# a heatmap for an oblique (rotated) input: qform == sform == the input's affine, and SimpleITK reads it with the
# input's direction cosines, origin and spacing
@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_a_heatmap_of_an_oblique_input_reads_back_in_simpleitk_where_the_input_is(tiny_cases, tiny_checkpoint,
                                                                                  tmp_path, suffix):
    write = _write_nifti if suffix == ".nii.gz" else _write_mha
    src = write(tmp_path / f"oblique{suffix}", _phantom(tiny_cases), _oblique_affine())
    out = tmp_path / "out"
    res = runner.invoke(app, ["reconstruct", "-i", str(src), "-o", str(out), "-c", str(tiny_checkpoint), *FAST])
    assert res.exit_code == 0, res.output
    heatmap = out / "oblique_tonno.nii.gz"
    header = nib.load(str(heatmap)).header
    assert header["qform_code"] > 0 and header["sform_code"] > 0
    assert np.allclose(header.get_qform(), _oblique_affine(), atol=1e-5)
    assert np.allclose(header.get_sform(), _oblique_affine(), atol=1e-5)
    source, written = sitk.ReadImage(str(src)), sitk.ReadImage(str(heatmap))
    assert np.allclose(written.GetDirection(), source.GetDirection(), atol=1e-5)
    assert np.allclose(written.GetOrigin(), source.GetOrigin(), atol=1e-4)
    assert np.allclose(written.GetSpacing(), source.GetSpacing(), atol=1e-5)
