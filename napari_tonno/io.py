"""Reader (NIfTI, MetaImage, NRRD, DICOM series folders, DICOMweb series URLs) and writers for napari, keeping geometry.

NIfTI writers for any layer; DICOM writers (``.dcm``) for a layer whose source image came from a DICOM series (its
``metadata["source_path"]``, which the reader sets and derived layers keep): an Image layer (a heatmap) as a
Parametric Map, a Labels layer (annotations reviewed by hand) as a SEG of manual segmentation, both in the source's
study and frame of reference (:mod:`tonno_engine.data.dicom_out`).

A volume ``(D, H, W)`` with affine ``A = [[R·diag(zooms), t], [0, 1]]`` becomes a layer with
``scale = zooms`` and either ``translate = t`` (when ``R`` is the identity) or
``affine = [[R, t], [0, 1]]``: napari maps voxel ``i`` to ``R·(zooms·i) + t = A·i``, the
scanner millimetres of the file. ``metadata`` keeps the exact ``affine`` and the nibabel
``header``, which the writer uses, so a read-write round trip is exact.
"""

from __future__ import annotations

import numpy as np

from tonno_engine.data.images import image_stem, is_dicom_input, is_image_file, load_image
from tonno_engine.data.nifti import save_nifti


def get_reader(path):
    """npe2 reader hook: a reader for one image file or DICOM series folder, else ``None``."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    return read_image if is_image_file(path) or is_dicom_input(str(path)) else None


def layer_kwargs(affine: np.ndarray, header=None, **extra) -> dict:
    """napari ``scale``/``translate``/``affine`` (and metadata) reproducing a NIfTI ``affine``."""
    affine = np.asarray(affine, dtype=float)
    linear = affine[:3, :3]
    zooms = np.linalg.norm(linear, axis=0)
    zooms[zooms == 0] = 1.0
    rotation = linear / zooms
    out = {"scale": tuple(zooms), "metadata": {"affine": affine.copy(), "header": header, **extra}}
    if np.allclose(rotation, np.eye(3)):
        out["translate"] = tuple(affine[:3, 3])
    else:
        world = np.eye(4)
        world[:3, :3], world[:3, 3] = rotation, affine[:3, 3]
        out["affine"] = world
    return out


def read_image(path) -> list[tuple]:
    """``[(data, kwargs, "image" | "labels")]``: integer volumes holding only 0/1… labels → Labels."""
    volume = load_image(path)
    integer = np.issubdtype(volume.header.get_data_dtype(), np.integer)
    kind = "labels" if integer and volume.array.max() <= 255 and volume.array.min() >= 0 else "image"
    data = volume.array.astype(np.uint8 if kind == "labels" else np.float32)
    kwargs = {"name": image_stem(path), **layer_kwargs(volume.affine, volume.header,
                                                                       source_path=str(path))}
    return [(data, kwargs, kind)]


def layer_affine(meta: dict) -> np.ndarray:
    """The NIfTI affine of a layer: its metadata's when present, else from scale/translate/affine."""
    stored = (meta.get("metadata") or {}).get("affine")
    if stored is not None:
        return np.asarray(stored, dtype=float)
    scale = np.asarray(meta.get("scale", (1, 1, 1)), dtype=float)[-3:]
    translate = np.asarray(meta.get("translate", (0, 0, 0)), dtype=float)[-3:]
    world = np.asarray(meta.get("affine", np.eye(4)), dtype=float)
    world = world if world.shape == (4, 4) else np.eye(4)
    out = np.eye(4)
    out[:3, :3] = world[:3, :3] @ np.diag(scale)
    out[:3, 3] = world[:3, :3] @ translate + world[:3, 3]
    return out


def _write(path: str, data, meta: dict, dtype) -> list[str]:
    header = (meta.get("metadata") or {}).get("header")
    save_nifti(path, np.asarray(data), layer_affine(meta), header, dtype=dtype)
    return [path]


def write_image(path: str, data, meta: dict) -> list[str]:
    """npe2 writer for one Image layer: float32 NIfTI with the layer's affine and header."""
    return _write(path, data, meta, np.float32)


def _dicom_source(meta: dict) -> str:
    """The DICOM series a layer's image came from (a DICOMweb URL: its cached copy); ``ValueError`` when none."""
    from tonno_engine.data.dicomweb import fetch_series, is_dicomweb_url

    source = (meta.get("metadata") or {}).get("source_path")
    if not source or not is_dicom_input(source):
        raise ValueError(f"{meta.get('name', 'this layer')} did not come from a DICOM series: save it as NIfTI "
                         "(.nii.gz); DICOM objects need the source series to refer to")
    return str(fetch_series(source).folder) if is_dicomweb_url(source) else source


def _made(meta: dict, default: str):
    from tonno_engine.apps.provenance import tonno_version
    from tonno_engine.data.dicom_out import Made

    record = dict((meta.get("metadata") or {}).get("tonno") or {})
    label = (meta.get("metadata") or {}).get("tonno_method") or default
    return Made(label, tonno_version() or "", record)


def write_image_dicom(path: str, data, meta: dict) -> list[str]:
    """npe2 writer for one Image layer from a DICOM series: a Parametric Map (float32) of it."""
    from tonno_engine.data.dicom_out import write_parametric_map

    return [str(write_parametric_map(path, np.asarray(data, np.float32), _dicom_source(meta), _made(meta, "heatmap")))]


def write_labels_dicom(path: str, data, meta: dict) -> list[str]:
    """npe2 writer for one Labels layer from a DICOM series: a SEG (manual) of its non-zero voxels."""
    from tonno_engine.data.dicom_out import ANNOTATION, Made, write_segmentation

    made = Made(ANNOTATION, _made(meta, ANNOTATION).version)
    return [str(write_segmentation(path, np.asarray(data) > 0, _dicom_source(meta), made,
                                   label=str(meta.get("name") or "lesion")))]


def write_labels(path: str, data, meta: dict) -> list[str]:
    """npe2 writer for one Labels layer: uint8 (or int32 above 255) NIfTI."""
    dtype = np.uint8 if np.asarray(data).max(initial=0) <= 255 else np.int32
    return _write(path, data, meta, dtype)
