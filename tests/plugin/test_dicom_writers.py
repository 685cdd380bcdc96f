"""napari's DICOM writers: a heatmap of a DICOM series as a Parametric Map, annotations as a SEG; refused without a
DICOM source."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from napari_tonno.io import read_image, write_image_dicom, write_labels_dicom
from tests.dicom_tools import dciodvfy
from tonno_engine.data.dicom_write import write_dicom_series

pytest.importorskip("highdicom")


def test_dicom_writers_save_layers_of_a_dicom_series(tmp_path):
    write_dicom_series(tmp_path / "ct", np.random.default_rng(0).normal(0, 50, (16, 14, 10)), np.diag([0.8, 0.8, 2, 1]))
    ((data, kwargs, _),) = read_image(tmp_path / "ct")
    heat = np.random.default_rng(1).random(data.shape).astype(np.float32)
    meta = {**kwargs, "metadata": {**kwargs["metadata"], "tonno": {"checkpoint_sha256": "cd" * 32},
                                   "tonno_method": "tonno"}}
    (pm,) = write_image_dicom(str(tmp_path / "heat.dcm"), heat, meta)
    written = pydicom.dcmread(pm)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ kwargs["metadata"]["affine"]
    for frame, group in zip(written.pixel_array, written.PerFrameFunctionalGroupsSequence):  # a frame per slice
        position = [float(v) for v in group.PlanePositionSequence[0].ImagePositionPatient]
        k = int(round(np.linalg.solve(lps, [*position, 1.0])[2]))
        assert np.array_equal(frame, heat[:, :, k].T)
    assert dciodvfy(pm)[0] == []
    annotations = np.zeros(data.shape, np.uint8)
    annotations[3:7, 2:6, 4:6] = 1
    (seg,) = write_labels_dicom(str(tmp_path / "ann.dcm"), annotations, {**kwargs, "name": "reviewed"})
    ds = pydicom.dcmread(seg)
    assert ds.SegmentSequence[0].SegmentAlgorithmType == "MANUAL" and dciodvfy(seg)[0] == []
    with pytest.raises(ValueError, match="did not come from a DICOM series"):
        write_image_dicom(str(tmp_path / "x.dcm"), heat, {"name": "h", "metadata": {"source_path": "a.nii.gz"}})
