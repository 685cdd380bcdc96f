"""Device selection: ``"auto"`` (:data:`~tonno_engine.base.defaults.DEVICE`, every signature's default)
picks CUDA when present, then MPS, else the CPU; ``None`` means "not given", the same."""

from __future__ import annotations

import torch

from .defaults import DEVICE

VALID = "auto, cpu, cuda, cuda:N or mps"


def auto_device() -> torch.device:
    """The device ``auto`` picks: ``cuda`` if torch sees one, then ``mps``, else ``cpu``."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None = DEVICE) -> torch.device:
    """Turn a user's device choice into a usable ``torch.device``; ``ValueError`` if it is not."""
    if device is None or (isinstance(device, str) and device.strip().lower() == DEVICE):
        return auto_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}; valid: {VALID}") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} asked for, but torch sees {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device {device!r} asked for, but MPS is not available")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {device!r}; valid: {VALID}")
    return dev


def describe_devices() -> list[str]:
    """Human-readable list of the devices torch sees, CPU first."""
    out = ["cpu"]
    for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        props = torch.cuda.get_device_properties(i)
        out.append(f"cuda:{i} ({props.name}, {props.total_memory / 2**30:.0f} GiB)")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def device_name(device: torch.device) -> str:
    """The accelerator's product name, or the device type (``cpu``, ``mps``)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (a no-op off CUDA): needed before reading a timer."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
