"""The heatmap-folder convention: how ``tonno reconstruct``, ``tonno segment predict`` and ``tonno benchmark`` lay
out heatmaps, and how the evaluation, stage 2 and the Results browser read them back.

- A heatmap is ``<case>_<label>.nii.gz`` (:func:`heatmap_path`): ``label`` is the method's label
  (``<method label>_<finding>`` for a classifier of several findings), ``stage2`` for a second-stage
  prediction (:func:`prediction_path`). Read back: :func:`label_of` (the method a name ends with, as
  calibrated levels are looked up) and :func:`case_of_heatmap` (the case of a file or napari layer).
- The folder's inputs (:func:`batch_inputs`): one image, a folder of images or a labels CSV; each case
  named after its file (or its CSV row, whose case column ``id_column`` may name; no label column is needed).
- A heatmap pairs with its case's ground truth (:class:`Pair`, :func:`output_pairs`).
- ``summary.csv``: one row per case and method, the columns :data:`SUMMARY_FIELDS`
  (:func:`summary_csv`, :func:`read_summary`); ``run.json`` names the input as ``source``
  (:func:`run_source`) and a CSV's case column as ``id_column`` (:func:`run_id_column`).

It sits below the evaluation and the applications (import-linter's layers) so that all of them share it.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..base.errors import DataError
from .dataset import dataset_channel_specs, read_cases
from .dicomweb import is_dicomweb_url
from .images import FORMATS, image_stem, images_in, is_single_image

#: a heatmap file's ending
HEATMAP_ENDING = ".nii.gz"
#: the method label of a stage-2 prediction in file names, tables and the Results browser
STAGE2 = "stage2"
SUMMARY = "summary.csv"
RUN_JSON = "run.json"
SUMMARY_FIELDS = ("case", "method", "status", "seconds", "peak_rss_mb", "peak_gpu_mb", "batch_size",
                  "slice_size", "output", "made", "error", "finding")


@dataclass(frozen=True)
class BatchInput:
    """A case to make heatmaps of: its ``image`` (the first of ``channels`` for a case of several images, whose
    names ``channel_names`` holds when its data set names them)."""

    case: str
    image: Path
    channels: tuple[Path, ...] = ()
    channel_names: tuple[str, ...] = ()

    @property
    def images(self) -> tuple[Path, ...]:
        return self.channels or (self.image,)


@dataclass(frozen=True)
class Pair:
    """A heatmap and its ground truth: ``truth`` (``None``: no partner found) is a binary mask, or with
    ``value`` a label image whose voxels equal to ``value`` are the lesions (one finding of several);
    ``label``: the volume's class (``None``: from the mask)."""

    case: str
    heatmap: Path
    truth: Path | None
    label: int | None = None
    value: int | None = None
    finding: str = ""  # the finding the heatmap is of, when the classifier has several

    @classmethod
    def of_case(cls, case: str, heatmap: Path, truth: tuple, finding: str = "") -> Pair:
        """The pair of ``heatmap`` and ``truth``, a :meth:`~tonno_engine.data.dataset.Case.truth`
        ``(mask, value, label)``."""
        mask, value, label = truth
        return cls(case, heatmap, mask, label, value, finding)

    def lesions(self, truth: np.ndarray) -> np.ndarray:
        """The ground-truth lesion voxels of the array read from :attr:`truth`."""
        return truth == self.value if self.value is not None else truth > 0.5


def heatmap_path(folder: str | Path, case: str, label: str) -> Path:
    """``folder/<case>_<label>.nii.gz``."""
    return Path(folder) / f"{case}_{label}{HEATMAP_ENDING}"


def label_of(name: str, labels) -> str | None:
    """The longest of ``labels`` that a heatmap's name is or ends with (``<case>_<label>`` as the batch writes it,
    ``<case> <label>`` as the Results browser names layers), or ``None``."""
    ends = [k for k in labels if name == k or name.endswith((f"_{k}", f" {k}"))]
    return max(ends, key=len) if ends else None


def case_of_heatmap(name: str | Path, finding: str = "") -> str:
    """The case a heatmap belongs to, from its file or layer name: ``{case}_{method}.nii.gz`` as the batch writes
    it (``{case}_{method}_{finding}.nii.gz`` for a ``finding``), ``{case} {method}`` as the Results browser names
    layers; else the name without its suffix."""
    stem = Path(str(name)).name
    for suffix in (".nii.gz", ".nii"):
        stem = stem[: -len(suffix)] if stem.endswith(suffix) else stem
    if finding and stem.endswith(f"_{finding}"):
        stem = stem[: -len(finding) - 1]
    for mark in (" ", "_"):
        if mark in stem:
            return stem.rsplit(mark, 1)[0]
    return stem


def output_path(out: str | Path, case: str, spec) -> Path:
    """The heatmap of method ``spec`` (anything with a ``label``: a method spec, a stage-2 row) for ``case``."""
    return heatmap_path(out, case, spec.label)


def prediction_path(out: str | Path, case: str) -> Path:
    """A stage-2 prediction: ``out/<case>_stage2.nii.gz``."""
    return heatmap_path(out, case, STAGE2)


def output_pairs(out: Path, cases, spec) -> list[Pair]:
    """Each case's output of method ``spec`` in ``out`` paired with its mask and label (those of the spec's
    finding), for scoring."""
    return [Pair.of_case(c.case, output_path(out, c.case, spec), c.truth(spec.output if spec.finding else None))
            for c in cases]


def batch_inputs(source: str | Path, id_column: str | None = None) -> list[BatchInput]:
    """Cases from one image (a file or a DICOM series), a folder (its labels.csv if any, else its image
    files and DICOM series subfolders, each a case named after the file or subfolder) or a CSV. A CSV is read
    as :func:`~tonno_engine.data.dataset.read_cases` reads it for training, ``id_column`` naming its case column,
    but without labels: no ``label`` (or finding) column is needed.

    Missing image files are kept (they fail as cases, not the batch); a missing source, an empty
    folder, duplicate case names or an ``id_column`` for a source that is no CSV raise :class:`DataError`.
    """
    if is_dicomweb_url(source):
        return [BatchInput(image_stem(source), str(source))]  # type: ignore[arg-type]
    source = Path(source)
    if not source.exists():
        raise DataError(source, f"input not found (give {FORMATS}, a folder of them or a labels CSV)")
    if not is_single_image(source) and (source.is_file() or (source / "labels.csv").exists()):
        cases = read_cases(source, check_files=False, id_column=id_column, need_labels=False)
        names = tuple(s.name for s in dataset_channel_specs(source)) if cases[0].channels else ()
        return [BatchInput(c.case, c.image, c.channels, names) for c in cases]
    if id_column is not None:
        raise DataError(source, f"the id column {id_column!r} names a column of a labels CSV, and this input is "
                                "no CSV (nor a folder holding labels.csv)")
    inputs = [BatchInput(image_stem(p), p) for p in images_in(source, "input folder")]
    names = [i.case for i in inputs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(source, f"several files share the case name(s) {', '.join(dupes)}")
    return inputs


def summary_csv(rows: list[dict]) -> str:
    """``summary.csv``'s text: the :data:`SUMMARY_FIELDS` of every row."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def read_summary(folder: str | Path) -> list[dict]:
    """The rows of ``folder/summary.csv`` (``[]`` without one)."""
    path = Path(folder) / SUMMARY
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def run_source(folder: str | Path) -> Path | None:
    """The input ``folder/run.json`` names (``None`` without a readable one)."""
    try:
        return Path(json.loads((Path(folder) / RUN_JSON).read_text())["source"])
    except (OSError, ValueError, KeyError):
        return None


def run_id_column(folder: str | Path) -> str | None:
    """The case column of the labels CSV ``folder/run.json`` names as its input (``None``: ``case``, or no
    readable ``run.json``)."""
    try:
        return json.loads((Path(folder) / RUN_JSON).read_text()).get("id_column")
    except (OSError, ValueError, AttributeError):
        return None
