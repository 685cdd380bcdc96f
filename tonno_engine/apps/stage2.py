"""Second-stage prediction: the U-Net's lesion probability for each input volume.

Writes ``out/{case}_stage2.nii.gz`` (float32 probabilities in [0, 1], the input's grid, affine and
header), each atomically with its provenance: the segmenter's SHA-256, the input's files, the overlap and
tonno's version. It runs on the batch runner's machinery (:mod:`~tonno_engine.apps.batch`): the inputs of
:func:`~tonno_engine.data.heatmap_folder.batch_inputs`, the provenance check of
:func:`~tonno_engine.apps.batch.stale_reason` (a rerun skips outputs whose provenance matches and redoes stale
ones), the atomic :func:`~tonno_engine.apps.batch.write_output`, and failures reported at the end (a
:class:`~tonno_engine.apps.batch.Finished` result, which :func:`~tonno_engine.apps.batch.run_or_raise` turns into
an error); the other cases go on. Every method that reads heatmaps (``tonno evaluate``, the
Results browser, thresholds) reads these files like any heatmap.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ..base.atomic import make_output_folder
from ..base.defaults import DEVICE
from ..base.devices import resolve_device
from ..base.errors import DataError
from ..base.events import Progress
from ..base.hashing import file_sha256
from ..data.heatmap_folder import STAGE2, batch_inputs, prediction_path
from ..data.images import load_image
from ..data.nifti import read_provenance
from ..data.preprocessing import Preprocessing
from ..models.segmenter import load_segmenter
from .batch import Failure, Finished, stale_reason, write_output
from .provenance import Provenance, input_signature, tonno_version


@dataclass
class PredictResult(Finished):
    out: Path
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (case, error)
    seconds: dict[str, float] = field(default_factory=dict)  # per written case

    @property
    def failures(self) -> list[Failure]:
        return [Failure(case, STAGE2, error) for case, error in self.failed]


@torch.no_grad()
def predict_volume(model: torch.nn.Module, image: np.ndarray, meta: dict, device, *, overlap: float = 0.25) -> np.ndarray:
    """Lesion probability ``(D, H, W)`` float32 of a raw image ``(D, H, W)``, preprocessed as the segmenter's
    ``meta`` says: MONAI's Gaussian-weighted sliding window of its ``patch``-voxel cubes."""
    from monai.inferers import sliding_window_inference

    patch = meta["patch"]
    x = torch.from_numpy(Preprocessing.from_dict(meta["preprocessing"])(image))[None, None].to(device)
    logits = sliding_window_inference(x, (patch,) * 3, sw_batch_size=4, predictor=model, overlap=overlap, mode="gaussian")
    return torch.softmax(logits, 1)[0, 1].float().cpu().numpy()


def predict_iter(checkpoint: str | Path, source: str | Path, out: str | Path, *, device: str = DEVICE,
                 overlap: float = 0.25, id_column: str | None = None) -> Iterator[Progress | PredictResult]:
    """Predict every case of ``source`` (an image, a folder or a labels CSV, whose case column ``id_column`` names
    when it is not ``case``; labels are not read) into ``out``; yields a :class:`Progress` per case, then the
    :class:`PredictResult`."""
    inputs = batch_inputs(source, id_column)
    out = make_output_folder(out)
    dev = resolve_device(device)
    model, meta = load_segmenter(checkpoint, dev)
    sha, started = file_sha256(checkpoint), datetime.now(timezone.utc).isoformat(timespec="seconds")
    result = PredictResult(out)
    for k, item in enumerate(inputs):
        target = prediction_path(out, item.case)
        try:
            parts = {"segmenter_sha256": sha, "method": {"label": STAGE2}, "input": input_signature(item.image),
                     "overlap": overlap, "tonno": tonno_version()}
            if target.exists() and not stale_reason(read_provenance(target), parts):
                result.skipped.append(item.case)
            else:
                t0 = time.perf_counter()
                volume = load_image(item.image)
                probability = predict_volume(model, volume.array, meta, dev, overlap=overlap)
                write_output(target, probability, volume, Provenance(parts, started))
                result.seconds[item.case] = time.perf_counter() - t0
                result.written.append(item.case)
        except DataError as exc:
            result.failed.append((item.case, str(exc)))
        yield Progress("predict", k + 1, len(inputs), "cases")
    yield result
