"""One registry for every heatmap method: ToNNO, the tomographic CAM variants, slice-wise CAMs.

>>> spec = MethodSpec("tomographic-cam", cam="layercam", layer=2)
>>> spec.label
'tomographic-layercam-l2'
>>> heatmap = run_method(spec, volume, model, slices=100, angles=1000)   # doctest: +SKIP

Each method is a generator of :class:`Progress` and :class:`Partial` events (see
:func:`method_iter`), so the CLI and napari render them the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .cam_reconstruction import FORMULAS
from .cams import CamExtractor
from .catalog import CAMS, DEFAULT_ANGLES, LAYERS, METHODS, QUALITY_PRESETS, TOMOGRAPHIC  # noqa: F401 (re-export)
from .events import Partial, Progress
from .reconstruction import final_result, reconstruct_iter, tomography_iter
from .scorers import ModuleScorer
from .slicewise import slicewise_iter
from .validation import as_shape3


@dataclass(frozen=True)
class MethodSpec:
    """A method with its CAM options. ``cam``/``layer`` apply to every method but ``tonno``;
    ``axes`` (1: axial only, 3: mean over the three axes) to the slice-wise ones."""

    name: str = "tonno"
    cam: str = "layercam"
    layer: int = 2
    axes: int = 1

    def __post_init__(self):
        if self.name not in METHODS:
            raise ValueError(f"unknown method {self.name!r}; valid: {', '.join(METHODS)}")
        if self.cam not in CAMS:
            raise ValueError(f"unknown CAM {self.cam!r}; valid: {', '.join(CAMS)}")
        if self.layer not in LAYERS:
            raise ValueError(f"layer must be one of 1, 2, 3, 4; got {self.layer!r}")
        if self.axes not in (1, 3):
            raise ValueError(f"axes must be 1 (axial) or 3 (mean over the three axes); got {self.axes!r}")

    @property
    def tomographic(self) -> bool:
        return self.name in TOMOGRAPHIC

    @property
    def cam_name(self) -> str:
        """The CAM actually used: the method's own name for slice-wise methods."""
        return self.cam if self.name in ("averaged-cam", "tomographic-cam") else self.name

    @property
    def label(self) -> str:
        """A filename-safe tag: ``tonno``, ``averaged-gradcampp-l2``, ``layercam-l2-axes3``."""
        if self.name == "tonno":
            return "tonno"
        cam = self.cam_name.replace("++", "pp")
        if self.name in ("averaged-cam", "tomographic-cam"):
            return f"{self.name.split('-')[0]}-{cam}-l{self.layer}"
        return f"{cam}-l{self.layer}" + ("-axes3" if self.axes == 3 else "")

    def as_dict(self) -> dict:
        return {**asdict(self), "label": self.label}


def default_angles(spec: MethodSpec) -> int | None:
    return DEFAULT_ANGLES.get(spec.name)


def plan_passes(specs, angles: int | None = None) -> list[list[MethodSpec]]:
    """Group methods that can share one pass over the slices.

    Averaged and Tomographic CAM with the same CAM, layer and L read the same maps, and ToNNO's
    logit comes free with them, so each such group costs one forward/backward pass. Slice-wise
    methods run alone (they are cheap).
    """
    specs = list(dict.fromkeys(specs))
    groups: dict[tuple, list[MethodSpec]] = {}
    for spec in specs:
        if spec.name in ("averaged-cam", "tomographic-cam"):
            groups.setdefault((spec.cam, spec.layer, angles or default_angles(spec)), []).append(spec)
    passes = list(groups.values())
    for spec in specs:
        if spec.name == "tonno":
            host = next((g for key, g in groups.items() if key[2] == (angles or default_angles(spec))), None)
            if host is not None:
                host.insert(0, spec)
            else:
                passes.insert(0, [spec])
        elif not spec.tomographic:
            passes.append([spec])
    return passes


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
    methods use ``axial_axis`` (or all three axes when ``spec.axes == 3``). Yields ``Progress``
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
        cams = [s for s in group if s.name != "tonno"]
        common = dict(slices=slices, angles=angles or default_angles(cams[0] if cams else first),
                      slice_size=slice_size, hemisphere=hemisphere, device=device, output_shape=output_shape,
                      batch_size=batch_size, **options)
        if not cams:
            yield from reconstruct_iter(volume, ModuleScorer(model, compile=options.get("compile", False)), **common)
            return
        formulas = tuple(FORMULAS[s.name] for s in group)
        extractor = CamExtractor(model, cams[0].cam, cams[0].layer, with_logits=True)
        keep = [0 if s.name == "tonno" else 1 for s in group]  # which scorer output each formula reads

        def scorer(batch):
            outputs = extractor(batch)
            return tuple(outputs[k] for k in keep)

        yield from tomography_iter(volume, scorer, formulas, **common)
        return
    axes = (0, 1, 2) if first.axes == 3 else (axial_axis,)
    extractor = CamExtractor(model, first.cam_name, first.layer)
    for event in slicewise_iter(volume, extractor, axes=axes, slice_size=slice_size, device=device,
                                batch_size=batch_size):
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
