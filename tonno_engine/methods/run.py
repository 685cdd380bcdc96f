"""Running the registry's methods (:mod:`tonno_engine.base.registry`) on a volume with a model.

>>> spec = MethodSpec("tomographic-cam", cam="layercam", layer=2)
>>> spec.label
'tomographic-layercam-l2'
>>> settings = ReconstructionSettings(slices=100, directions=1000, slice_size=224)
>>> heatmap = run_method(spec, volume, model, settings)   # doctest: +SKIP

:func:`methods_iter` is a generator of :class:`Progress` and :class:`Partial` events, so the CLI and
napari render them the same way. A whole case (a scan and a checkpoint) goes through
:func:`tonno_engine.methods.case.reconstruct_case_iter`, which preprocesses it and resolves the
settings against the checkpoint first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from functools import partial

import torch
import torch.nn.functional as F

from ..base.defaults import DEVICE, DIRECTIONS_PER_UPDATE, FIELD_OF_VIEW, GEOMETRY, MEMORY_BUDGET, SLICE_SIZE
from ..base.distributed import World
from ..base.events import Partial, Progress
from ..base.inputs import as_shape3
from ..base.registry import MethodSpec
from ..cams.extractor import CamExtractor
from ..cams.slicewise import slicewise_iter
from ..tomography.frames import make_frame
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
    (``ValueError`` naming an unknown one)."""
    findings = tuple(findings or ())
    check_findings(findings, chosen)
    if not findings:
        return list(specs)
    return [replace(s, finding=f, output=k) for k, f in enumerate(findings) if not chosen or f in chosen for s in specs]


def plan_passes(specs, settings: ReconstructionSettings = PAPER) -> list[list[MethodSpec]]:
    """Group methods that can share one pass over the slices.

    Tomographic methods that need CAM maps with the same CAM, layer and L read the same maps, and
    a logit comes free with them, so each such group costs one forward/backward pass; methods
    that need only logits join a CAM group with their L, else share a forward-only pass.
    Slice-wise methods run alone (they are cheap), but once for all findings.
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
    passes = [*logit_passes.values(), *groups.values(), *flat.values()]
    for group in passes:  # one method's findings side by side: they are added together (one interpolation)
        units = list(dict.fromkeys(s.unit for s in group))
        group.sort(key=lambda s: units.index(s.unit))
    return passes


def methods_iter(
    specs,
    volume,
    model: torch.nn.Module,
    settings: ReconstructionSettings = PAPER,
    *,
    device=DEVICE,
    output_shape=None,
    axial_axis: int = AXIAL_AXIS,
    spacing=None,
    partials: bool = True,
    directions_per_update: int = DIRECTIONS_PER_UPDATE,
    memory_budget: int = MEMORY_BUDGET,
    world: World | None = None,
    context: float = 0.0,
) -> Iterator[Progress | Partial]:
    """Events of several methods on one preprocessed ``volume`` ``(D, H, W)`` with the one-logit ``model``.

    Methods that can share a pass over the slices do (:func:`plan_passes`). ``settings`` as they are
    (``slice_size``, ``geometry``, ``field_of_view`` left ``None`` take 224, paper, full; a case
    resolves them against its checkpoint first); ``spacing``: mm per axis of ``volume`` (physical
    geometry); slice-wise methods use ``axial_axis`` (or all three axes when ``spec.axes == 3``).
    ``world``: a joined process group over which the tomographic methods split their directions
    (rank 0 then holds the heatmaps; no partials). ``context``: the model's 2.5D input (the checkpoint's, slice
    pixels; 0: one plane per slice). Yields ``Progress`` and ``Partial`` events; partial
    values are ``{label: heatmap}`` for the pass in progress, and the final value ``{label: heatmap}``
    for all methods, each ``(D, H, W)`` (or ``output_shape``) float32 on ``device``.
    """
    _check_input_channels(model, context)
    run = partial(_pass_iter, volume=volume, model=model, settings=settings, device=device, output_shape=output_shape,
                  axial_axis=axial_axis, spacing=spacing, partials=partials and not (world and world.distributed),
                  directions_per_update=directions_per_update, memory_budget=memory_budget, world=world,
                  context=context)
    results: dict[str, torch.Tensor] = {}
    for group in plan_passes(specs, settings):
        for event in run(group):
            if isinstance(event, Partial):
                maps = event.value if isinstance(event.value, tuple) else (event.value,)
                value = dict(zip((s.label for s in group), maps))
                if event.final:
                    results.update(value)
                    continue
                event = Partial(value, event.done, event.total)
            yield event
    yield Partial(results, 1, 1, final=True)


def _check_input_channels(model, context: float) -> None:
    """``ValueError`` when the first convolution of ``model`` (a module; anything else, e.g. the R_Σ scorer, passes)
    does not take the channels ``context`` cuts (:func:`input_channels`): said before any slice is cut, rather than
    as a shape error deep in the first pass."""
    first = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None) \
        if isinstance(model, torch.nn.Module) else None
    if first is not None and first.in_channels != input_channels(context):
        raise ValueError(f"the model takes {first.in_channels} input channel(s) but context={context:g} cuts "
                         f"{input_channels(context)}: pass the checkpoint's context (its description's `context`)")


def _pass_iter(group, *, volume, model, settings: ReconstructionSettings, device, output_shape, axial_axis, spacing,
               partials, directions_per_update, memory_budget, world, context):
    """One pass over the slices for the methods of ``group``; partial values are tuples, one map per method."""
    first = group[0]
    size = settings.slice_size or SLICE_SIZE
    frame = dict(geometry=settings.geometry or GEOMETRY, spacing=spacing,
                 field_of_view=settings.field_of_view or FIELD_OF_VIEW)
    if not first.tomographic:
        axes = (0, 1, 2) if first.axes == 3 else (axial_axis,)
        targets = tuple(s.output for s in group) if _findings(group) else None
        extractor = CamExtractor(model, first.cam_name, first.layer, targets=targets, context=context)
        for event in slicewise_iter(volume, extractor, axes=axes, slice_size=size, device=device,
                                    batch_size=settings.batch_size, **frame):
            if isinstance(event, Partial) and output_shape is not None:
                shape = as_shape3(output_shape)
                value = (tuple(resize(v, shape) for v in event.value) if isinstance(event.value, tuple)
                         else resize(event.value, shape))
                event = Partial(value, event.done, event.total, event.final)
            yield event
        return
    directions = settings.directions_for(first.default_directions)
    scorer = _scorer(group, model, settings.compile, context)
    slices = settings.slices or make_frame(volume.shape, **frame).slices_at_voxel_pitch(volume.shape)

    def events_of(subset):
        return reconstruct_iter(volume, scorer, formula=tuple(s.formula for s in group), slices=slices,
                                directions=directions, slice_size=size, hemisphere=settings.hemisphere, device=device,
                                output_shape=output_shape, batch_size=settings.batch_size,
                                directions_per_update=directions_per_update, partials=partials,
                                memory_budget=memory_budget, compile=settings.compile, subset=subset, **frame)

    if world is not None and world.distributed:
        yield from sharded_iter(events_of, directions, world)
    else:
        yield from events_of(None)


def _findings(group) -> bool:
    """Whether the methods of ``group`` name findings (the classifier has several logits)."""
    return any(s.finding for s in group)


def _scorer(group, model, compile: bool, context: float):
    """Slices → a tuple of outputs, one per method of ``group``: logits, or the maps of one CAM
    extractor (whose logits come with them); with findings, each method's finding's. Its ``context`` is the
    model's (:func:`~tonno_engine.tomography.scorers.scorer_context`)."""
    several = _findings(group)
    if not any(s.needs_cam for s in group):
        logits = ModuleScorer(model, compile=compile, every_logit=several, context=context)

        def scorer(batch):
            return tuple(logits(batch).T[[s.output for s in group]]) if several else (logits(batch),) * len(group)
    else:
        cam = next(s for s in group if s.needs_cam)
        targets = tuple(dict.fromkeys(s.output for s in group if s.needs_cam)) if several else None
        extractor = CamExtractor(model, cam.cam, cam.layer, with_logits=True, targets=targets, context=context)
        keep = [1 if s.needs_cam else 0 for s in group]  # which extractor output each formula reads

        def scorer(batch):
            outputs = extractor(batch)
            if several:  # logits (B, K), maps (B, F, a, b)
                return tuple(outputs[1][:, targets.index(s.output)] if s.needs_cam else outputs[0][:, s.output]
                             for s in group)
            return tuple(outputs[k] for k in keep)

    scorer.context = context
    return scorer


def run_methods(specs, volume, model: torch.nn.Module, settings: ReconstructionSettings = PAPER, *, device=DEVICE,
                output_shape=None, axial_axis: int = AXIAL_AXIS, spacing=None,
                world: World | None = None, context: float = 0.0) -> dict[str, torch.Tensor]:
    """``{label: heatmap}`` for every method of ``specs`` (:func:`methods_iter` without partials)."""
    return final_result(methods_iter(specs, volume, model, settings, device=device, output_shape=output_shape,
                                     axial_axis=axial_axis, spacing=spacing, partials=False, world=world,
                                     context=context))


def run_method(spec: MethodSpec, volume, model: torch.nn.Module, settings: ReconstructionSettings = PAPER, *,
               device=DEVICE, output_shape=None, axial_axis: int = AXIAL_AXIS, spacing=None,
               context: float = 0.0) -> torch.Tensor:
    """The heatmap of one method (:func:`run_methods`)."""
    return run_methods([spec], volume, model, settings, device=device, output_shape=output_shape,
                       axial_axis=axial_axis, spacing=spacing, context=context)[spec.label]


def resize(volume: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Trilinear resampling of ``(D, H, W)`` onto ``shape`` in the same ``[-1, 1]³`` (corners aligned)."""
    if tuple(volume.shape) == tuple(shape):
        return volume
    return F.interpolate(volume[None, None], size=shape, mode="trilinear", align_corners=True)[0, 0]
