"""What the tomography core is told besides the volume, the scorer and the formulas: one :class:`Plan`.

The core (:func:`~tonno_engine.tomography.reconstruction.reconstruct_iter`, the profiles, the slice-wise CAMs) reads
every setting from a plan and defaults nothing itself. Its defaults are the reconstruction's
(:mod:`tonno_engine.base.defaults`); a case (:mod:`tonno_engine.methods.case`) builds its plans fully resolved against
the checkpoint and the scan, so nothing below it has anything left to decide.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..base.defaults import (
    DEVICE,
    DIRECTIONS_PER_UPDATE,
    FIELD_OF_VIEW,
    GEOMETRY,
    MEMORY_BUDGET,
    SLICE_SIZE,
    SLICES,
    TONNO_DIRECTIONS,
)
from ..base.inputs import as_size2, check_count
from .frames import Frame, make_frame


@dataclass(frozen=True)
class Plan:
    """How one volume is sliced, scored and reconstructed.

    ``slices`` = M (``M + 2`` offsets per direction), ``directions`` = L on the Fibonacci lattice
    (``hemisphere``: the half that carries the same planes), ``slice_size`` in pixels (int or ``(h, w)``);
    ``geometry``, ``spacing`` (mm per axis of the sliced volume) and ``field_of_view``: the sliced space
    (:mod:`tonno_engine.tomography.frames`); ``output_shape``: the heatmap's grid (``None``: the volume's; the
    same extent either way); ``device`` does the work; ``batch_size`` slices per scorer call (``None``: 64 on
    the CPU, 1024 on accelerators, :func:`~tonno_engine.tomography.reconstruction.default_batch_size`);
    ``compile``: the fused ``torch.compile``-d kernels; ``memory_budget``: bytes of backprojection temporaries
    per pass; ``directions_per_update``: directions between two partial heatmaps of a live reconstruction.
    """

    slices: int = SLICES
    directions: int = TONNO_DIRECTIONS
    slice_size: int | tuple[int, int] = SLICE_SIZE
    hemisphere: bool = False
    geometry: str = GEOMETRY
    spacing: tuple[float, float, float] | None = None
    field_of_view: str = FIELD_OF_VIEW
    output_shape: tuple[int, int, int] | None = None
    device: object = DEVICE
    batch_size: int | None = None
    compile: bool = False
    memory_budget: int = MEMORY_BUDGET
    directions_per_update: int = DIRECTIONS_PER_UPDATE

    def __post_init__(self):
        check_count(self.slices, 3, "slices", " (the second difference needs them)")
        check_count(self.directions, 1, "directions")
        check_count(self.directions_per_update, 1, "directions_per_update")
        if self.batch_size is not None:
            check_count(self.batch_size, 1, "batch_size")
        as_size2(self.slice_size)  # geometry, spacing and field of view: checked by make_frame

    @property
    def size(self) -> tuple[int, int]:
        """The slice's ``(h, w)``."""
        return as_size2(self.slice_size)

    def frame(self, shape) -> Frame:
        """Where a volume of ``shape`` sits in the sliced space."""
        return make_frame(shape, geometry=self.geometry, spacing=self.spacing, field_of_view=self.field_of_view)
