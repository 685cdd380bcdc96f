"""Read any supported 3D image as a :class:`~tonno_engine.data.nifti.Volume` in NIfTI (RAS) conventions.

Supported: NIfTI (``.nii``, ``.nii.gz``, nibabel), MetaImage and NRRD (``.mha``, ``.mhd``, ``.nrrd``,
``.nhdr``, SimpleITK) and DICOM series (a folder, ``folder#SeriesInstanceUID`` or one ``.dcm`` file
of the series; :mod:`tonno_engine.data.dicom`), also from a DICOMweb study or series URL (fetched into a cache
folder and read as one; :mod:`tonno_engine.data.dicomweb`). ITK images live in LPS millimetres with
``array[z, y, x]``; they become ``array`` ``(D, H, W)`` = ITK's ``(x, y, z)`` index and the affine
``diag(-1, -1, 1, 1) @ [[direction · diag(spacing), origin], [0, 1]]``, the same array and affine
that nibabel reads from the NIfTI SimpleITK (or dcm2niix) writes for that image. Outputs stay NIfTI.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from ..base.errors import DataError
from .declared_size import check_memory, check_nifti
from .dicom import SeriesRef, holds_dicom, is_dicom_file, parse_series, read_series
from .dicomweb import fetch_series, is_dicomweb_url, parse_series_url
from .nifti import NIFTI_SUFFIXES, Volume, is_nifti, load_nifti, nifti_stem
from .shear import check_orthogonal

ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
IMAGE_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES
FORMATS = "NIfTI (.nii, .nii.gz), MetaImage (.mha, .mhd), NRRD (.nrrd, .nhdr) or a DICOM series folder"
RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def is_itk_file(path: str | Path) -> bool:
    return str(path).lower().endswith(ITK_SUFFIXES)


def is_dicom_input(path: str | Path) -> bool:
    """A DICOM series folder, ``folder#UID``, a ``.dcm`` file or a DICOMweb URL."""
    text = str(path)
    if is_dicomweb_url(text):
        return True
    if "#" in text:
        return Path(text.partition("#")[0]).is_dir()
    path = Path(text)
    return holds_dicom(path) if path.is_dir() else path.suffix.lower() == ".dcm"


def is_image_file(path: str | Path) -> bool:
    """A file tonno reads by its name: NIfTI, MetaImage or NRRD."""
    return str(path).lower().endswith(IMAGE_SUFFIXES)


def image_stem(path: str | Path) -> str:
    """The case name of an input: the file name without its image suffix, the series folder's name, or a DICOMweb
    URL's series (else study) UID."""
    text = str(path)
    if is_dicomweb_url(text):
        ref = parse_series_url(text)
        return ref.series or ref.study
    if "#" in text:
        folder, _, uid = text.partition("#")
        return f"{Path(folder).name}_{uid.rsplit('.', 1)[-1]}"
    path = Path(text)
    if is_nifti(path):
        return nifti_stem(path)
    if is_itk_file(path):
        return path.name[: -len(path.suffix)]
    return path.parent.name if path.suffix.lower() == ".dcm" else path.name


def image_exists(path: str | Path) -> bool:
    """Whether an input exists; a DICOMweb URL is checked when it is fetched."""
    if is_dicomweb_url(path):
        return True
    return Path(str(path).partition("#")[0]).exists()


def volume_from_itk(image, path, kind: str = "image") -> Volume:
    """A ``SimpleITK.Image`` (3D, one component) → :class:`Volume` with a NIfTI header and RAS affine;
    :class:`DataError` for a sheared direction matrix (ITK reads one from MetaImage or NRRD unchanged)."""
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(path, f"{kind} must be a 3D scalar image, got {image.GetDimension()}D with "
                              f"{image.GetNumberOfComponentsPerPixel()} component(s) per voxel")
    check_orthogonal(path, np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3), "its direction matrix")
    import SimpleITK as sitk

    source = sitk.GetArrayViewFromImage(image)
    # a copy (the view dies with ``image``) in Fortran order, as nibabel returns NIfTI data: making it
    # C-contiguous would cost a full 3D transpose (0.9 s of a 1.2 s read at 512×512×300)
    array = source.transpose(2, 1, 0).astype(np.float32)
    if min(array.shape) < 2:
        raise DataError(path, f"{kind} is a 2D image stored as 3D (shape {array.shape}); need a volume")
    if not np.isfinite(array).all():
        raise DataError(path, f"{kind} contains NaN or Inf values")
    spacing = tuple(float(s) for s in image.GetSpacing())
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3) @ np.diag(spacing)
    lps[:3, 3] = image.GetOrigin()
    affine = RAS_FROM_LPS @ lps
    header = nib.Nifti1Image(array, affine).header
    header.set_data_dtype(source.dtype)  # what the file stores: integer images may be label maps
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    return Volume(array, affine, header, Path(str(path)), spacing)  # type: ignore[arg-type]


def _read_itk_file(path: Path, kind: str) -> Volume:
    import SimpleITK as sitk

    if not path.is_file():
        raise DataError(path, f"{kind} file not found")
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        check_memory(path, reader.GetSize(), kind=kind)
        image = reader.Execute()
    except MemoryError as exc:
        raise DataError(path, f"{kind} does not fit in memory") from exc
    except RuntimeError as exc:
        cause = str(exc).strip().splitlines()[-1]
        raise DataError(path, f"unreadable or truncated image ({cause})") from exc
    return volume_from_itk(image, path, kind)


def load_image(path: str | Path, *, kind: str = "image") -> Volume:
    """Read a NIfTI, MetaImage, NRRD file or DICOM series as a 3D float32 :class:`Volume`.

    Raises :class:`DataError` naming the file or folder for a missing or unreadable input, an unknown
    format, a non-3D image, NaN/Inf values, and each DICOM problem :mod:`~tonno_engine.data.dicom` checks.
    """
    text = str(path)
    if is_nifti(text):
        return load_nifti(text, kind=kind)
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # the engine never prints; problems become DataError
    if is_itk_file(text):
        return _read_itk_file(Path(text), kind)
    if is_dicomweb_url(text):
        ref = SeriesRef(fetch_series(text).folder)
        return volume_from_itk(read_series(ref), ref, kind)
    if is_dicom_input(text):
        ref = parse_series(text)
        return volume_from_itk(read_series(ref), ref, kind)
    if not image_exists(text):
        raise DataError(text, f"{kind} not found")
    if Path(text).is_dir():
        raise DataError(text, f"folder holds no DICOM files; give {FORMATS}")
    raise DataError(text, f"unsupported {kind} format; give {FORMATS}")


def find_images(folder: Path) -> list[Path]:
    """The inputs a folder holds: its image files, and its subfolders that hold a DICOM series."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
    series = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and holds_dicom(p))
    return files + series


def is_single_image(path: str | Path) -> bool:
    """One image: an image file, or a DICOM series (a folder that holds it, ``folder#UID``, a ``.dcm``, a URL)."""
    if is_dicomweb_url(path):
        return True
    return Path(str(path).partition("#")[0]).is_file() and is_image_file(path) or is_dicom_input(path)


def images_in(source: Path, what: str) -> list[Path]:
    """``[source]`` for one image, else the images the folder ``source`` holds (:func:`find_images`);
    :class:`DataError` naming ``source`` when there are none."""
    if is_single_image(source):
        return [source]
    files = find_images(source) if source.is_dir() else []
    if not files:
        raise DataError(source, f"{what} holds no labels.csv and no images ({FORMATS})")
    return files


def input_files(path: str | Path) -> list[Path]:
    """The files behind an input (the series folder's DICOM files for a series), sorted: what a hash covers; none
    for a DICOMweb URL (its UIDs name it)."""
    if is_dicomweb_url(path):
        return []
    path = Path(str(path).partition("#")[0])
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and is_dicom_file(p))
    return [path]


def size_estimate(path: str | Path) -> int:
    """Voxels of an image from its header alone (NIfTI), else its bytes on disk (a DICOM folder: all its
    files); 0 when it cannot be read (it then fails, by name, where it is loaded). For planning only:
    balancing batch parts, and whether a data set fits in memory."""
    import math

    import nibabel as nib

    path = Path(str(path).partition("#")[0])
    try:
        if is_nifti(str(path)):
            img = nib.load(path)
            check_nifti(path, img)
            return math.prod(img.shape[:3])
        if path.is_dir():
            return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
        return path.stat().st_size
    except (OSError, ValueError, nib.filebasedimages.ImageFileError):
        return 0
