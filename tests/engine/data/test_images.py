"""DICOM series, MHA and NRRD read back equal to the NIfTI of the same volume; every bad DICOM named."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from tonno_engine.base.errors import DataError
from tonno_engine.data.dicom_write import SeriesTags, write_dicom_series
from tonno_engine.data.images import find_images, image_stem, load_image
from tonno_engine.data.nifti import load_nifti, save_nifti


def _oblique_affine(spacing=(0.7, 0.8, 2.5), origin=(-12.0, 30.5, -40.0)):
    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("xyz", [8, -5, 12], degrees=True).as_matrix() @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


@pytest.fixture
def known(tmp_path):
    """A CT-like volume ``(20, 18, 12)`` in HU (stored value · 2 − 1024 exactly), its affine, and its NIfTI."""
    rng = np.random.default_rng(0)
    hu = (rng.integers(0, 1500, size=(20, 18, 12)) * 2 - 1024).astype(np.float32)
    affine = _oblique_affine()
    return hu, affine, save_nifti(tmp_path / "known.nii.gz", hu, affine)


def test_dicom_series_equals_nifti_of_same_volume(known, tmp_path):
    hu, affine, nifti = known
    order = np.random.default_rng(1).permutation(hu.shape[2])  # file numbers do not follow position
    # slope 2, intercept -1024: stored values differ from HU, GDCM must rescale
    write_dicom_series(tmp_path / "series", hu, affine, SeriesTags(slope=2.0, intercept=-1024.0), order=order)
    got, ref = load_image(tmp_path / "series"), load_nifti(nifti)
    assert got.array.shape == ref.array.shape
    np.testing.assert_array_equal(got.array, ref.array)
    np.testing.assert_allclose(got.affine, ref.affine, atol=1e-5)
    assert got.checked_spacing() == pytest.approx((0.7, 0.8, 2.5), abs=1e-5)
    # one file of the series stands for the series; so does folder#UID
    one_file = sorted((tmp_path / "series").iterdir())[3]
    np.testing.assert_array_equal(load_image(one_file).array, ref.array)
    uid = pydicom.dcmread(one_file, stop_before_pixels=True).SeriesInstanceUID
    np.testing.assert_allclose(load_image(f"{tmp_path / 'series'}#{uid}").affine, ref.affine, atol=1e-5)


def test_heatmap_written_for_a_series_has_the_nifti_affine(known, tmp_path):
    hu, affine, _ = known
    write_dicom_series(tmp_path / "series", hu, affine)
    volume = load_image(tmp_path / "series")
    out = save_nifti(tmp_path / "heat.nii.gz", np.zeros_like(volume.array), volume.affine, volume.header)
    np.testing.assert_allclose(nib.load(out).affine, affine, atol=1e-5)


@pytest.mark.parametrize("suffix", [".mha", ".nrrd", ".nhdr", ".mhd"])
def test_mha_nrrd_equal_nifti(known, tmp_path, suffix):
    hu, affine, nifti = known
    path = tmp_path / f"vol{suffix}"
    sitk.WriteImage(sitk.ReadImage(str(nifti)), str(path))  # ITK converts RAS NIfTI to LPS
    got, ref = load_image(path), load_nifti(nifti)
    np.testing.assert_array_equal(got.array, ref.array)
    np.testing.assert_allclose(got.affine, ref.affine, atol=1e-5)
    assert image_stem(path) == "vol"


def test_folder_of_series_folders_and_files(known, tmp_path):
    hu, affine, nifti = known
    write_dicom_series(tmp_path / "cases" / "patient_b", hu, affine)
    save_nifti(tmp_path / "cases" / "patient_a.nii.gz", hu, affine)
    (tmp_path / "cases" / "notes").mkdir()
    (tmp_path / "cases" / "notes" / "readme.txt").write_text("not an image")
    found = find_images(tmp_path / "cases")
    assert [image_stem(p) for p in found] == ["patient_a", "patient_b"]


# -- bad DICOM: each a DataError naming the folder and the cause -------------------------------


def _rewrite(folder, change):
    """Apply ``change(dataset, index)`` to every file of ``folder`` (in file-name order)."""
    for i, path in enumerate(sorted(folder.iterdir())):
        ds = pydicom.dcmread(path)
        change(ds, i)
        ds.save_as(path)


def _sr(path, series_uid=None):
    """A Basic Text SR (no pixel data) in its own series."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "SR", series_uid or generate_uid(), generate_uid()
    ds.save_as(path, enforce_file_format=True)


def _missing_slice(folder):
    os.remove(folder / "slice_0005.dcm")


def _mixed_series(folder):
    write_dicom_series(folder.parent / "other", np.zeros((20, 18, 6)), np.diag([1.0, 1.0, 3.0, 1.0]),
                       SeriesTags(description="T2"))
    for path in (folder.parent / "other").iterdir():
        path.rename(folder / f"other_{path.name}")


def _gantry_tilt(folder):
    _rewrite(folder, lambda ds, i: setattr(ds, "ImagePositionPatient",
                                           [0.0, 0.5 * ds.InstanceNumber, 2.5 * ds.InstanceNumber]))


def _skewed(folder):
    _rewrite(folder, lambda ds, i: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0.2, 0.98, 0]))


def _two_orientations(folder):
    _rewrite(folder, lambda ds, i: setattr(ds, "ImageOrientationPatient",
                                           [1, 0, 0, 0, 1, 0] if i % 2 else [0, 1, 0, 0, 0, -1]))


def _duplicate(folder):
    _rewrite(folder, lambda ds, i: setattr(ds, "ImagePositionPatient", [0.0, 0.0, 2.5 * (ds.InstanceNumber // 2)]))


def _htj2k(folder):
    from pydicom.encaps import encapsulate

    def change(ds, i):
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.201"
        ds.PixelData = encapsulate([b"\x00" * 16])
        ds["PixelData"].VR = "OB"
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        change(ds, 0)
        ds.save_as(path, enforce_file_format=False)


def _only_sr(folder):
    for path in folder.iterdir():
        path.unlink()
    _sr(folder / "report.dcm")


def _single_slice(folder):
    for path in sorted(folder.iterdir())[1:]:
        path.unlink()


BAD = {
    "missing slice": (_missing_slice, "uneven slice spacing: 5.000 mm between slices 4 and 5, 2.500 mm elsewhere"),
    "mixed series": (_mixed_series, "2 image series in one folder"),
    "gantry tilt": (_gantry_tilt, "gantry tilt of 11.31°"),
    "non-orthogonal orientation": (_skewed, "not orthogonal"),
    "orientations differ": (_two_orientations, "different orientations"),
    "duplicate position": (_duplicate, "lie at the same position"),
    "HTJ2K without decoder": (_htj2k, "1.2.840.10008.1.2.4.201 (High-Throughput JPEG 2000 Image Compression (Lossless Only))"),
    "only a structured report": (_only_sr, "only DICOM objects without an image (1 SR)"),
    "single slice": (_single_slice, "is a 2D image"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_dicom_is_named(tmp_path, case):
    spoil, message = BAD[case]
    folder = tmp_path / "series"
    write_dicom_series(folder, np.zeros((20, 18, 12)), np.diag([1.0, 1.0, 2.5, 1.0]))
    spoil(folder)
    with pytest.raises(DataError) as err:
        load_image(folder)
    assert err.value.where.startswith(str(folder))
    assert message in err.value.cause


def test_mixed_series_pick_by_uid_and_sr_is_ignored(tmp_path):
    folder = tmp_path / "series"
    write_dicom_series(folder, np.ones((20, 18, 12)), np.diag([1.0, 1.0, 2.5, 1.0]),
                       SeriesTags(series_uid="1.2.3.4"))
    _mixed_series(folder)
    _sr(folder / "report.dcm")
    with pytest.raises(DataError, match=r"1\.2\.3\.4 \(12 files, CT, tonno\).*FOLDER#SeriesInstanceUID"):
        load_image(folder)
    assert load_image(f"{folder}#1.2.3.4").array.shape == (20, 18, 12)
    assert image_stem(f"{folder}#1.2.3.4") == "series_4"


@pytest.mark.parametrize("name, content, cause", [
    ("empty", None, "folder holds no DICOM files"),
    ("vol.mha", b"ObjectType = Image\nNDims = 3\n", "unreadable or truncated image"),
    ("vol.tif", b"II*\x00", "unsupported image format"),
    ("gone.nrrd", "missing", "image file not found"),
])
def test_other_bad_inputs(tmp_path, name, content, cause):
    path = tmp_path / name
    if content is None:
        path.mkdir()
    elif content != "missing":
        path.write_bytes(content)
    with pytest.raises(DataError, match=cause):
        load_image(path)
