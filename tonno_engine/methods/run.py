"""Running the registry's methods (:mod:`tonno_engine.base.registry`) on a volume with a model.

>>> spec = MethodSpec("tomographic-cam", cam="layercam", layer=2)
>>> spec.label
'tomographic-layercam-l2'
>>> settings = ReconstructionSettings(slices=100, directions=1000, slice_size=224)
>>> heatmap = run_method(spec, volume, model, settings)   # doctest: +SKIP

:func:`plan_passes` groups methods into typed :class:`Pass` plans (the methods that share a pass over the
slices, and their L); :func:`passes_iter` runs them on a :class:`~tonno_engine.methods.case.PreparedCase`,
handing each tomographic pass straight to the core, and yields :class:`Progress` and :class:`Partial` events
whose values are always ``{label: heatmap}``, so the CLI and napari render them the same way. A whole case (a
scan and a checkpoint) goes through :func:`tonno_engine.methods.case.reconstruct_case_iter`, which preprocesses
it and resolves the settings against the checkpoint once; :func:`run_methods` is the same on a volume that
needs no preprocessing, with a bare model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from ..base.defaults import DEVICE, DIRECTIONS_PER_UPDATE, MEMORY_BUDGET, TONNO_DIRECTIONS
from ..base.distributed import World
from ..base.events import Partial, Progress
from ..base.inputs import as_shape3
from ..base.registry import MethodSpec
from ..cams.extractor import CamExtractor
from ..cams.slicewise import slicewise_iter
from ..tomography.plan import Plan
from ..tomography.reconstruction import final_result, reconstruct_iter
from ..tomography.scorers import ModuleScorer
from ..tomography.sharding import sharded_iter
from ..tomography.slicing import input_channels
from .settings import PRESETS, ReconstructionSettings

#: the settings a call without any takes
PAPER = PRESETS["paper"]
#: the axis whose slices the slice-wise methods take (the last array axis; cases give their own)
AXIAL_AXIS = 2


def check_findings(findings, chosen) -> None:
    """``ValueError`` naming every finding of ``chosen`` that the classifier's ``findings`` do not hold."""
    unknown = [f for f in chosen or () if f not in tuple(findings or ())]
    if unknown:
        known = ", ".join(findings or ()) or "none (it has one logit)"
        raise ValueError(f"unknown finding(s) {', '.join(unknown)}; the checkpoint's findings: {known}")


def for_findings(specs, findings=(), chosen=None) -> list[MethodSpec]:
    """Every method of ``specs`` once per finding of a classifier with the ``findings`` (names, in logit
    order; empty: one logit, ``specs`` as they are), findings first; ``chosen``: only these findings
    (``ValueError`` naming an unknown one). Methods that all name their finding already are kept as they are."""
    findings = tuple(findings or ())
    check_findings(findings, chosen)
    specs = list(specs)
    if specs and all(s.finding for s in specs):
        check_findings(findings, [s.finding for s in specs])
        return specs
    if not findings:
        return specs
    return [replace(s, finding=f, output=k) for k, f in enumerate(findings) if not chosen or f in chosen for s in specs]


@dataclass(frozen=True)
class Pass:
    """One pass over the slices: the methods ``specs`` that share it (one method's findings side by side) and its
    ``directions`` (L; ``None`` for a slice-wise pass, which cuts the volume's own planes)."""

    specs: tuple[MethodSpec, ...]
    directions: int | None

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(s.label for s in self.specs)

    @property
    def findings(self) -> bool:
        """Whether the methods name findings (the classifier has several logits)."""
        return any(s.finding for s in self.specs)

    def scorer(self, model, compile: bool, context: float):
        """Slices → a tuple of outputs, one per method: logits, or the maps of one CAM extractor (whose logits
        come with them); with findings, each method's finding's. Its ``context`` is the model's
        (:func:`~tonno_engine.tomography.scorers.scorer_context`)."""
        specs, several = self.specs, self.findings
        if not any(s.needs_cam for s in specs):
            logits = ModuleScorer(model, compile=compile, every_logit=several, context=context)

            def scorer(batch):
                return tuple(logits(batch).T[[s.output for s in specs]]) if several else (logits(batch),) * len(specs)
        else:
            cam = next(s for s in specs if s.needs_cam)
            targets = tuple(dict.fromkeys(s.output for s in specs if s.needs_cam)) if several else None
            extractor = CamExtractor(model, cam.cam, cam.layer, with_logits=True, targets=targets, context=context)
            keep = [1 if s.needs_cam else 0 for s in specs]  # which extractor output each formula reads

            def scorer(batch):
                outputs = extractor(batch)
                if several:  # logits (B, K), maps (B, F, a, b)
                    return tuple(outputs[1][:, targets.index(s.output)] if s.needs_cam else outputs[0][:, s.output]
                                 for s in specs)
                return tuple(outputs[k] for k in keep)

        scorer.context = context
        return scorer

    def cam(self, model, context: float) -> CamExtractor:
        """The slice-wise pass's CAM: maps of every method's finding (one map without findings)."""
        first = self.specs[0]
        targets = tuple(s.output for s in self.specs) if self.findings else None
        return CamExtractor(model, first.cam_name, first.layer, targets=targets, context=context)


@dataclass(frozen=True)
class CaseRun:
    """How a case's passes run, beside its settings: ``partials`` (heatmaps while directions accumulate), every
    ``directions_per_update`` directions (``None``: :data:`~tonno_engine.base.defaults.DIRECTIONS_PER_UPDATE`),
    ``memory_budget`` bytes of backprojection temporaries per pass, and ``world``: a joined ``torchrun`` group over
    which each tomographic pass splits its directions (rank 0 then holds the heatmaps; no partials)."""

    partials: bool = False
    directions_per_update: int | None = None
    memory_budget: int = MEMORY_BUDGET
    world: World | None = None

    @property
    def distributed(self) -> bool:
        return self.world is not None and self.world.distributed


@dataclass(frozen=True)
class PreparedCase:
    """A scan as the model sees it: ``volume`` ``(D', H', W')`` float32, or ``(I, D', H', W')`` for a scan of ``I``
    images (channels: PET and CT, MR sequences) on one grid (preprocessed, resampled when the
    checkpoint says so), its ``spacing`` (mm per axis, after resampling), the ``settings`` resolved for this volume
    (slice size, geometry, field of view and M; L stays per method), the scan's own ``shape`` (the heatmaps' grid),
    its ``axial_axis`` and the ``box`` of the scan the volume covers (``None``: all of it; a cropped checkpoint's
    heatmaps are made on the box and pasted onto the scan's grid, the rest at each heatmap's minimum)."""

    volume: np.ndarray | torch.Tensor
    spacing: tuple[float, float, float] | None
    settings: ReconstructionSettings
    shape: tuple[int, int, int]
    axial_axis: int = AXIAL_AXIS
    box: tuple[slice, slice, slice] | None = None

    @property
    def box_shape(self) -> tuple[int, int, int]:
        """The grid the heatmaps are made on: the box's shape, or the scan's."""
        return self.shape if self.box is None else tuple(s.stop - s.start for s in self.box)

    def paste(self, heatmap: torch.Tensor) -> torch.Tensor:
        """A heatmap on :attr:`box_shape` as one on the scan's ``shape``: outside the box (air, background) each
        heatmap's own minimum, the least suspicious value it holds."""
        if self.box is None:
            return heatmap
        full = heatmap.new_full(tuple(self.shape), float(heatmap.min()) if heatmap.numel() else 0.0)
        full[self.box] = heatmap
        return full

    @classmethod
    def of_volume(cls, volume, settings: ReconstructionSettings = PAPER, *, spacing=None,
                  output_shape=None) -> PreparedCase:
        """A volume ``(D, H, W)`` (or a scan of several images ``(I, D, H, W)``) that needs no preprocessing, for a
        bare model: the settings left unset take the package's defaults; ``output_shape``: the heatmaps' grid
        (default: the volume's)."""
        shape = tuple(volume.shape[-3:])
        resolved = settings.resolved(None, shape, spacing)
        return cls(volume, spacing, resolved, tuple(output_shape) if output_shape is not None else shape)

    def plan(self, device, directions: int = TONNO_DIRECTIONS, run: CaseRun = CaseRun()) -> Plan:
        """The core's :class:`~tonno_engine.tomography.plan.Plan` for a pass of L = ``directions`` over this case
        on ``device``: every setting resolved, the heatmaps on the scan's grid."""
        s = self.settings
        return Plan(slices=s.slices, directions=directions, slice_size=s.slice_size, hemisphere=s.hemisphere,
                    geometry=s.geometry, spacing=self.spacing, field_of_view=s.field_of_view, output_shape=self.box_shape,
                    device=device, batch_size=s.batch_size, compile=s.compile, memory_budget=run.memory_budget,
                    directions_per_update=run.directions_per_update or DIRECTIONS_PER_UPDATE)


def plan_passes(specs, settings: ReconstructionSettings = PAPER) -> list[Pass]:
    """Group methods that can share one pass over the slices.

    Tomographic methods that need CAM maps with the same CAM, layer and L read the same maps, and
    a logit comes free with them, so each such group costs one forward/backward pass; methods
    that need only logits join a CAM group with their L, else share a forward-only pass.
    Slice-wise methods run alone (they are cheap), but once for all findings. L per method: the
    settings' (:meth:`~tonno_engine.methods.settings.ReconstructionSettings.directions_for`).
    """
    specs = list(dict.fromkeys(specs))
    groups: dict[tuple, list[MethodSpec]] = {}
    for spec in specs:
        if spec.tomographic and spec.needs_cam:
            groups.setdefault((spec.cam, spec.layer, settings.directions_for(spec.default_directions)), []).append(spec)
    logit_passes: dict[int, list[MethodSpec]] = {}
    for spec in specs:
        if spec.tomographic and not spec.needs_cam:
            directions = settings.directions_for(spec.default_directions)
            host = next((g for key, g in groups.items() if key[2] == directions), None)
            if host is not None:
                host.insert(sum(not s.needs_cam for s in host), spec)
            else:
                logit_passes.setdefault(directions, []).append(spec)
    flat: dict[MethodSpec, list[MethodSpec]] = {}
    for spec in specs:
        if not spec.tomographic:
            flat.setdefault(spec.unit, []).append(spec)
    passes = [*logit_passes.items(), *((key[2], g) for key, g in groups.items()), *((None, g) for g in flat.values())]
    planned = []
    for directions, group in passes:  # one method's findings side by side: they are added together (one interpolation)
        units = list(dict.fromkeys(s.unit for s in group))
        planned.append(Pass(tuple(sorted(group, key=lambda s: units.index(s.unit))), directions))
    return planned


def passes_iter(case, model: torch.nn.Module, passes: list[Pass], run: CaseRun = CaseRun(), *, device=DEVICE,
                context: float = 0.0) -> Iterator[Progress | Partial]:
    """Events of the ``passes`` on one prepared ``case`` (:class:`~tonno_engine.methods.case.PreparedCase`) with
    ``model`` on ``device`` (``context``: its 2.5D input, slice pixels; 0: one plane). Each tomographic pass goes
    straight to the core (:func:`~tonno_engine.tomography.reconstruction.reconstruct_iter`), split over
    ``run.world`` when distributed. Yields ``Progress`` and ``Partial`` events, every value ``{label: heatmap}``:
    partial ones for the pass in progress (with ``run.partials``), the final one for every method, each float32 on
    the case's grid ``case.shape``, on ``device``."""
    _check_input_channels(model, context, case.volume.shape[0] if case.volume.ndim == 4 else 1)
    partials = run.partials and not run.distributed
    results: dict[str, torch.Tensor] = {}
    for plan in passes:
        if plan.directions is None:
            events = _slicewise_iter(case, plan.cam(model, context), plan.specs[0], device)
        else:
            core = case.plan(device, plan.directions, run)
            scorer = plan.scorer(model, case.settings.compile, context)
            formulas = tuple(s.formula for s in plan.specs)
            events = (_sharded_iter(case.volume, scorer, core, formulas, run.world) if run.distributed
                      else reconstruct_iter(case.volume, scorer, core, formulas, partials=partials))
        for event in events:
            if isinstance(event, Partial):
                value = dict(zip(plan.labels, (case.paste(v) for v in event.value)))
                if event.final:
                    results.update(value)
                    continue
                event = Partial(value, event.done, event.total)
            yield event
    yield Partial(results, 1, 1, final=True)


def _sharded_iter(volume, scorer, core: Plan, formulas: tuple, world: World) -> Iterator[Progress | Partial]:
    """A tomographic pass with its directions split over the ranks of ``world`` (rank 0 holds the heatmaps)."""
    return sharded_iter(lambda subset: reconstruct_iter(volume, scorer, core, formulas, partials=False, subset=subset),
                        core.directions, world)


def _slicewise_iter(case, cam: CamExtractor, spec: MethodSpec, device) -> Iterator[Progress | Partial]:
    """A slice-wise pass on the case's ``axial_axis`` (or all three axes when ``spec.axes == 3``), its final
    heatmaps resampled onto the case's grid."""
    for event in slicewise_iter(case.volume, cam, case.plan(device), axes=(0, 1, 2) if spec.axes == 3 else (case.axial_axis,)):
        if isinstance(event, Partial):
            event = Partial(tuple(resize(v, as_shape3(case.box_shape)) for v in event.value), event.done, event.total,
                            event.final)
        yield event


def _check_input_channels(model, context: float, images: int = 1) -> None:
    """``ValueError`` when the first convolution of ``model`` (a module; anything else, e.g. the R_Σ scorer, passes)
    does not take the channels ``context`` cuts from a scan of ``images`` images (:func:`input_channels`): said
    before any slice is cut, rather than as a shape error deep in the first pass."""
    first = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None) \
        if isinstance(model, torch.nn.Module) else None
    if first is not None and first.in_channels != input_channels(context, images):
        raise ValueError(f"the model takes {first.in_channels} input channel(s) but context={context:g} cuts "
                         f"{input_channels(context, images)} from {images} image(s) per case: pass the checkpoint's "
                         "context (its description's `context`) and a scan of its channels")


def run_methods(specs, volume, model: torch.nn.Module, settings: ReconstructionSettings = PAPER, *, device=DEVICE,
                context: float = 0.0, spacing=None, output_shape=None) -> dict[str, torch.Tensor]:
    """``{label: heatmap}`` for every method of ``specs`` on a ``volume`` ``(D, H, W)`` that needs no preprocessing,
    with a bare ``model`` on ``device`` (``context``: its 2.5D input): the settings left unset take the package's
    defaults (:meth:`~tonno_engine.methods.settings.ReconstructionSettings.resolved` without a checkpoint);
    ``spacing``: mm per axis (physical geometry); ``output_shape``: the heatmaps' grid (the same extent)."""
    case = PreparedCase.of_volume(volume, settings, spacing=spacing, output_shape=output_shape)
    return final_result(passes_iter(case, model, plan_passes(specs, case.settings), device=device, context=context))


def run_method(spec: MethodSpec, volume, model: torch.nn.Module, settings: ReconstructionSettings = PAPER, *,
               device=DEVICE, context: float = 0.0, output_shape=None) -> torch.Tensor:
    """The heatmap of one method (:func:`run_methods`)."""
    return run_methods([spec], volume, model, settings, device=device, context=context,
                       output_shape=output_shape)[spec.label]


def resize(volume: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Trilinear resampling of ``(D, H, W)`` onto ``shape`` in the same ``[-1, 1]³`` (corners aligned)."""
    if tuple(volume.shape) == tuple(shape):
        return volume
    return F.interpolate(volume[None, None], size=shape, mode="trilinear", align_corners=True)[0, 0]
