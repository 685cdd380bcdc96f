"""Training arguments and their defaults, defined once (torch-free: the CLI reads its defaults here)."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class TrainConfig:
    """Training arguments; stored in every checkpoint and in ``run.json``.

    ``intensity``: the intensity mode (``ct``, ``mr``, ``pet``, ``none``; ``None``: the data set's
    ``dataset.json``); ``spacing``: resample to isotropic voxels of this many mm (``None``: keep).
    ``geometry`` (``paper`` or ``physical``) and ``field_of_view`` (``full`` or ``ball``): where
    each volume sits in the sliced space (:mod:`tonno_engine.tomography.frames`); reconstruction
    uses the same, as the checkpoint records it.
    """

    model: str = "resnet10t"
    norm: str = "frozen_bn"
    weights: str | None = None
    slice_size: int = 224
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
    device: str = "auto"
    amp: bool = True
    intensity: str | None = None
    spacing: float | None = None
    augment: bool = True
    channels_last: bool = True
    geometry: str = "paper"
    field_of_view: str = "full"
    #: ``slice``: every slice carries its volume's label (the paper); ``mil``: multiple-instance, one
    #: loss per volume on the log-sum-exp pool of its slices' logits (a lesion may be in few slices)
    objective: str = "slice"

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        if "preset" in d and "intensity" not in d:  # checkpoints written before 0.2
            d = {**d, "intensity": d["preset"]}
        return cls(**{k: v for k, v in d.items() if k in names})


OBJECTIVES = ("slice", "mil")

#: the defaults, for help texts and for widgets
DEFAULTS = TrainConfig()
