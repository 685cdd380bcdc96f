"""Reconstruction settings and their named presets, defined once (torch-free).

The CLI (``--quality``), the napari widgets (a preset combo box) and the Table 2 benchmark all
read :data:`PRESETS`. ``directions=None`` means each method's own paper default (2000 directions for
ToNNO, 1000 for the CAM variants); ``slice_size``, ``geometry`` and ``field_of_view`` ``None`` mean
the checkpoint's (:meth:`ReconstructionSettings.resolved`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from ..base.defaults import CAM_DIRECTIONS, FIELD_OF_VIEW, GEOMETRY, SLICE_SIZE, SLICES, TONNO_DIRECTIONS
from ..base.inputs import check_count
from ..tomography.frames import FIELDS_OF_VIEW, GEOMETRIES, make_frame


@dataclass(frozen=True)
class ReconstructionSettings:
    """How densely a volume is sliced: ``slices`` = M (M+2 offsets per direction; ``None``: one offset per voxel,
    :meth:`~tonno_engine.tomography.frames.Frame.slices_at_voxel_pitch`, resolved per volume), ``directions`` = L
    (``None``: the method's default), ``hemisphere`` (the same planes at half the cost),
    ``slice_size`` in pixels (``None``: the checkpoint's), ``batch_size`` slices per network call
    (``None``: 64 on CPU, 1024 on accelerators), ``compile`` (``torch.compile`` the kernels),
    ``geometry`` (``paper`` or ``physical``) and ``field_of_view`` (``full`` or ``ball``; both
    ``None``: the checkpoint's, see :mod:`tonno_engine.tomography.frames`)."""

    slices: int | None = SLICES
    directions: int | None = None
    hemisphere: bool = False
    slice_size: int | None = None
    batch_size: int | None = None
    compile: bool = False
    geometry: str | None = None
    field_of_view: str | None = None

    def __post_init__(self):
        if self.slices is not None:
            check_count(self.slices, 3, "slices (M)", " (the second difference needs them)")
        for name, minimum in (("directions", 1), ("slice_size", 2), ("batch_size", 1)):
            if getattr(self, name) is not None:
                check_count(getattr(self, name), minimum, name)
        for name, valid in (("geometry", GEOMETRIES), ("field_of_view", FIELDS_OF_VIEW)):
            if getattr(self, name) not in (None, *valid):
                raise ValueError(f"unknown {name.replace('_', ' ')} {getattr(self, name)!r}; valid: {', '.join(valid)}")

    def override(self, changes: dict) -> ReconstructionSettings:
        """A copy with every change of ``changes`` (``{field: value}``) that is not ``None`` applied (CLI options
        left unset keep the preset)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def directions_for(self, default: int | None) -> int | None:
        """L for a method whose own default is ``default``."""
        return self.directions if self.directions is not None else default

    def resolved(self, description=None, shape=None, spacing=None) -> ReconstructionSettings:
        """The settings left unset taken from a checkpoint's ``description``
        (:class:`~tonno_engine.models.checkpoint.CheckpointDescription`; ``None``, a bare model: the package's
        defaults): its geometry, field of view and slice size. In physical geometry with no slice size set and a
        volume's ``shape`` and ``spacing`` (mm per axis) given, the side that keeps the checkpoint's millimetres per
        pixel over this volume's field of view (the side follows the scan's size, docs/methods.md); with
        ``slices=None`` and the volume's ``shape`` (and, in physical geometry, ``spacing``), one offset per voxel.
        The one place where a setting left unset gets its value (L aside: :meth:`directions_for`, per method)."""
        geometry = self.geometry or (description.geometry if description else GEOMETRY)
        field_of_view = self.field_of_view or (description.field_of_view if description else FIELD_OF_VIEW)
        size, slices = self.slice_size or (description.slice_size if description else SLICE_SIZE), self.slices
        sized_by_view = (not self.slice_size and geometry == "physical" and description is not None
                         and description.mm_per_pixel)
        if shape is not None and (sized_by_view or slices is None):
            frame = make_frame(shape, geometry=geometry, spacing=spacing, field_of_view=field_of_view)
            if sized_by_view:
                size = frame.slice_size_for(description.mm_per_pixel)
            if slices is None:
                slices = frame.slices_at_voxel_pitch(shape)
        return replace(self, geometry=geometry, field_of_view=field_of_view, slice_size=size, slices=slices)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ReconstructionSettings:
        """From :meth:`as_dict` (or an older ``run.json``, which called L ``angles``)."""
        names = {f.name for f in fields(cls)}
        d = {"directions": d["angles"], **d} if "angles" in d else d
        return cls(**{k: v for k, v in d.items() if k in names})

    def describe(self) -> str:
        directions = self.directions if self.directions is not None else (
            f"{TONNO_DIRECTIONS} ({CAM_DIRECTIONS} for CAM variants)")
        slices = self.slices if self.slices is not None else "one per voxel"
        return f"M={slices}, L={directions}, {'hemisphere' if self.hemisphere else 'full sphere'}"


#: named settings: the paper's (§4.2), a CPU preview (a 128³ volume in under 30 s on 2 cores with
#: the demo model; its agreement with the paper setting is in bench/RESULTS.md), the CPU demo's, and
#: ``fine``: one offset per voxel, for lesions a few voxels wide, which the second difference over the
#: coarser offsets of ``preview`` and ``demo`` blurs (docs/studies/look-alikes.md, issue 24)
PRESETS = {
    "paper": ReconstructionSettings(slices=SLICES, directions=None, hemisphere=False),
    "preview": ReconstructionSettings(slices=20, directions=448, hemisphere=True),
    "demo": ReconstructionSettings(slices=24, directions=192, hemisphere=True),
    "fine": ReconstructionSettings(slices=None, directions=96, hemisphere=True),
}


def preset(name: str) -> ReconstructionSettings:
    """The preset ``name``; ``ValueError`` listing the valid ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown quality preset {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]


def presets_help() -> str:
    """One clause per preset for help texts."""
    return "; ".join(f"{name}: {p.describe()}" for name, p in PRESETS.items())
