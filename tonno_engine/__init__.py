"""tonno engine: tomographic reconstruction of a neural network's output (ToNNO).

Pure Python + torch; never imports Qt, napari, magicgui or typer. Subpackages by layer, each
importing only those below it (docs/architecture.md; import-linter checks it): ``base``,
``tomography``, ``cams`` | ``models`` | ``data``, ``methods`` | ``evaluation``, ``training``,
``apps``. The top-level names load their module on first use (PEP 562).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "RECONSTRUCTION_CONSTANT": "tomography.backprojection", "backproject": "tomography.backprojection",
    "reconstruction_scale": "tomography.backprojection", "second_difference": "tomography.backprojection",
    "auto_device": "base.devices", "resolve_device": "base.devices",
    "Partial": "base.events", "Progress": "base.events",
    "fibonacci_directions": "tomography.geometry", "orthonormal_basis": "tomography.geometry",
    "slice_offsets": "tomography.geometry",
    "spread_order": "tomography.geometry",
    "make_directions": "tomography.reconstruction", "profiles": "tomography.profiles",
    "reconstruct": "tomography.reconstruction",
    "reconstruct_iter": "tomography.reconstruction", "Plan": "tomography.plan",
    "radon_sum": "tomography.scorers", "ModuleScorer": "tomography.scorers",
    "extract_slices": "tomography.slicing",
    "CamExtractor": "cams.extractor", "slicewise_iter": "cams.slicewise",
    "MethodSpec": "base.registry", "METHODS": "base.registry", "register_method": "base.registry",
    "passes_iter": "methods.run", "plan_passes": "methods.run", "run_method": "methods.run",
    "reconstruct_case_iter": "methods.case", "prepare_case": "methods.case", "Scan": "methods.case",
    "load_checkpoint": "models.checkpoint", "CheckpointDescription": "models.checkpoint",
    "run_methods": "methods.run", "ReconstructionSettings": "methods.settings", "PRESETS": "methods.settings",
    "direction_stack_iter": "tomography.profiles",
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
