"""Duke-Breast-Cancer-MRI → ``labels.csv``: each breast a case, the lesion's box its mask.

The layout TCIA's download writes: ``Breast_MRI_NNN/<study>/<series>/*.dcm`` (one folder per patient, found up to
three levels below RAW, e.g. under ``manifest-…/Duke-Breast-Cancer-MRI/``), and the box sheet
(:mod:`.boxes`). For each patient the chosen sequence is the series whose SeriesDescription holds the first of
the given texts that any of its series holds (case-insensitive; by default the first post-contrast pass:
``1st``, ``1ax``, ``1/ax``), the lowest SeriesNumber among several. The volume is split at the body's midline in
the sagittal direction (the middle of the foreground's extent along the array axis nearest to left-right); the
half holding the box's centre is label 1 with the box (clipped to its half) as its mask, the other label 0 with
an empty mask. A half volume has no file of its own, so, unlike the other converters, this one writes the halves
and masks as NIfTI into ``OUT/images`` and ``OUT/masks`` (first into a temporary folder: an interrupted or
failed conversion leaves none). Columns: ``case`` (``Breast_MRI_NNN_left``/``_right``, the patient's side),
``label``, ``image``, ``mask`` and ``group`` (the patient).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...base.atomic import make_part_folder
from ...base.errors import DataError
from ...base.events import Progress
from .boxes import Box, read_boxes
from .common import (
    ConvertResult,
    Findings,
    OutputSpec,
    Published,
    check_folders,
    find_root,
    output_folder,
    relative,
    visible,
    write_conversion,
)

DUKE_PATIENTS = 922
DUKE_SOURCE = ("Saha et al., A machine learning approach to radiogenomics of breast cancer: a study of 922 subjects and "
               "529 DCE-MRI features, Br J Cancer 119, 508-516 (2018); TCIA Duke-Breast-Cancer-MRI "
               "(doi:10.7937/TCIA.e3sv-re93): 922 patients, Breast_MRI_001 … Breast_MRI_922, one box each")
#: the first post-contrast pass, as the collection's series descriptions name it ("ax dyn 1st pass", "1ax 3d dyn", …)
DEFAULT_SEQUENCES = ("1st", "1ax", "1/ax")
PATIENT = re.compile(r"Breast_MRI_(\d{3})")


@dataclass(frozen=True)
class DukeTotals:
    """The published patients (``Breast_MRI_001`` … ``Breast_MRI_<patients>``), one box and two breasts each."""

    patients: int = DUKE_PATIENTS
    source: str = DUKE_SOURCE

    def ids(self) -> list[str]:
        return [f"Breast_MRI_{n:03d}" for n in range(1, self.patients + 1)]

    def published(self) -> Published:
        return Published("Duke-Breast-Cancer-MRI", (("patients", self.patients), ("boxes", self.patients),
                                                    ("cases", 2 * self.patients)), self.source)


#: the published totals every conversion is checked against (a test may put a stand-in's here)
DUKE = DukeTotals()


@dataclass(frozen=True)
class DukeRequest:
    """``boxes``: the box sheet (XLSX or CSV); ``sequences``: texts of the series description to choose, tried in
    order; ``totals``: the published totals to check against (default :data:`DUKE`)."""

    boxes: Path
    sequences: tuple[str, ...] = DEFAULT_SEQUENCES
    totals: DukeTotals | None = None


@dataclass(frozen=True)
class Series:
    folder: Path
    uid: str
    description: str
    number: int

    def __str__(self) -> str:
        return f"{self.folder}#{self.uid}"


def _holds_patients(folder: Path) -> bool:
    return any(p.is_dir() and PATIENT.fullmatch(p.name) for p in folder.iterdir())


def _header(path: Path, tags: list[str] | None = None):
    """The DICOM header of ``path`` (only ``tags`` when given); :class:`DataError` naming an unreadable one."""
    import pydicom

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True, force=True, specific_tags=tags)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for a broken file
        raise DataError(path, f"unreadable DICOM header ({type(exc).__name__}: {exc})") from exc


def _series_of(patient: Path) -> list[Series]:
    """Every series under ``patient``: each folder's first DICOM file names its series."""
    from ..dicom import is_dicom_file

    found = []
    for folder in sorted({p.parent for p in patient.rglob("*") if p.is_file() and not p.name.startswith(".")}):
        first = next((p for p in visible(folder) if p.is_file() and is_dicom_file(p)), None)
        if first is None:
            continue
        head = _header(first)
        number = head.get("SeriesNumber", None)
        found.append(Series(folder, str(head.get("SeriesInstanceUID", "")), str(head.get("SeriesDescription", "")),
                            int(number) if number not in (None, "") else 0))
    return found


def choose_series(series: list[Series], sequences: tuple[str, ...]) -> Series | None:
    """The series whose description holds the first of ``sequences`` that any does (case-insensitive), the lowest
    SeriesNumber among several; ``None`` when none does."""
    for text in sequences:
        hits = [s for s in series if text.lower() in s.description.lower()]
        if hits:
            return min(hits, key=lambda s: (s.number, str(s.folder)))
    return None


def _instance_order(series: Series) -> np.ndarray | None:
    """The array slice (GDCM's order, along the slice normal) of each slice counted in InstanceNumber order, or
    ``None`` when a slice has no InstanceNumber."""
    from ..dicom import parse_series, series_files

    numbers = []
    for file in series_files(parse_series(str(series))):
        head = _header(Path(file), ["InstanceNumber"])
        if head.get("InstanceNumber", None) in (None, ""):
            return None
        numbers.append(int(head.InstanceNumber))
    return np.argsort(np.array(numbers), kind="stable")


def box_index(box: Box, shape: tuple[int, ...], order: np.ndarray | None) -> tuple[slice, slice, slice] | str:
    """The box as array slices ``(columns, rows, slices)`` of a series read by tonno (``array[i, j, k]``: DICOM column
    ``i``, row ``j``, slice ``k`` in GDCM's order), or why it does not fit the series."""
    if box.columns[1] > shape[0] or box.rows[1] > shape[1] or box.slices[1] > shape[2]:
        return (f"the box (rows {box.rows[0]}-{box.rows[1]}, columns {box.columns[0]}-{box.columns[1]}, slices "
                f"{box.slices[0]}-{box.slices[1]}) lies outside the series ({shape[1]} rows, {shape[0]} columns, "
                f"{shape[2]} slices): another sequence?")
    ks = np.arange(box.slices[0] - 1, box.slices[1])
    ks = order[ks] if order is not None else ks
    return (slice(box.columns[0] - 1, box.columns[1]), slice(box.rows[0] - 1, box.rows[1]),
            slice(int(ks.min()), int(ks.max()) + 1))


def midline(array: np.ndarray, axis: int) -> int:
    """The first index of the second half along ``axis``: the middle of the foreground's extent (the array's middle
    when there is no foreground), at least 1 and at most ``n - 1``."""
    from ..foreground import foreground_mask

    n = array.shape[axis]
    hits = np.flatnonzero(foreground_mask(array).any(axis=tuple(a for a in range(3) if a != axis)))
    middle = (int(hits[0]) + int(hits[-1]) + 1) // 2 if hits.size else n // 2
    return min(max(middle, 1), n - 1)


def _stored_dtype(volume) -> np.dtype:
    """The series' integer type when every value is a whole number in its range, else float32."""
    stored = np.dtype(volume.header.get_data_dtype())
    if np.issubdtype(stored, np.integer) and np.array_equal(volume.array, np.round(volume.array)):
        info = np.iinfo(stored)
        if volume.array.min() >= info.min and volume.array.max() <= info.max:
            return stored
    return np.dtype(np.float32)


def _halves(pid: str, series: Series, box: Box, work: Path, found: Findings) -> list[tuple[str, int]]:
    """Write the patient's two halves and masks into ``work``; ``[(case, label)]``, or ``[]`` (left out)."""
    from ..images import load_image
    from ..nifti import save_nifti

    volume, order = load_image(str(series)), _instance_order(series)
    if order is None:
        found.notes.append(f"{pid}: a slice has no InstanceNumber; the box's slices are counted along the slice normal")
    index = box_index(box, volume.array.shape, order)
    if isinstance(index, str):
        found.left_out.append(f"{pid}: {index}")
        return []
    axis = int(np.argmax(np.abs(volume.affine[0, :3])))  # the array axis nearest to left-right (RAS x)
    n, middle = volume.array.shape[axis], midline(volume.array, axis)
    low, high = ("left", "right") if volume.affine[0, axis] > 0 else ("right", "left")  # RAS: +x is the right
    lo, hi = index[axis].start, index[axis].stop
    side = low if (lo + hi - 1) / 2 < middle else high
    if lo < middle < hi:
        found.notes.append(f"{pid}: the box crosses the midline; its {side} part is the mask")
    dtype, cases = _stored_dtype(volume), []
    for name, start, stop in ((low, 0, middle), (high, middle, n)):
        cut = [slice(None)] * 3
        cut[axis] = slice(start, stop)
        shift = np.eye(4)
        shift[axis, 3] = start
        mask = np.zeros(volume.array[tuple(cut)].shape, dtype=np.uint8)
        if name == side:
            inside = list(index)
            inside[axis] = slice(max(lo, start) - start, min(hi, stop) - start)
            mask[tuple(inside)] = 1
        case = f"{pid}_{name}"
        save_nifti(work / "images" / f"{case}.nii.gz", volume.array[tuple(cut)], volume.affine @ shift, volume.header,
                   dtype=dtype)
        save_nifti(work / "masks" / f"{case}.nii.gz", mask, volume.affine @ shift, volume.header, dtype=np.uint8)
        cases.append((case, int(name == side)))
    return cases


def _patients(raw: Path, totals: DukeTotals, boxes: dict[str, Box], found: Findings) -> tuple[Path, dict[str, Path]]:
    """The folder holding the patients and ``{patient: folder}``; counts, and lists what is missing or unexpected."""
    root = find_root(raw, _holds_patients, "Breast_MRI_NNN/<study>/<series>/*.dcm (TCIA's Duke-Breast-Cancer-MRI "
                                           "download)", depth=3)
    patients = {p.name: p for p in visible(root) if p.is_dir() and PATIENT.fullmatch(p.name)}
    published = set(totals.ids())
    found.unexpected += [relative(p, root) for p in visible(root) if p.name not in patients]
    found.unexpected += [f"{p} (not a published patient)" for p in patients if p not in published]
    found.unexpected += [f"{b.where}: {p} (not a published patient)" for p, b in boxes.items() if p not in published]
    found.missing += [f"{p}/ (patient)" for p in totals.ids() if p not in patients]
    found.missing += [f"box of {p} (not in the sheet)" for p in totals.ids() if p not in boxes]
    found.count("patients", len(patients))
    found.count("boxes", len(boxes))
    return root, patients


def _meta(root: Path, request: DukeRequest) -> dict:
    """``dataset.json`` of a Duke conversion."""
    return {"dataset": "Duke-Breast-Cancer-MRI", "intensity": "mr", "modality": "MR", "converted_from": str(root.resolve()),
            "sequences": list(request.sequences), "label": "1 for the breast holding the lesion's box", "group": "patient",
            "mask": "the lesion's box (clipped to its half); empty in the other half"}


def _install(work: Path, out: Path) -> None:
    """Move ``work``'s images and masks into ``out``, replacing an earlier conversion's (its labels.csv goes first)."""
    (out / "labels.csv").unlink(missing_ok=True)
    for name in ("images", "masks"):
        if (out / name).exists():
            shutil.rmtree(out / name)
        (work / name).rename(out / name)


def convert_duke(raw: str | Path, out: str | Path, request: DukeRequest) -> Iterator[Progress | ConvertResult]:
    """Write ``out/images``, ``out/masks``, ``out/labels.csv`` (columns in the module's docstring), ``dataset.json``
    (intensity ``mr``) and the report for the Duke download ``raw``; yields one :class:`Progress` per patient, then
    the :class:`ConvertResult`. A patient without a box, without the chosen sequence or whose box lies outside it is
    left out (listed). :class:`DataError` (nothing written) for a ``raw`` without the layout, a bad box sheet or an
    unreadable series; :class:`MissingExtra` for an XLSX sheet without openpyxl."""
    raw, out = Path(raw), Path(out)
    totals = request.totals or DUKE
    check_folders(raw, out)
    boxes = read_boxes(request.boxes)
    found = Findings()
    root, patients = _patients(raw, totals, boxes, found)
    with output_folder(out):
        work = make_part_folder(out / "images")
        try:
            (work / "images").mkdir()
            (work / "masks").mkdir()
            for k, (pid, folder) in enumerate(sorted(patients.items())):
                found.rows += _patient_rows(pid, folder, boxes.get(pid), request, work, out, found)
                yield Progress("patients", k + 1, len(patients), "patients")
            found.count("cases", len(found.rows))
            spec = OutputSpec("duke", root, ("case", "label", "image", "mask", "group"), _meta(root, request),
                              totals.published())
            if found.rows:
                _install(work, out)
            result = write_conversion(out, found, spec)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    yield result


def _patient_rows(pid: str, folder: Path, box: Box | None, request: DukeRequest, work: Path, out: Path,
                  found: Findings) -> list[dict[str, str]]:
    """The rows of one patient's two breasts (their files written into ``work``), or ``[]`` with the reason listed."""
    if box is None:
        found.left_out.append(f"{pid}: no box in the sheet")
        return []
    series = _series_of(folder)
    chosen = choose_series(series, request.sequences)
    if chosen is None:
        described = "; ".join(sorted({s.description or "(none)" for s in series})) or "no DICOM series"
        found.left_out.append(f"{pid}: no series description holds {' or '.join(map(repr, request.sequences))} "
                              f"(its series: {described})")
        return []
    cases = _halves(pid, chosen, box, work, found)
    if cases:
        found.count("patients converted")
    return [{"case": case, "label": str(label), "image": str((out / "images" / f"{case}.nii.gz").resolve()),
             "mask": str((out / "masks" / f"{case}.nii.gz").resolve()), "group": pid} for case, label in cases]
