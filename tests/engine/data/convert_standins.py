"""Tiny stand-ins of the public data sets' layouts (``tonno convert``'s tests): a few 8³ NIfTI files, a few small
DICOM series, and published totals to match."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from tonno_engine.data.convert.common import Published
from tonno_engine.data.convert.duke import DukeTotals
from tonno_engine.data.convert.mosmed import MosMedTotals

#: the MosMed stand-in: study_0001-0002 in CT-0, 0003-0005 in CT-1, 0006 CT-2, 0007 CT-3, 0008 CT-4; masks of 0003, 0004
MOSMED_TINY = MosMedTotals(categories=(("CT-0", 2), ("CT-1", 3), ("CT-2", 1), ("CT-3", 1), ("CT-4", 1)), masks=2,
                           source="the tests' stand-in")
MOSMED_GRADES = {1: 0, 2: 0, 3: 1, 4: 1, 5: 1, 6: 2, 7: 3, 8: 4}
#: the AutoPET stand-in: three studies of two patients, one with a lesion
AUTOPET_TINY = Published("AutoPET stand-in", (("studies", 3), ("patients", 2), ("positive", 1), ("negative", 2)),
                         "the tests' stand-in")
AUTOPET_STUDIES = {("PETCT_0af7ffe12a", "08-12-2005-NA-PET-CT Ganzkoerper  primaer mit KM-10445"): 1,
                   ("PETCT_0af7ffe12a", "03-15-2006-NA-PET-CT Ganzkoerper  primaer mit KM-52210"): 0,
                   ("PETCT_1b199d094d", "11-02-2003-NA-Unspecified CT ABDOMEN-93008"): 0}
DUKE_TINY = DukeTotals(patients=5, source="the tests' stand-in")
#: the Duke stand-in's grid: 12 columns (left-right), 8 rows, 6 slices; the body fills columns 2-11, so its midline
#: lies at column 7, not at the field of view's middle (6)
DUKE_SHAPE = (12, 8, 6)
DUKE_AFFINE = np.diag([-1.0, -1.0, 2.0, 1.0])  # RAS: column index grows to the patient's left, as in an axial DICOM
DUKE_MIDLINE = 7


def nifti(path: Path, value: float = 0.0, *, lesion: bool = False, dtype=np.float32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.full((8, 8, 8), value, dtype=dtype)
    if lesion:
        array[2:4, 3:5, 4:6] = 1
    nib.save(nib.Nifti1Image(array, np.diag([1.5, 1.5, 3.0, 1.0])), str(path))
    return path


def make_mosmed(tmp: Path) -> Path:
    """``tmp/COVID19_1110`` with ``studies/CT-k`` per :data:`MOSMED_TINY` and its two masks."""
    raw = tmp / "COVID19_1110"
    for number, grade in MOSMED_GRADES.items():
        nifti(raw / "studies" / f"CT-{grade}" / f"study_{number:04d}.nii.gz", -1000.0 + number)
    for number in (3, 4):
        nifti(raw / "masks" / f"study_{number:04d}_mask.nii.gz", lesion=True, dtype=np.uint8)
    (raw / "dataset_registry.xlsx").write_bytes(b"not read")
    return raw


def make_autopet(tmp: Path) -> Path:
    """``tmp/nifti/FDG-PET-CT-Lesions`` with the studies of :data:`AUTOPET_STUDIES` (CT, CTres, PET, SUV, SEG)."""
    root = tmp / "nifti" / "FDG-PET-CT-Lesions"
    for (patient, study), label in AUTOPET_STUDIES.items():
        folder = root / patient / study
        for k, name in enumerate(("CT", "CTres", "PET", "SUV")):
            nifti(folder / f"{name}.nii.gz", float(k))
        nifti(folder / "SEG.nii.gz", lesion=bool(label), dtype=np.uint8)
    return tmp / "nifti"


def duke_volume(value: float) -> np.ndarray:
    array = np.zeros(DUKE_SHAPE)
    array[2:, 2:5, :] = value  # the body: columns 2-11 (a third of the grid: the background, 0, fills the most)
    return array


def duke_series(folder: Path, description: str, number: int, value: float, *, reversed_numbers: bool = False) -> None:
    """One series of the Duke stand-in's grid; ``reversed_numbers``: InstanceNumber falls along the slice normal."""
    import pydicom

    from tonno_engine.data.dicom_write import SeriesTags, write_dicom_series

    paths = write_dicom_series(folder, duke_volume(value), DUKE_AFFINE, SeriesTags(description=description,
                                                                                  series_number=number))
    if reversed_numbers:
        for path in paths:
            ds = pydicom.dcmread(path)
            ds.InstanceNumber = DUKE_SHAPE[2] + 1 - int(ds.InstanceNumber)
            ds.save_as(path)


def make_duke(tmp: Path) -> tuple[Path, Path]:
    """``(raw, boxes.csv)``: TCIA's layout for patients 001, 002 (InstanceNumber reversed), 003 (no post-contrast
    series) and 005 (no box); the sheet boxes 001 (the right breast), 002 (the left), 003 and 004 (no folder)."""
    root = tmp / "manifest-1607053360376" / "Duke-Breast-Cancer-MRI"
    study = "01-01-1990-NA-MRI BREAST BILATERAL W  WO-97538"
    for pid, reverse in (("Breast_MRI_001", False), ("Breast_MRI_002", True), ("Breast_MRI_005", False)):
        duke_series(root / pid / study / "3.000000-ax dyn pre-93877", "ax dyn pre", 3, 100.0)
        duke_series(root / pid / study / "4.000000-ax dyn 1st pass-35468", "ax dyn 1st pass", 4, 200.0,
                    reversed_numbers=reverse)
    duke_series(root / "Breast_MRI_003" / study / "3.000000-ax dyn pre-11111", "ax dyn pre", 3, 100.0)
    sheet = tmp / "Annotation_Boxes.csv"
    sheet.write_text("Annotation boxes of the Duke collection,,,,,,\n"
                     "Patient ID,Start Row,End Row,Start Column,End Column,Start Slice,End Slice\n"
                     "Breast_MRI_001,2,3,4,5,2,3\n"
                     "Breast_MRI_002,5,6,9,11,1,2\n"
                     "Breast_MRI_003,1,2,1,2,1,1\n"
                     "Breast_MRI_004,1,2,1,2,1,1\n")
    return tmp / "manifest-1607053360376", sheet
