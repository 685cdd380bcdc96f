"""``--format dicom`` and ``--store``: a run's outputs also as DICOM objects of their source series, sent by STOW-RS.

Beside each NIfTI output (which ``--continue``, the evaluation and napari read) a run on DICOM input writes
``<case>_<label>.dcm``, a Parametric Map of the heatmap, and with calibrated thresholds ``<case>_<label>_seg.dcm``,
a SEG of the heatmap binarised at its method's calibrated level; stage 2 writes ``<case>_stage2_seg.dcm``, its
probability at :data:`~tonno_engine.base.defaults.SEG_PROBABILITY` and above (:mod:`~tonno_engine.data.dicom_out`).
A NIfTI (or MetaImage, NRRD) input has no study, patient or frame of reference to put them in: it is refused
before anything is written. With ``store`` the server is asked first (credentials, reachability), and the DICOM
objects a run wrote go in one STOW-RS request at its end.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..base.errors import DataError
from ..data.dicom_out import Made, write_parametric_map, write_segmentation
from ..data.dicomweb import check_store, is_dicomweb_url, store
from ..data.heatmap_folder import HEATMAP_ENDING
from ..data.images import is_dicom_input
from ..evaluation.metrics import Threshold, binarize
from ..evaluation.thresholds_file import CalibratedThresholds, read_thresholds

FORMATS = ("nifti", "dicom")
DICOM_ENDING = ".dcm"
SEG_SUFFIX = "_seg"


@dataclass(frozen=True)
class DicomOptions:
    """How a run writes DICOM: ``output_format`` (``nifti`` or ``dicom``), ``thresholds`` (a ``thresholds.json``: a
    SEG of each heatmap binarised at its method's calibrated level), ``store`` (a DICOMweb root to STOW-RS them to)."""

    output_format: str = "nifti"
    thresholds: str | Path | None = None
    store: str | None = None

    @property
    def dicom(self) -> bool:
        return self.output_format == "dicom"


def check_options(options: DicomOptions, inputs, labels: list[str], checkpoint_sha256: str = "") -> CalibratedThresholds | None:
    """Everything about DICOM output that can fail for the whole run, checked before anything is written: the
    format, options that need ``dicom``, inputs that are no DICOM series, thresholds missing for a method (or
    calibrated on another checkpoint), and a ``store`` server that does not answer or refuses the credentials.
    Returns the thresholds read (``None``: none given)."""
    if options.output_format not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {options.output_format!r}")
    if not options.dicom:
        if options.thresholds or options.store:
            raise ValueError("--thresholds and --store apply to DICOM output; add --format dicom")
        return None
    flat = [i for i in inputs if not is_dicom_input(i.image)]
    if flat:
        raise DataError(flat[0].image, f"--format dicom needs DICOM series as input ({len(flat)} of {len(inputs)} "
                                       "are not): a NIfTI has no patient, study or frame of reference to refer to. "
                                       "Write NIfTI (the default) for it")
    calibrated = read_thresholds(options.thresholds) if options.thresholds else None
    if calibrated:
        for label in labels:
            calibrated.threshold_for(label)
        sha = calibrated.checkpoint_sha256
        if sha and checkpoint_sha256 and sha != checkpoint_sha256:
            raise DataError(calibrated.path, f"calibrated on heatmaps of checkpoint {sha[:12]}…, not of this "
                                             f"checkpoint ({checkpoint_sha256[:12]}…)")
    if options.store:
        if not is_dicomweb_url(options.store):
            raise DataError(options.store, "--store takes a DICOMweb URL (https://host/dicom-web)")
        check_store(options.store)
    return calibrated


def dicom_path(nifti_target: Path, suffix: str = "") -> Path:
    """``<case>_<label>.nii.gz`` → ``<case>_<label><suffix>.dcm``."""
    return nifti_target.with_name(nifti_target.name[: -len(HEATMAP_ENDING)] + suffix + DICOM_ENDING)


def made_of(label: str, parts: dict) -> Made:
    """What made an output, from its provenance ``parts`` (method, checkpoint or segmenter SHA-256, settings)."""
    details = {k: parts[k] for k in ("checkpoint_sha256", "segmenter_sha256", "settings", "overlap") if k in parts}
    return Made(label, str(parts.get("tonno") or ""), details)


def write_heatmap(nifti_target: Path, heatmap: np.ndarray, source, made: Made, threshold: Threshold | None) -> list[Path]:
    """A heatmap ``(D, H, W)`` as a Parametric Map beside its NIfTI, and with a ``threshold`` its SEG; the paths."""
    written = [write_parametric_map(dicom_path(nifti_target), heatmap, source, made)]
    if threshold is not None:
        mask = binarize(heatmap, threshold)
        written.append(write_segmentation(dicom_path(nifti_target, SEG_SUFFIX), mask, source, made,
                                          label=ascii_text(f"lesion ({made.method} {threshold.describe()})")[:64]))
    return written


def ascii_text(text: str) -> str:
    """``text`` in ASCII (``×`` as ``x``): DICOM's default character repertoire, which the objects declare."""
    return text.replace("×", "x").encode("ascii", "replace").decode()


def write_probability_seg(nifti_target: Path, probability: np.ndarray, source, made: Made, level: float) -> Path:
    """A stage-2 probability ``(D, H, W)`` as a SEG of its voxels at ``level`` and above."""
    return write_segmentation(dicom_path(nifti_target, SEG_SUFFIX), probability >= level, source, made,
                              label=f"lesion (stage 2, p >= {level:g})")


def remove(paths) -> None:
    for path in paths:
        Path(path).unlink(missing_ok=True)


def send(root: str | None, paths: list[Path]) -> int:
    """STOW-RS ``paths`` to ``root`` (``None``: nothing to do); the number stored."""
    if not root or not paths:
        return 0
    return store(root, paths)

