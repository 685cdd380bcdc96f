"""Read a ``tonno reconstruct`` or ``tonno benchmark`` output folder back, case by case.

A reconstruct folder holds ``summary.csv`` (one row per case and method) and ``run.json`` (whose
``source`` names the input: an image, a folder or a labels CSV); a benchmark folder holds such a
folder as ``heatmaps/`` beside ``thresholds.json``. ``metrics.csv`` written by ``tonno evaluate`` into
the folder adds each case's scores; stage-2 predictions in the folder (``{case}_stage2.nii.gz``) count as a
method ``stage2``. The napari Results browser lists :attr:`ResultsFolder.cases`. The folder's layout is
:mod:`tonno_engine.data.heatmap_folder`'s.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from ..base.errors import DataError
from ..data.dataset import read_cases
from ..data.heatmap_folder import (
    STAGE2,
    SUMMARY,
    batch_inputs,
    prediction_path,
    read_summary,
    run_id_column,
    run_source,
)


@dataclass
class ResultCase:
    """One case: its input image, ground truth (if the input was a data set with masks), each method's
    heatmap file by method label, status (``ok`` when every method is), seconds summed over methods,
    and ``metrics`` (method label → that row of ``metrics.csv``)."""

    case: str
    image: Path | None
    mask: Path | None
    heatmaps: dict[str, Path]
    status: str
    seconds: float
    errors: list[str] = field(default_factory=list)
    metrics: dict[str, dict] = field(default_factory=dict)


@dataclass
class ResultsFolder:
    folder: Path  # the folder holding summary.csv
    cases: list[ResultCase]
    methods: list[str]
    thresholds: Path | None  # a benchmark's thresholds.json
    #: method label -> the finding its heatmaps are of (``""``: a one-logit classifier's)
    method_findings: dict[str, str] = field(default_factory=dict)

    @property
    def findings(self) -> list[str]:
        """The findings of the folder's heatmaps, in order (empty for a one-logit classifier's)."""
        return list(dict.fromkeys(f for f in self.method_findings.values() if f))

    def methods_of(self, finding: str | None) -> list[str]:
        """The methods (labels) of one finding, or all of them for ``None``."""
        return [m for m in self.methods if finding is None or self.method_findings.get(m, "") == finding]

    @classmethod
    def open(cls, path: str | Path) -> ResultsFolder:
        """Read ``path`` (a reconstruct or benchmark output folder); :class:`DataError` naming it if it is neither."""
        path = Path(path)
        folder = path / "heatmaps" if (path / "heatmaps" / SUMMARY).exists() else path
        if not (folder / SUMMARY).exists():
            raise DataError(path, "not a tonno reconstruct or benchmark output folder (no summary.csv)")
        rows = read_summary(folder)
        inputs, masks = _inputs(folder)
        metrics = _metrics(folder)
        cases: dict[str, ResultCase] = {}
        methods: list[str] = []
        findings: dict[str, str] = {}
        for row in rows:
            name, method = row["case"], row["method"]
            methods += [method] if method not in methods else []
            findings[method] = row.get("finding") or ""
            case = cases.setdefault(name, ResultCase(name, inputs.get(name), masks.get(name), {}, "ok", 0.0))
            if row["status"] in ("ok", "skipped"):
                case.heatmaps[method] = folder / row["output"]
            else:
                case.status = row["status"]
                case.errors.append(f"{method}: {row.get('error', '')}")
            case.seconds += float(row["seconds"] or 0)
            if row["output"] in metrics:
                case.metrics[method] = metrics[row["output"]]
        _add_predictions(folder, cases, methods, metrics)
        thresholds = next((p for p in (path / "thresholds.json", folder.parent / "thresholds.json") if p.exists()), None)
        return cls(folder, list(cases.values()), methods, thresholds, findings)


def _add_predictions(folder: Path, cases: dict[str, ResultCase], methods: list[str], metrics: dict) -> None:
    """Stage-2 predictions (``{case}_stage2.nii.gz``, :mod:`~tonno_engine.apps.stage2`) beside the heatmaps."""
    for case in cases.values():
        path = prediction_path(folder, case.case)
        if path.exists():
            case.heatmaps[STAGE2] = path
            if path.name in metrics:
                case.metrics[STAGE2] = metrics[path.name]
            if STAGE2 not in methods:
                methods.append(STAGE2)


def _inputs(folder: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """Each case's image and mask, from the source ``run.json`` names (empty if it is gone)."""
    source, id_column = run_source(folder), run_id_column(folder)
    if source is None:
        return {}, {}
    try:
        images = {i.case: i.image for i in batch_inputs(source, id_column)}
    except DataError:
        return {}, {}
    masks: dict[str, Path] = {}
    if source.is_file() and source.suffix.lower() == ".csv" or (source / "labels.csv").exists():
        masks = {c.case: c.mask for c in read_cases(source, check_files=False, id_column=id_column, need_labels=False)
                 if c.mask is not None}
    return images, masks


def _metrics(folder: Path) -> dict[str, dict]:
    """``metrics.csv`` rows by heatmap file name (``{}`` without one)."""
    path = folder / "metrics.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as fh:
        return {r["heatmap"]: r for r in csv.DictReader(fh) if r.get("heatmap")}
