"""Running the registry's methods (:mod:`tonno_engine.base.registry`) on a volume.

>>> spec = MethodSpec("tomographic-cam", cam="layercam", layer=2)
>>> spec.label
'tomographic-layercam-l2'
>>> heatmap = run_method(spec, volume, model, slices=100, angles=1000)   # doctest: +SKIP

Each method is a generator of :class:`Progress` and :class:`Partial` events (see
:func:`method_iter`), so the CLI and napari render them the same way.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ..base.events import Partial, Progress
from ..base.inputs import as_shape3
from ..base.registry import MethodSpec, resolve
from ..cams.extractor import CamExtractor
from ..cams.slicewise import slicewise_iter
from ..tomography.reconstruction import final_result, tomography_iter
from ..tomography.scorers import ModuleScorer


def _angles(spec: MethodSpec, angles: int | None) -> int:
    return angles if angles is not None else spec.default_angles


def plan_passes(specs, angles: int | None = None) -> list[list[MethodSpec]]:
    """Group methods that can share one pass over the slices.

    Tomographic methods that need CAM maps with the same CAM, layer and L read the same maps, and
    a logit comes free with them, so each such group costs one forward/backward pass; methods
    that need only logits join a CAM group with their L, else share a forward-only pass.
    Slice-wise methods run alone (they are cheap).
    """
    specs = list(dict.fromkeys(specs))
    groups: dict[tuple, list[MethodSpec]] = {}
    for spec in specs:
        if spec.tomographic and spec.needs_cam:
            groups.setdefault((spec.cam, spec.layer, _angles(spec, angles)), []).append(spec)
    logit_passes: dict[int, list[MethodSpec]] = {}
    for spec in specs:
        if spec.tomographic and not spec.needs_cam:
            host = next((g for key, g in groups.items() if key[2] == _angles(spec, angles)), None)
            if host is not None:
                host.insert(sum(not s.needs_cam for s in host), spec)
            else:
                logit_passes.setdefault(_angles(spec, angles), []).append(spec)
    return [*logit_passes.values(), *groups.values(), *([s] for s in specs if not s.tomographic)]


def methods_iter(
    specs,
    volume,
    model: torch.nn.Module,
    *,
    slices: int = 100,
    angles: int | None = None,
    slice_size=224,
    hemisphere: bool = False,
    device=None,
    output_shape=None,
    batch_size: int | None = None,
    axial_axis: int = 2,
    **options,
) -> Iterator[Progress | Partial]:
    """Events of several methods on one ``volume`` ``(D, H, W)`` with the one-logit ``model``.

    Methods that can share a pass over the slices do (see :func:`plan_passes`). Tomographic
    methods take ``slices``, ``angles`` (default: the paper's, 2000 for ToNNO, 1000 for CAMs),
    ``hemisphere`` and further :func:`reconstruct_iter` keywords in ``options``; slice-wise
    methods use ``axial_axis`` (or all three axes when ``spec.axes == 3``). Every method takes
    ``geometry``, ``spacing`` and ``field_of_view`` (:mod:`tonno_engine.tomography.frames`). Yields ``Progress``
    and ``Partial`` events; partial values are ``{label: heatmap}`` for the pass in progress,
    and the final value is ``{label: heatmap}`` for all methods, each ``(D, H, W)`` (or
    ``output_shape``) float32 on ``device``.
    """
    results: dict[str, torch.Tensor] = {}
    for group in plan_passes(specs, angles):
        labels = [s.label for s in group]
        for event in _pass_iter(group, volume, model, slices=slices, angles=angles, slice_size=slice_size,
                                hemisphere=hemisphere, device=device, output_shape=output_shape,
                                batch_size=batch_size, axial_axis=axial_axis, **options):
            if isinstance(event, Partial):
                maps = event.value if isinstance(event.value, tuple) else (event.value,)
                value = dict(zip(labels, maps))
                if event.final:
                    results.update(value)
                    continue
                event = Partial(value, event.done, event.total)
            yield event
    yield Partial(results, 1, 1, final=True)


def _pass_iter(group, volume, model, *, slices, angles, slice_size, hemisphere, device, output_shape, batch_size,
               axial_axis, **options):
    first = group[0]
    if first.tomographic:
        cams = [s for s in group if s.needs_cam]
        common = dict(slices=slices, angles=_angles(first, angles), slice_size=slice_size, hemisphere=hemisphere,
                      device=device, output_shape=output_shape, batch_size=batch_size, **options)
        formulas = tuple(resolve(s.record.accumulate) for s in group)
        if cams:
            extractor = CamExtractor(model, cams[0].cam, cams[0].layer, with_logits=True)
            keep = [1 if s.needs_cam else 0 for s in group]  # which extractor output each formula reads

            def scorer(batch):
                outputs = extractor(batch)
                return tuple(outputs[k] for k in keep)
        else:
            logits = ModuleScorer(model, compile=options.get("compile", False))

            def scorer(batch):
                return (logits(batch),) * len(group)

        yield from tomography_iter(volume, scorer, formulas, **common)
        return
    axes = (0, 1, 2) if first.axes == 3 else (axial_axis,)
    extractor = CamExtractor(model, first.cam_name, first.layer)
    frame = {k: options[k] for k in ("geometry", "spacing", "field_of_view") if k in options}
    for event in slicewise_iter(volume, extractor, axes=axes, slice_size=slice_size, device=device,
                                batch_size=batch_size, **frame):
        if isinstance(event, Partial) and output_shape is not None:
            event = Partial(resize(event.value, as_shape3(output_shape)), event.done, event.total, event.final)
        yield event


def method_iter(spec: MethodSpec, volume, model: torch.nn.Module, **options) -> Iterator[Progress | Partial]:
    """Events of one method (see :func:`methods_iter`); partial and final values are heatmaps."""
    for event in methods_iter([spec], volume, model, **options):
        if isinstance(event, Partial):
            event = Partial(event.value[spec.label], event.done, event.total, event.final)
        yield event


def run_methods(specs, volume, model: torch.nn.Module, **options) -> dict[str, torch.Tensor]:
    """``{label: heatmap}`` for every method of ``specs`` (no partials)."""
    options.setdefault("partials", False)
    return final_result(methods_iter(specs, volume, model, **options))


def run_method(spec: MethodSpec, volume, model: torch.nn.Module, **options) -> torch.Tensor:
    """The final heatmap of :func:`method_iter` (no partials)."""
    return run_methods([spec], volume, model, **options)[spec.label]


def resize(volume: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Trilinear resampling of ``(D, H, W)`` onto ``shape`` in the same ``[-1, 1]³`` (corners aligned)."""
    if tuple(volume.shape) == tuple(shape):
        return volume
    return F.interpolate(volume[None, None], size=shape, mode="trilinear", align_corners=True)[0, 0]
