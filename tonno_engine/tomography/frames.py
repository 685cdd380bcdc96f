"""Paper and physical geometry: where a volume sits in the normalised space that is sliced.

Convention: index coordinates ``t = (t0, t1, t2)`` in ``[-1, 1]³`` (``align_corners=True``, see
:mod:`tonno_engine.tomography.geometry`) map to the normalised coordinates ``x`` in which slices
are cut and heatmaps are reconstructed by ``x = d ⊙ t``:

- paper geometry (the default): ``d = (1, 1, 1)``, every axis spans ``[-1, 1]`` whatever the
  voxel spacing;
- physical geometry: ``d_a = h_a / R`` with the half-extents ``h_a = (N_a - 1)·s_a / 2`` mm
  (``s_a`` the spacing of axis ``a``) and ``R = max_a h_a`` (field of view ``"ball"``: the longest
  axis spans ``[-1, 1]``) or ``R = |h|`` (``"full"``: the half-diagonal is 1, so every voxel,
  corners included, lies in the unit ball where the reconstruction is exact). One scale for all
  axes: slices are isometric in mm, ``2R / (h_S - 1)`` mm per slice pixel.

``x`` is linear in ``t``, so the plane ``s·n + i'·u + j'·v`` of ``x`` is the plane
``s·(n/d) + i'·(u/d) + j'·(v/d)`` of ``t`` (slicing accepts any vectors), and ``x·n = t·(d ⊙ n)``
(backprojection accepts any normals): physical geometry changes the vectors, not the kernels,
and the heatmap comes out at the input's own voxel centres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..base.defaults import FIELD_OF_VIEW, GEOMETRY

GEOMETRIES = ("paper", "physical")
FIELDS_OF_VIEW = ("ball", "full")


def check_spacing(spacing, *, name: str = "spacing") -> tuple[float, float, float]:
    """Three finite, positive millimetre values; ``ValueError`` naming the problem otherwise."""
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be three positive numbers (mm per array axis), got {spacing!r}") from exc
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"{name} must be three finite, positive numbers (mm per array axis), got {spacing!r}")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class Frame:
    """The map ``x = d ⊙ t`` of one volume. ``scale`` = ``d`` (each ≤ 1); ``mm_per_unit`` = ``R``
    (millimetres per normalised unit; ``None`` in paper geometry)."""

    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    mm_per_unit: float | None = None

    @property
    def is_identity(self) -> bool:
        return self.scale == (1.0, 1.0, 1.0)

    def for_slicing(self, vectors):
        """Vectors ``(..., 3)`` of the ``x`` space as the ``t``-space vectors that cut the same planes."""
        return vectors if self.is_identity else vectors / vectors.new_tensor(self.scale)

    def for_backprojection(self, vectors):
        """Vectors ``(..., 3)`` ``w`` of the ``x`` space as ``d ⊙ w``, so that ``t · (d ⊙ w) = x · w``."""
        return vectors if self.is_identity else vectors * vectors.new_tensor(self.scale)

    def slice_size_for(self, mm_per_pixel: float) -> int | None:
        """The slice side in pixels that gives ``mm_per_pixel`` over the ``[-1, 1]`` patch (``2R`` mm);
        ``None`` in paper geometry."""
        return None if self.mm_per_unit is None else max(8, int(round(2.0 * self.mm_per_unit / mm_per_pixel)) + 1)

    def slices_at_voxel_pitch(self, shape) -> int:
        """M whose neighbouring offsets (``2/(M - 1)`` apart in ``x``) are at most one voxel apart along every
        axis of a ``(D, H, W)`` volume (one voxel of axis ``a`` spans ``2·d_a/(N_a - 1)`` in ``x``): in paper
        geometry the longest side in voxels. At least 3 (the second difference needs them)."""
        steps = [2.0 * d / (int(n) - 1) for d, n in zip(self.scale, shape) if int(n) > 1]
        return max(3, math.ceil(2.0 / min(steps) - 1e-9) + 1) if steps else 3

    def mm_per_pixel(self, slice_size: int) -> float | None:
        """Millimetres per pixel of a ``slice_size``-pixel slice (the ``[-1, 1]`` patch); ``None`` in paper geometry."""
        return None if self.mm_per_unit is None else 2.0 * self.mm_per_unit / (slice_size - 1)


def make_frame(shape, *, geometry: str | None = GEOMETRY, spacing=None, field_of_view: str | None = FIELD_OF_VIEW) -> Frame:
    """The frame of a ``(D, H, W)`` volume with ``spacing`` mm per axis (physical geometry only).
    ``None`` means the default: paper geometry, full field of view."""
    geometry, field_of_view = geometry or "paper", field_of_view or "full"
    if geometry not in GEOMETRIES:
        raise ValueError(f"unknown geometry {geometry!r}; valid: {', '.join(GEOMETRIES)}")
    if geometry == "paper":
        return Frame()
    if field_of_view not in FIELDS_OF_VIEW:
        raise ValueError(f"unknown field of view {field_of_view!r}; valid: {', '.join(FIELDS_OF_VIEW)}")
    if spacing is None:
        raise ValueError("physical geometry needs the voxel spacing (mm per array axis)")
    spacing = check_spacing(spacing)
    half = [max(int(n) - 1, 0) * s / 2.0 for n, s in zip(shape, spacing)]
    if min(half) <= 0:
        raise ValueError(f"physical geometry needs at least 2 voxels along every axis, got shape {tuple(shape)}")
    radius = max(half) if field_of_view == "ball" else math.sqrt(sum(h * h for h in half))
    return Frame(tuple(h / radius for h in half), radius)  # type: ignore[arg-type]
