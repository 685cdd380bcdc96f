"""An annotator's review added to an export that already exists (the napari Lesion candidates widget's
"Add to export"): one case's label is made again as ``tonno export nnunet --annotations`` would make it.

The annotation ``(D, H, W)`` (on the case's image grid; voxels > 0 are lesion) and the decisions go into
``{export}/reviews/{case}.nii.gz`` and ``{case}_decisions.csv``; the label is recomputed from the heatmap
and the rule the export recorded, with the review laid over it (accepted: lesion, rejected: background),
and ``tonno_export.json`` gets the case's new record and ``labels_sha256``, so a segmenter trained on the
old labels is seen as stale. The export is refused when its labels were edited since it was written, or
the case's heatmap is not the one it was exported from.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..base.atomic import write_text_atomic
from ..base.errors import DataError
from ..base.folder_lock import folder_lock
from ..data.dataset import Case
from ..data.heatmap_folder import case_of_heatmap as case_of_heatmap  # where napari reads it
from ..data.nifti import load_nifti, save_nifti
from ..data.nnunet_layout import EXPORT_RECORD, FILE_ENDING, image_name, labels_sha256
from ..evaluation.candidates import decisions_csv
from ..evaluation.pseudo_labels import read_decisions
from .export_nnunet import ExportConfig, Review, case_heatmap, write_label

REVIEWS = "reviews"


def add_review(export: str | Path, case: str, annotation: np.ndarray, decisions: list[dict]) -> dict:
    """Lay the review of ``case`` over its label in the export folder ``export``; returns the case's new record
    (label counts, ``reviewed``). ``decisions``: rows as :func:`~tonno_engine.evaluation.candidates.decision_row`
    makes them."""
    folder = Path(export)
    record_path = folder / EXPORT_RECORD
    if not record_path.is_file():
        raise DataError(folder, "not a tonno export (no tonno_export.json)")
    with folder_lock(folder.parent):
        record = json.loads(record_path.read_text())
        if labels_sha256(folder) != record.get("labels_sha256"):
            raise DataError(folder / "labelsTr", "the labels differ from those the export recorded (edited since?); "
                                                 "export again")
        k = next((k for k, c in enumerate(record["cases"]) if c["case"] == case), None)
        if k is None:
            names = ", ".join(c["case"] for c in record["cases"][:8])
            raise DataError(folder, f"{case!r} is not a training case of this export ({names}, ...)")
        entry = record["cases"][k]
        source = Case(case, int(entry["label"]), Path(entry["image"]),
                      channels=tuple(Path(p) for p in entry.get("images", ())))  # every image of a case of several
        volume = load_nifti(folder / "imagesTr" / image_name(case), kind="image")
        if np.shape(annotation) != volume.array.shape:
            raise DataError(case, f"the annotation's shape {np.shape(annotation)} differs from the case's "
                                  f"{volume.array.shape}")
        cfg = ExportConfig.of_export(record)
        heat, fingerprint = case_heatmap(source, Path(record["heatmaps"]), cfg.method, volume)
        if fingerprint != entry["heatmap_fingerprint"]:
            raise DataError(case, "its heatmap changed since the export was written; export again")
        review = _store(folder / REVIEWS, case, annotation, decisions, volume)
        record["cases"][k] = write_label(folder, source, volume, heat, fingerprint, cfg, review)
        record["labels_sha256"] = labels_sha256(folder)
        record.setdefault("reviews_added", []).append(
            {"case": case, "made": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        write_text_atomic(record_path, json.dumps(record, indent=2) + "\n")
    return record["cases"][k]


def _store(reviews: Path, case: str, annotation, decisions: list[dict], volume):
    """Write the review beside the export; returns the :class:`~tonno_engine.apps.export_nnunet.Review` as the export
    reads it."""
    reviews.mkdir(exist_ok=True)
    path = reviews / f"{case}{FILE_ENDING}"
    save_nifti(path, annotation, volume.affine, volume.header, dtype=np.uint16)
    table = reviews / f"{case}_decisions.csv"
    write_text_atomic(table, decisions_csv(decisions))
    return Review(path, np.asarray(annotation), read_decisions(table))
