"""Evaluate heatmap files against ground-truth masks: pairing, checks, metrics.csv, binary masks.

A heatmap ``<case>_<method>.nii.gz`` (or ``<case>.nii.gz``) pairs with the ground truth
``<case>.nii.gz`` (the longest case name that matches; any format
:func:`~tonno_engine.data.images.load_image` reads, a DICOM series as the folder ``<case>``), or with
the ``mask`` of the row ``case`` of a labels CSV (whose ``label`` then decides the volume-level class).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..base.atomic import write_text_atomic
from ..base.defaults import CONNECTIVITY
from ..base.errors import DataError
from ..base.events import Notice, Progress
from ..base.folder_lock import folder_lock, writer_of
from ..data.acquisition import spacing_of
from ..data.dataset import read_cases
from ..data.heatmap_folder import HEATMAP_ENDING, Pair
from ..data.images import image_stem, images_in, is_single_image, load_image
from ..data.nifti import is_nifti, load_nifti, nifti_stem, save_nifti
from .instances import (
    INSTANCE_FIELDS,
    INSTANCE_SUMMARY_KEYS,
    instance_metrics,
    monai_metrics,
    summarize_instances,
)
from .metrics import (
    CaseMetrics,
    LesionRecord,
    Threshold,
    calibrate_threshold,
    case_metrics,
    keep_large_components,
    lesion_records,
    summarize,
    voxel_volume_mm3,
)

CASE_FIELDS = ("case", "heatmap", "status", "threshold", "n_pred", "tp_pred", "n_gt", "detected", "dice",
               "max_iou", "predicted_positive", "positive", "gt_volume_mm3", "pred_volume_mm3", "error")
LESION_FIELDS = ("case", "lesion", "voxels", "volume_mm3", "centroid_mm", "centre_distance_mm", "relative_radius",
                 "detected")
SUMMARY_KEYS = ("precision", "recall", "f1", "dice", "max_iou", "balanced_accuracy", "cases", "lesions",
                "predicted_components")
#: ``--metrics``: the paper's connected-component metrics, one-to-one matched instances in mm, or both
METRIC_SETS = ("paper", "instances", "all")


@dataclass(frozen=True)
class InstanceOptions:
    """What :mod:`~tonno_engine.evaluation.instances` needs: the IoU of a match and the NSD tolerance (mm)."""

    iou_threshold: float = 0.5
    tolerance_mm: float = 2.0


@dataclass
class EvaluationResult:
    rows: list[dict]
    summary: dict
    threshold: Threshold
    #: one per ground-truth lesion of the successful cases (size in mm³, position, detected)
    lesions: list[LesionRecord] = field(default_factory=list)
    metrics: str = "paper"
    min_mm3: float = 0.0  # predicted components smaller than this were dropped

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "failed"]


def _nifti_files(source: Path, what: str) -> list[Path]:
    if not source.exists():
        raise DataError(source, f"{what} not found")
    if source.is_file():
        if not is_nifti(source):
            raise DataError(source, f"{what} must be a NIfTI file, a folder of them or a labels CSV")
        return [source]
    files = sorted(p for p in source.iterdir() if p.is_file() and is_nifti(p))
    if not files:
        raise DataError(source, f"{what} folder holds no .nii/.nii.gz files")
    return files


def _truths(source: Path, findings=None, id_column=None) -> dict[str, list[tuple]]:
    """Per case, ``(mask, value, label)`` of each finding (:meth:`Case.truth`; one entry without ``findings``)."""
    if not source.exists():
        raise DataError(source, "ground truth not found")
    count = len(findings or ()) or 1
    if not is_single_image(source) and (source.is_file() or (source / "labels.csv").exists()):
        cases = read_cases(source, check_files=False, findings=findings, id_column=id_column)
        truths = {c.case: [c.truth(k if findings else None) for k in range(count)] for c in cases}
        missing = [case for case, each in truths.items() if any(mask is None for mask, _, _ in each)]
        if missing:
            raise DataError(source, f"no mask column entry for case(s) {', '.join(missing[:5])}")
        return truths
    # a folder of masks: with several findings each is a label image (value k + 1: finding k)
    return {image_stem(p): [(p, k + 1 if count > 1 else None, None) for k in range(count)]
            for p in images_in(source, "ground truth folder")}


def _finding_of(suffix: str, findings) -> int | None:
    """The index of the finding a heatmap's name ends with (``_<finding>``; the longest that fits), or ``None``."""
    fits = [k for k, f in enumerate(findings or ()) if suffix.endswith(f"_{f}")]
    return max(fits, key=lambda k: len(findings[k])) if fits else None


def pair_files(heatmaps: str | Path, truths: str | Path, *, findings=None, id_column=None) -> list[Pair]:
    """Pair every heatmap file of ``heatmaps`` with its ground truth in ``truths`` (see module doc).

    For a folder of heatmaps, every ground-truth case must have a heatmap of each method the folder
    holds (``<case>_<method>``): a missing one becomes a pair whose heatmap file does not exist, which
    :func:`evaluate_iter` reports as failed (or scores as an empty prediction), so that a failed
    reconstruction can never raise the recall by leaving its case out. With ``findings`` (names), a
    heatmap ``<case>_<method>_<finding>`` pairs with that finding's mask and label (docs/findings.md);
    one whose name ends with no finding is a failed pair."""
    gt = _truths(Path(truths), findings, id_column)
    by_length = sorted(gt, key=len, reverse=True)

    def pair(case: str | None, path: Path, suffix: str) -> Pair:
        if case is None:
            return Pair(nifti_stem(path), path, None)
        k = _finding_of(suffix, findings)
        if findings and k is None:
            return Pair(case, path, None, finding="?")
        return Pair.of_case(case, path, gt[case][k or 0], findings[k] if findings else "")

    pairs, methods = [], {}
    for path in _nifti_files(Path(heatmaps), "heatmaps"):
        stem = nifti_stem(path)
        case = next((c for c in by_length if stem == c or stem.startswith(c + "_")), None)
        pairs.append(pair(case, path, stem[len(case):] if case else ""))
        if case:
            methods.setdefault(stem[len(case):], set()).add(case)
    if Path(heatmaps).is_dir():
        for suffix, seen in methods.items():
            pairs += [pair(case, Path(heatmaps) / f"{case}{suffix}{HEATMAP_ENDING}", suffix) for case in gt if case not in seen]
    return pairs


def being_written(*sources: str | Path | None) -> list[Notice]:
    """A :class:`Notice` for each heatmap source (a folder, or a file's folder; ``None`` skipped) whose lock a
    running tonno process holds: it is still writing there, so the heatmaps read now may be incomplete, or some of
    them about to be replaced. Every file tonno writes is complete (written atomically); what may be missing is
    files."""
    notices = []
    for source in sources:
        if source is None:
            continue
        folder = Path(source) if Path(source).is_dir() else Path(source).parent
        writer = writer_of(folder)
        if writer:
            notices.append(Notice(f"{folder} is still being written by a tonno run ({writer}): its heatmaps may be "
                                  "incomplete until that run ends"))
    return notices


def load_pair(pair: Pair, missing_as_empty: bool = False) -> tuple[np.ndarray, np.ndarray, object]:
    """``(heatmap, lesion mask, image)`` of a pair, both arrays ``(D, H, W)`` on the same grid; :class:`DataError`
    naming the file for a missing or mismatched one (a missing heatmap reads as zeros with ``missing_as_empty``)."""
    if pair.finding == "?":
        raise DataError(pair.heatmap, "its name ends with none of the findings (<case>_<method>_<finding>)")
    if pair.truth is None:
        raise DataError(pair.heatmap, "no ground truth with a matching case name")
    if not pair.heatmap.exists():
        if not missing_as_empty:
            raise DataError(pair.heatmap, "no heatmap for this ground-truth case (did its reconstruction fail?); "
                                          "pass --missing-as-empty to count it as nothing detected")
        truth = load_image(pair.truth, kind="ground truth")
        return np.zeros(truth.array.shape, np.float32), pair.lesions(truth.array), truth
    heat = load_nifti(pair.heatmap, kind="heatmap")
    truth = load_image(pair.truth, kind="ground truth")
    if heat.array.shape != truth.array.shape:
        raise DataError(pair.heatmap, f"shape {heat.array.shape} differs from ground truth {pair.truth.name} "
                                      f"{truth.array.shape}")
    if not np.allclose(heat.affine, truth.affine, atol=1e-4):
        raise DataError(pair.heatmap, f"affine differs from ground truth {pair.truth.name}")
    return heat.array, pair.lesions(truth.array), heat


def calibrate_on_files(pairs: list[Pair], *, connectivity: int = CONNECTIVITY) -> tuple[Threshold, float]:
    """The calibrated fixed threshold over validation pairs (:func:`calibrate_threshold`; any unreadable pair is an error)."""
    loaded = [load_pair(p) for p in pairs]
    return calibrate_threshold([h for h, _, _ in loaded], [t for _, t, _ in loaded], connectivity=connectivity,
                               labels=[p.label for p in pairs] if all(p.label is not None for p in pairs) else None)


#: the minimum component sizes (mm³) :func:`calibrate_min_size` chooses from: none, then 10 mm³ doubling to ~5 ml
MIN_SIZES_MM3 = (0.0, *(10.0 * 2**k for k in range(10)))


def calibrate_min_size(pairs: list[Pair], threshold: Threshold, *, connectivity: int = CONNECTIVITY,
                       candidates=MIN_SIZES_MM3) -> tuple[float, float]:
    """The smallest component size (mm³) that maximises pooled lesion F1 over validation ``pairs`` binarised at
    ``threshold`` (ties go to the smaller size); returns ``(min_mm3, F1)``. For maps with a level of their own
    (a segmenter's probability 0.5), where speckles, not the level, decide the false positives."""
    loaded = [load_pair(p) for p in pairs]
    best = (-1.0, 0.0)
    for size in candidates:
        rows = [case_metrics(keep_large_components(h > threshold.level(h), size, v.affine, connectivity), t,
                             connectivity=connectivity, label=p.label) for (h, t, v), p in zip(loaded, pairs)]
        f1 = summarize(rows)["f1"]
        if f1 > best[0]:
            best = (f1, float(size))
    return best[1], best[0]


def calibrated_scores(val: list[Pair], test: list[Pair], *, connectivity: int = CONNECTIVITY,
                      level: Threshold | None = None) -> tuple[Threshold, float, EvaluationResult]:
    """Table 2's protocol for one method: the lesion-F1 threshold calibrated on ``val``, then ``test`` scored with
    it; returns ``(threshold, validation F1, result)``. With a ``level`` of the map's own, the minimum component
    size is calibrated instead (:func:`calibrate_min_size`; the result's ``min_mm3``). A test pair that cannot be
    scored is a :class:`DataError`."""
    min_mm3 = 0.0
    if level is None:
        threshold, val_f1 = calibrate_on_files(val, connectivity=connectivity)
    else:
        threshold, (min_mm3, val_f1) = level, calibrate_min_size(val, level, connectivity=connectivity)
    result = None
    for event in evaluate_iter(test, threshold, connectivity=connectivity, min_mm3=min_mm3):
        if isinstance(event, EvaluationResult):
            result = event
    if result.failed:
        raise DataError(result.failed[0]["case"], result.failed[0]["error"])
    return threshold, val_f1, result


def evaluate_iter(pairs: list[Pair], threshold: Threshold, *, connectivity: int = CONNECTIVITY,
                  masks_out: str | Path | None = None, metrics: str = "paper",
                  instances: InstanceOptions = InstanceOptions(),
                  missing_as_empty: bool = False, min_mm3: float = 0.0) -> Iterator[Progress | EvaluationResult]:
    """Binarise and score every pair; a bad pair becomes a ``failed`` row and the rest go on. ``min_mm3``:
    predicted components smaller than this are dropped before scoring.
    ``missing_as_empty``: a pair whose heatmap file is missing scores as an empty prediction (status
    ``missing``) instead of failing.

    ``metrics``: one of :data:`METRIC_SETS`. Yields ``Progress("evaluate")`` per case, then an
    :class:`EvaluationResult` whose summary pools the successful cases. Binary masks (uint8, the
    heatmap's affine) go to ``masks_out``, whose lock is held meanwhile (one writer per folder).
    """
    if metrics not in METRIC_SETS:
        raise ValueError(f"unknown metrics {metrics!r}; valid: {', '.join(METRIC_SETS)}")
    if metrics != "paper":
        monai_metrics()  # the missing extra is one clear error before any case
    with folder_lock(masks_out) if masks_out is not None else contextlib.nullcontext():
        rows, scored, matched, lesions = [], [], [], []
        for done, pair in enumerate(pairs, start=1):
            row = {"case": pair.case, "heatmap": pair.heatmap.name, "status": "ok", "error": ""}
            try:
                missing = not pair.heatmap.exists()  # load_pair raises for it unless missing_as_empty
                heat, truth, vol = load_pair(pair, missing_as_empty)
                if missing:
                    row.update(status="missing", error="no heatmap: scored as nothing detected")
                level = float("nan") if missing else threshold.level(heat)
                pred = np.zeros(truth.shape, bool) if missing else \
                    keep_large_components(heat > level, min_mm3, vol.affine, connectivity)
                m: CaseMetrics = case_metrics(pred, truth, case=pair.case, connectivity=connectivity, label=pair.label)
                mm3 = voxel_volume_mm3(vol.affine)
                row.update({k: v for k, v in m.as_dict().items() if k != "case"}, threshold=f"{level:.6g}",
                           gt_volume_mm3=float(truth.sum() * mm3), pred_volume_mm3=float(pred.sum() * mm3))
                if metrics != "paper":
                    inst = instance_metrics(pred, truth, spacing_of(vol.affine), iou_threshold=instances.iou_threshold,
                                            tolerance_mm=instances.tolerance_mm, connectivity=connectivity)
                    row.update(inst.as_dict())
                    matched.append(inst)
                scored.append(m)
                lesions += lesion_records(pred, truth, vol.affine, case=pair.case, connectivity=connectivity)
                if masks_out is not None and row["status"] == "ok":
                    save_nifti(Path(masks_out) / pair.heatmap.name, pred.astype(np.uint8), vol.affine, vol.header,
                               dtype=np.uint8)
            except (DataError, ValueError) as exc:
                row.update(status="failed", error=str(exc))
            rows.append(row)
            yield Progress("evaluate", done, len(pairs), "cases")
        summary = summarize(scored) if scored else {}
        if matched:
            summary.update(summarize_instances(matched))
        yield EvaluationResult(rows, summary, threshold, lesions, metrics, min_mm3)


def metrics_fields(metrics: str) -> tuple[str, ...]:
    """The columns of ``metrics.csv`` for a metric set: case columns, then the pooled summary's."""
    paper = (*CASE_FIELDS[:-1], *SUMMARY_KEYS[:6])
    instances = (*CASE_FIELDS[:4], *INSTANCE_FIELDS, *INSTANCE_SUMMARY_KEYS[:-2])
    chosen = {"paper": paper, "instances": instances, "all": paper + instances}[metrics]
    return (*dict.fromkeys(chosen), "error")


def metrics_csv(result: EvaluationResult) -> str:
    """One row per case, then one summary row (``case`` = ``ALL``) with the pooled metrics."""
    buf = io.StringIO(case_rows_csv(result.rows, result.metrics))
    buf.seek(0, io.SEEK_END)
    writer = csv.DictWriter(buf, fieldnames=metrics_fields(result.metrics), lineterminator="\n", extrasaction="ignore")
    summary = {k: _fmt(v) for k, v in result.summary.items()}
    writer.writerow({"case": "ALL", "status": "summary", "threshold": str(result.threshold),
                     "n_gt": summary.get("lesions", ""), "n_pred": summary.get("predicted_components", ""), **summary})
    return buf.getvalue()


def case_rows_csv(rows: list[dict], metrics: str = "paper") -> str:
    """Per-case rows only (no ``ALL`` row), e.g. several methods' rows in one table."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=metrics_fields(metrics), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(v) for k, v in row.items()})
    return buf.getvalue()


def write_metrics_csv(path: str | Path, result: EvaluationResult) -> None:
    write_text_atomic(path, metrics_csv(result))


def lesions_csv(lesions: list[LesionRecord], methods: list[str] | None = None) -> str:
    """One row per ground-truth lesion; with ``methods`` (one per record) a first column ``method``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=(("method",) if methods else ()) + LESION_FIELDS, lineterminator="\n")
    writer.writeheader()
    for k, record in enumerate(lesions):
        writer.writerow({**({"method": methods[k]} if methods else {}), **{key: _fmt(v) for key, v in record.as_dict().items()}})
    return buf.getvalue()


def lesions_path(metrics_path: str | Path) -> Path:
    """Where the per-lesion table goes beside ``metrics.csv``: ``metrics_lesions.csv``."""
    path = Path(metrics_path)
    return path.with_name(f"{path.stem}_lesions.csv")


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    return str(value)
