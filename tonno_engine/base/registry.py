"""The one registry of heatmap methods and CAMs.

Each method is one :class:`MethodRecord` (name, title used in tables and figures, kind, what it
needs, default number of directions, and the formula object that adds a chunk of directions to the
heatmap); each CAM one :class:`CamRecord` holding its function, and every CAM is also a slice-wise
method. The CLI's choices, the widgets' combo boxes, ``tonno benchmark``'s rows, output file labels
and display names all come from here.

A method is registered where it is defined, by :func:`register_method` at import of its module. The
registry imports those modules on first use through the entry-point group ``tonno.methods``
(:data:`ENTRY_POINT_GROUP`): tonno's own modules are entries of this package, and an installed
third-party package adds a method to the CLI, the widgets and ``tonno methods`` by declaring an entry
in the same group (docs/methods.md), with nothing importing it first.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, replace
from importlib.metadata import entry_points

from .defaults import CAM, CAM_LAYER
from .solver_settings import SolverSettings

#: the encoder layers a CAM can read (outputs at strides 4, 8, 16, 32)
LAYERS = (1, 2, 3, 4)
KINDS = ("tomographic", "slicewise")
NEEDS = ("logits", "cam")
#: the entry-point group whose modules register methods and CAMs when imported
ENTRY_POINT_GROUP = "tonno.methods"
#: the distribution whose entries load first (its methods lead every listing)
OWN_DISTRIBUTION = "napari-tonno"


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

    ``kind``: ``"tomographic"`` (slices along many directions, combined by ``formula``, an object of
    the :class:`~tonno_engine.tomography.reconstruction.Formula` protocol) or ``"slicewise"`` (a CAM on
    every slice of an axis). ``needs``: ``"logits"`` (the network's score of a slice) or ``"cam"``
    (maps of a CAM at a layer). ``title`` and ``label`` are templates with the fields ``{cam}`` (CAM
    title / tag), ``{layer}`` and ``{axes}`` (``", 3 axes"`` / ``"-axes3"`` when averaged over three
    axes). ``cam`` fixes the CAM (slice-wise records); otherwise the caller chooses it. ``equation``
    is the formula in words, for ``tonno methods``.
    """

    name: str
    title: str
    label: str
    kind: str
    needs: str
    description: str
    equation: str
    default_directions: int | None = None
    formula: object = None
    cam: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.needs not in NEEDS:
            raise ValueError(f"{self.name}: needs must be one of {', '.join(NEEDS)}, got {self.needs!r}")
        if self.kind == "tomographic" and (self.formula is None or not self.default_directions):
            raise ValueError(f"{self.name}: a tomographic method needs a formula and default_directions")

    @property
    def solves(self) -> bool:
        """Whether the formula refines its heatmap by a solver (the iterative methods; they take solver settings)."""
        return hasattr(self.formula, "solve")

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "formula"}


_METHODS: dict[str, MethodRecord] = {}
_CAMS: dict[str, CamRecord] = {}
_loaded = False
_loading = threading.RLock()


def load_methods() -> None:
    """Import every module of the entry-point group (once): each registers its methods. tonno's own
    entries first, then other distributions', each in name order."""
    global _loaded
    with _loading:
        if _loaded:
            return
        _loaded = True  # set first: a module being loaded may list the registry
        found = entry_points(group=ENTRY_POINT_GROUP)
        for ep in sorted(found, key=lambda e: (getattr(e.dist, "name", "") != OWN_DISTRIBUTION, e.name)):
            ep.load()


def methods() -> dict[str, MethodRecord]:
    """name -> record: the tomographic methods, then the slice-wise ones, each in registration order."""
    load_methods()
    ordered = sorted(_METHODS.values(), key=lambda r: KINDS.index(r.kind))
    return {r.name: r for r in ordered}


def cams() -> dict[str, CamRecord]:
    """name -> record, in registration order."""
    load_methods()
    return dict(_CAMS)


def __getattr__(name: str):
    """``METHODS`` and ``CAMS``: the loaded registry (see :func:`methods`, :func:`cams`)."""
    if name == "METHODS":
        return methods()
    if name == "CAMS":
        return cams()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register_method(record: MethodRecord, *, replace: bool = False) -> MethodRecord:
    """Add ``record``; ``ValueError`` if the name is taken (unless ``replace``)."""
    if record.name in _METHODS and not replace:
        raise ValueError(f"method {record.name!r} is already registered")
    _METHODS[record.name] = record
    return record


def unregister_method(name: str) -> None:
    """Remove a method (a test's or a plugin's own clean-up); a CAM's slice-wise record stays with its CAM."""
    _METHODS.pop(name, None)


def register_cam(record: CamRecord, *, replace: bool = False) -> CamRecord:
    """Add ``record``, and its slice-wise baseline (paper §4.3) as a method."""
    if record.name in _CAMS and not replace:
        raise ValueError(f"CAM {record.name!r} is already registered")
    _CAMS[record.name] = record
    register_method(MethodRecord(
        record.name, title="{cam} (layer {layer}{axes})", label="{cam}-l{layer}{axes}", kind="slicewise", needs="cam",
        description=f"slice-wise {record.title}", cam=record.name,
        equation="the CAM of every axial slice, stacked (or the mean over the three axes)"), replace=replace)
    return record


def method(name: str) -> MethodRecord:
    """The record of ``name``; ``ValueError`` listing the valid names."""
    known = methods()
    if name not in known:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(known)}")
    return known[name]


def cam(name: str) -> CamRecord:
    """The record of ``name``; ``ValueError`` listing the valid names."""
    known = cams()
    if name not in known:
        raise ValueError(f"unknown CAM {name!r}; valid: {', '.join(known)}")
    return known[name]


def solving_methods() -> list[str]:
    """The names of the iterative methods (whose formula solves), in listing order."""
    return [n for n, r in methods().items() if r.solves]


def describe_methods() -> str:
    """One line per method for help texts: ``name: description``."""
    return "; ".join(f"{r.name}: {r.description}" for r in methods().values())


@dataclass(frozen=True)
class MethodSpec:
    """A method with its options. ``cam``/``layer`` apply to every method that needs CAM maps;
    ``axes`` (1: axial only, 3: mean over the three axes) to the slice-wise ones; ``solver`` to the
    iterative ones (whose formula solves; any other method refuses settings other than the defaults).
    ``finding``/``output``: with a classifier of several findings, the finding this heatmap is of and
    its logit's index (``""``: the one logit, index 0)."""

    name: str = "tonno"
    cam: str = CAM
    layer: int = CAM_LAYER
    axes: int = 1
    solver: SolverSettings = SolverSettings()
    finding: str = ""
    output: int = 0

    def __post_init__(self):
        method(self.name)
        cam(self.cam)
        if self.layer not in LAYERS:
            raise ValueError(f"layer must be one of 1, 2, 3, 4; got {self.layer!r}")
        if self.axes not in (1, 3):
            raise ValueError(f"axes must be 1 (axial) or 3 (mean over the three axes); got {self.axes!r}")
        if not isinstance(self.output, int) or self.output < 0 or (self.output and not self.finding):
            raise ValueError(f"output must be a logit index >= 0 of a named finding; got {self.output!r}")
        if self.solver != SolverSettings() and not self.solves:
            raise ValueError(f"{self.name} is not an iterative method: solver settings apply to "
                             f"{', '.join(solving_methods())}")

    @property
    def solves(self) -> bool:
        """Whether the method refines its heatmap by a solver (and so reads ``solver``)."""
        return self.record.solves

    @property
    def formula(self):
        """The record's formula, with this spec's solver settings when the method solves."""
        return self.record.formula.with_solver(self.solver) if self.solves else self.record.formula

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
        """A filename-safe tag: ``tonno``, ``averaged-gradcampp-l2``, ``layercam-l2-axes3``,
        ``tonno-iterative-tv0.1-nonneg`` (an iterative method's solver settings when not the defaults),
        ``tonno_effusion`` (a finding's)."""
        return (self.record.label.format(**self._fields("label")) + (self.solver.tag if self.solves else "")
                + (f"_{self.finding}" if self.finding else ""))

    @property
    def title(self) -> str:
        """The name in tables and figures: ``ToNNO``, ``Tomographic LayerCAM (layer 2)``,
        ``Iterative ToNNO, TV 0.1, f ≥ 0``, ``ToNNO [effusion]``."""
        return (self.record.title.format(**self._fields("title")) + (self.solver.title if self.solves else "")
                + (f" [{self.finding}]" if self.finding else ""))

    @property
    def method_title(self) -> str:
        """:attr:`title` without the finding (a table per finding needs no more)."""
        return self.title.removesuffix(f" [{self.finding}]") if self.finding else self.title

    @property
    def unit(self) -> MethodSpec:
        """This method of the first finding: what one pass over the slices computes for every finding."""
        return replace(self, finding="", output=0)

    @property
    def default_directions(self) -> int | None:
        return self.record.default_directions

    def as_dict(self) -> dict:
        """The fields and the label; ``solver`` only for a method that solves (the others' outputs keep
        the fingerprint they had before methods had solver settings)."""
        fields = asdict(self)
        if not self.solves:
            del fields["solver"]
        if not self.finding:  # (one-finding outputs keep the fingerprint they had before findings)
            del fields["finding"], fields["output"]
        return {**fields, "label": self.label}
