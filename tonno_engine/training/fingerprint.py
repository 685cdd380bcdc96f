"""``--recipe auto``: a training recipe chosen from the data set's fingerprint, as nnU-Net configures itself.

The fingerprint is measured on the training cases before any volume is loaded for training: voxel spacings,
sizes, how much of each box the foreground fills (:func:`~tonno_engine.data.foreground.foreground_mask`), the
foreground's extent in millimetres, and the intensity baseline (how well a volume's brightest voxel alone tells
the classes apart). The rules that turn it into settings, and the measurements behind each, are in
docs/training.md ("The auto recipe") and docs/studies/foreign.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from ..base.events import Note, Progress
from ..data.dataset import Case
from ..data.foreground import foreground_box, foreground_mask
from ..data.images import load_image
from ..evaluation.intensity import intensity_baseline, robust_extremes
from .config import TrainConfig

#: crop to the foreground's box when it fills less than this share of the box (median over cases)
CROP_BELOW = 0.5
#: the slice's pixel in millimetres: the coarsest voxel spacing, and at least this many finest spacings (medians
#: over the cases). Most planes through an anisotropic scan are oblique, and along them nothing is finer than the
#: coarsest axis; finer pixels cost time (quadratically) without detail. On the foreign brains (1.4 × 1.4 × 3.2 mm)
#: this gives 64² slices over the cropped brain, where training learnt (docs/studies/foreign.md)
FINEST_MULTIPLE = 2.0
#: the slice side chosen is rounded up to a multiple of this and kept within these bounds (pixels)
SLICE_STEP, SLICE_MIN, SLICE_MAX = 16, 64, 224


@dataclass(frozen=True)
class Fingerprint:
    """A data set as ``--recipe auto`` reads it; every value a median over the training cases.

    ``finest_mm``, ``coarsest_mm``: each case's finest and coarsest voxel spacing; ``foreground_share``: the share
    of the box the foreground fills; ``extent_mm``: the longest side of the foreground's box (mm);
    ``baseline``: the intensity baseline's volume AUC (NaN with one class)."""

    cases: int
    finest_mm: float
    coarsest_mm: float
    foreground_share: float
    extent_mm: float
    baseline: float


@dataclass(frozen=True)
class RecipeChosen(Note):
    """The event a ``--recipe auto`` run yields before it loads its volumes: ``message`` (the recipe's one line),
    the ``settings`` chosen and the ``fingerprint`` they were chosen from."""

    settings: dict
    fingerprint: Fingerprint


def fingerprint_iter(cases: list[Case]) -> Iterator[Progress]:
    """Read every case of ``cases`` once (yields ``Progress("fingerprint")``); returns its :class:`Fingerprint`."""
    finest, coarsest, share, extent, extremes = [], [], [], [], []
    for i, case in enumerate(cases):
        volume = load_image(case.image)
        spacing = np.asarray(volume.spacing, dtype=float)
        mask = foreground_mask(volume.array)
        box = foreground_box(mask, 0)
        finest.append(spacing.min())
        coarsest.append(spacing.max())
        share.append(mask.mean())
        extent.append(max((s.stop - s.start) * mm for s, mm in zip(box, spacing)))
        extremes.append(robust_extremes(volume.array, mask))  # the mask read once per case
        yield Progress("fingerprint", i + 1, len(cases), "volumes")
    labels = np.array([int(np.nanmax(np.nan_to_num(np.asarray(c.targets, float), nan=0.0)) > 0) for c in cases])
    baseline = intensity_baseline(labels, extremes).auc
    return Fingerprint(len(cases), *(float(np.median(v)) for v in (finest, coarsest, share, extent)), baseline)


def choose(fp: Fingerprint) -> tuple[dict, str]:
    """The settings ``--recipe auto`` takes for ``fp`` (TrainConfig field → value) and the one line that says why."""
    # the slice spans the foreground's box (cropped) or the whole box (its side estimated from the share)
    crop = fp.foreground_share < CROP_BELOW
    span = fp.extent_mm if crop else fp.extent_mm / max(fp.foreground_share, 1e-6) ** (1 / 3)
    pixel = max(fp.coarsest_mm, FINEST_MULTIPLE * fp.finest_mm)
    size = int(np.clip(SLICE_STEP * np.ceil(span / pixel / SLICE_STEP), SLICE_MIN, SLICE_MAX))
    settings = dict(crop=crop, slice_size=size, geometry="paper", intensity="robust")
    why = [f"{fp.cases} training cases",
           f"foreground {fp.foreground_share:.0%} of the box" + (" → cropped to it" if crop else ""),
           f"{span:.0f} mm across, voxels {fp.finest_mm:.2f}–{fp.coarsest_mm:.2f} mm → {size}² slices "
           f"({span / (size - 1):.2f} mm per pixel)",
           f"intensity baseline AUC {fp.baseline:.2f}"]
    return settings, "; ".join(why)


def resolve_auto(cfg: TrainConfig, cases: list[Case]) -> Iterator[Progress | RecipeChosen]:
    """``cfg`` with the ``auto`` recipe's choices for ``cases`` (the training cases) on top of every field the user
    did not set (``cfg.recipe_fixed``); yields ``Progress`` and one :class:`RecipeChosen`; returns the config. A
    config that is not ``auto``, or whose choice is made (a resumed run), is returned as it is."""
    if cfg.recipe != "auto" or cfg.recipe_reason:
        return cfg
    fp = yield from fingerprint_iter(cases)
    settings, reason = choose(fp)
    kept = [k for k in settings if k in cfg.recipe_fixed]
    if kept:
        reason += "; as given: " + ", ".join(f"{k}={getattr(cfg, k)}" for k in kept)
    settings = {k: v for k, v in settings.items() if k not in cfg.recipe_fixed}
    yield RecipeChosen(f"recipe auto: {reason}", settings, fp)
    return replace(cfg, **settings, recipe_reason=reason)
