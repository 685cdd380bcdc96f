"""What one training step and one validation see: volumes, random slices, labels (docs/training.md).

Each step draws ``batch_volumes`` training volumes with replacement and ``slices_per_volume``
random slices from each (cut on the training device), and labels every slice with its volume's
label. All random numbers come from one CPU ``torch.Generator``, so runs are reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from ..base.defaults import FIELD_OF_VIEW, GEOMETRY
from ..base.events import Progress
from ..data.augment import Augmentation, augment_intensity, random_planes
from ..data.dataset import Case
from ..data.images import load_image
from ..data.preprocessing import Preprocessing
from ..evaluation.auc import auc_interval, roc_auc
from ..evaluation.intensity import IntensityBaseline, robust_extremes
from ..tomography.frames import Frame, make_frame
from ..tomography.slicing import extract_slices
from .config import TrainConfig


@dataclass
class LoadedCase:
    case: Case
    volume: torch.Tensor  # (D, H, W) float32, preprocessed
    frame: Frame  # where the volume sits in the sliced space


def load_cases(cases: list[Case], prep: Preprocessing, device: torch.device, *, geometry: str = GEOMETRY,
               field_of_view: str = FIELD_OF_VIEW) -> Iterator[Progress | LoadedCase]:
    """Read, check and preprocess every case before training starts (errors name the file)."""
    for i, case in enumerate(cases):
        vol = load_image(case.image)
        array, spacing = prep.apply(vol, physical=geometry == "physical")
        frame = make_frame(array.shape, geometry=geometry, spacing=spacing, field_of_view=field_of_view)
        yield LoadedCase(case, torch.from_numpy(array).to(device), frame)
        yield Progress("load", i + 1, len(cases), "volumes")


def sample_batch(vols: list[LoadedCase], cfg: TrainConfig, gen: torch.Generator, aug: Augmentation,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``B × M_train`` slices ``(N, 1, h, w)`` and their labels ``(N,)``."""
    picks = torch.randint(len(vols), (cfg.batch_volumes,), generator=gen).tolist()
    size = (cfg.slice_size, cfg.slice_size)
    slices, labels = [], []
    for idx in picks:
        offsets, n, u, v = random_planes(cfg.slices_per_volume, gen, aug)
        frame = vols[idx].frame
        slices.append(extract_slices(vols[idx].volume, offsets, *(frame.for_slicing(w) for w in (n, u, v)), size))
        labels += [float(vols[idx].case.label)] * cfg.slices_per_volume
    x = augment_intensity(torch.cat(slices), gen, aug)[:, None]
    return x, torch.tensor(labels, device=device)


def mil_loss(slices_per_volume: int):
    """Multiple-instance BCE: logits ``(B·S,)`` grouped by volume (``S`` consecutive slices each) are pooled
    with ``logsumexp − log S`` (a smooth maximum; the mean when all are equal) against the volume label."""

    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        per_volume = logits.view(-1, slices_per_volume)
        pooled = torch.logsumexp(per_volume, dim=1) - math.log(slices_per_volume)
        return torch.nn.functional.binary_cross_entropy_with_logits(pooled, y.view(-1, slices_per_volume)[:, 0])

    return loss


def optimisation_step(model, x: torch.Tensor, y: torch.Tensor, loss_fn, optimizer, use_amp: bool) -> torch.Tensor:
    """One forward (bf16 autocast on CUDA when ``use_amp``), loss, backward and optimiser step on
    slices ``x`` ``(N, 1, h, w)`` with labels ``y`` ``(N,)``; returns the loss."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_amp):
        logits = model(x).float().reshape(-1)
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
    when not known)."""

    val_loss: float
    val_slice_auc: float
    val_volume_auc: float
    val_volume_auc_lo: float = math.nan
    val_volume_auc_hi: float = math.nan
    val_intensity_auc: float = math.nan

    def describe(self) -> str:
        """The volume AUC as a user reads it: ``0.88 [0.62, 1.00] (intensity baseline 1.00)``."""
        lo, hi = self.val_volume_auc_lo, self.val_volume_auc_hi
        interval = f" [{lo:.2f}, {hi:.2f}]" if math.isfinite(lo) else ""
        baseline = f" (intensity baseline {self.val_intensity_auc:.2f})" if math.isfinite(self.val_intensity_auc) else ""
        return f"{self.val_volume_auc:.3f}{interval}{baseline}"


@torch.no_grad()
def validation_logits(model, vols: Iterable[tuple[LoadedCase, tuple]], cfg: TrainConfig, device) -> list[tuple[int, list]]:
    """``(label, slice logits)`` of each ``(volume, its planes)``; the model is back in training mode after."""
    model.eval()
    size = (cfg.slice_size, cfg.slice_size)
    out = []
    for lc, (offsets, n, u, v) in vols:
        x = extract_slices(lc.volume, offsets, *(lc.frame.for_slicing(w) for w in (n, u, v)), size)[:, None]
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
            logits = model(x).float().reshape(-1)
        out.append((int(lc.case.label), logits.cpu().tolist()))
    model.train()
    return out


def validation_scores(per_volume: list[tuple[int, list]], objective: str = "slice",
                      baseline: IntensityBaseline | None = None) -> ValidationScores:
    """Scores from every validation volume's ``(label, slice logits)`` (gathered from all ranks), beside the
    intensity ``baseline`` of the same volumes. The loss is
    the training objective's: BCE per slice (``slice``), or per volume on its pooled logits (``mil``: a
    model that rightly scores a positive volume's lesion-free slices low is not penalised for them)."""
    logit = torch.tensor([x for _, logits in per_volume for x in logits])
    labels = [label for label, logits in per_volume for _ in logits]
    target = torch.tensor(labels, dtype=torch.float32)
    if objective == "mil":
        pooled = torch.stack([torch.logsumexp(torch.tensor(logits), 0) - math.log(len(logits)) for _, logits in per_volume])
        volume_target = torch.tensor([float(label) for label, _ in per_volume])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(pooled, volume_target).item()
    else:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, target).item()
    volume_labels, volume_scores = [label for label, _ in per_volume], [max(logits) for _, logits in per_volume]
    return ValidationScores(loss, roc_auc(labels, logit.numpy()), roc_auc(volume_labels, volume_scores),
                            *auc_interval(volume_labels, volume_scores),
                            baseline.auc if baseline is not None else math.nan)


def validation_extremes(cases: Iterable[Case]) -> list[tuple[int, tuple[float, float]]]:
    """``(label, robust_extremes)`` of each case's image as stored, for the intensity baseline: a threshold
    on the scan's own intensities, not on the network's normalised input (whose background may sit inside
    the tissue's range)."""
    return [(int(c.label), robust_extremes(load_image(c.image).array)) for c in cases]


def validate(model, vols: list[LoadedCase], planes, cfg: TrainConfig, device) -> ValidationScores:
    """Score the fixed validation planes of every validation volume."""
    return validation_scores(validation_logits(model, zip(vols, planes), cfg, device), cfg.objective)
