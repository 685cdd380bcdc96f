"""Versions of Python and the libraries a result depends on (recorded in checkpoints and run.json)."""

from __future__ import annotations

import platform


def versions(dists=("napari-tonno", "torch", "timm", "numpy", "nibabel", "SimpleITK", "pydicom")) -> dict:
    """Python's and each distribution's version (``None`` when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in dists:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out
