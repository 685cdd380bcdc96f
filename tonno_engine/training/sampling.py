"""What one training step and one validation see: volumes, random slices, labels (docs/training.md).

Each step draws ``batch_volumes`` training volumes with replacement and ``slices_per_volume``
random slices from each (cut on the training device), and labels every slice with its volume's
label (one per finding: ``(N, K)``, ``nan`` where unknown, masked out of the loss). All random numbers
come from one CPU ``torch.Generator``, so runs are reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from ..base.defaults import FIELD_OF_VIEW, GEOMETRY
from ..base.events import Notice, Progress
from ..data.augment import Augmentation, augment_intensity, random_planes
from ..data.channels import case_notes, first_image, load_scan
from ..data.dataset import Case
from ..data.images import load_image
from ..data.preprocessing import Preprocessing
from ..data.spots import bright_spots
from ..evaluation.auc import auc_interval, roc_auc
from ..evaluation.intensity import IntensityBaseline, robust_extremes
from ..evaluation.verdict import VolumeScores, relative_spread
from ..tomography.frames import Frame, make_frame
from ..tomography.slicing import slice_stacks
from .config import TrainConfig


@dataclass
class LoadedCase:
    case: Case
    volume: torch.Tensor  # (D, H, W) float32, preprocessed; (I, D, H, W) for a case of several images
    frame: Frame  # where the volume sits in the sliced space
    spots: torch.Tensor | None = None  # (n, 3) float64 index coordinates t of all its bright spots, strongest first

    def bright_spots(self, count: int) -> torch.Tensor:
        """The volume's ``count`` brightest blob-like spots ``(n ≤ count, 3)`` in ``t``: all are found on first use
        and kept, strongest first, so any ``count`` is a prefix of them."""
        if self.spots is None:
            self.spots = torch.from_numpy(bright_spots(first_image(self.volume).cpu().numpy()))
        return self.spots[:count]


def load_cases(cases: list[Case], prep: Preprocessing, device: torch.device, *, geometry: str = GEOMETRY,
               field_of_view: str = FIELD_OF_VIEW) -> Iterator[Progress | Notice | LoadedCase]:
    """Read, check and preprocess every case before training starts (errors name the file; a notice for each image
    resampled onto its case's first image's grid)."""
    for i, case in enumerate(cases):
        vol, notes = load_scan(case.images)
        yield from case_notes(notes)
        array, spacing, _ = prep.apply(vol, physical=geometry == "physical")
        frame = make_frame(array.shape[-3:], geometry=geometry, spacing=spacing, field_of_view=field_of_view)
        yield LoadedCase(case, torch.from_numpy(array).to(device), frame)
        yield Progress("load", i + 1, len(cases), "volumes")


def sample_batch(vols: list[LoadedCase], cfg: TrainConfig, gen: torch.Generator, aug: Augmentation,
                 device: torch.device, scorer: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``B × M_train`` slices ``(N, C, h, w)`` (``C`` channels: :func:`slice_stacks` with ``cfg.context``) and their
    labels ``(N, K)`` (``nan``: unknown). With ``cfg.candidates`` and a ``scorer`` (the model), each volume's slices
    are the ``M_train`` of its ``candidates`` random slices that ``scorer`` scores highest (:func:`top_slices`)."""
    picks = torch.randint(len(vols), (cfg.batch_volumes,), generator=gen).tolist()
    size = (cfg.slice_size, cfg.slice_size)
    drawn = max(cfg.candidates, cfg.slices_per_volume) if scorer is not None else cfg.slices_per_volume
    slices, labels = [], []
    for idx in picks:
        offsets, n, u, v = random_planes(drawn, gen, aug)
        frame = vols[idx].frame
        if cfg.anchors:
            offsets = anchored_offsets(vols[idx], n, cfg.anchors, gen, offsets)
        cut = slice_stacks(vols[idx].volume, offsets, tuple(frame.for_slicing(w) for w in (n, u, v)), size, cfg.context)
        slices.append(cut if drawn == cfg.slices_per_volume else top_slices(cut, scorer, cfg))
        labels += [vols[idx].case.targets] * cfg.slices_per_volume
    x = torch.cat(slices)
    # one contrast, brightness and noise level per slice, the same over its channels: (N, C·h, w) for the call
    x = augment_intensity(x.flatten(1, 2), gen, aug).view_as(x)
    return x, torch.tensor(labels, dtype=torch.float32, device=device)


def anchored_offsets(lc: LoadedCase, n: torch.Tensor, count: int, gen: torch.Generator,
                     fallback: torch.Tensor) -> torch.Tensor:
    """Offsets ``(P,)`` that put each plane of normal ``n`` ``(P, 3)`` (``x`` space) through one of the volume's
    ``count`` bright spots, moved by up to a voxel along each axis; ``fallback`` (the random offsets) when the
    volume has no spot. The spots are drawn without replacement (a random order, repeated when ``P`` exceeds
    their number), so that a bag of ``P ≥ count`` planes cuts every spot, the lesion among them."""
    spots = lc.bright_spots(count)
    if not len(spots):
        return fallback
    voxel = 2.0 / (torch.tensor(lc.volume.shape[-3:], dtype=torch.float64) - 1.0).clamp_min(1.0)
    order = torch.randperm(len(spots), generator=gen).repeat(-(-len(n) // len(spots)))[: len(n)]
    points = spots[order]
    points = points + (torch.rand(len(n), 3, generator=gen, dtype=torch.float64) * 2 - 1) * voxel
    x = points * torch.tensor(lc.frame.scale, dtype=torch.float64)  # x = d ⊙ t
    return (x * n).sum(1)


@torch.no_grad()
def top_slices(slices: torch.Tensor, scorer: torch.nn.Module, cfg: TrainConfig) -> torch.Tensor:
    """The ``cfg.slices_per_volume`` of ``slices`` ``(P, C, h, w)`` with the largest logit (the largest over the
    findings), scored by ``scorer`` in evaluation mode (its batch-norm statistics are left alone), as
    ``(M_train, C, h, w)``; ``scorer`` is back in training mode after."""
    scorer.eval()
    scores = inference_logits(scorer, slices, cfg).amax(1)
    scorer.train()
    return slices[scores.topk(cfg.slices_per_volume).indices]


def inference_logits(model, slices: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """The logits ``(N, K)`` float32 of ``slices`` ``(N, C, h, w)`` as training feeds them (channels-last when
    ``cfg.channels_last``, bf16 autocast on CUDA when ``cfg.amp``); the caller sets the mode and ``no_grad``."""
    x = slices
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=cfg.amp and x.device.type == "cuda"):
        return model(x).float().reshape(len(x), -1)


def masked_bce(logits: torch.Tensor, y: torch.Tensor, pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """BCE over the known labels: ``logits`` and ``y`` ``(N, K)``, ``nan`` in ``y`` is unknown and left out
    (never read as 0); ``pos_weight`` ``(K,)`` weighs each finding's positives. The mean over known labels."""
    known = ~torch.isnan(y)
    if bool(known.all()):  # (every label known: the plain mean, as a one-label run always computed it)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight)
    if not bool(known.any()):
        return logits.sum() * 0.0  # nothing known in this batch: no gradient, but a graph for backward
    weight = None if pos_weight is None else pos_weight.expand_as(y)[known]
    return torch.nn.functional.binary_cross_entropy_with_logits(
        logits[known], y[known], pos_weight=weight)


def slice_loss(pos_weight: torch.Tensor | None = None):
    """Every slice carries its volume's labels: :func:`masked_bce` per slice."""
    return lambda logits, y: masked_bce(logits, y, pos_weight)


def mil_loss(slices_per_volume: int, pos_weight: torch.Tensor | None = None):
    """Multiple-instance BCE: logits ``(B·S, K)`` grouped by volume (``S`` consecutive slices each) are pooled
    per finding with ``logsumexp − log S`` (a smooth maximum; the mean when all are equal) against the
    volume's labels (:func:`masked_bce`)."""

    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if logits.ndim == 1:  # one finding given as (N,)
            logits, y = logits[:, None], y[:, None]
        per_volume = logits.view(-1, slices_per_volume, logits.shape[-1])
        pooled = torch.logsumexp(per_volume, dim=1) - math.log(slices_per_volume)
        return masked_bce(pooled, y.view(-1, slices_per_volume, y.shape[-1])[:, 0], pos_weight)

    return loss


def positive_weights(cases: list[Case], outputs: int) -> torch.Tensor:
    """Per finding, known negatives ÷ known positives among ``cases`` ``(K,)`` (1 where either is absent)."""
    targets = torch.tensor([c.targets for c in cases], dtype=torch.float32).reshape(-1, outputs)
    pos, neg = (targets == 1).sum(0).float(), (targets == 0).sum(0).float()
    return torch.where((pos > 0) & (neg > 0), neg / pos.clamp(min=1), torch.ones_like(pos))


def optimisation_step(model, x: torch.Tensor, y: torch.Tensor, loss_fn, optimizer, use_amp: bool) -> torch.Tensor:
    """One forward (bf16 autocast on CUDA when ``use_amp``), loss, backward and optimiser step on
    slices ``x`` ``(N, C, h, w)`` with labels ``y`` ``(N, K)``; returns the loss."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_amp):
        logits = model(x).float().reshape(len(x), -1)
    loss = loss_fn(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def validation_planes(count: int, cfg: TrainConfig):
    """Fixed validation planes for each of ``count`` validation volumes (seeded apart from training), no augmentation."""
    gen = torch.Generator().manual_seed(cfg.seed + 1_000_003)
    return [random_planes(cfg.val_slices, gen, Augmentation.off()) for _ in range(count)]


@dataclass(frozen=True)
class ValidationScores:
    """Loss (the training objective's), slice AUC and volume AUC (a volume scores its maximum slice logit) on
    the validation cases; the volume AUC's 95 % bootstrap interval (volumes resampled within each class), and
    the intensity baseline's volume AUC on the same volumes (:mod:`tonno_engine.evaluation.intensity`; NaN
    when not known). With several findings the AUCs are the means over findings (each on the volumes where
    it is known; the interval is then not computed) and ``finding_aucs`` holds each finding's volume AUC.
    ``val_positives``/``val_negatives``: the positive and negative volumes (the fewest over findings), and
    ``val_score_spread`` the volume scores' :func:`~tonno_engine.evaluation.verdict.relative_spread` (the smallest
    over findings), for the "has not learnt" verdict (:meth:`volume_scores`)."""

    val_loss: float
    val_slice_auc: float
    val_volume_auc: float
    val_volume_auc_lo: float = math.nan
    val_volume_auc_hi: float = math.nan
    val_intensity_auc: float = math.nan
    finding_aucs: tuple[float, ...] = ()
    val_positives: int = 0
    val_negatives: int = 0
    val_score_spread: float = math.nan

    def volume_scores(self, step: int = 0) -> VolumeScores:
        """What :func:`~tonno_engine.evaluation.verdict.learning_verdict` reads of this validation at ``step``."""
        return VolumeScores(self.val_volume_auc, (self.val_volume_auc_lo, self.val_volume_auc_hi), self.val_positives,
                            self.val_negatives, self.val_score_spread, step)

    def describe(self) -> str:
        """The volume AUC as a user reads it: ``0.88 [0.62, 1.00] (intensity baseline 1.00)``."""
        lo, hi = self.val_volume_auc_lo, self.val_volume_auc_hi
        interval = f" [{lo:.2f}, {hi:.2f}]" if math.isfinite(lo) else ""
        baseline = f" (intensity baseline {self.val_intensity_auc:.2f})" if math.isfinite(self.val_intensity_auc) else ""
        each = (f" (mean of {len(self.finding_aucs)} findings: {', '.join(f'{a:.2f}' for a in self.finding_aucs)})"
                if self.finding_aucs else "")
        return f"{self.val_volume_auc:.3f}{interval}{each}{baseline}"


@torch.no_grad()
def validation_logits(model, vols: Iterable[tuple[LoadedCase, tuple]], cfg: TrainConfig,
                      device) -> list[tuple[tuple, list]]:
    """``(labels (K,), slice logits (S, K) as lists)`` of each ``(volume, its planes)``; the model is back in
    training mode after."""
    model.eval()
    size = (cfg.slice_size, cfg.slice_size)
    out = []
    for lc, (offsets, n, u, v) in vols:
        slices = slice_stacks(lc.volume, offsets, tuple(lc.frame.for_slicing(w) for w in (n, u, v)), size, cfg.context)
        logits = inference_logits(model, slices, cfg)
        out.append((tuple(lc.case.targets), logits.cpu().tolist()))
    model.train()
    return out


def validation_scores(per_volume: list[tuple[tuple, list]], objective: str = "slice",
                      baseline: IntensityBaseline | None = None) -> ValidationScores:
    """Scores from every validation volume's ``(labels (K,), slice logits (S, K))`` (gathered from all ranks),
    beside the intensity ``baseline`` of the same volumes. The loss is the training objective's over the known
    labels: BCE per slice (``slice``), or per volume on its pooled logits (``mil``: a model that rightly
    scores a positive volume's lesion-free slices low is not penalised for them)."""
    # each (S, K), and (V, K); one finding may come as (label, [logit, ...])
    logits = [torch.tensor(v, dtype=torch.float32).reshape(len(v), -1) for _, v in per_volume]
    labels = torch.tensor([t if isinstance(t, tuple | list) else (t,) for t, _ in per_volume], dtype=torch.float32)
    if objective == "mil":
        pooled = torch.stack([torch.logsumexp(v, 0) - math.log(len(v)) for v in logits])
        loss = masked_bce(pooled, labels).item()
    else:
        every = torch.cat(logits)
        loss = masked_bce(every, torch.cat([t.expand(len(v), -1) for t, v in zip(labels, logits)])).item()
    volume_scores = torch.stack([v.max(0).values for v in logits])  # (V, K)
    slice_aucs, volume_aucs, intervals, counts, spreads = [], [], [], [], []
    for k in range(labels.shape[1]):
        known = [i for i in range(len(labels)) if not math.isnan(labels[i, k])]
        slice_labels = [int(labels[i, k]) for i in known for _ in logits[i]]
        slice_aucs.append(roc_auc(slice_labels, torch.cat([logits[i][:, k] for i in known]).numpy()) if known else math.nan)
        volume_labels, scores = [int(labels[i, k]) for i in known], [float(volume_scores[i, k]) for i in known]
        volume_aucs.append(roc_auc(volume_labels, scores))
        intervals.append(auc_interval(volume_labels, scores) if labels.shape[1] == 1 else (math.nan, math.nan))
        counts.append((sum(volume_labels), len(volume_labels) - sum(volume_labels)))
        spreads.append(relative_spread(scores))
    several = len(volume_aucs) > 1
    return ValidationScores(loss, _mean(slice_aucs), _mean(volume_aucs), *intervals[0],
                            baseline.auc if baseline is not None else math.nan,
                            tuple(volume_aucs) if several else (),
                            val_positives=min(p for p, _ in counts), val_negatives=min(n for _, n in counts),
                            val_score_spread=min(spreads, key=lambda v: math.inf if math.isnan(v) else v))


def _mean(values: list[float]) -> float:
    """The mean of the finite ``values`` (NaN when none is: a finding with one class only scores NaN)."""
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def validation_extremes(cases: Iterable[Case]) -> list[tuple[tuple, tuple[float, float]]]:
    """``(labels (K,), robust_extremes)`` of each case's image as stored, for the intensity baseline: a threshold
    on the scan's own intensities, not on the network's normalised input (whose background may sit inside
    the tissue's range)."""
    return [(c.targets, robust_extremes(load_image(c.image).array)) for c in cases]  # a case's first image


def validate(model, vols: list[LoadedCase], planes, cfg: TrainConfig, device) -> ValidationScores:
    """Score the fixed validation planes of every validation volume."""
    return validation_scores(validation_logits(model, zip(vols, planes), cfg, device), cfg.objective)
