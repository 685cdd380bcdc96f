"""Whether a classifier has learnt anything its validation can show: the "has not learnt" verdict.

A training ends with one :class:`Verdict` (docs/training.md, "When a training has not learnt"). It reads the
validation volume scores at the chosen step and at the end (:class:`VolumeScores`) beside the intensity
baseline, and names every reason that applies, each with what to try:

- ``below-baseline``: the chosen step's volume AUC is below the intensity baseline's;
- ``chance``: the volume AUC's 95 % interval reaches down to 0.5 (at the chosen step or at the end);
- ``constant-output``: the volume scores are all (nearly) the same: the output stopped depending on the input;
- ``too-few-cases``: too few validation volumes of a class for their AUC to mean anything.

The thresholds are defined once, here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .auc import auc_interval, roc_auc
from .intensity import IntensityBaseline

#: Fewer validation volumes than this of either class and the AUC says little. With ``P`` positives and ``N``
#: negatives it moves in steps of ``1/(P·N)``; classes that happen not to overlap (probability ``1/C(P+N, P)``
#: under random labels: 1/6 with 2 + 2, as a 16-volume data set's 20 % split gives) score 1.0, and the percentile
#: bootstrap, which resamples the same volumes, then collapses to [1.00, 1.00] (every resample separates too):
#: the interval cannot warn. With 10 of each, chance separation has probability 1/184 756 and the interval of an
#: AUC near 0.5 is about ±0.25 wide, so one that excludes 0.5 means something.
MIN_CASES_PER_CLASS = 10

#: The volume scores count as constant (the network's output no longer depends on its input) when their spread
#: ``max − min`` is below this fraction of their magnitude ``max(1, largest |score|)``. 1 % is above bf16's
#: rounding step (2⁻⁸ ≈ 0.4 %: CUDA validation runs under bf16 autocast, which can round a constant output to
#: neighbouring values), and a classifier whose volume logits differ by 1 % (at most 0.0025 in probability near a
#: logit of 0) separates nothing one should trust. All scores exactly tied (the AUC exactly 0.500) is the extreme.
CONSTANT_SPREAD = 1e-2

#: The AUC of a classifier that knows nothing; an interval whose lower end is not above it cannot tell the
#: classifier from chance (an interval entirely below it means the ranks are inverted: not learnt either).
CHANCE = 0.5

#: What to try, per reason (the CLI, the Train widget, run.json and docs/training.md show these words).
ADVICE = {
    "below-baseline": "a threshold on intensity already separates these volumes: try --recipe look-alikes (planes "
                      "through the bright spots, so the network learns what tells lesions from other bright "
                      "structures), more --steps, or report the baseline instead of the classifier",
    "chance": "more --steps, --recipe look-alikes or small-lesions, --geometry physical for anisotropic scans "
              "(voxels longer along one axis), starting weights from `tonno pretrain` (then --weights), and more "
              "labelled volumes so that validation can tell a real gain from luck",
    "constant-output": "a lower --lr, --ema 0.99 (averaged weights), --norm gn, starting weights from `tonno "
                       "pretrain`; with --geometry physical check that the slices still show the scan (a "
                       "--slice-size that covers the lesions in a few pixels)",
    "too-few-cases": f"label more volumes (validation takes 20 % of them; at least {MIN_CASES_PER_CLASS} of each "
                     "class there), or judge the classifier on held-out cases with `tonno benchmark`",
}


@dataclass(frozen=True)
class VolumeScores:
    """What the verdict reads of one validation: the volume AUC, its 95 % interval (NaN: not computed), the
    number of positive and negative volumes, and the spread of the volume scores relative to their magnitude
    (:data:`CONSTANT_SPREAD`); ``step``: the training step it was taken at (0: not known)."""

    auc: float
    interval: tuple[float, float] = (math.nan, math.nan)
    positives: int = 0
    negatives: int = 0
    spread: float = math.nan
    step: int = 0

    @classmethod
    def of(cls, labels, scores, *, step: int = 0, seed: int = 0) -> VolumeScores:
        """The scores of volumes with ``labels`` ``(n,)`` (0/1) and scores ``(n,)`` (their largest logit)."""
        labels = np.asarray(labels).astype(bool)
        scores = np.asarray(scores, dtype=np.float64)
        return cls(roc_auc(labels, scores), auc_interval(labels, scores, seed=seed), int(labels.sum()),
                   int((~labels).sum()), relative_spread(scores), step)

    def describe(self) -> str:
        lo, hi = self.interval
        interval = f" [{lo:.2f}, {hi:.2f}]" if math.isfinite(lo) else ""
        return f"{self.auc:.3f}{interval}"


def relative_spread(scores) -> float:
    """``(max − min) / max(1, largest |score|)`` of ``scores`` (NaN when there are none or any is not finite)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0 or not np.isfinite(scores).all():
        return math.nan
    return float((scores.max() - scores.min()) / max(1.0, float(np.abs(scores).max())))


@dataclass(frozen=True)
class Reason:
    """One reason why a training has not learnt: ``code`` (a key of :data:`ADVICE`), what was seen, what to try."""

    code: str
    seen: str
    advice: str

    def line(self) -> str:
        return f"{self.seen}; try: {self.advice}"


@dataclass(frozen=True)
class Verdict:
    """The reasons that apply (none: nothing says it has not learnt)."""

    reasons: tuple[Reason, ...] = ()

    @property
    def learnt(self) -> bool:
        """Whether no reason applies (the validation shows nothing against it; not a proof that it learnt)."""
        return not self.reasons

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.reasons)

    def message(self) -> str:
        """The warning as a user reads it: one sentence, then each reason with what to try on a line of its own."""
        lead = ("the classifier's validation is too small to show that it has learnt what the labels say"
                if self.codes == ("too-few-cases",) else
                "the classifier has not learnt what the labels say, as far as its validation can show")
        return (lead + " (docs/training.md, 'When a training has not learnt'):"
                + "".join(f"\n  ({i}) {r.line()}" for i, r in enumerate(self.reasons, 1)))

    def as_dict(self) -> dict:
        return {"learnt": self.learnt, "reasons": [asdict(r) for r in self.reasons]}


def learning_verdict(chosen: VolumeScores | None, end: VolumeScores | None = None,
                     baseline: IntensityBaseline | None = None) -> Verdict:
    """The verdict on a training from its validation at the ``chosen`` step and at the ``end`` (either may be
    ``None``: not validated; the same step twice counts once), beside the intensity ``baseline`` of the same
    volumes."""
    moments = [m for m in (chosen, end) if m is not None]
    if end is not None and chosen is not None and end.step == chosen.step and end.step:
        moments = [chosen]
    reasons = []
    if moments:
        counted = moments[-1]
        if min(counted.positives, counted.negatives) < MIN_CASES_PER_CLASS:
            reasons.append(Reason("too-few-cases",
                                  f"validation holds {counted.positives} positive and {counted.negatives} negative "
                                  f"volume(s), fewer than {MIN_CASES_PER_CLASS} of a class: their AUC moves in big "
                                  "steps and classes that do not overlap by chance give [1.00, 1.00]",
                                  ADVICE["too-few-cases"]))
    if chosen is not None and baseline is not None and baseline.beats(chosen.auc):
        reasons.append(Reason("below-baseline",
                              f"the chosen checkpoint's validation volume AUC ({chosen.auc:.2f}) is below the "
                              f"intensity baseline's, {baseline.describe()}: a threshold on intensity separates "
                              "these volumes better than the classifier", ADVICE["below-baseline"]))
    at_chance = [m for m in moments if _at_chance(m)]
    if at_chance:
        reasons.append(Reason("chance", "the validation volume AUC cannot be told from chance: "
                              + ", ".join(f"{_when(m, chosen)} {m.describe()}" for m in at_chance)
                              + " (the interval reaches 0.5)", ADVICE["chance"]))
    constant = [m for m in moments if m.spread < CONSTANT_SPREAD]
    if constant:
        reasons.append(Reason("constant-output", "the network's output no longer depends on its input: "
                              + ", ".join(f"{_when(m, chosen)} the validation volumes' scores differ by "
                                          f"{m.spread:.1e} of their size" for m in constant)
                              + f" (below {CONSTANT_SPREAD:g})", ADVICE["constant-output"]))
    return Verdict(tuple(reasons))


def _at_chance(m: VolumeScores) -> bool:
    """The interval's lower end is not above chance (without an interval: the AUC itself)."""
    lo = m.interval[0]
    return lo <= CHANCE if math.isfinite(lo) else (math.isfinite(m.auc) and m.auc <= CHANCE)


def _when(m: VolumeScores, chosen: VolumeScores | None) -> str:
    what = "at the chosen step" if m is chosen else "at the end"
    return f"{what} (step {m.step})" if m.step else what
