"""Input checks shared by the engine's public functions. Each raises ``ValueError`` naming the problem.

Imports torch only inside :func:`as_volume`, so the count checks serve torch-free modules too.
"""

from __future__ import annotations

import numpy as np


def as_volume(volume, device, *, name: str = "volume", channels: bool = False):
    """A finite, non-empty ``(D, H, W)`` float32 tensor on ``device`` from an array or tensor; with ``channels``
    also a scan of several channels ``(C, D, H, W)`` (each channel one image on the same grid)."""
    import torch  # here, so that the count checks below stay importable without torch

    if isinstance(volume, torch.Tensor):
        tensor = volume.detach()
    else:
        try:
            array = np.asarray(volume)
        except Exception as exc:  # noqa: BLE001 - any failure to convert is a bad input
            raise ValueError(f"{name} cannot be read as an array: {exc}") from exc
        if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if tensor.is_complex():
        raise ValueError(f"{name} must be real, got dtype {tensor.dtype}")
    if tensor.ndim != 3 and not (channels and tensor.ndim == 4):
        want = "3D (D, H, W) or 4D (C, D, H, W)" if channels else "3D (D, H, W)"
        raise ValueError(f"{name} must be {want}, got {tensor.ndim}D with shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(tensor.shape)}")
    tensor = tensor.to(device=device, dtype=torch.float32)
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or Inf values")
    return tensor


def as_shape3(shape, *, name: str = "output_shape") -> tuple[int, int, int]:
    """A tuple of three positive ints."""
    try:
        out = tuple(int(k) for k in shape)
    except TypeError as exc:
        raise ValueError(f"{name} must be three positive integers, got {shape!r}") from exc
    if len(out) != 3 or min(out) < 1:
        raise ValueError(f"{name} must be three positive integers, got {shape!r}")
    return out  # type: ignore[return-value]


def as_size2(size, *, name: str = "slice_size") -> tuple[int, int]:
    """``int`` or ``(h, w)`` → ``(h, w)``, each at least 2."""
    pair = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(pair) != 2 or min(int(k) for k in pair) < 2:
        raise ValueError(f"{name} must be an int >= 2 or a pair of them, got {size!r}")
    return int(pair[0]), int(pair[1])


def check_count(value, minimum: int, name: str, why: str = "") -> int:
    """``value`` as an int at least ``minimum``; ``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{why}, got {value!r}")
    return int(value)


def images_problem(model: str, expected, count: int, images: int, names=()) -> str | None:
    """Why a case of ``images`` images (named ``names``, when its data set names them) cannot be fed to a ``model``
    ("checkpoint", "segmenter") that takes ``count`` images named ``expected`` (``None``: it can): another count of
    images, or other names or order."""
    if images != count:
        takes = f"{count} images per case ({', '.join(expected)})" if count > 1 else "one image per case"
        return f"the {model} takes {takes}; this case has {images}"
    if count > 1 and expected and names and tuple(names) != tuple(expected):
        return (f"this case's images are {', '.join(names)} but the {model} takes {', '.join(expected)}, in that "
                "order")
    return None
