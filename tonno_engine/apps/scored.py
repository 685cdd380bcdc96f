"""What ``tonno benchmark`` passes between its steps: the run's folders and cases (:class:`BenchmarkRun`) and one row
type for a scored method, heatmap method or stage 2 alike (:class:`ScoredMethod`, announced by a
:class:`MethodScored` event)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..base.events import Progress
from ..data.dataset import Case
from ..evaluation.evaluate import EvaluationResult
from ..evaluation.metrics import Threshold


@dataclass(frozen=True, kw_only=True)
class MethodScored(Progress):
    """One method evaluated on the test cases (its row of Table 2)."""

    title: str
    precision: float
    recall: float
    f1: float
    dice: float


@dataclass(frozen=True)
class BenchmarkRun:
    """One benchmark's data and folders (``out``, its ``heat_dir``), the checkpoint it scores, and its cases:
    ``labelled`` (every non-test case), ``val`` (the calibration cases among them) and ``test``. ``intensity``: the
    data's intensity mode (for a second stage's export; ``None`` without one)."""

    data: Path
    out: Path
    heat_dir: Path
    checkpoint: Path
    labelled: list[Case]
    val: list[Case]
    test: list[Case]
    intensity: str | None = None


@dataclass(frozen=True)
class ScoredMethod:
    """One row of Table 2: ``method`` (a ``MethodSpec``, or stage 2's row; it has a ``title``, ``label`` and
    ``finding``), its table ``row`` (method, label, threshold, validation F1 and the test summary), its
    ``evaluation`` on the test cases and their per-case arrays (``per_case``, for the bootstrap intervals)."""

    method: object
    row: dict
    evaluation: EvaluationResult
    per_case: dict

    @property
    def label(self) -> str:
        return self.method.label

    @property
    def threshold(self) -> Threshold:
        """The calibrated threshold (its ``thresholds.json`` entry is ``threshold.record()``)."""
        return Threshold("calibrated", self.row["threshold"], self.row.get("relative", 0.0))

    def event(self, done: int, total: int) -> MethodScored:
        s = self.evaluation.summary
        return MethodScored("evaluate", done, total, "methods", title=self.method.title, precision=s["precision"],
                            recall=s["recall"], f1=s["f1"], dice=s["dice"])
