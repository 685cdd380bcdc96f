"""tonno engine: tomographic reconstruction of a neural network's output (ToNNO).

Pure Python + torch; never imports Qt, napari, magicgui or typer. The top-level names load their
module on first use (PEP 562), so ``import tonno_engine.catalog`` stays free of torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "RECONSTRUCTION_CONSTANT": "backprojection", "backproject": "backprojection",
    "reconstruction_scale": "backprojection", "second_difference": "backprojection",
    "auto_device": "devices", "resolve_device": "devices",
    "Partial": "events", "Progress": "events",
    "fibonacci_directions": "geometry", "orthonormal_basis": "geometry", "slice_offsets": "geometry",
    "spread_order": "geometry",
    "make_directions": "reconstruction", "profiles": "reconstruction", "reconstruct": "reconstruction",
    "reconstruct_iter": "reconstruction",
    "radon_sum": "scorers", "ModuleScorer": "scorers",
    "extract_slices": "slicing",
    "CamExtractor": "cams", "cam_reconstruct_iter": "cam_reconstruction", "slicewise_iter": "slicewise",
    "MethodSpec": "methods", "method_iter": "methods", "run_method": "methods",
    "METHODS": "catalog",
}

try:
    from importlib.metadata import version as _version

    __version__ = _version("napari-tonno")
except Exception:  # noqa: BLE001 - not installed (running from a source tree)
    __version__ = "0+unknown"

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
