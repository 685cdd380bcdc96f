"""Pseudo-labels of a data set, written as an nnU-Net v2 raw data set with a MONAI datalist beside it.

``root/Dataset{id:03d}_{name}/``: ``imagesTr/{case}_0000.nii.gz`` and ``labelsTr/{case}.nii.gz`` (0
background, 1 lesion, 2 ignore: :mod:`~tonno_engine.evaluation.pseudo_labels`), ``imagesTs/`` for the
cases without labels, ``dataset.json`` (nnU-Net's fields), ``datalist.json`` (MONAI's
``load_decathlon_datalist`` layout, paths relative to the folder) and ``tonno_export.json`` (what made
the labels: heatmaps, method, level, rule, each case's heatmap fingerprint, review and label counts,
and ``labels_sha256`` over the label files). Every image keeps its input's voxel grid and affine (DICOM
and MetaImage inputs become NIfTI with that affine); each label has its image's affine and header.

A case of several images (``image_0000``, ``image_0001``, … columns: :mod:`~tonno_engine.data.channels`) gives
``{case}_0000.nii.gz``, ``{case}_0001.nii.gz``, …: the first as above, each other one copied when it lies on the
first one's grid and else resampled onto it (nnU-Net needs every channel of a case on one geometry; a notice
names each); ``dataset.json``'s ``channel_names`` holds one name per image (``CT`` for a channel of mode ``ct``,
nnU-Net's CT normalisation, else the channel's name, which it z-scores), ``datalist.json``'s ``image`` the list of
a case's files (MONAI's ``LoadImaged`` stacks a list as channels) and ``tonno_export.json`` the ``channels``. Every
case must bring as many images as the others.

The data set is built in a temporary folder beside its final place and renamed into it when complete,
so an interrupted export leaves no half-written case (the next run removes the remains and starts
again); a non-empty data set folder is replaced only with ``overwrite``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..base.atomic import PART_PREFIX, make_part_folder, write_text_atomic
from ..base.errors import DataError
from ..base.events import Notice, Progress
from ..data.channels import channel_column, onto_grid
from ..data.dataset import Case
from ..data.heatmap_folder import BatchInput, batch_inputs, heatmap_path
from ..data.images import load_image
from ..data.nifti import load_nifti, read_provenance, save_nifti
from ..data.nnunet_layout import DATALIST, EXPORT_RECORD, FILE_ENDING, image_name, labels_sha256
from ..data.preprocessing import INTENSITIES
from ..evaluation.candidates import percentile_level
from ..evaluation.metrics import Threshold
from ..evaluation.pseudo_labels import (
    LABEL_NAMES,
    PseudoLabelRule,
    apply_review,
    label_stats,
    low_level,
    pseudo_labels,
    read_decisions,
)
from .batch import writing_into
from .provenance import input_change, source_mismatches

#: nnU-Net's name per tonno intensity mode: "CT" gets its CT normalisation, every other name z-scores
CHANNEL_NAMES = {"ct": "CT", "mr": "MR", "pet": "PET"}


@dataclass
class ExportConfig:
    """``method``: the heatmaps' method label (files ``{case}_{method}.nii.gz`` in the heatmaps folder);
    ``level``: the threshold (e.g. from ``thresholds.json``), with ``level_from`` saying where it came from, raised to
    ``relative`` × each heatmap's maximum where that is higher (``Threshold.relative``; 0: not),
    or ``percentile``: each heatmap's own level at that percentile of its values;
    ``annotations``: a folder of reviewed cases (``{case}.nii.gz`` + ``{case}_decisions.csv``);
    ``calibrated_on``: the SHA-256 of the checkpoint whose heatmaps the level was calibrated on (``thresholds.json``):
    heatmaps of another checkpoint, or of several, are refused unless ``allow_mismatch`` (then recorded);
    ``channels``: ``(name, intensity mode or None)`` of each image of a case of several (the data set's
    ``dataset.json``; empty: one image per case, or the columns' names without a mode)."""

    method: str
    level: float | None = None
    level_from: str = "given"
    relative: float = 0.0
    percentile: float | None = None
    rule: PseudoLabelRule = field(default_factory=PseudoLabelRule)
    dataset_id: int = 501
    name: str = "TonnoLesions"
    intensity: str | None = None
    modality: str | None = None
    annotations: Path | None = None
    overwrite: bool = False
    calibrated_on: str | None = None
    allow_mismatch: bool = False
    channels: tuple[tuple[str, str | None], ...] = ()

    def __post_init__(self):
        self.channels = tuple((str(name), mode) for name, mode in self.channels)
        for name, mode in self.channels:
            if not name or (mode is not None and mode not in INTENSITIES):
                raise ValueError(f"a channel needs a name and a known intensity mode ({', '.join(INTENSITIES)}), "
                                 f"got {name!r}, {mode!r}")
        if (self.level is None) == (self.percentile is None):
            raise ValueError("give a level or a percentile (one of them)")
        if self.level is not None and not math.isfinite(self.level):
            raise ValueError(f"the level must be a finite number, got {self.level}")
        if not 0.0 <= self.relative < 1.0 or (self.relative and self.level is None):
            raise ValueError(f"relative (a share of each heatmap's maximum, in [0, 1)) goes with a level, got "
                             f"{self.relative}")
        if self.intensity is not None and self.intensity not in INTENSITIES:
            raise ValueError(f"unknown intensity mode {self.intensity!r}; valid: {', '.join(INTENSITIES)}")
        if self.percentile is not None and not 0.0 < self.percentile < 100.0:
            raise ValueError(f"percentile must be between 0 and 100, got {self.percentile}")
        if not 1 <= self.dataset_id <= 999:
            raise ValueError(f"the nnU-Net data set id must be 1 to 999, got {self.dataset_id}")
        if (problem := dataset_name_problem(self.name)) is not None:
            raise ValueError(problem)

    @classmethod
    def of_export(cls, record: dict) -> ExportConfig:
        """The settings an export was made with, from its ``tonno_export.json``."""
        return cls(method=record["method"], level=record["level"], level_from=record["level_from"],
                   relative=record.get("relative", 0.0), percentile=record["percentile"], rule=PseudoLabelRule(**record["rule"]))

    @property
    def folder_name(self) -> str:
        return f"Dataset{self.dataset_id:03d}_{self.name}"

    @property
    def level_text(self) -> str:
        if self.level is not None:
            return f"level {self._threshold.formula()} ({self.level_from})"
        return f"the {self.percentile:g}th percentile of each heatmap"

    @property
    def _threshold(self) -> Threshold:
        return Threshold("fixed", float(self.level), self.relative)

    def level_of(self, heatmap) -> float:
        return self._threshold.level(heatmap) if self.level is not None else percentile_level(heatmap, self.percentile)

    @property
    def channel_name(self) -> str:
        return CHANNEL_NAMES.get(self.intensity or "", self.modality or "image")

    def image_channels(self, images: int) -> tuple[tuple[str, str | None], ...]:
        """``(name, mode)`` of each image of cases of ``images`` images (several): :attr:`channels`, else the
        columns' names without a mode."""
        return self.channels or tuple((channel_column(k), None) for k in range(images))

    def channel_names(self, images: int) -> dict[str, str]:
        """``dataset.json``'s ``channel_names`` for cases of ``images`` images: one image as :attr:`channel_name`;
        several: ``CT`` for a channel of mode ``ct`` (nnU-Net's CT normalisation), else the channel's name (which
        nnU-Net z-scores)."""
        if images == 1:
            return {"0": self.channel_name}
        return {str(k): "CT" if mode == "ct" else name for k, (name, mode) in enumerate(self.image_channels(images))}


def dataset_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name an nnU-Net data set folder ``Dataset<id>_<name>`` (``None``: it can)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        return f"the data set name may hold letters, digits, _ and - only, got {name!r}"
    return None


def unlabelled_cases(source: str | Path) -> list[BatchInput]:
    """The cases of ``--test`` (written to ``imagesTs``, no labels): an image, a folder (its labels.csv if any,
    else its image files and DICOM series) or a labels CSV whose labels are not read, as ``tonno reconstruct``
    reads its input; :class:`DataError` for a missing image, before anything is written."""
    inputs = batch_inputs(source)
    missing = [(i, p) for i in inputs for p in i.images if not Path(p).exists()]
    if missing:
        raise DataError(missing[0][1], f"image of the test case {missing[0][0].case!r} not found"
                                       + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return inputs


@dataclass(frozen=True)
class Review:
    """An annotator's review of one case: the annotation's file and array (voxels > 0 lesion) and the decisions."""

    path: Path
    annotation: np.ndarray
    decisions: list[dict]


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    training: int
    testing: int
    reviewed: list[str]
    nnunet_check: str  # "passed", or why it did not run
    labels_sha256: str


def export_nnunet_iter(cases: list[Case], test_cases: list[Case | BatchInput], heatmaps: str | Path, root: str | Path,
                       cfg: ExportConfig) -> Iterator[Progress | ExportResult]:
    """Write the data set (see module doc); yields a :class:`Progress` per case, then the :class:`ExportResult`."""
    heatmaps = Path(heatmaps)
    _check_names(cases, test_cases)
    _check_images(cases, test_cases, cfg)
    _check_annotations(cfg.annotations, cases)
    mismatches = source_mismatches([heatmap_path(heatmaps, c.case, cfg.method) for c in cases],
                                   calibrated_on=cfg.calibrated_on, calibration=cfg.level_from)
    if mismatches and not cfg.allow_mismatch:
        raise DataError(heatmaps, "; ".join(mismatches) + ": pseudo-labels from them would be wrong without a word. "
                                  "Reconstruct the heatmaps with the checkpoint the level was calibrated on, or "
                                  "calibrate on these (tonno benchmark --checkpoint); --allow-mismatch exports "
                                  "anyway and records it")
    for problem in mismatches:
        yield Notice(f"exported although {problem} (--allow-mismatch; recorded in {EXPORT_RECORD})")
    root = Path(root)
    target = root / cfg.folder_name
    with writing_into(root):  # a raw folder made here is removed again when the export fails
        _check_id(root, cfg)
        if target.exists() and any(target.iterdir()) and not cfg.overwrite:
            raise DataError(target, "the data set folder is not empty; choose another id, or --overwrite it")
        _remove_stale(root, target.name)
        stage = make_part_folder(target)
        try:
            result = yield from _write(stage, cases, test_cases, heatmaps, cfg, mismatches)
            _publish(stage, target)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    yield replace(result, folder=target)


def _write(stage: Path, cases, test_cases, heatmaps: Path, cfg: ExportConfig, mismatches: list[str]) -> Iterator:
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (stage / sub).mkdir()
    records, total = [], len(cases) + len(test_cases)
    for k, case in enumerate(cases):
        records.append((yield from _labelled_case(stage, case, heatmaps, cfg)))
        yield Progress("export", k + 1, total, "cases")
    yield from _check_lesions(records, heatmaps, cfg)
    for k, case in enumerate(test_cases):
        yield from _write_images(case, stage / "imagesTs")
        yield Progress("export", len(cases) + k + 1, total, "cases")
    images = len(cases[0].images)
    dataset = {"channel_names": cfg.channel_names(images), "labels": dict(LABEL_NAMES), "numTraining": len(cases),
               "file_ending": FILE_ENDING, "name": cfg.name,
               "description": f"tonno pseudo-labels from {cfg.method} heatmaps at {cfg.level_text}"}
    write_text_atomic(stage / "dataset.json", json.dumps(dataset, indent=2) + "\n")
    write_text_atomic(stage / DATALIST, json.dumps(_datalist(cases, test_cases), indent=2) + "\n")
    check = nnunet_integrity_check(stage)
    record = {"made": datetime.now(timezone.utc).isoformat(timespec="seconds"), "heatmaps": str(heatmaps),
              "method": cfg.method, "level": cfg.level, "relative": cfg.relative, "level_from": cfg.level_from,
              "calibrated_on": cfg.calibrated_on, "mismatches_allowed": mismatches,
              "percentile": cfg.percentile, "rule": cfg.rule.as_dict(),
              "annotations": str(cfg.annotations) if cfg.annotations else None, "nnunet_check": check,
              "labels_sha256": labels_sha256(stage), "cases": records,
              "test_cases": [c.case for c in test_cases]}
    if images > 1:  # (a one-image export's record stays as it was)
        record["channels"] = [{"name": name, "intensity": mode, "nnunet": dataset["channel_names"][str(k)]}
                              for k, (name, mode) in enumerate(cfg.image_channels(images))]
    write_text_atomic(stage / EXPORT_RECORD, json.dumps(record, indent=2) + "\n")
    reviewed = [r["case"] for r in records if r["reviewed"]]
    return ExportResult(stage, len(cases), len(test_cases), reviewed, check, record["labels_sha256"])


def _check_lesions(records: list[dict], heatmaps: Path, cfg: ExportConfig) -> Iterator[Notice]:
    """Refuse a data set whose positive cases hold no lesion voxel (the level lies above every heatmap: a segmenter
    would learn that there is nothing to find); a notice names the positive cases left without one."""
    positive = [r for r in records if r["label"]]
    empty = [r["case"] for r in positive if not r["lesion"]]
    if positive and len(empty) == len(positive):
        levels = [r["level"] for r in positive]
        raise DataError(heatmaps, f"at {cfg.level_text} none of the {len(positive)} positive case(s) holds a lesion "
                                  f"voxel (their levels {min(levels):.4g}–{max(levels):.4g} lie above every "
                                  f"{cfg.method} heatmap): choose a lower level, or the heatmaps it was calibrated on")
    if empty:
        yield Notice(f"{len(empty)} of {len(positive)} positive case(s) hold no lesion voxel at {cfg.level_text}: "
                     f"{', '.join(empty[:5])}{' …' if len(empty) > 5 else ''} (background everywhere but the "
                     f"ignore band)")


def _labelled_case(stage: Path, case: Case, heatmaps: Path, cfg: ExportConfig) -> Iterator[Notice]:
    """Write one training case's images and label (yielding a notice per image resampled); return its record for
    ``tonno_export.json``."""
    volume = yield from _write_images(case, stage / "imagesTr")
    heat, fingerprint = case_heatmap(case, heatmaps, cfg.method, volume)
    return write_label(stage, case, volume, heat, fingerprint, cfg, _review(case, cfg.annotations))


def write_label(folder: Path, case: Case, volume, heat: np.ndarray, fingerprint: str | None, cfg: ExportConfig,
                review) -> dict:
    """Write ``folder/labelsTr/{case}.nii.gz`` from ``heat`` ``(D, H, W)`` on ``volume``'s grid, with an annotator's
    ``review`` ``(path, annotation, decisions)`` laid over it when given; return the case's record."""
    level = cfg.level_of(heat)
    low = low_level(heat, level, cfg.rule.band)
    labels = pseudo_labels(heat, bool(case.label), level, volume.affine, cfg.rule, low=low)
    if review is not None:
        labels = apply_review(labels, heat, review.annotation, review.decisions, where=review.path,
                              connectivity=cfg.rule.connectivity)
    save_nifti(folder / "labelsTr" / f"{case.case}{FILE_ENDING}", labels, volume.affine, volume.header, dtype=np.uint8)
    stats = label_stats(labels, level, low, cfg.rule, reviewed=review is not None)
    images = {"images": [str(p) for p in case.images]} if len(case.images) > 1 else {}
    return {"case": case.case, "label": case.label, "image": str(case.image), **images,
            "heatmap_fingerprint": fingerprint, "reviewed": review is not None,
            **{k: v for k, v in stats.__dict__.items() if k != "reviewed"}}


def _write_images(case: Case | BatchInput, folder: Path) -> Iterator[Notice]:
    """Write every image of ``case`` into ``folder`` as ``{case}_{k:04d}.nii.gz`` (:func:`_write_image`), each one
    after the first on the first one's grid: copied when it lies there, else resampled onto it
    (:func:`~tonno_engine.data.channels.onto_grid`; a notice names it). Returns the first image's volume."""
    first_path, *others = case.images
    first = _write_image(first_path, folder / image_name(case.case))
    for k, path in enumerate(others, 1):
        target, volume = folder / image_name(case.case, k), load_image(path)
        array, note = onto_grid(volume, first, path, first_path)
        if note is None:
            _write_image(path, target, volume)
            continue
        save_nifti(target, array, first.affine, first.header, dtype=np.float32)
        yield Notice(f"{case.case}: {note} (nnU-Net needs every image of a case on one grid)")
    return first


def _write_image(image: Path, path: Path, volume=None):
    """The image ``image`` as NIfTI at ``path`` on its own grid; returns the loaded volume (``volume`` when given).
    A ``.nii.gz`` input is copied byte for byte (its header, affine and data type stay exactly)."""
    volume = volume if volume is not None else load_image(image)
    if str(image).lower().endswith(FILE_ENDING):
        shutil.copyfile(image, path)
    else:
        dtype = volume.header.get_data_dtype()
        exact = np.issubdtype(dtype, np.integer) and np.array_equal(volume.array, np.round(volume.array))
        save_nifti(path, volume.array, volume.affine, volume.header, dtype=dtype if exact else np.float32)
    return volume


def case_heatmap(case: Case, heatmaps: Path, method: str, volume) -> tuple[np.ndarray | None, str | None]:
    """The case's heatmap and its fingerprint, checked against the image; a negative case needs none."""
    path = heatmap_path(heatmaps, case.case, method)
    if not path.exists():
        if not case.label:
            return np.zeros(volume.array.shape, np.float32), None
        raise DataError(path, f"no {method} heatmap for the positive case {case.case!r} (reconstruct it first)")
    heat = load_nifti(path, kind="heatmap")
    if heat.array.shape != volume.array.shape or not np.allclose(heat.affine, volume.affine, atol=1e-4):
        raise DataError(path, f"heatmap grid {heat.array.shape} does not match the image {case.image} "
                              f"({volume.array.shape}); it was made from another image")
    provenance = read_provenance(path) or {}
    parts = provenance.get("parts", {})
    if changed := input_change(provenance, case.images):
        raise DataError(path, changed)
    if parts.get("method", {}).get("label", method) != method:
        raise DataError(path, f"the heatmap was made by {parts['method'].get('label')!r}, not {method!r}")
    return heat.array, provenance.get("fingerprint")


def _review(case: Case, annotations: Path | None) -> Review | None:
    """The :class:`Review` of a reviewed case, or ``None``."""
    if annotations is None:
        return None
    path = Path(annotations) / f"{case.case}{FILE_ENDING}"
    if not path.exists():
        return None
    table = path.with_name(f"{case.case}_decisions.csv")
    decisions = read_decisions(table) if table.exists() else []
    return Review(path, load_nifti(path, kind="annotation").array, decisions)


def _datalist(cases, test_cases) -> dict:
    return {"training": [{"image": _datalist_image("imagesTr", c), "label": f"labelsTr/{c.case}{FILE_ENDING}",
                          "case": c.case, "class": c.label} for c in cases],
            "testing": [{"image": _datalist_image("imagesTs", c), "case": c.case} for c in test_cases]}


def _datalist_image(folder: str, case) -> str | list[str]:
    """A case's ``image`` in the datalist: its file, or the list of its files when it has several (MONAI's
    ``LoadImaged`` stacks a list as channels)."""
    files = [f"{folder}/{image_name(case.case, k)}" for k in range(len(case.images))]
    return files if len(files) > 1 else files[0]


def nnunet_integrity_check(folder: Path) -> str:
    """nnU-Net v2's own ``verify_dataset_integrity`` on ``folder`` when ``nnunetv2`` is installed ("passed"),
    in a child process (it prints and spawns workers); :class:`DataError` with its last lines if it fails."""
    if importlib.util.find_spec("nnunetv2") is None:
        return "not run (nnunetv2 is not installed)"
    code = ("import sys; from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity; "
            "verify_dataset_integrity(sys.argv[1], 1)")
    # nnU-Net warns at import when its folders are unset; they are not used by the check
    env = {**os.environ, **{k: os.environ.get(k, str(folder.parent)) for k in
                            ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}}
    done = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, env=env)
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-6:])
        raise DataError(folder, f"nnU-Net's data set integrity check failed:\n{tail}")
    return "passed"


def _check_id(root: Path, cfg: ExportConfig) -> None:
    """Refuse a data set id that another name already holds in ``root``: nnU-Net takes one name per id."""
    others = sorted(p.name for p in root.glob(f"Dataset{cfg.dataset_id:03d}_*")
                    if p.is_dir() and p.name != cfg.folder_name)
    if others:
        taken = {p.name.split("_", 1)[0] for p in root.glob("Dataset*_*") if p.is_dir()}
        free = next((n for n in range(1, 1000) if f"Dataset{n:03d}" not in taken), None)
        raise DataError(root / others[0], f"already holds the id {cfg.dataset_id:03d}, and nnU-Net takes one name per "
                                          f"id (it would refuse {cfg.folder_name}): choose another --id"
                                          f"{f' (e.g. {free})' if free else ''}, or export under the name "
                                          f"{others[0].split('_', 1)[1]}")


def _check_annotations(annotations: Path | None, cases) -> None:
    """Refuse an annotations folder that is not there, or that holds reviews of cases this export does not label
    (a mistyped folder or case would drop an annotator's work without a word)."""
    if annotations is None:
        return
    if not Path(annotations).is_dir():
        raise DataError(annotations, "no such annotations folder (reviews of the Lesion candidates widget)")
    labelled = {c.case for c in cases}
    strays = sorted(p.name for p in Path(annotations).glob(f"*{FILE_ENDING}") if p.name[:-len(FILE_ENDING)] not in labelled)
    if strays:
        raise DataError(annotations, f"{len(strays)} review(s) of cases this export does not label: "
                                     f"{', '.join(strays[:5])}{' …' if len(strays) > 5 else ''} (a case of --test, "
                                     f"another data set, or a renamed file); move them out or add their cases")


def _check_images(cases, test_cases, cfg: ExportConfig) -> None:
    """Refuse, naming it, a case that brings another number of images than the first training case, and channels
    that do not count the cases' images: nnU-Net reads the same channels of every case."""
    want = len(cases[0].images)
    odd = [c for c in cases + test_cases if len(c.images) != want]
    if odd:
        raise DataError(odd[0].case, f"has {len(odd[0].images)} image(s) but {cases[0].case} has {want}: every case of "
                                     "an nnU-Net data set brings the same images"
                                     + (f" (and {len(odd) - 1} more case(s) differ)" if len(odd) > 1 else ""))
    if cfg.channels and want > 1 and len(cfg.channels) != want:
        raise DataError("export", f"{len(cfg.channels)} channel(s) named ({', '.join(n for n, _ in cfg.channels)}) "
                                  f"for cases of {want} images")


def _check_names(cases, test_cases) -> None:
    if not cases:
        raise DataError("export", "no training case to export (an nnU-Net data set needs at least one)")
    names = [c.case for c in cases + test_cases]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(dupes[0], f"case(s) {', '.join(dupes[:5])} both in training and test, or twice")
    for name in names:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise DataError(name, "a case name in an nnU-Net data set may hold letters, digits, '.', '_' and '-' only")


def _remove_stale(root: Path, name: str) -> None:
    """Remove the temporary folders an interrupted export of ``name`` left in ``root``."""
    for path in root.glob(f"{PART_PREFIX}{name}.*"):
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def _publish(stage: Path, target: Path) -> None:
    """Put the complete ``stage`` where ``target`` is (replacing an old data set only after the new one is whole)."""
    old = None
    if target.exists():
        old = target.with_name(f"{PART_PREFIX}{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(stage, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
