"""Training arguments and their defaults, defined once (torch-free: the CLI reads its defaults here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from ..base.defaults import CONTRASTIVE, DEVICE, FIELD_OF_VIEW, GEOMETRY, SLICE_SIZE


@dataclass
class TrainConfig:
    """Training arguments; stored in every checkpoint and in ``run.json``.

    ``intensity``: the intensity mode (``ct``, ``mr``, ``pet``, ``robust``, ``none``; ``None``: the data set's
    ``dataset.json``; for cases of several images one mode per image, ``pet,ct``, or one for the images whose
    mode ``dataset.json`` does not give), ``channels``
    the images' names; ``spacing``: resample to isotropic voxels of this many mm (``None``: keep).
    ``geometry`` (``paper`` or ``physical``) and ``field_of_view`` (``full`` or ``ball``): where
    each volume sits in the sliced space (:mod:`tonno_engine.tomography.frames`); reconstruction
    uses the same, as the checkpoint records it.
    """

    model: str = "resnet10t"
    norm: str = "frozen_bn"
    weights: str | None = None
    slice_size: int = SLICE_SIZE
    steps: int = 2000
    batch_volumes: int = 8
    slices_per_volume: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int | None = None
    val_fraction: float = 0.2
    val_every: int = 50
    val_slices: int = 32
    checkpoint_every: int = 25
    seed: int = 0
    device: str = DEVICE
    amp: bool = True
    intensity: str | None = None
    #: the names of a case's images (``image_0000``, … columns), in order; empty: ``dataset.json``'s, or the columns'
    channels: tuple[str, ...] = ()
    spacing: float | None = None
    #: cut every scan to its foreground's box before slicing (training and reconstruction alike, as the checkpoint
    #: records it): no plane cuts only the air or noise around the body (docs/studies/foreign.md)
    crop: bool = False
    augment: bool = True
    channels_last: bool = True
    geometry: str = GEOMETRY
    field_of_view: str = FIELD_OF_VIEW
    #: ``slice``: every slice carries its volume's label (the paper); ``mil``: multiple-instance, one
    #: loss per volume on the log-sum-exp pool of its slices' logits (a lesion may be in few slices)
    objective: str = "slice"
    #: streaming (docs/distributed.md): ``cache_gb`` set → volumes are streamed through a pool on the device
    #: (``pool_volumes``, default from the budget) read ahead by ``loader_workers`` processes into at most
    #: ``cache_gb`` of host memory; unset → every volume is loaded before training (fastest when they fit).
    #: ``disk_cache``: a folder for preprocessed float16 copies, so later epochs skip decoding.
    cache_gb: float | None = None
    pool_volumes: int | None = None
    loader_workers: int = 2
    disk_cache: str | None = None
    #: the decay per step of an exponential moving average of the weights (``torch.optim.swa_utils``;
    #: 0: off). When on, validation scores the average and every checkpoint holds it: the weights of a
    #: checkpoint then change slowly, so the best one is not whichever step the noise favoured
    ema: float = 0.0
    #: ``contrastive`` (``tonno pretrain``): the NT-Xent temperature, and how far a view's neighbour plane
    #: tilts (degrees) and moves (``[-1, 1]`` units) from it (:mod:`tonno_engine.training.contrastive`)
    temperature: float = 0.2
    view_tilt: float = 10.0
    view_shift: float = 0.03
    #: also keep the weights of every validated step (``checkpoints/step_NNNNNN.pt``, without training state)
    keep_checkpoints: bool = False
    #: several findings (docs/findings.md): the data set's finding columns, one logit each (``None``: the
    #: ``label`` column, one logit); ``id_column``: the case column when it is not ``case``
    findings: list[str] | None = None
    id_column: str | None = None
    #: weigh each finding's positive slices by its negatives ÷ positives among the training volumes
    #: (BCE ``pos_weight``), for findings much rarer than their absence
    pos_weight: bool = False
    #: top-k multiple-instance sampling (Campanella et al., Nat. Med. 2019): cut this many random slices of each
    #: drawn volume, score them without gradients, and train on its ``slices_per_volume`` highest-scoring ones
    #: (0: off, every random slice trains). Meant to find the few slices that cut a small lesion; it needs the
    #: network to rank them first before it has learnt them (on ``hard`` it did not: docs/studies/look-alikes.md)
    candidates: int = 0
    #: anchored planes: every training plane passes through one of its volume's ``anchors`` brightest blob-like
    #: spots (:func:`tonno_engine.data.spots.bright_spots`, found when the volume is first drawn; drawn without
    #: replacement, random normal, the point moved by up to a voxel). A positive volume's bag of slices then cuts
    #: its lesion, a negative one's the look-alikes (0: off, uniform random planes). For findings brighter than
    #: their surroundings; validation and reconstruction keep uniform planes
    anchors: int = 0
    #: 2.5D input: the network also sees the parallel planes this many slice pixels below and above each plane
    #: (three channels; 0: the plane alone). A small blob fades off its plane where a vessel crossing it does
    #: not. Stored in the checkpoint; every slice that reconstruction, CAMs and classification cut for it
    #: carries the same neighbours (:func:`tonno_engine.tomography.slicing.slice_stacks`)
    context: float = 0.0
    #: the recipe the run started from (:data:`RECIPES`); ``auto``: chosen from the data set's fingerprint when the
    #: run starts (:mod:`tonno_engine.training.fingerprint`), ``recipe_reason`` then says why, in one line, and
    #: ``recipe_fixed`` names the fields the user set, which the choice leaves alone
    recipe: str = "paper"
    recipe_reason: str = ""
    recipe_fixed: tuple[str, ...] = ()

    def __post_init__(self):
        if (problem := contrastive_batch_problem(self)) is not None:
            raise ValueError(problem)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        if "preset" in d and "intensity" not in d:  # checkpoints written before 0.2
            d = {**d, "intensity": d["preset"]}
        if "channels" in d:  # a list in run.json
            d = {**d, "channels": tuple(d["channels"])}
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def finding_names(self) -> tuple[str, ...]:
        """The findings' names (empty: one logit for the ``label`` column)."""
        return tuple(self.findings or ())

    @property
    def outputs(self) -> int:
        return max(1, len(self.finding_names))


OBJECTIVES = ("slice", "mil")


def contrastive_batch_problem(cfg: TrainConfig) -> str | None:
    """Why ``cfg`` cannot pretrain (``None``: it can). The contrastive loss (NT-Xent) of a step's
    ``N = batch_volumes × slices_per_volume`` planes, two views each, scores each view against the other ``2N - 1``:
    its partner and ``2N - 2`` negatives. With ``N = 1`` there are no negatives, the loss is 0 at every step and
    nothing is learnt."""
    if cfg.objective != CONTRASTIVE or cfg.batch_volumes * cfg.slices_per_volume >= 2:
        return None
    return (f"the contrastive loss needs at least 2 planes per step to have negatives (each plane's views are told "
            f"apart from the other planes'): batch_volumes × slices_per_volume must be at least 2, got "
            f"{cfg.batch_volumes} × {cfg.slices_per_volume}")


#: ``--recipe``: training defaults by purpose (options given explicitly override them; docs/training.md).
#: ``paper``: the paper's (frozen BN, 224² slices, every slice labelled, the data set's intensity mode),
#: meant for GPUs and pretrained weights. ``small-lesions``: learns lesions of a few voxels from scratch on a
#: CPU budget (bench/RESULTS.md): batch norm, 64² slices, 4 volumes × 16 slices, the multiple-instance
#: objective, and the ``robust`` intensity mode, which keeps lesions brighter than the percentile clip of
#: ``mr`` would (it flattens a few hundred bright voxels to white matter's level).
RECIPES: dict[str, dict] = {
    "paper": {},
    "small-lesions": dict(norm="bn", slice_size=64, steps=800, batch_volumes=4, slices_per_volume=16,
                          intensity="robust", objective="mil", val_slices=64),
    "look-alikes": dict(norm="bn", slice_size=64, steps=1000, batch_volumes=12, slices_per_volume=12,
                        intensity="robust", objective="mil", val_slices=64, anchors=12, ema=0.99),
}
#: ``auto``: ``look-alikes``, with crop, slice size, geometry and intensity chosen when the run starts
RECIPES["auto"] = dict(RECIPES["look-alikes"])

#: what each recipe is for, one clause each (the --recipe help of `train` and `benchmark` is built from it)
RECIPE_PURPOSES: dict[str, str] = {
    "paper": "the paper's: frozen BN, 224² slices; for GPUs and pretrained weights",
    "small-lesions": "learns lesions of a few voxels from scratch on a CPU",
    "look-alikes": "small lesions among brighter look-alikes: every plane through a bright spot, EMA weights",
    "auto": "look-alikes with crop and slice size chosen from the data set (says why); recommended",
}


#: ``tonno pretrain``'s defaults: the encoder of ``small-lesions`` (batch norm, 64² slices, ``robust``
#: intensities), SimCLR on view pairs of every volume, no validation split (labels are not read)
PRETRAINING = dict(norm="bn", slice_size=64, steps=400, batch_volumes=8, slices_per_volume=16, intensity="robust",
                   objective=CONTRASTIVE, val_fraction=0.0)


def _on_top(base: dict, given: Mapping[str, Any] | None) -> TrainConfig:
    """A :class:`TrainConfig` of ``base`` with every value of ``given`` that is not ``None`` on top
    (``TypeError`` for a name that is no field)."""
    return TrainConfig(**{**base, **{k: v for k, v in (given or {}).items() if v is not None}})


def pretrain_config(given: Mapping[str, Any] | None = None) -> TrainConfig:
    """``tonno pretrain``'s :class:`TrainConfig`: :data:`PRETRAINING` with every value of ``given`` (field name →
    value, as a command's options give them) that is not ``None`` on top."""
    return _on_top(PRETRAINING, given)


def recipe_config(recipe: str = "paper", given: Mapping[str, Any] | None = None) -> TrainConfig:
    """The :class:`TrainConfig` of ``recipe`` (:data:`RECIPES`) with every value of ``given`` (field name →
    value, as a command's options give them) that is not ``None`` on top. ``ValueError`` for an unknown recipe."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; valid: {', '.join(RECIPES)}")
    fixed = tuple(sorted(k for k, v in (given or {}).items() if v is not None)) if recipe == "auto" else ()
    return _on_top({**RECIPES[recipe], "recipe": recipe, "recipe_fixed": fixed}, given)

#: the defaults, for help texts and for widgets
DEFAULTS = TrainConfig()
