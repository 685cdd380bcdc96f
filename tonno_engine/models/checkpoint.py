"""Checkpoints that carry everything needed to use the weights.

A checkpoint is a ``torch.save`` dict: ``state_dict`` and ``meta`` (model name, norm, slice
size, preprocessing, training arguments, versions, data hash, step), plus ``train_state``
(optimizer, scheduler, RNG states) for resuming. Written atomically.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from ..base.atomic import write_bytes_atomic
from ..base.errors import DataError
from .encoders import create_encoder


def save_checkpoint(path: str | Path, model: torch.nn.Module, meta: dict, train_state: dict | None = None) -> Path:
    payload = {"format": "tonno-checkpoint-1", "state_dict": model.state_dict(), "meta": meta,
               "train_state": train_state}
    # serialised in memory first: the disk's room is checked before the old file is touched, and a full
    # disk is an OSError naming the file (torch.save into a file raises a RuntimeError naming none)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes_atomic(path, buffer.getbuffer())
    return Path(path)


def read_checkpoint(path: str | Path) -> dict:
    """The raw checkpoint dict; :class:`DataError` naming the file if it is not one of ours."""
    path = Path(path)
    if path.is_dir():
        raise DataError(path, "is a folder, not a checkpoint file (give e.g. RUN/checkpoint_best.pt)")
    if not path.is_file():
        raise DataError(path, "checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle means a bad file
        raise DataError(path, f"unreadable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != "tonno-checkpoint-1":
        raise DataError(path, "not a tonno checkpoint")
    return payload


def load_weights(model: torch.nn.Module, payload: dict, where) -> None:
    """Load ``payload``'s weights into ``model``; a clear error for another architecture."""
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        meta = payload.get("meta", {})
        first = str(exc).strip().splitlines()[:3]
        raise DataError(where, f"checkpoint holds {meta.get('model')!r} (norm {meta.get('norm')!r}) weights "
                               f"that do not fit this architecture: {' '.join(first)}") from exc


def load_model(path: str | Path, device=None) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model a checkpoint describes and load its weights: ``(model in eval mode, meta)``."""
    payload = read_checkpoint(path)
    meta = payload["meta"]
    model = create_encoder(meta["model"], norm=meta["norm"], in_chans=meta.get("in_chans", 1))
    load_weights(model, payload, path)
    return model.to(device or "cpu").eval(), meta
