"""Heatmaps and masks as DICOM objects of their source series (highdicom): a Parametric Map and a SEG.

A volume read from a series (:func:`~.images.load_image`) has ``array`` ``(D, H, W)`` = ITK's ``(x, y, z)``
index: ``array[:, :, k]`` is the ``k``-th file of the series in GDCM's slice order (:func:`~.dicom.series_files`),
its first axis the DICOM columns and its second the rows. So the frame of source file ``k`` is ``array[:, :, k].T``
``(rows, columns)``, placed by highdicom at that file's ImagePositionPatient with its orientation and spacing
(highdicom may store the frames in another order; each frame's position and source reference say which slice it
is): the object lies in the source's study and frame of reference, one frame per source slice. The Parametric Map
stores float32 values as they are (FloatPixelData, identity real world value mapping), so its frames equal the NIfTI
heatmap's voxels bit for bit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..base.atomic import atomic_path
from ..base.errors import DataError, MissingExtra
from .dicom import SeriesRef, series_files

MANUFACTURER = "tonno"
#: the ``Made.method`` of a mask drawn or reviewed by hand (napari): a SEG of manual segmentation
ANNOTATION = "annotation"
#: the SEG's segmented property: SNOMED CT "Lesion" in the category "Morphologically abnormal structure"
LESION = ("52988006", "SCT", "Lesion")
ABNORMAL = ("49755003", "SCT", "Morphologically abnormal structure")


def _hd():
    try:
        import highdicom
    except ImportError as exc:
        raise MissingExtra("DICOM output needs the dicom extra: pip install 'napari-tonno[dicom]'") from exc
    return highdicom


@dataclass(frozen=True)
class Made:
    """What made a derived object: the ``method`` (a label), its ``version``, and ``details`` (checkpoint SHA-256,
    settings: recorded as JSON) for its description."""

    method: str
    version: str = ""
    details: dict = field(default_factory=dict)

    def short(self) -> str:
        """At most 64 characters (a DICOM LO): the method and the checkpoint's first hex digits."""
        sha = str(self.details.get("checkpoint_sha256") or self.details.get("segmenter_sha256") or "")
        return f"tonno {self.method}" + (f" sha256 {sha[:12]}" if sha else "")[: 64 - 6 - len(self.method)]

    def long(self) -> str:
        """The whole record (method, version, checkpoint SHA-256, settings) as JSON (at most 1024 characters)."""
        return json.dumps({"method": self.method, "tonno": self.version, **self.details}, sort_keys=True,
                          default=str, separators=(",", ":"))[:1024]


def source_datasets(ref: SeriesRef | str | Path) -> list:
    """The source series' headers (no pixels) in GDCM's slice order: the order of the volume's third axis."""
    import pydicom

    from .dicom import parse_series

    ref = ref if isinstance(ref, SeriesRef) else parse_series(ref)
    return [pydicom.dcmread(f, stop_before_pixels=True) for f in series_files(ref)]


def frames(volume: np.ndarray) -> np.ndarray:
    """``(D, H, W)`` → ``(W, H, D)`` frames ``(rows, columns)``, frame ``k`` = ``volume[:, :, k].T``."""
    return np.ascontiguousarray(np.transpose(volume, (2, 1, 0)))


def _check(sources: list, volume: np.ndarray, ref) -> None:
    shape = (int(sources[0].Columns), int(sources[0].Rows), len(sources))
    if tuple(volume.shape) != shape:
        raise DataError(ref, f"the volume {tuple(volume.shape)} is not on the source series' grid {shape}")


def _series_tags(made: Made, number: int) -> dict:
    from pydicom.uid import generate_uid

    return dict(series_instance_uid=generate_uid(), series_number=number, sop_instance_uid=generate_uid(),
                instance_number=1, manufacturer=MANUFACTURER, manufacturer_model_name="tonno",
                software_versions=made.version or "unknown", device_serial_number="none")


def _describe(ds, made: Made, series: str) -> None:
    """Name the object and what made it: SeriesDescription and ContentDescription (LO, 64 characters) briefly,
    ImageComments (LT) in full. highdicom writes none of these from a record, hence by hand."""
    ds.SeriesDescription = series[:64]
    ds.ContentDescription = made.short()
    ds.ImageComments = made.long()


def _save(ds, target: Path) -> Path:
    with atomic_path(target) as tmp:
        ds.save_as(str(tmp), enforce_file_format=True)
    return target


def write_parametric_map(target: str | Path, heatmap: np.ndarray, source: SeriesRef | str | Path, made: Made,
                         *, series_number: int = 900) -> Path:
    """``heatmap`` ``(D, H, W)`` float32 on the grid of the series ``source`` as a Parametric Map at ``target``
    (atomically)."""
    hd = _hd()
    from pydicom.sr.coding import Code

    sources = source_datasets(source)
    volume = np.asarray(heatmap, dtype=np.float32)
    _check(sources, volume, source)
    low, high = float(volume.min()), float(volume.max())
    mapping = hd.pm.RealWorldValueMapping(lut_label="tonno", lut_explanation=made.short(),
                                          unit=Code("1", "UCUM", "no units"), value_range=(low, high),
                                          slope=1.0, intercept=0.0)
    pm = hd.pm.ParametricMap(source_images=sources, pixel_array=frames(volume), **_series_tags(made, series_number),
                             contains_recognizable_visual_features=False, real_world_value_mappings=[mapping],
                             voi_lut_transformations=[hd.VOILUTTransformation(window_center=(low + high) / 2,
                                                                              window_width=max(high - low, 1e-6),
                                                                              # a heatmap's range may be under 1
                                                                              voi_lut_function="LINEAR_EXACT")],
                             content_label="HEATMAP", content_creator_name="tonno^")
    _describe(pm, made, f"tonno heatmap {made.method}")
    # General Series' Laterality (Type 2C), which highdicom leaves out: dciodvfy wants it in a Parametric Map (whose
    # IOD has no Frame Laterality to stand for it) and refuses it in a SEG. The source's, else empty: whether the
    # body part is a paired one is not known here
    pm.Laterality = sources[0].get("Laterality", "")
    return _save(pm, Path(target))


def write_segmentation(target: str | Path, mask: np.ndarray, source: SeriesRef | str | Path, made: Made,
                       *, label: str = "lesion", series_number: int = 901) -> Path:
    """A binary ``mask`` ``(D, H, W)`` on the grid of ``source`` as a DICOM SEG of one segment (``label``, a
    lesion) whose algorithm is ``made`` (automatic), at ``target`` (atomically)."""
    hd = _hd()
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    sources = source_datasets(source)
    mask = np.asarray(mask) > 0
    _check(sources, mask, source)
    manual = made.method == ANNOTATION
    algorithm = hd.AlgorithmIdentificationSequence(name=f"tonno {made.method}"[:64], version=made.version or "unknown",
                                                   family=codes.cid7162.ArtificialIntelligence,
                                                   parameters={"record": made.long()})
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label=label[:64], segmented_property_category=Code(*ABNORMAL),
        segmented_property_type=Code(*LESION),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL if manual else hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=None if manual else algorithm)
    seg = hd.seg.Segmentation(source_images=sources, pixel_array=frames(mask.astype(np.uint8)),
                              segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[segment],
                              **_series_tags(made, series_number), omit_empty_frames=False)
    _describe(seg, made, f"tonno {label} {made.method}")
    return _save(seg, Path(target))
