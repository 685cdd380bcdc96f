"""NIfTI in and out with nibabel, keeping the affine and header.

Arrays are returned in nibabel's index order ``(D, H, W)`` = the file's ``(i, j, k)`` voxel axes;
the affine maps ``(i, j, k, 1)`` to scanner millimetres.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ..base.atomic import atomic_path
from ..base.errors import DataError
from .declared_size import check_nifti
from .shear import check_orthogonal

NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass
class Volume:
    """A 3D image: ``array`` ``(D, H, W)`` float32, ``affine`` ``(4, 4)``, nibabel ``header``."""

    array: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header
    path: Path | None = None
    #: the header's voxel sizes as written in the file (nibabel replaces 0 by 1 and negatives by
    #: their absolute value on load; physical geometry must not trust such a spacing)
    raw_spacing: tuple[float, float, float] | None = None

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the three array axes (as the header says; see :meth:`checked_spacing`)."""
        return tuple(float(z) for z in self.header.get_zooms()[:3])  # type: ignore[return-value]

    def checked_spacing(self) -> tuple[float, float, float]:
        """The voxel size as the file states it, or :class:`DataError` naming the file when it is not
        three finite positive numbers (a zero, negative or NaN pixdim, or a header without one)."""
        values = self.raw_spacing if self.raw_spacing is not None else self.spacing
        if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
            raise DataError(self.path or "volume", f"voxel spacing in the header is {values} mm: physical geometry needs "
                                                   "three finite, positive values")
        return values


def is_nifti(path: str | Path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def load_nifti(path: str | Path, *, kind: str = "image") -> Volume:
    """Read a ``.nii``/``.nii.gz`` as a finite 3D float32 volume.

    A 4D array with a singleton axis is squeezed to 3D; an axis of length 1 is refused as 2D. Raises :class:`DataError` naming the
    file for a missing or unreadable/truncated file, a sheared affine (:func:`~tonno_engine.data.shear.check_orthogonal`,
    before the voxels are read), a non-3D array, or NaN/Inf values.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, f"{kind} file not found")
    if not is_nifti(path):
        raise DataError(path, f"not a NIfTI file (expected {' or '.join(NIFTI_SUFFIXES)})")
    try:
        img = nib.load(str(path))
        check_nifti(path, img, kind=kind)
        check_orthogonal(path, img.affine)
        data = np.asanyarray(img.dataobj)
    except DataError:
        raise
    except MemoryError as exc:
        raise DataError(path, f"{kind} {img.shape} does not fit in memory") from exc
    except (OSError, EOFError, ValueError, zlib.error, nib.filebasedimages.ImageFileError) as exc:
        raise DataError(path, f"unreadable or truncated NIfTI ({type(exc).__name__}: {exc})") from exc
    if data.ndim == 4 and 1 in data.shape:
        data = np.squeeze(data, axis=data.shape.index(1))
    if data.ndim != 3:
        raise DataError(path, f"{kind} must be 3D, got {data.ndim}D with shape {data.shape}")
    if 0 in data.shape:
        raise DataError(path, f"{kind} is empty: shape {data.shape}")
    if min(data.shape) < 2:
        raise DataError(path, f"{kind} is a 2D image stored as 3D (shape {data.shape}); need a volume")
    array = np.asarray(data, dtype=np.float32)
    if not np.isfinite(array).all():
        raise DataError(path, f"{kind} contains NaN or Inf values")
    return Volume(array, img.affine.copy(), img.header.copy(), path, _raw_zooms(path, img))


def _raw_zooms(path: Path, img) -> tuple[float, float, float] | None:
    """``pixdim[1:4]`` of the file's header before nibabel's fixes (``None`` if it cannot be read)."""
    try:
        with nib.openers.ImageOpener(str(path)) as fh:
            raw = type(img.header).from_fileobj(fh, check=False)
        return tuple(float(z) for z in raw["pixdim"][1:4])  # type: ignore[return-value]
    except Exception:  # noqa: BLE001 - the image itself loaded; fall back to nibabel's zooms
        return None


#: the NIfTI header extension that carries a tonno output's provenance (JSON; code 6 = "comment")
PROVENANCE_KEY = "tonno_provenance"


def save_nifti(path: str | Path, array, affine=None, header=None, *, dtype=np.float32,
               provenance: dict | None = None) -> Path:
    """Write ``array`` ``(D, H, W)`` atomically with ``affine`` (identity if ``None``); ``provenance``
    (JSON-serialisable) goes into a header extension that :func:`read_provenance` reads back.

    With a ``header`` (an input's), the file's qform and sform both hold ``affine`` (with the header's codes,
    1 where it had none), so every reader places it as nibabel read the input; without one, nibabel's
    default: the sform alone (qform code 0). A qform holds only a rotation, so a sheared ``affine`` is a
    :class:`DataError` naming ``path`` rather than a file whose qform and sform disagree (inputs with one
    are refused on load); within ``SHEAR_TOLERANCE_DEG`` the qform is its nearest rotation."""
    path = Path(path)
    if not is_nifti(path):
        raise DataError(path, f"output must end in {' or '.join(NIFTI_SUFFIXES)}")
    array = np.asarray(array, dtype=dtype)
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    check_orthogonal(path, affine, "the affine to write")
    hdr = None if header is None else header.copy()
    img = nib.Nifti1Image(array, affine, hdr)
    img.set_data_dtype(dtype)
    _set_provenance(img.header, provenance)
    if hdr is not None:
        img.header.set_qform(affine, code=int(header["qform_code"]) or 1)
        img.header.set_sform(affine, code=int(header["sform_code"]) or 1)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path


def _set_provenance(header, provenance: dict | None) -> None:
    """Drop provenance copied from another file's header; add ``provenance`` when given."""
    import json

    kept = [e for e in header.extensions if not _provenance_of(e)]
    header.extensions.clear()
    header.extensions.extend(kept)
    if provenance is not None:
        text = json.dumps({PROVENANCE_KEY: provenance}, sort_keys=True)
        header.extensions.append(nib.nifti1.Nifti1Extension("comment", text.encode()))


def _provenance_of(extension) -> dict | None:
    import json

    if extension.get_code() != 6:
        return None
    try:
        value = json.loads(extension.get_content())
    except (ValueError, UnicodeDecodeError):
        return None
    return value.get(PROVENANCE_KEY) if isinstance(value, dict) else None


def read_provenance(path: str | Path) -> dict | None:
    """The provenance a tonno output carries in its header (``None``: none, or not a readable NIfTI).
    Reads the header only."""
    try:
        header = nib.load(str(path)).header
    except (OSError, EOFError, ValueError, zlib.error, nib.filebasedimages.ImageFileError):
        return None
    return next((p for p in map(_provenance_of, header.extensions) if p is not None), None)


def nifti_stem(path: Path) -> str:
    """The file name without ``.nii``/``.nii.gz``: the case name of a NIfTI file."""
    name = Path(path).name
    for suffix in sorted(NIFTI_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def axial_axis(affine) -> int:
    """The array axis closest to the scanner's superior-inferior direction (2 for RAS/LPS data)."""
    codes = nib.aff2axcodes(affine)
    return next((axis for axis, code in enumerate(codes) if code in ("S", "I")), 2)

