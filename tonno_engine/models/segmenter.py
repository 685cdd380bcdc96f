"""The second-stage segmenter: a small MONAI 3D U-Net, its intensity normalisation and its checkpoint.

The network maps one image channel ``(B, 1, D, H, W)`` (``(B, I, D, H, W)`` for cases of ``I`` images on one
grid), preprocessed as the checkpoint's ``preprocessing`` says
(:class:`~tonno_engine.data.preprocessing.Preprocessing`, a mode per image for several), to two logits per voxel
(background, lesion) ``(B, 2, D, H, W)``, on the image's own voxel grid. A checkpoint (``tonno-segmenter-2``) holds
the weights, the network's settings, ``preprocessing``, ``labels``: where its training labels came from (the
export's ``tonno_export.json`` summary and ``labels_sha256``), ``train_args`` and, for resuming,
``train_state``; one of cases of several images also ``in_channels`` (their count) and ``channel_names`` (one
without them takes one image: :func:`segmenter_images`).
MONAI is the optional ``eval`` extra: imported when a segmenter is built.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from ..base.atomic import write_bytes_atomic
from ..base.defaults import DEVICE
from ..base.devices import resolve_device
from ..base.errors import DataError
from ..base.inputs import images_problem
from .checkpoint import SEGMENTER_FORMAT_PREFIX, load_payload

FORMAT = f"{SEGMENTER_FORMAT_PREFIX}2"
#: U-Net feature channels per level and the strides between levels (four levels: a 16× downsampling)
CHANNELS = (16, 32, 64, 128)
STRIDES = (2, 2, 2)


def build_unet(channels=CHANNELS, strides=STRIDES, res_units: int = 1, in_channels: int = 1) -> torch.nn.Module:
    """MONAI's ``UNet`` for ``in_channels`` input channels (a case's images) and two classes, instance-normalised
    (batch-size independent)."""
    try:
        from monai.networks.nets import UNet
    except ImportError as exc:  # pragma: no cover - monai is part of the test install
        raise DataError("monai", "the second stage needs MONAI: pip install 'napari-tonno[eval]'") from exc
    return UNet(spatial_dims=3, in_channels=in_channels, out_channels=2, channels=tuple(channels), strides=tuple(strides),
                num_res_units=res_units, norm="instance")


def multiple_of(strides=STRIDES) -> int:
    """Each side of the network's input must be a multiple of this."""
    return int(np.prod(strides))


def patch_problem(patch: int, strides=STRIDES) -> str | None:
    """Why ``patch`` cannot be a training patch's side (``None``: it can). The U-Net halves its input once per
    stride and adds each level's output to the upsampled one below, so every level's size must be whole: the side
    must be a multiple of the strides' product (8)."""
    if patch % multiple_of(strides):
        return (f"patch must be a multiple of {multiple_of(strides)} (the U-Net halves it {len(strides)} times), "
                f"got {patch}")
    return None


def save_segmenter(path: str | Path, model: torch.nn.Module, meta: dict, train_state: dict | None = None) -> Path:
    """Write a segmenter checkpoint atomically; ``meta``: network settings, ``labels``, ``train_args``, ``step``."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "state_dict": model.state_dict(), "meta": meta, "train_state": train_state}, buffer)
    write_bytes_atomic(path, buffer.getbuffer())
    return Path(path)


def read_segmenter(path: str | Path) -> dict:
    """The checkpoint dict; :class:`DataError` naming the file if it is not a tonno segmenter."""
    payload = load_payload(path, "segmenter checkpoint", "RUN/segmenter.pt")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        hint = " (this is a slice classifier's checkpoint)" if isinstance(payload, dict) and "state_dict" in payload else ""
        if isinstance(payload, dict) and str(payload.get("format", "")).startswith(SEGMENTER_FORMAT_PREFIX):
            hint = f" of this version ({payload['format']}, made by an earlier development version: train it again)"
        raise DataError(path, f"not a tonno segmenter checkpoint{hint}")
    return payload


def segmenter_images(meta: dict) -> tuple[int, tuple[str, ...]]:
    """How many images a case brings to the segmenter of ``meta`` and their names (empty: not named); a checkpoint
    without ``in_channels`` (one image, or written before cases of several) takes one."""
    return int(meta.get("in_channels", 1)), tuple(meta.get("channel_names", ()))


def segmenter_problem(meta: dict, images: int, names=()) -> str | None:
    """Why a case of ``images`` images (named ``names``, when its data set names them) cannot be fed to the
    segmenter of ``meta`` (``None``: it can): another count of images, or other names or order."""
    count, expected = segmenter_images(meta)
    return images_problem("segmenter", expected, count, images, names)


def load_segmenter(path: str | Path, device=DEVICE) -> tuple[torch.nn.Module, dict]:
    """``(model in eval mode on device, meta)``; ``device`` as :func:`~tonno_engine.base.devices.resolve_device` takes it."""
    payload = read_segmenter(path)
    meta = payload["meta"]
    model = build_unet(meta["channels"], meta["strides"], meta["res_units"], segmenter_images(meta)[0])
    model.load_state_dict(payload["state_dict"])
    return model.to(resolve_device(device)).eval(), meta
