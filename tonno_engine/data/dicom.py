"""DICOM series in, checked: SimpleITK (GDCM) finds, sorts and reads the series; pydicom reads headers.

A series is named by its folder (every file directly inside it), optionally with ``#<SeriesInstanceUID>``
appended to pick one series from a folder that holds several. GDCM orders the slices by position
along the slice normal and applies RescaleSlope/Intercept (CT values come back in HU). Before the
pixels are trusted the headers are checked, and each problem is a :class:`DataError` naming the
folder: several image series, uneven slice spacing (missing slices), two slices at one position,
slices of different orientations, a non-orthogonal orientation, gantry tilt (slice positions that
do not follow the slice normal: ITK would shear the volume), a transfer syntax GDCM cannot decode,
and folders that hold only non-image objects (SR, RTSTRUCT, …), which are otherwise ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..base.errors import DataError
from .shear import shear_of

#: transfer syntaxes SimpleITK's GDCM decodes: uncompressed, deflate, JPEG baseline/extended/lossless,
#: JPEG-LS, JPEG 2000, RLE. Others (HTJ2K, JPEG XL, video) have no decoder there.
DECODABLE_SYNTAXES = {
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.5",
}
#: relative tolerance on slice spacing (the tolerance on tilt and skew: ``SHEAR_TOLERANCE_DEG``, :mod:`.shear`)
SPACING_TOLERANCE = 0.01


@dataclass(frozen=True)
class SeriesRef:
    """A folder and, when it holds several series, the SeriesInstanceUID to read."""

    folder: Path
    uid: str | None = None

    def __str__(self) -> str:
        return f"{self.folder}#{self.uid}" if self.uid else str(self.folder)


def parse_series(path: str | Path) -> SeriesRef:
    """``folder``, ``folder#UID`` or a ``.dcm`` file (its folder's series of that file) → :class:`SeriesRef`."""
    text = str(path)
    folder, _, uid = text.partition("#")
    ref = Path(folder)
    if ref.is_file():
        return SeriesRef(ref.parent, uid or _header(ref).get("SeriesInstanceUID"))
    return SeriesRef(ref, uid or None)


def is_dicom_file(path: Path) -> bool:
    """A DICOM Part 10 file (``DICM`` after the 128-byte preamble) or a ``.dcm`` file."""
    from pydicom.misc import is_dicom

    return path.suffix.lower() == ".dcm" or (path.is_file() and is_dicom(path))


def holds_dicom(folder: Path) -> bool:
    """Whether ``folder`` directly holds a DICOM file (the first few files are checked)."""
    if not folder.is_dir():
        return False
    files = (p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith("."))
    return any(is_dicom_file(p) for _, p in zip(range(8), files, strict=False))


def _header(path: Path):
    import pydicom

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for broken files
        raise DataError(path, f"unreadable DICOM header ({type(exc).__name__}: {exc})") from exc


def _describe(folder: Path, uid: str) -> str:
    import SimpleITK as sitk

    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
    head = _header(Path(files[0])) if files else {}
    return (f"{uid} ({len(files)} files, {getattr(head, 'Modality', '?')}, "
            f"{getattr(head, 'SeriesDescription', '') or 'no description'})")


def _non_image_objects(folder: Path) -> str:
    kinds: dict[str, int] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        if is_dicom_file(path):
            head = _header(path)
            kind = str(getattr(head, "Modality", "")) or "unknown"
            kinds[kind] = kinds.get(kind, 0) + 1
    if not kinds:
        return "no DICOM files"
    return "only DICOM objects without an image (" + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + ")"


def series_files(ref: SeriesRef) -> list[str]:
    """The files of the series ``ref`` names, in GDCM's slice order; :class:`DataError` if none or ambiguous."""
    import SimpleITK as sitk

    folder = ref.folder
    if not folder.is_dir():
        raise DataError(ref, "DICOM series folder not found")
    uids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    if not uids:
        raise DataError(ref, f"no DICOM image series in this folder: it holds {_non_image_objects(folder)}")
    if ref.uid is None and len(uids) > 1:
        listed = "; ".join(_describe(folder, u) for u in uids)
        raise DataError(ref, f"{len(uids)} image series in one folder: {listed}. "
                             f"Pick one as FOLDER#SeriesInstanceUID")
    uid = ref.uid or uids[0]
    if uid not in uids:
        raise DataError(ref, f"no series {uid} here; the folder holds {', '.join(uids)}")
    _check_no_orphans(ref, uids)
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))


def _orphan_problem(path: Path) -> str | None:
    """Why a DICOM file that no series lists is bad (``None``: a readable object without pixels, e.g. SR)."""
    import pydicom
    from pydicom.uid import UID

    try:
        ds = pydicom.dcmread(str(path), force=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for broken files
        return f"unreadable ({type(exc).__name__})"
    sop = str(ds.get("SOPClassUID", "") or getattr(ds.get("file_meta", {}), "MediaStorageSOPClassUID", "") or "")
    if "PixelData" in ds:
        return "an image that belongs to no readable series"
    if not sop:
        return "truncated or not a complete DICOM object (no SOP class)"
    if "Image" in UID(sop).name:
        return f"a {UID(sop).name} object without pixel data (truncated?)"
    return None


def _check_no_orphans(ref: SeriesRef, uids: list[str]) -> None:
    """Refuse a folder with a DICOM file GDCM leaves out of every series: GDCM silently skips a file it
    cannot parse, so a truncated first or last slice would vanish (origin shifted, status ok) and a
    corrupt middle one would show as uneven spacing without its name."""
    import SimpleITK as sitk

    listed = {Path(f).resolve() for u in uids for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(ref.folder), u)}
    candidates = sorted(p for p in ref.folder.iterdir()
                        if p.is_file() and not p.name.startswith(".") and p.resolve() not in listed and is_dicom_file(p))
    bad = [(p.name, why) for p in candidates if (why := _orphan_problem(p))]
    if bad:
        shown = "; ".join(f"{name} ({why})" for name, why in bad[:5]) + (" …" if len(bad) > 5 else "")
        raise DataError(ref, f"{len(bad)} DICOM file(s) could not be read into the series: {shown}. Replace or "
                             "remove them; tonno never drops a slice silently")


def check_series_geometry(ref, positions: np.ndarray, orientations: np.ndarray) -> None:
    """Refuse what ITK would read into the wrong geometry.

    ``positions`` ``(N, 3)`` ImagePositionPatient in file order, ``orientations`` ``(N, 6)``
    ImageOrientationPatient (row then column direction cosines), both LPS mm.
    """
    if len(positions) < 2:
        raise DataError(ref, f"a DICOM series of {len(positions)} slice is a 2D image; need a volume")
    if np.abs(orientations - orientations[0]).max() > 1e-4:
        raise DataError(ref, "slices have different orientations (a localizer or several acquisitions in one series)")
    row, col = orientations[0, :3], orientations[0, 3:]
    normal = np.cross(row, col)
    if shear_of(np.stack([row, col, normal], axis=-1)) is not None:
        angle = np.degrees(np.arccos(np.clip(row @ col / (np.linalg.norm(row) * np.linalg.norm(col)), -1, 1)))
        raise DataError(ref, f"ImageOrientationPatient is not orthogonal (rows and columns at {angle:.2f}°)")
    normal = normal / np.linalg.norm(normal)
    steps = np.diff(positions, axis=0)
    along = steps @ normal
    if np.any(np.abs(along) < 1e-6):
        k = int(np.argmin(np.abs(along)))
        raise DataError(ref, f"slices {k} and {k + 1} lie at the same position (duplicate files or several acquisitions)")
    # the voxel axes of each pair of neighbouring slices: (N - 1, 3, 3), columns row, column, step; the slice
    # axis's lean is the gantry tilt, the same measure as a NIfTI affine's shear
    found = shear_of(np.stack([np.broadcast_to(row, steps.shape), np.broadcast_to(col, steps.shape), steps], axis=-1))
    if found is not None:
        raise DataError(ref, f"slice positions do not follow the slice normal (gantry tilt of {found[0]:.2f}°); "
                             "resample it to an orthogonal grid first (e.g. dcm2niix corrects gantry tilt)")
    spacing = np.abs(along)
    median = float(np.median(spacing))
    worst = int(np.argmax(np.abs(spacing - median)))
    if abs(spacing[worst] - median) > SPACING_TOLERANCE * median:
        raise DataError(ref, f"uneven slice spacing: {spacing[worst]:.3f} mm between slices {worst} and {worst + 1}, "
                             f"{median:.3f} mm elsewhere (missing slices?)")


def _floats(value, n: int, ref, name: str) -> np.ndarray:
    try:
        out = np.array([float(v) for v in value.split("\\")], dtype=np.float64)
    except (AttributeError, ValueError):
        out = np.array([])
    if out.shape != (n,):
        raise DataError(ref, f"a slice has no valid {name} ({value!r})")
    return out


def read_series(ref: SeriesRef):
    """Read a checked series as a ``SimpleITK.Image`` (geometry in LPS, ITK's convention)."""
    import SimpleITK as sitk

    files = series_files(ref)
    syntax = str(getattr(_header(Path(files[0])).get("file_meta", {}), "TransferSyntaxUID", "") or "")
    if syntax and syntax not in DECODABLE_SYNTAXES:
        from pydicom.uid import UID

        raise DataError(ref, f"compressed with transfer syntax {syntax} ({UID(syntax).name}), which SimpleITK cannot "
                             "decode; decompress it first (e.g. `gdcmconv --raw` or `dcmdjpeg`)")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        cause = str(exc).strip().splitlines()[-1]
        raise DataError(ref, f"SimpleITK could not read the series ({cause})") from exc
    tag = reader.GetMetaData
    positions = np.stack([_floats(tag(i, "0020|0032") if reader.HasMetaDataKey(i, "0020|0032") else None, 3, ref,
                                  "ImagePositionPatient") for i in range(len(files))])
    orientations = np.stack([_floats(tag(i, "0020|0037") if reader.HasMetaDataKey(i, "0020|0037") else None, 6, ref,
                                     "ImageOrientationPatient") for i in range(len(files))])
    check_series_geometry(ref, positions, orientations)
    return image
