"""DICOM out: synthetic series, Parametric Maps and SEGs conform (dciodvfy) and lie on the source's voxels."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest

from tests.dicom_tools import dciodvfy
from tonno_engine.data.dicom_out import ANNOTATION, Made, write_parametric_map, write_segmentation
from tonno_engine.data.dicom_write import write_dicom_series
from tonno_engine.data.images import load_image
from tonno_engine.data.nifti import save_nifti

pytest.importorskip("highdicom")


def _oblique_affine() -> np.ndarray:
    """RAS affine: rotated about two axes, anisotropic spacing (0.7, 0.9, 2.5 mm), off-centre."""
    a, b = np.radians(20), np.radians(-12)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag([0.7, 0.9, 2.5])
    affine[:3, 3] = (-31.5, 12.25, 80.0)
    return affine


@pytest.fixture
def series(tmp_path):
    """An oblique series of 12 slices whose files are numbered out of slice order."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "series"
    order = list(rng.permutation(12))
    write_dicom_series(folder, rng.normal(0, 100, (20, 17, 12)), _oblique_affine(), order=order)
    return folder


def test_dciodvfy_finds_no_error_in_a_synthetic_series(series):
    errors, _ = dciodvfy(sorted(series.iterdir())[0])
    assert errors == []


def _positions(ds) -> np.ndarray:
    return np.array([[float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]
                     for f in ds.PerFrameFunctionalGroupsSequence])


def test_a_parametric_map_holds_the_heatmap_at_the_source_voxels_and_conforms(series, tmp_path):
    volume = load_image(series)
    heatmap = np.random.default_rng(1).normal(size=volume.array.shape).astype(np.float32)
    save_nifti(tmp_path / "h.nii.gz", heatmap, volume.affine, volume.header)
    made = Made("tonno", "0.4.0", {"checkpoint_sha256": "ab" * 32, "settings": {"directions": 8}})
    path = write_parametric_map(tmp_path / "h.dcm", heatmap, volume.path, made)
    pm = pydicom.dcmread(path)
    sources = [pydicom.dcmread(p) for p in sorted(series.iterdir())]
    source = sources[0]
    # geometry: each frame at a source slice's position, with its orientation and spacing
    source_positions = {tuple(np.round([float(v) for v in d.ImagePositionPatient], 3)) for d in sources}
    frames = pm.pixel_array  # (frames, rows, columns)
    nifti = np.asarray(nib.load(tmp_path / "h.nii.gz").dataobj)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ volume.affine
    shared = pm.SharedFunctionalGroupsSequence[0]
    assert np.allclose([float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient],
                       [float(v) for v in source.ImageOrientationPatient], atol=1e-6)
    spacing = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
    assert np.allclose(spacing, [0.9, 0.7], atol=1e-3)
    for k, position in enumerate(_positions(pm)):
        assert tuple(np.round(position, 3)) in source_positions
        # the voxel (0, 0, k) of the volume is where frame k starts: its index k follows the position
        index = np.linalg.solve(lps, [*position, 1.0])[:3]
        assert np.allclose(index[:2], 0, atol=1e-3)
        slice_k = int(round(index[2]))
        assert abs(index[2] - slice_k) < 1e-3
        assert np.array_equal(frames[k], nifti[:, :, slice_k].T)  # bit-identical to the NIfTI output
    assert pm.Rows == 17 and pm.Columns == 20 and len(frames) == 12
    assert pm.StudyInstanceUID == source.StudyInstanceUID
    assert pm.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert "ab" * 32 in pm.ImageComments and '"directions":8' in pm.ImageComments
    referenced = {r.SeriesInstanceUID for r in pm.ReferencedSeriesSequence}
    assert referenced == {source.SeriesInstanceUID}
    errors, _ = dciodvfy(path)
    assert errors == []


@pytest.mark.parametrize("method", ["tonno", ANNOTATION])
def test_a_seg_of_a_mask_lies_on_the_source_and_conforms(series, tmp_path, method):
    volume = load_image(series)
    mask = np.zeros(volume.array.shape, bool)
    mask[4:9, 3:8, 2:6] = True
    path = write_segmentation(tmp_path / "m.dcm", mask, volume.path, Made(method, "0.4.0"))
    seg = pydicom.dcmread(path)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ volume.affine
    for k, position in enumerate(_positions(seg)):
        slice_k = int(round(np.linalg.solve(lps, [*position, 1.0])[2]))
        assert np.array_equal(seg.pixel_array[k].astype(bool), mask[:, :, slice_k].T)
    kind = seg.SegmentSequence[0].SegmentAlgorithmType
    assert kind == ("MANUAL" if method == ANNOTATION else "AUTOMATIC")
    errors, _ = dciodvfy(path)
    assert errors == []
