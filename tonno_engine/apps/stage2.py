"""Second-stage prediction: the U-Net's lesion probability for each input volume.

Writes ``out/{case}_stage2.nii.gz`` (float32 probabilities in [0, 1], the input's grid, affine and
header), each atomically with its provenance: the segmenter's SHA-256, the input's files, the overlap and
tonno's version. A segmenter of cases of several images reads every image of a case (``image_0000``, … columns;
:func:`~tonno_engine.data.channels.load_scan`, onto the first one's grid, which the output takes); a case of
another count of images, or of other names where its data set names them, fails naming both. It runs on the batch
runner's machinery (:mod:`~tonno_engine.apps.batch`): the inputs of
:func:`~tonno_engine.data.heatmap_folder.batch_inputs`, the provenance check of
:func:`~tonno_engine.apps.batch.stale_reason` (a rerun skips outputs whose provenance matches and redoes stale
ones), the atomic :func:`~tonno_engine.apps.batch.write_output`, and failures reported at the end (a
:class:`~tonno_engine.apps.batch.Finished` result, which :func:`~tonno_engine.apps.batch.run_or_raise` turns into
an error); the other cases go on. Every method that reads heatmaps (``tonno evaluate``, the
Results browser, thresholds) reads these files like any heatmap.

A run holds the folder's lock (:func:`~tonno_engine.apps.batch.writing_into`), and one folder holds one segmenter's
predictions: a run refuses a folder that already holds predictions another segmenter made (or that carry no
provenance) unless ``overwrite`` is given, which replaces those of its own cases.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ..base.defaults import DEVICE, SEG_PROBABILITY
from ..base.devices import resolve_device
from ..base.errors import DataError
from ..base.events import Notice, Progress
from ..base.hashing import file_sha256
from ..data.channels import case_notes, load_scan
from ..data.dicomweb import fetch_series, is_dicomweb_url
from ..data.heatmap_folder import HEATMAP_ENDING, STAGE2, batch_inputs, prediction_path
from ..data.nifti import read_provenance
from ..data.preprocessing import Preprocessing
from ..models.segmenter import load_segmenter, segmenter_problem
from .batch import Failure, Finished, stale_reason, write_output, writing_into
from .dicom_outputs import DicomOptions, check_options, made_of, send, write_probability_seg
from .provenance import Provenance, input_path, input_signature, tonno_version


@dataclass
class PredictResult(Finished):
    out: Path
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (case, error)
    seconds: dict[str, float] = field(default_factory=dict)  # per written case
    stored: int = 0  # DICOM objects sent to ``--store`` by STOW-RS

    @property
    def failures(self) -> list[Failure]:
        return [Failure(case, STAGE2, error) for case, error in self.failed]


@torch.no_grad()
def predict_volume(model: torch.nn.Module, image: np.ndarray, meta: dict, device, *, overlap: float = 0.25) -> np.ndarray:
    """Lesion probability ``(D, H, W)`` float32 of a raw image ``(D, H, W)`` (or the images of a case of several on
    one grid, ``(I, D, H, W)``), preprocessed as the segmenter's ``meta`` says: MONAI's Gaussian-weighted sliding
    window of its ``patch``-voxel cubes."""
    from monai.inferers import sliding_window_inference

    patch = meta["patch"]
    x = torch.from_numpy(Preprocessing.from_dict(meta["preprocessing"])(image))
    x = (x[None] if x.ndim == 4 else x[None, None]).to(device)
    logits = sliding_window_inference(x, (patch,) * 3, sw_batch_size=4, predictor=model, overlap=overlap, mode="gaussian")
    return torch.softmax(logits, 1)[0, 1].float().cpu().numpy()


def predict_iter(checkpoint: str | Path, source: str | Path, out: str | Path, *, device: str = DEVICE,
                 overlap: float = 0.25, overwrite: bool = False, id_column: str | None = None,
                 dicom: DicomOptions | None = None) -> Iterator[Progress | Notice | PredictResult]:
    """Predict every case of ``source`` (an image, a folder or a labels CSV, whose case column ``id_column`` names
    when it is not ``case``; labels are not read) into ``out``, holding its lock; yields a :class:`Progress` per
    case, then the :class:`PredictResult`. :class:`DataError` before anything is written when ``out`` holds
    predictions of another segmenter (see module doc) and ``overwrite`` is not given; with it, a :class:`Notice`
    names those of cases this run does not redo. ``dicom``: a SEG of each prediction beside it, and where to store
    them (:mod:`~tonno_engine.apps.dicom_outputs`; checked before anything is written)."""
    inputs = batch_inputs(source, id_column)
    dicom = dicom or DicomOptions()
    check_options(dicom, inputs, [])
    if is_dicomweb_url(source):  # one series: fetched now, so that a server's refusal writes nothing
        fetch_series(str(source))
    dev = resolve_device(device)
    model, meta = load_segmenter(checkpoint, dev)
    sha, started = file_sha256(checkpoint), datetime.now(timezone.utc).isoformat(timespec="seconds")
    out = Path(out)
    with writing_into(out):
        foreign = _foreign_predictions(out, sha)
        if foreign and not overwrite:
            raise DataError(out, f"holds {len(foreign)} prediction(s) made by another segmenter, {_made_by(foreign)} "
                                 f"(e.g. {next(iter(foreign))}), not by {checkpoint} (sha256 {sha[:12]}): writing here "
                                 "would mix two models' predictions. Pass --overwrite to replace them, or use another "
                                 "--out")
        left = sorted(set(foreign) - {prediction_path(out, i.case).name for i in inputs})
        if left:
            yield Notice(f"{out}: {len(left)} prediction(s) made by another segmenter, {_made_by(foreign)}, stay: their "
                         f"cases are not in this run (e.g. {left[0]}), so the folder still mixes two models' "
                         "predictions")
        segmenter = _Segmenter(model, meta, dev, sha, str(checkpoint))
        yield from _predict_cases(segmenter, inputs, out, overlap=overlap, started=started, dicom=dicom)


@dataclass(frozen=True)
class _Segmenter:
    """A loaded segmenter: the network, its ``meta``, the device it runs on, its file's SHA-256 and path."""

    model: torch.nn.Module
    meta: dict
    device: torch.device
    sha256: str
    path: str


def _predict_cases(segmenter: _Segmenter, inputs, out: Path, *, overlap: float, started: str,
                   dicom: DicomOptions) -> Iterator[Progress | Notice | PredictResult]:
    """Predict ``inputs`` into ``out``, skipping those up to date; each output records the segmenter's hash and
    path and the run's start; with DICOM output a SEG of each written prediction, stored at the end. A case whose
    images the segmenter does not take fails, naming it."""
    result, written = PredictResult(out), []
    for k, item in enumerate(inputs):
        target = prediction_path(out, item.case)
        try:
            if problem := segmenter_problem(segmenter.meta, len(item.images), item.channel_names):
                raise DataError(item.image, problem)
            parts = {"segmenter_sha256": segmenter.sha256, "method": {"label": STAGE2},
                     "input": input_signature(item.images), "overlap": overlap, "tonno": tonno_version()}
            if target.exists() and not stale_reason(read_provenance(target), parts):
                result.skipped.append(item.case)
            else:
                t0 = time.perf_counter()
                volume, notes = load_scan(item.images)
                yield from case_notes(notes)
                probability = predict_volume(segmenter.model, volume.array, segmenter.meta, segmenter.device,
                                             overlap=overlap)
                write_output(target, probability, volume, Provenance(parts, started, segmenter.path, input_path(item.image)))
                if dicom.dicom:
                    written.append(write_probability_seg(target, probability, volume.path, made_of(STAGE2, parts),
                                                         SEG_PROBABILITY))
                result.seconds[item.case] = time.perf_counter() - t0
                result.written.append(item.case)
        except DataError as exc:
            result.failed.append((item.case, str(exc)))
        yield Progress("predict", k + 1, len(inputs), "cases")
    result.stored = send(dicom.store, written)
    yield result


def _foreign_predictions(out: Path, sha: str) -> dict[str, dict | None]:
    """``{file name: provenance}`` of the predictions in ``out`` that the segmenter of hash ``sha`` did not make
    (``None`` for one without provenance)."""
    found = {}
    for path in sorted(out.glob(f"*_{STAGE2}{HEATMAP_ENDING}")):
        made = read_provenance(path)
        if (made or {}).get("parts", {}).get("segmenter_sha256") != sha:
            found[path.name] = made
    return found


def _made_by(foreign: dict[str, dict | None]) -> str:
    """The segmenters behind ``foreign`` (:func:`_foreign_predictions`): each one's path and hash, or that no
    provenance says which."""
    names = []
    for made in foreign.values():
        sha = (made or {}).get("parts", {}).get("segmenter_sha256")
        name = (f"{made['checkpoint']} (sha256 {sha[:12]})" if made.get("checkpoint") else f"sha256 {sha[:12]}") \
            if sha else "no provenance says which"
        if name not in names:
            names.append(name)
    return ", ".join(names[:3]) + (" …" if len(names) > 3 else "")
