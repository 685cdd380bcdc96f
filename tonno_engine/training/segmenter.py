"""Training the second-stage 3D U-Net on pseudo-labels, with the ``ignore`` label out of the loss.

Reads an export of :mod:`~tonno_engine.apps.export_nnunet` (its ``datalist.json`` and
``tonno_export.json``). Each step draws ``batch_size`` cubes of ``patch`` voxels from random training
cases (``lesion_fraction`` of them centred on a lesion voxel, the rest anywhere; padding outside a
volume is ``ignore``), flips them at random, and minimises cross-entropy plus the lesion channel's Dice,
both over the voxels whose label is not ``ignore`` (:func:`masked_loss`). Volumes load lazily and at
most ``cache_cases`` stay in memory, so a data set may be larger than memory.

An export of cases of several images (``dataset.json``'s ``channel_names`` counts them; ``{case}_0000.nii.gz``,
``{case}_0001.nii.gz``, …, on one grid) trains a U-Net of as many input channels, each image normalised by its own
mode: the one ``tonno_export.json``'s ``channels`` records for it, else ``intensity`` (``robust`` unless given)
(:func:`segmenter_preprocessing`). The checkpoint records ``in_channels`` and ``channel_names``.

The run folder ``out/`` (a :class:`~tonno_engine.training.run_folder.RunFolder`, as the classifier's):
``segmenter_last.pt`` (with the optimiser and RNG states: a resumed run takes exactly the steps an
uninterrupted one would), ``segmenter.pt`` when done, ``metrics.csv`` (trimmed back to the checkpoint's step
on resume), ``run.json``. SIGTERM/SIGUSR1 checkpoint and stop.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..base.atomic import make_output_folder, write_text_atomic
from ..base.defaults import DEVICE, SEGMENTER_LR, SEGMENTER_PATCH, SEGMENTER_STEPS
from ..base.devices import resolve_device
from ..base.errors import DataError
from ..base.events import Progress
from ..data.channels import load_scan
from ..data.nifti import load_nifti
from ..data.nnunet_layout import DATALIST, EXPORT_RECORD, labels_sha256
from ..data.preprocessing import Channel, Preprocessing
from ..evaluation.pseudo_labels import IGNORE, LESION
from ..models.segmenter import (
    CHANNELS,
    STRIDES,
    build_unet,
    patch_problem,
    read_segmenter,
    save_segmenter,
    segmenter_images,
)
from .loop import StopSignals
from .run_folder import RunFolder, changed_settings, random_state, restore_random_state

LAST, FINAL = "segmenter_last.pt", "segmenter.pt"
METRICS = ("step", "loss", "lr", "patches_per_s")
#: what a resumed run may change (it may be extended)
RESUMABLE = ("steps", "device")


@dataclass
class SegmenterConfig:
    """A stage-2 training run. ``patch``: cube side in voxels (a multiple of 8)."""

    steps: int = SEGMENTER_STEPS
    patch: int = SEGMENTER_PATCH
    batch_size: int = 2
    lr: float = SEGMENTER_LR
    weight_decay: float = 1e-5
    lesion_fraction: float = 0.33  # nnU-Net's foreground oversampling
    cache_cases: int = 64
    checkpoint_every: int = 100
    seed: int = 0
    device: str = DEVICE
    channels: tuple[int, ...] = CHANNELS
    strides: tuple[int, ...] = STRIDES
    res_units: int = 1
    #: per volume (data.preprocessing): ``robust`` keeps lesions brighter than everything else, on any modality; for
    #: cases of several images the mode of each image the export does not record one for
    intensity: str = "robust"

    def __post_init__(self):
        if (problem := patch_problem(self.patch, self.strides)) is not None:
            raise ValueError(problem)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if not 0.0 <= self.lesion_fraction <= 1.0:
            raise ValueError(f"lesion_fraction must be in [0, 1], got {self.lesion_fraction}")
        Preprocessing(self.intensity)  # an unknown mode is a ValueError listing the valid ones

    def as_dict(self) -> dict:
        d = asdict(self)
        d["channels"], d["strides"] = list(self.channels), list(self.strides)
        return d


@dataclass(frozen=True, kw_only=True)
class SegmenterStep(Progress):
    loss: float
    lr: float


@dataclass(frozen=True, kw_only=True)
class SegmenterStopped(Progress):
    signal: str


@dataclass(frozen=True)
class SegmenterResult:
    checkpoint: Path
    steps: int


def masked_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy + Dice of the lesion channel over the voxels not labelled ``ignore``.
    ``logits`` ``(B, 2, D, H, W)``; ``labels`` ``(B, 1, D, H, W)`` in {0, 1, 2}. Ignored voxels get no
    gradient: MONAI's ``MaskedDiceLoss`` masks after its softmax, ``cross_entropy`` skips ``ignore_index``."""
    from monai.losses import MaskedDiceLoss

    valid = labels != IGNORE
    if not bool(valid.any()):
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits, labels[:, 0].long(), ignore_index=IGNORE)
    target = torch.where(valid, labels, torch.zeros_like(labels)).float()
    dice = MaskedDiceLoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)(
        logits, target, mask=valid.float())
    return ce + dice


class PatchSource:
    """Training cases of an export, loaded on first use (normalised image, labels, lesion voxels) and kept
    in a least-recently-used cache of ``cache_cases``. ``entries``: ``[((image path, …), label path), ...]``, a
    case's images in channel order (one, or several on one grid: ``(I, D, H, W)``, each normalised by its
    channel's mode)."""

    def __init__(self, entries: list[tuple[tuple[Path, ...], Path]], cache_cases: int, preprocessing: Preprocessing):
        self.entries = entries
        self.preprocessing = preprocessing
        self.cache: OrderedDict[int, tuple] = OrderedDict()
        self.cache_cases = max(1, cache_cases)

    def case(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float | tuple[float, ...]]:
        """Case ``k``: normalised image (``(D, H, W)``, or ``(I, D, H, W)``), labels, flat indices of its lesion
        voxels, and the image's minimum (each image's, for several)."""
        if k in self.cache:
            self.cache.move_to_end(k)
            return self.cache[k]
        image_paths, label_path = self.entries[k]
        if len(image_paths) == 1:
            image = load_nifti(image_paths[0], kind="image").array
        else:  # (the export wrote them on one grid; load_scan would resample any that is not)
            image = load_scan(image_paths)[0].array
        labels = load_nifti(label_path, kind="label").array
        if labels.shape != image.shape[-3:]:
            raise DataError(label_path, f"label shape {labels.shape} differs from its image's {image.shape[-3:]}")
        values = np.unique(labels)
        if not set(values.tolist()) <= {0, 1, 2}:
            raise DataError(label_path, f"labels must be 0, 1 or 2, found {values[:6].tolist()}")
        image = self.preprocessing(image)
        lowest = float(image.min()) if image.ndim == 3 else tuple(float(a.min()) for a in image)
        item = (image, labels.astype(np.uint8), np.flatnonzero(labels == LESION), lowest)
        self.cache[k] = item
        if len(self.cache) > self.cache_cases:
            self.cache.popitem(last=False)
        return item

    def sample(self, rng: np.random.Generator, patch: int, lesion_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """One random cube ``(patch,)*3`` of image (``(I, patch, patch, patch)`` for several) and labels, flipped at
        random."""
        image, labels, lesion, lowest = self.case(int(rng.integers(len(self.entries))))
        shape = np.asarray(labels.shape)
        if lesion.size and rng.random() < lesion_fraction:
            centre = np.asarray(np.unravel_index(int(lesion[rng.integers(lesion.size)]), labels.shape))
        else:
            centre = np.asarray([rng.integers(n) for n in shape])
        start = centre - patch // 2
        x = _crop(image, start, patch, lowest)
        y = _crop(labels, start, patch, IGNORE)
        for axis in range(-3, 0):  # the spatial axes (after the images' of a case of several)
            if rng.random() < 0.5:
                x, y = np.flip(x, axis), np.flip(y, axis)
        return np.ascontiguousarray(x), np.ascontiguousarray(y)


def _crop(array: np.ndarray, start: np.ndarray, size: int, fill) -> np.ndarray:
    """``array[start : start + size]`` along each axis, ``fill`` where the cube leaves the volume; an ``(I, D, H, W)``
    array image by image, each with its ``fill``."""
    if array.ndim == 4:
        return np.stack([_crop(a, start, size, f) for a, f in zip(array, fill)])
    out = np.full((size,) * 3, fill, dtype=array.dtype)
    lo = np.maximum(start, 0)
    hi = np.minimum(start + size, array.shape)
    if np.all(hi > lo):
        src = tuple(slice(a, b) for a, b in zip(lo, hi))
        dst = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))
        out[dst] = array[src]
    return out


def read_export(folder: str | Path) -> tuple[list[tuple[tuple[Path, ...], Path]], dict]:
    """The training cases of an export, ``((image, …), label)`` (a case's images as many as ``dataset.json``'s
    ``channel_names``), and its ``tonno_export.json`` summary (with ``labels_sha256``; for cases of several images
    ``channels``: each one's ``name`` and ``intensity``, ``None`` where the export records none)."""
    folder = Path(folder)
    datalist, record = folder / DATALIST, folder / EXPORT_RECORD
    for path in (datalist, record):
        if not path.is_file():
            raise DataError(path, "not a tonno export (make one with `tonno export nnunet`)")
    info = json.loads(record.read_text())
    channels = _export_channels(folder, info)
    entries = []
    for e in json.loads(datalist.read_text())["training"]:
        images = e["image"] if isinstance(e["image"], list) else [e["image"]]
        if len(images) != max(1, len(channels)):
            raise DataError(datalist, f"case {e.get('case', images[0])!r} lists {len(images)} image(s), but "
                                      f"dataset.json names {max(1, len(channels))} channel(s)")
        entries.append((tuple(folder / i for i in images), folder / e["label"]))
    if not entries:
        raise DataError(datalist, "no training cases")
    sha = labels_sha256(folder)
    if sha != info.get("labels_sha256"):
        raise DataError(folder / "labelsTr", "the label files differ from those the export recorded (edited since?)")
    if info.get("cases") and not any(c.get("lesion") for c in info["cases"]):
        raise DataError(folder / "labelsTr", "no label holds a lesion voxel: a segmenter would learn that there is "
                                             "nothing to find; export again at a level the heatmaps reach")
    summary = {k: info.get(k) for k in ("heatmaps", "method", "level", "relative", "level_from", "percentile", "rule",
                                        "annotations", "made", "calibrated_on", "mismatches_allowed")}
    summary["reviewed"] = [c["case"] for c in info.get("cases", []) if c.get("reviewed")]
    if channels:  # (a summary of one image's export stays as it was)
        summary["channels"] = list(channels)
    return entries, {"export": str(folder.resolve()), "labels_sha256": sha, **summary}


def _export_channels(folder: Path, info: dict) -> tuple[dict, ...]:
    """``{"name", "intensity"}`` of each image of an export's cases of several (``()``: one image): as many as
    ``dataset.json``'s ``channel_names``; names and modes as ``tonno_export.json`` (``info``) records them, else
    nnU-Net's names without a mode."""
    meta = folder / "dataset.json"
    names = json.loads(meta.read_text()).get("channel_names", {}) if meta.is_file() else {}
    if len(names) < 2:
        return ()
    recorded = info.get("channels") or []
    if recorded and len(recorded) != len(names):
        raise DataError(folder / EXPORT_RECORD, f"records {len(recorded)} channel(s) but dataset.json names "
                                                f"{len(names)}")
    if recorded:
        return tuple({"name": str(c["name"]), "intensity": c.get("intensity")} for c in recorded)
    return tuple({"name": str(names[str(k)]), "intensity": None} for k in range(len(names)))


def segmenter_preprocessing(cfg: SegmenterConfig, labels: dict) -> Preprocessing:
    """How the segmenter of ``cfg`` normalises an export's cases (``labels``: :func:`read_export`'s summary): one
    image by ``cfg.intensity``; several each by the mode the export records for it (the data set's), else by
    ``cfg.intensity`` (``robust`` unless given: it suits any modality)."""
    channels = labels.get("channels") or ()
    if not channels:
        return Preprocessing(cfg.intensity)
    return Preprocessing(channels=tuple(Channel(c["name"], c.get("intensity") or cfg.intensity) for c in channels))


def train_segmenter_iter(export: str | Path, out: str | Path, cfg: SegmenterConfig, *,
                         resume: bool = False) -> Iterator[Progress | SegmenterResult]:
    """Train on ``export`` into ``out`` (see module doc); yields a :class:`SegmenterStep` per step, then a
    :class:`SegmenterResult` (or :class:`SegmenterStopped` after a signal)."""
    entries, labels = read_export(export)
    folder = RunFolder(make_output_folder(out), last=LAST, best=FINAL)
    folder.lock()
    try:
        preprocessing = segmenter_preprocessing(cfg, labels)
        state = _start(folder, cfg, labels, preprocessing, resume)
        yield from _train(folder, PatchSource(entries, cfg.cache_cases, preprocessing), state)
    finally:
        folder.close()


@dataclass
class _State:
    """A segmenter run in progress: its settings, model, optimiser, patch sampler's generator, the checkpoint's
    ``meta`` (``step``: the steps taken) and device."""

    cfg: SegmenterConfig
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    rng: np.random.Generator
    meta: dict
    device: torch.device


def _start(folder: RunFolder, cfg: SegmenterConfig, labels: dict, preprocessing: Preprocessing, resume: bool) -> _State:
    out, last = folder.out, folder.last
    if last.exists() and not resume:
        raise DataError(out, f"run folder already holds a segmenter training ({LAST}); continue it with --resume")
    if resume and not last.exists():
        raise DataError(last, "nothing to resume")
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_unet(cfg.channels, cfg.strides, cfg.res_units, preprocessing.images).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng, step = np.random.default_rng(cfg.seed), 0
    if resume:
        payload = read_segmenter(last)
        earlier = payload["meta"]
        changed = changed_settings(earlier["train_args"], cfg.as_dict(), RESUMABLE)
        if changed:
            raise DataError(last, f"resuming with other settings ({', '.join(changed)}); use the run's own")
        if earlier["labels"]["labels_sha256"] != labels["labels_sha256"]:
            raise DataError(last, "the export's labels changed since this run started; train into a new folder")
        if segmenter_images(earlier) != (preprocessing.images, preprocessing.channel_names):
            raise DataError(last, "the export's images (their count or names) changed since this run started; train "
                                  "into a new folder")
        model.load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(payload["train_state"]["optimizer"])
        restore_random_state(rng, payload["train_state"])
        step = earlier["step"]
    folder.start_metrics(METRICS, step if resume else None)
    meta = {"channels": list(cfg.channels), "strides": list(cfg.strides), "res_units": cfg.res_units,
            "patch": cfg.patch, "preprocessing": preprocessing.as_dict(), "labels": labels,
            "train_args": cfg.as_dict(), "step": step}
    if preprocessing.channels:  # (a one-image segmenter's meta stays as it was)
        meta.update(in_channels=preprocessing.images, channel_names=list(preprocessing.channel_names))
    return _State(cfg, model, optimizer, rng, meta, device)


def _train(folder: RunFolder, source: PatchSource, state: _State):
    cfg, model, optimizer, rng, meta, device = (state.cfg, state.model, state.optimizer, state.rng, state.meta,
                                                state.device)

    def lr_at(step: int) -> float:  # nnU-Net's polynomial decay
        return cfg.lr * (1 - step / cfg.steps) ** 0.9

    def checkpoint(path: Path) -> None:
        save_segmenter(path, model, meta, {"optimizer": optimizer.state_dict(), **random_state(rng)})

    write_text_atomic(folder.run_json, json.dumps({k: meta[k] for k in ("labels", "train_args")}, indent=2) + "\n")
    model.train()
    with StopSignals() as signals:
        while meta["step"] < cfg.steps:
            t0 = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = lr_at(meta["step"])
            pairs = [source.sample(rng, cfg.patch, cfg.lesion_fraction) for _ in range(cfg.batch_size)]
            x = np.stack([p[0] for p in pairs])
            x = torch.from_numpy(x[:, None] if x.ndim == 4 else x).to(device)  # (B, images, D, H, W)
            y = torch.from_numpy(np.stack([p[1] for p in pairs])[:, None].astype(np.int64)).to(device)
            loss = masked_loss(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            meta["step"] += 1
            step, value = meta["step"], float(loss.detach())
            speed = cfg.batch_size / (time.perf_counter() - t0)
            folder.append_metrics({"step": step, "loss": value, "lr": lr_at(step - 1), "patches_per_s": speed})
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                checkpoint(folder.last)
            yield SegmenterStep("segmenter", step, cfg.steps, "steps", loss=value, lr=lr_at(step - 1))
            if signals.received and step < cfg.steps:  # (a signal may arrive while the consumer holds the step)
                checkpoint(folder.last)
                yield SegmenterStopped("segmenter", step, cfg.steps, "steps", signal=signals.received)
                return
    model.eval()
    save_segmenter(folder.best, model, meta)
    yield SegmenterResult(folder.best, meta["step"])

