"""Volume classification on the benchmark's test cases: the classifier's AUC beside the intensity baseline's.

A case scores the largest logit of the checkpoint's network over ``planes`` fixed random planes (as
validation scores a volume), cut from the volume as the checkpoint preprocesses it
(:func:`~tonno_engine.methods.case.prepare_case`); the baseline scores its largest (and smallest)
robust intensity (:mod:`tonno_engine.evaluation.intensity`). When the baseline is the better one, a
threshold on intensity knows more about these volumes than the network.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch

from ..base.events import Progress
from ..data.augment import Augmentation, random_planes
from ..data.channels import first_image, load_scan
from ..data.dataset import Case
from ..evaluation.auc import auc_interval, roc_auc
from ..evaluation.bootstrap import MIN_CASES
from ..evaluation.intensity import IntensityBaseline, intensity_baseline, robust_extremes
from ..methods.case import Scan, prepare_case
from ..methods.settings import ReconstructionSettings
from ..models.checkpoint import LoadedCheckpoint
from ..tomography.frames import make_frame
from ..tomography.slicing import slice_stacks

#: planes per case for its volume score (the training's default number of validation planes)
PLANES = 64


@dataclass(frozen=True)
class Classification:
    """The classifier's volume AUC on the cases with its 95 % interval, and the intensity baseline's."""

    cases: int
    auc: float
    interval: tuple[float, float]
    baseline: IntensityBaseline
    finding: str = ""  # with several findings: the one classified (on the cases where it is known)
    positive: int | None = None  # how many of the cases have it (None: not known)

    @property
    def below_baseline(self) -> bool:
        return self.baseline.beats(self.auc)

    def as_dict(self) -> dict:
        return {**({"finding": self.finding} if self.finding else {}), "cases": self.cases, "auc": self.auc,
                "interval": list(self.interval),
                "intensity_baseline": asdict(self.baseline), "below_intensity_baseline": self.below_baseline}

    def markdown(self) -> str:
        of = f" of {self.finding}" if self.finding else ""
        line = (f"Volume classification{of} on the {self.cases} test cases (largest logit over {PLANES} planes): "
                f"{self._auc_text()}; intensity baseline {self.baseline.describe()}.")
        if self.below_baseline:
            line += " The classifier is below the baseline: a threshold on intensity separates these volumes better."
        return line + "\n"

    def _auc_text(self) -> str:
        """The AUC with its interval, or why there is none (never ``nan``)."""
        what = self.finding or "lesions"
        here = "" if self.positive is None else f"; here {self.positive} with and {self.cases - self.positive} without"
        if math.isnan(self.auc):
            return f"AUC not defined (it needs test cases with and without {what}{here})"
        lo, hi = self.interval
        if math.isnan(lo) or math.isnan(hi):
            return (f"AUC {self.auc:.2f} (interval not computed: it needs at least {MIN_CASES} test cases with and "
                    f"{MIN_CASES} without {what}{here})")
        return f"AUC {self.auc:.2f} [{lo:.2f}, {hi:.2f}]"


@torch.no_grad()
def volume_score(case: Case, loaded: LoadedCheckpoint, settings: ReconstructionSettings, *, planes: int = PLANES,
                 seed: int = 0) -> tuple[tuple[float, ...], tuple[float, float]]:
    """``(largest logit of each finding over the planes of the case as the checkpoint sees it, robust_extremes of
    its image)``."""
    volume = load_scan(case.images)[0]
    prepared = prepare_case(Scan.of(volume), loaded, settings)
    used = prepared.settings
    frame = make_frame(prepared.volume.shape[-3:], geometry=used.geometry, spacing=prepared.spacing,
                       field_of_view=used.field_of_view)
    offsets, n, u, v = random_planes(planes, torch.Generator().manual_seed(seed), Augmentation.off())
    tensor = torch.from_numpy(prepared.volume).to(loaded.device)
    slices = slice_stacks(tensor, offsets, tuple(frame.for_slicing(w) for w in (n, u, v)), (used.slice_size,) * 2,
                          loaded.description.context)
    logits = loaded.model(slices).float().reshape(len(slices), -1)
    return tuple(logits.max(0).values.tolist()), robust_extremes(first_image(volume.array))


def classify_findings_iter(cases: list[Case], loaded: LoadedCheckpoint, settings: ReconstructionSettings, *,
                           seed: int = 0) -> Iterator[Progress]:
    """Score every case once (yields ``Progress("classify")``); returns one :class:`Classification` per
    finding of the checkpoint (one for a one-logit checkpoint), each on the cases where the finding is known."""
    scores, extremes = [], []
    for i, case in enumerate(cases):
        score, extreme = volume_score(case, loaded, settings, seed=seed + i)
        scores.append(score)
        extremes.append(extreme)
        yield Progress("classify", i + 1, len(cases), "cases")
    findings = loaded.description.findings or ("",)
    out = []
    for k, finding in enumerate(findings):
        known = [i for i, c in enumerate(cases) if not math.isnan(c.targets[k])]  # (a one-label case: always)
        labels = [int(cases[i].targets[k]) for i in known]
        mine, theirs = [scores[i][k] for i in known], [extremes[i] for i in known]
        out.append(Classification(len(labels), roc_auc(labels, mine), auc_interval(labels, mine, seed=seed),
                                  intensity_baseline(labels, theirs, seed=seed), finding, sum(labels)))
    return out


def classify_iter(cases: list[Case], loaded: LoadedCheckpoint, settings: ReconstructionSettings, *,
                  seed: int = 0) -> Iterator[Progress]:
    """:func:`classify_findings_iter` of a one-logit checkpoint: returns its :class:`Classification`."""
    return (yield from classify_findings_iter(cases, loaded, settings, seed=seed))[0]
