"""The one registry of heatmap methods and CAMs. Torch-free: the CLI's help lists it.

Each method is one :class:`MethodRecord` (name, title used in tables and figures, kind, what it
needs, default number of directions, formula); each CAM one :class:`CamRecord`, and every CAM is
also a slice-wise method. The CLI's choices, the widgets' combo boxes, ``tonno benchmark``'s
rows, output file labels and display names all come from here, so adding a method is one call to
:func:`register_method` (see docs/methods.md for a worked example).

Implementations are named as ``"module:attribute"`` strings and imported on first use, which keeps
this module free of torch; a record may also hold the object itself.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass

#: the encoder layers a CAM can read (outputs at strides 4, 8, 16, 32)
LAYERS = (1, 2, 3, 4)
KINDS = ("tomographic", "slicewise")
NEEDS = ("logits", "cam")


def resolve(ref):
    """The object a ``"module:attribute"`` reference names (anything else is returned as it is)."""
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class CamRecord:
    """A class activation map. ``impl``: ``(extractor, x (B, 1, h, w)) -> (logits (B,), maps (B, a, b))``."""

    name: str  # the CLI's spelling, e.g. "gradcam++"
    title: str  # as in the paper's tables, e.g. "GradCAM++"
    tag: str  # filename-safe, e.g. "gradcampp"
    impl: object
    reference: str = ""


@dataclass(frozen=True)
class MethodRecord:
    """A heatmap method.

    ``kind``: ``"tomographic"`` (slices along many directions, combined by ``accumulate``, a
    :class:`~tonno_engine.tomography.reconstruction.Formula`) or ``"slicewise"`` (a CAM on every
    slice of an axis). ``needs``: ``"logits"`` (the network's score of a slice) or ``"cam"`` (maps
    of a CAM at a layer). ``title`` and ``label`` are templates with the fields ``{cam}`` (CAM
    title / tag), ``{layer}`` and ``{axes}`` (``", 3 axes"`` / ``"-axes3"`` when averaged over
    three axes). ``cam`` fixes the CAM (slice-wise records); otherwise the caller chooses it.
    """

    name: str
    title: str
    label: str
    kind: str
    needs: str
    description: str
    formula: str
    default_angles: int | None = None
    accumulate: object = None
    cam: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.needs not in NEEDS:
            raise ValueError(f"{self.name}: needs must be one of {', '.join(NEEDS)}, got {self.needs!r}")
        if self.kind == "tomographic" and (self.accumulate is None or not self.default_angles):
            raise ValueError(f"{self.name}: a tomographic method needs accumulate and default_angles")

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "accumulate"}


#: name -> record, in registration order (the order of every listing)
METHODS: dict[str, MethodRecord] = {}
#: name -> record
CAMS: dict[str, CamRecord] = {}


def register_method(record: MethodRecord, *, replace: bool = False) -> MethodRecord:
    """Add ``record`` to :data:`METHODS`; ``ValueError`` if the name is taken (unless ``replace``)."""
    if record.name in METHODS and not replace:
        raise ValueError(f"method {record.name!r} is already registered")
    METHODS[record.name] = record
    return record


def register_cam(record: CamRecord, *, replace: bool = False) -> CamRecord:
    """Add ``record`` to :data:`CAMS`, and its slice-wise baseline (paper §4.3) to :data:`METHODS`."""
    if record.name in CAMS and not replace:
        raise ValueError(f"CAM {record.name!r} is already registered")
    CAMS[record.name] = record
    register_method(MethodRecord(
        record.name, title="{cam} (layer {layer}{axes})", label="{cam}-l{layer}{axes}", kind="slicewise", needs="cam",
        description=f"slice-wise {record.title}", cam=record.name,
        formula="the CAM of every axial slice, stacked (or the mean over the three axes)"), replace=replace)
    return record


def method(name: str) -> MethodRecord:
    """The record of ``name``; ``ValueError`` listing the valid names."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    return METHODS[name]


def cam(name: str) -> CamRecord:
    """The record of ``name``; ``ValueError`` listing the valid names."""
    if name not in CAMS:
        raise ValueError(f"unknown CAM {name!r}; valid: {', '.join(CAMS)}")
    return CAMS[name]


def describe_methods() -> str:
    """One line per method for help texts: ``name: description``."""
    return "; ".join(f"{r.name}: {r.description}" for r in METHODS.values())


@dataclass(frozen=True)
class MethodSpec:
    """A method with its CAM options. ``cam``/``layer`` apply to every method that needs CAM maps;
    ``axes`` (1: axial only, 3: mean over the three axes) to the slice-wise ones."""

    name: str = "tonno"
    cam: str = "layercam"
    layer: int = 2
    axes: int = 1

    def __post_init__(self):
        method(self.name)
        cam(self.cam)
        if self.layer not in LAYERS:
            raise ValueError(f"layer must be one of 1, 2, 3, 4; got {self.layer!r}")
        if self.axes not in (1, 3):
            raise ValueError(f"axes must be 1 (axial) or 3 (mean over the three axes); got {self.axes!r}")

    @property
    def record(self) -> MethodRecord:
        return method(self.name)

    @property
    def tomographic(self) -> bool:
        return self.record.kind == "tomographic"

    @property
    def needs_cam(self) -> bool:
        return self.record.needs == "cam"

    @property
    def cam_name(self) -> str:
        """The CAM actually used: a slice-wise record's own, else the chosen one."""
        return self.record.cam or self.cam

    def _fields(self, part: str) -> dict:
        record = cam(self.cam_name)
        three = self.axes == 3 and self.record.kind == "slicewise"
        if part == "title":
            return {"cam": record.title, "layer": self.layer, "axes": ", 3 axes" if three else ""}
        return {"cam": record.tag, "layer": self.layer, "axes": "-axes3" if three else ""}

    @property
    def label(self) -> str:
        """A filename-safe tag: ``tonno``, ``averaged-gradcampp-l2``, ``layercam-l2-axes3``."""
        return self.record.label.format(**self._fields("label"))

    @property
    def title(self) -> str:
        """The name in tables and figures: ``ToNNO``, ``Tomographic LayerCAM (layer 2)``."""
        return self.record.title.format(**self._fields("title"))

    @property
    def default_angles(self) -> int | None:
        return self.record.default_angles

    def as_dict(self) -> dict:
        return {**asdict(self), "label": self.label}


_CAM_IMPL = "tonno_engine.cams.maps"
for _record in (
    CamRecord("gradcam", "GradCAM", "gradcam", f"{_CAM_IMPL}:gradcam", "Selvaraju et al. 2017"),
    CamRecord("layercam", "LayerCAM", "layercam", f"{_CAM_IMPL}:layercam", "Jiang et al. 2021"),
    CamRecord("gradcam++", "GradCAM++", "gradcampp", f"{_CAM_IMPL}:gradcampp", "Chattopadhay et al. 2018"),
    CamRecord("scorecam", "ScoreCAM", "scorecam", f"{_CAM_IMPL}:scorecam", "Wang et al. 2020"),
):
    register_cam(_record)

# The tomographic methods first: the CLI and the widgets list them in this order.
_SLICEWISE = dict(METHODS)
METHODS.clear()
register_method(MethodRecord(
    "tonno", title="ToNNO", label="tonno", kind="tomographic", needs="logits", default_angles=2000,
    description="ToNNO, filtered backprojection of slice logits at many angles (paper 3.4)",
    formula="eq. 11: G(x) = c·|S²|/L · Σ_l q̃_l(x·n_l), q = second difference of the logit profile / Δ²",
    accumulate="tonno_engine.tomography.reconstruction:TONNO"))
register_method(MethodRecord(
    "averaged-cam", title="Averaged {cam} (layer {layer})", label="averaged-{cam}-l{layer}", kind="tomographic",
    needs="cam", default_angles=1000,
    description="Averaged CAM, raw CAM maps of the same slices averaged over directions (eq. 12)",
    formula="eq. 12: mean over directions of the map stack read at (x·n_l, x·u_l, x·v_l)",
    accumulate="tonno_engine.cams.tomographic:AVERAGED_CAM"))
register_method(MethodRecord(
    "tomographic-cam", title="Tomographic {cam} (layer {layer})", label="tomographic-{cam}-l{layer}",
    kind="tomographic", needs="cam", default_angles=1000,
    description="Tomographic CAM, per-cell second difference then backprojection (eq. 13)",
    formula="eq. 13: eq. 11 applied to every CAM cell (a, b) of the map stack",
    accumulate="tonno_engine.cams.tomographic:TOMOGRAPHIC_CAM"))
METHODS.update(_SLICEWISE)
del _SLICEWISE, _record
