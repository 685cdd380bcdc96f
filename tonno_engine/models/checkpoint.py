"""Checkpoints that carry everything needed to use the weights.

A checkpoint is a ``torch.save`` dict: ``format``, ``state_dict``, ``meta`` (the
:class:`CheckpointDescription` as a dict) and ``train_state`` (optimiser, scheduler, RNG states) for
resuming. Written atomically. :func:`read_description` validates ``meta`` on load, naming the file and
the field; checkpoints written by earlier versions of tonno (description version 1: no version key,
fields added later missing) load with the defaults those versions used.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch

from ..base.atomic import write_bytes_atomic
from ..base.defaults import CONTRASTIVE, DEVICE, FIELD_OF_VIEW, GEOMETRY, SLICE_SIZE
from ..base.devices import resolve_device
from ..base.errors import DataError
from ..base.hashing import file_sha256
from ..tomography.frames import FIELDS_OF_VIEW, GEOMETRIES
from ..tomography.slicing import input_channels
from .encoders import NORMS, create_encoder

FORMAT = "tonno-checkpoint-1"
#: how the ``format`` of every second-stage segmenter checkpoint begins (:mod:`~tonno_engine.models.segmenter`)
SEGMENTER_FORMAT_PREFIX = "tonno-segmenter-"
#: the version of :class:`CheckpointDescription` this tonno writes (1: before it was versioned; 3: ``context``,
#: which a tonno that reads only 2 would ignore and feed the network the wrong input; 4: ``preprocessing``'s
#: ``channels``, the images of a case of several, which a tonno that reads only 3 would not feed the network)
DESCRIPTION_VERSION = 4


@dataclass(frozen=True, kw_only=True)
class CheckpointDescription:
    """What a checkpoint's weights are and how they were made.

    ``model``/``norm``/``in_chans``: the timm encoder to rebuild; ``slice_size``: the side (pixels) of the
    slices it was trained on; ``context``: how many slice pixels off each plane the neighbouring planes of its
    2.5D input lie (0: one plane; ``in_chans`` is then 1, else 3; times the images of a case of several, whose
    names and modes ``preprocessing``'s ``channels`` holds: :attr:`channels`); ``geometry``/``field_of_view``: the sliced
    space it was trained in, and in
    physical geometry ``mm_per_pixel`` (the median over its training volumes); ``preprocessing``: the
    ``Preprocessing.as_dict()`` applied to every volume; ``weights``: the starting weights' source;
    ``train_args``: the ``TrainConfig`` as a dict; ``versions``: package versions; ``data_hash``,
    ``data``, ``train_cases``, ``val_cases``: the data set it saw, and ``image_hashes`` each of its cases' image hash
    (:func:`~tonno_engine.data.dataset.hash_cases`; empty in checkpoints from before it); ``world_size``: training processes;
    ``step``: the optimisation step of these weights; ``findings``: the name of each logit, in order (empty:
    one logit, the data set's ``label``; docs/findings.md).
    """

    model: str
    norm: str
    in_chans: int = 1
    slice_size: int = SLICE_SIZE
    context: float = 0.0
    geometry: str = GEOMETRY
    field_of_view: str = FIELD_OF_VIEW
    mm_per_pixel: float | None = None
    preprocessing: dict = field(default_factory=dict)
    weights: dict | None = None
    train_args: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    data_hash: str | None = None
    data: str | None = None
    train_cases: tuple[str, ...] = ()
    val_cases: tuple[str, ...] = ()
    image_hashes: dict = field(default_factory=dict)
    world_size: int = 1
    step: int = 0
    findings: tuple[str, ...] = ()
    version: int = DESCRIPTION_VERSION

    @property
    def channels(self) -> tuple[str, ...]:
        """The names of the images every case must bring, in input order (``preprocessing``'s ``channels``; empty:
        one image per case)."""
        entries = self.preprocessing.get("channels", ()) if isinstance(self.preprocessing, dict) else ()
        return tuple(str(c.get("name", "")) if isinstance(c, dict) else "" for c in entries or ())

    @property
    def images(self) -> int:
        """How many images a case brings (its channels; 1 without)."""
        return max(1, len(self.channels))

    @property
    def outputs(self) -> int:
        """The number of logits: one per finding."""
        return max(1, len(self.findings))

    @classmethod
    def from_meta(cls, meta, where) -> CheckpointDescription:
        """Validate a checkpoint's ``meta`` dict; :class:`DataError` naming ``where`` and the field."""
        if not isinstance(meta, dict):
            raise DataError(where, f"checkpoint description must be a dict, got {type(meta).__name__}")
        version = meta.get("version", 1)
        if version not in (1, 2, 3, DESCRIPTION_VERSION):
            raise DataError(where, f"checkpoint description version {version!r} is newer than this tonno reads "
                                   f"({DESCRIPTION_VERSION}); update tonno")
        for name in ("model", "norm"):
            if name not in meta:
                raise DataError(where, f"checkpoint description has no field {name!r}")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in meta.items() if k in known and v is not None}
        for name in ("train_cases", "val_cases", "findings"):
            if name in values:
                values[name] = tuple(values[name])
        values["version"] = DESCRIPTION_VERSION
        description = cls(**values)
        description.check(where)
        return description

    def check(self, where) -> None:
        """:class:`DataError` naming ``where`` and the first field whose value cannot be right."""
        problems = {
            "model": not (isinstance(self.model, str) and self.model),
            "norm": self.norm not in NORMS,
            "in_chans": not _is_int(self.in_chans, 1),
            "context": not (_is_positive(self.context) or self.context == 0)
                       or self.in_chans != input_channels(self.context, self.images),
            "slice_size": not _is_int(self.slice_size, 2),
            "geometry": self.geometry not in GEOMETRIES,
            "field_of_view": self.field_of_view not in FIELDS_OF_VIEW,
            "mm_per_pixel": self.mm_per_pixel is not None and not _is_positive(self.mm_per_pixel),
            "preprocessing": not isinstance(self.preprocessing, dict) or len(self.channels) == 1
                             or any(not name for name in self.channels),
            "image_hashes": not (isinstance(self.image_hashes, dict)
                                 and all(isinstance(v, str) for v in self.image_hashes.values())),
            "train_args": not isinstance(self.train_args, dict),
            "step": not _is_int(self.step, 0),
            "findings": not _valid_findings(self.findings),
        }
        for name, bad in problems.items():
            if bad:
                raise DataError(where, f"checkpoint field {name!r} holds an invalid value {getattr(self, name)!r}")

    def as_meta(self) -> dict:
        """The dict stored in the checkpoint (lists, not tuples, for JSON)."""
        meta = asdict(self)
        meta.update(train_cases=list(self.train_cases), val_cases=list(self.val_cases), findings=list(self.findings))
        return meta

    def at_step(self, step: int) -> CheckpointDescription:
        return replace(self, step=step)


def _valid_findings(names) -> bool:
    """Distinct, non-empty, filename-safe names (they end the heatmaps' file names)."""
    return (isinstance(names, tuple) and len(set(names)) == len(names)
            and all(isinstance(n, str) and n and finding_name_problem(n) is None for n in names))


def finding_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a finding (it ends file names and table rows), or ``None``."""
    if not name or any(ch in name for ch in '/\\:*?"<>|,') or name != name.strip():
        return f"finding name {name!r} must be non-empty and hold no spaces at its ends, path separators or commas"
    return None


def _is_int(value, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_positive(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def save_checkpoint(path: str | Path, model: torch.nn.Module, description: CheckpointDescription,
                    train_state: dict | None = None) -> Path:
    payload = {"format": FORMAT, "state_dict": model.state_dict(), "meta": description.as_meta(),
               "train_state": train_state}
    # serialised in memory first: the disk's room is checked before the old file is touched, and a full
    # disk is an OSError naming the file (torch.save into a file raises a RuntimeError naming none)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes_atomic(path, buffer.getbuffer())
    return Path(path)


def load_payload(path: str | Path, what: str, example: str):
    """``torch.load`` of a file of ours on the CPU; :class:`DataError` naming it when it is a folder, missing
    or unreadable (``what``: "checkpoint"; ``example``: the file to give instead of a folder)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(path, f"is a folder, not a {what} file (give e.g. {example})")
    if not path.is_file():
        raise DataError(path, f"{what} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle means a bad file
        raise DataError(path, f"unreadable {what} ({type(exc).__name__}: {exc})") from exc


def read_checkpoint(path: str | Path) -> dict:
    """The raw checkpoint dict; :class:`DataError` naming the file if it is not one of ours."""
    payload = load_payload(path, "checkpoint", "RUN/checkpoint_best.pt")
    if isinstance(payload, dict) and str(payload.get("format", "")).startswith(SEGMENTER_FORMAT_PREFIX):
        raise DataError(path, "a segmenter checkpoint (of `tonno segment train`), not a slice classifier's: use it with "
                              "`tonno segment predict`; a slice classifier's checkpoint of `tonno train` is needed here "
                              "(e.g. RUN/checkpoint_best.pt)")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DataError(path, "not a tonno checkpoint")
    return payload


def read_description(path: str | Path) -> CheckpointDescription:
    """The validated description of the checkpoint at ``path``."""
    return CheckpointDescription.from_meta(read_checkpoint(path).get("meta"), path)


def load_weights(model: torch.nn.Module, payload: dict, where) -> None:
    """Load ``payload``'s weights into ``model``; a clear error for another architecture."""
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        meta = payload.get("meta", {})
        first = str(exc).strip().splitlines()[:3]
        raise DataError(where, f"checkpoint holds {meta.get('model')!r} (norm {meta.get('norm')!r}) weights "
                               f"that do not fit this architecture: {' '.join(first)}") from exc


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint's model (eval mode, on ``device``), its description and the file it came from."""

    model: torch.nn.Module
    description: CheckpointDescription
    device: torch.device
    path: Path

    def sha256(self) -> str:
        """The SHA-256 of the checkpoint's file (what a heatmap's provenance names it by)."""
        return file_sha256(self.path)


def load_checkpoint(path: str | Path, device=DEVICE) -> LoadedCheckpoint:
    """Rebuild the model a checkpoint describes, load its weights, move it to ``device`` (``"auto"``: CUDA
    when present)."""
    payload = read_checkpoint(path)
    description = CheckpointDescription.from_meta(payload.get("meta"), path)
    if description.train_args.get("objective") == CONTRASTIVE:
        raise DataError(path, "a pretraining checkpoint (tonno pretrain): its encoder has no classifier; train one "
                              f"with `tonno train --weights {Path(path).parent / 'encoder.pth'}`")
    model = create_encoder(description.model, norm=description.norm, in_chans=description.in_chans,
                           outputs=description.outputs)
    load_weights(model, payload, path)
    dev = resolve_device(device)
    return LoadedCheckpoint(model.to(dev).eval(), description, dev, Path(path))


def load_model(path: str | Path, device=DEVICE) -> tuple[torch.nn.Module, CheckpointDescription]:
    """``(model in eval mode on device, description)`` of the checkpoint at ``path``."""
    loaded = load_checkpoint(path, device)
    return loaded.model, loaded.description
