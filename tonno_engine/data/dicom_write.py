"""Write a volume as a DICOM series (one CT Image file per slice) with pydicom.

Used by ``tonno synth --format dicom`` and by the tests and benchmarks that need series with a
known geometry. The array ``(D, H, W)`` is in nibabel order (``i, j, k``) with a RAS ``affine``;
DICOM patient coordinates are LPS, so the LPS affine is ``diag(-1, -1, 1, 1) @ affine``. Slice
``k`` holds ``array[:, :, k]`` with DICOM columns along ``i`` and rows along ``j``, which is how
SimpleITK (and dcm2niix) map a series back to NIfTI.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..base.atomic import make_part_folder
from .acquisition import spacing_of

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
#: Type 2 attributes of the Patient, General Study, General Series, General Equipment and CT Image modules
#: that a synthetic series has no value for: present and empty, as DICOM PS3.3 requires (dciodvfy checks)
TYPE2_EMPTY = {"PatientBirthDate": "", "PatientSex": "", "ReferringPhysicianName": "", "AccessionNumber": "",
               "PatientPosition": "", "Manufacturer": "", "PositionReferenceIndicator": "",
               "Laterality": ""}


def _dataset(pixels: np.ndarray, geometry: dict, uids: dict, number: int):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.PatientName, ds.PatientID = "tonno^synthetic", "tonno"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uids["study"], uids["series"]
    for key, value in TYPE2_EMPTY.items():  # Type 2: present, empty where a synthetic series has no value
        setattr(ds, key, value)
    ds.StudyDate, ds.StudyTime = uids["date"], uids["time"]
    ds.ContentDate, ds.ContentTime = uids["date"], uids["time"]
    ds.StudyID = uids["study_id"]
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]  # synthetic: made, not acquired
    ds.KVP = ""
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = uids["frame"]
    ds.SeriesDescription = uids["description"]
    ds.SeriesNumber, ds.InstanceNumber = uids["number"], number
    for key, value in geometry.items():
        setattr(ds, key, value)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    return ds


@dataclass(frozen=True)
class SeriesTags:
    """The tags a written series carries besides its geometry: the stored values' ``slope`` and ``intercept``
    (RescaleSlope, RescaleIntercept: value = stored · slope + intercept), the SeriesDescription, the
    SeriesNumber, and the SeriesInstanceUID (``None``: a new one)."""

    slope: float = 1.0
    intercept: float = 0.0
    description: str = "tonno"
    series_number: int = 1
    series_uid: str | None = None


def write_dicom_series(folder: str | Path, array, affine, tags: SeriesTags | None = None, *,
                       order=None) -> list[Path]:
    """Write ``array`` ``(D, H, W)`` (values = stored · ``tags.slope`` + ``tags.intercept``, rounded to int16;
    ``tags``: :class:`SeriesTags`, default its defaults) as ``folder/slice_XXXX.dcm`` and return the paths.
    ``order`` (a permutation of ``range(W)``) sets which slice each file number holds, to test readers that
    must sort by position. The series is written into a temporary sibling folder that replaces ``folder``
    when complete."""
    from pydicom.uid import generate_uid

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = make_part_folder(folder)
    array = np.asarray(array, dtype=np.float64)
    lps = RAS_TO_LPS @ np.asarray(affine, dtype=np.float64)
    steps = spacing_of(affine)  # the LPS flip keeps the column norms
    row_dir, col_dir = lps[:3, 0] / steps[0], lps[:3, 1] / steps[1]
    tags = tags or SeriesTags()
    slope, intercept = tags.slope, tags.intercept
    stored = np.clip(np.rint((array - intercept) / slope), -32768, 32767).astype(np.int16)
    now = datetime.now(timezone.utc)
    uids = {"study": generate_uid(), "series": tags.series_uid or generate_uid(), "frame": generate_uid(),
            "description": tags.description, "number": tags.series_number, "date": now.strftime("%Y%m%d"),
            "time": now.strftime("%H%M%S"), "study_id": "1"}
    order = list(range(array.shape[2])) if order is None else list(order)
    paths = []
    for file_no, k in enumerate(order):
        position = lps @ np.array([0.0, 0.0, k, 1.0])
        geometry = {"ImagePositionPatient": [f"{v:.6f}" for v in position[:3]],
                    "ImageOrientationPatient": [f"{v:.8f}" for v in (*row_dir, *col_dir)],
                    "PixelSpacing": [f"{steps[1]:.6f}", f"{steps[0]:.6f}"],
                    "SliceThickness": f"{steps[2]:.6f}",
                    "RescaleSlope": f"{slope:g}", "RescaleIntercept": f"{intercept:g}"}
        ds = _dataset(stored[:, :, k].T, geometry, uids, k + 1)
        try:
            ds.save_as(str(work / f"slice_{file_no:04d}.dcm"), enforce_file_format=True)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        paths.append(folder / f"slice_{file_no:04d}.dcm")
    if folder.exists():
        shutil.rmtree(folder)
    work.rename(folder)
    return paths
