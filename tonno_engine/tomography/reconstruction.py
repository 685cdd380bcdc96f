"""ToNNO: slices at many angles → scores → filtered backprojection (paper §3.4).

Public entry points: :func:`reconstruct` (one call, returns the heatmap) and
:func:`reconstruct_iter` (a generator of :class:`Progress` and :class:`Partial` events whose
partial heatmaps refine as directions accumulate and end exactly at the one-shot result).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ..base.devices import resolve_device
from ..base.distributed import World, agree_on_failure, current_world, reduce_in_slabs
from ..base.events import Partial, Progress
from ..base.inputs import as_shape3, as_size2, as_volume, check_count
from .backprojection import backproject_passes, reconstruction_scale, second_difference
from .frames import make_frame
from .geometry import fibonacci_directions, orthonormal_basis, slice_offsets, spread_order
from .slicing import extract_slices

Scorer = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Directions:
    """``L`` plane normals in spread order with their in-plane bases: each ``(L, 3)`` float64."""

    normals: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor
    hemisphere: bool

    def __len__(self) -> int:
        return len(self.normals)


def make_directions(angles: int, *, hemisphere: bool = False) -> Directions:
    """The Fibonacci lattice, permuted so that every prefix is well spread, with ``(u, v)``."""
    normals = fibonacci_directions(angles, hemisphere=hemisphere)
    normals = normals[spread_order(normals, hemisphere=hemisphere)]
    u, v = orthonormal_basis(normals)
    return Directions(normals, u, v, hemisphere)


def default_batch_size(device: torch.device) -> int:
    """Slices per scorer call: small on CPU (latency, memory), large on accelerators."""
    return 64 if device.type == "cpu" else 1024


def iter_profiles(
    volume: torch.Tensor,
    scorer: Scorer,
    offsets: torch.Tensor,
    normals: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    size: tuple[int, int],
    batch_size: int,
    compiled: bool = False,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Score the ``L × K`` slices at ``offsets`` ``(K,)`` along ``normals`` ``(L, 3)``.

    Yields ``(count, scores)`` per scorer batch, ``scores`` float32 ``(count, ...)`` (``(count,)``
    for a network's logit, ``(count, a, b)`` for CAM maps), or a tuple of such when the scorer
    returns several outputs; concatenated in order, each reshapes to ``(L, K, ...)``.
    ``compiled``: slice with the fused ``torch.compile``-d kernel.
    """
    count = len(normals) * len(offsets)
    flat_s = offsets.repeat(len(normals))
    flat_n, flat_u, flat_v = (a.repeat_interleave(len(offsets), dim=0) for a in (normals, u, v))
    for start in range(0, count, batch_size):
        sl = slice(start, min(count, start + batch_size))
        # inference mode around the work only: a generator suspended inside the context would leave
        # it switched on in the consumer's thread (and in a pooled thread after an abort)
        with torch.inference_mode():
            batch = extract_slices(volume, flat_s[sl], flat_n[sl], flat_u[sl], flat_v[sl], size, compiled=compiled)
            scores = scorer(batch)
            outputs = tuple(scores) if isinstance(scores, (tuple, list)) else (scores,)
            outputs = tuple(o[:, 0] if o.ndim == 2 and o.shape[1] == 1 else o for o in outputs)
            for o in outputs:
                if o.shape[0] != batch.shape[0]:
                    raise ValueError(f"scorer returned {o.shape[0]} scores for {batch.shape[0]} slices")
            outputs = tuple(o.float() for o in outputs)
        yield sl.stop - sl.start, outputs if isinstance(scores, (tuple, list)) else outputs[0]


class Formula:
    """How one chunk of per-direction results ``(Lc, M + 2, ...)`` is added to the heatmap.

    ``accumulate(stack, directions, acc, memory_budget, compiled)`` adds the chunk's (unscaled)
    sum over directions into ``acc`` (``compiled``: with a fused kernel where the formula has
    one), either at once (returning ``None``) or pass by pass: it then returns an iterator the
    caller runs to its end, each step one bounded pass (a point where the work can be cancelled).
    ``scale(L)`` turns the sum over ``L`` directions into the heatmap.
    """

    name = "tonno"

    def accumulate(self, stack, dirs: tuple, acc: torch.Tensor, memory_budget: int,
                   compiled: bool = False) -> Iterator[None] | None:
        """ToNNO (eq. 11): second difference of the logit profiles, filtered backprojection (slab by slab)."""
        return backproject_passes(second_difference(stack, stack.shape[1] - 2, dim=1), dirs[0], acc,
                                  memory_budget=memory_budget, compiled=compiled)

    def scale(self, angles: int) -> float:
        return reconstruction_scale(angles)


TONNO = Formula()


def tomography_iter(
    volume,
    scorer: Scorer,
    formula: Formula | tuple[Formula, ...] = TONNO,
    *,
    slices: int = 100,
    angles: int = 2000,
    slice_size=224,
    hemisphere: bool = False,
    device=None,
    output_shape=None,
    batch_size: int | None = None,
    directions_per_update: int = 32,
    partials: bool = True,
    memory_budget: int = 256 * 2**20,
    compile: bool = False,
    geometry: str = "paper",
    spacing=None,
    field_of_view: str = "full",
    shard_directions: bool = False,
) -> Iterator[Progress | Partial]:
    """Slice along ``angles`` directions, score every slice, add each direction chunk by ``formula``.

    The loop shared by ToNNO and the tomographic CAM variants; see :func:`reconstruct_iter`.
    ``shard_directions`` (under ``torchrun``): each of the ``N`` processes takes every ``N``-th
    direction of the spread order (a well-spread subset), and the sums are reduced onto rank 0 in
    slabs; the final value is the whole heatmap on rank 0 only (other ranks' are partial sums), and
    no intermediate partials are yielded. Every rank must call it with the same arguments. An error on
    one rank is raised on every rank (see :func:`~tonno_engine.base.distributed.agree_on_failure`).
    With a tuple of formulas the scorer returns a tuple of outputs, one per formula (e.g. logits
    and CAM maps from one forward/backward pass), and partial values are tuples of heatmaps.
    ``compile``: slicing and ToNNO's backprojection as fused ``torch.compile``-d kernels
    (:mod:`tonno_engine.tomography.fused`); the scorer is the caller's (``ModuleScorer(compile=True)``).
    """
    dev = resolve_device(device)
    vol = as_volume(volume, dev)
    slices = check_count(slices, 3, "slices", " (the second difference needs them)")
    angles = check_count(angles, 1, "angles")
    size = as_size2(slice_size)
    out_shape = tuple(vol.shape) if output_shape is None else as_shape3(output_shape)
    batch_size = check_count(batch_size or default_batch_size(dev), 1, "batch_size")
    step = check_count(directions_per_update, 1, "directions_per_update")
    several = isinstance(formula, (tuple, list))
    formulas = tuple(formula) if several else (formula,)

    frame = make_frame(vol.shape, geometry=geometry, spacing=spacing, field_of_view=field_of_view)
    dirs = make_directions(angles, hemisphere=hemisphere)
    world = current_world() if shard_directions else World()
    mine = torch.arange(world.rank, angles, world.size)  # every direction in a world of one
    offsets = slice_offsets(slices)
    accs = [torch.zeros(out_shape, dtype=torch.float32, device=dev) for _ in formulas]
    total_slices = len(mine) * (slices + 2)
    done_slices = 0
    partials = partials and not world.distributed

    def value(count: int, final: bool = False):
        maps = tuple((a.mul_ if final else a.mul)(f.scale(count)) for f, a in zip(formulas, accs))
        return maps if several else maps[0]

    try:
        for start in range(0, len(mine), step):
            stop = min(len(mine), start + step)
            pick = mine[start:stop]
            chunk = (dirs.normals[pick], dirs.u[pick], dirs.v[pick])
            cut = tuple(frame.for_slicing(t) for t in chunk)
            scores = []
            for count, batch_scores in iter_profiles(vol, scorer, offsets, *cut, size, batch_size, compile):
                scores.append(batch_scores if several else (batch_scores,))
                done_slices += count
                yield Progress("slices", done_slices, total_slices, "slices", detail=True)
            for k, (f, acc) in enumerate(zip(formulas, accs)):
                stack = torch.cat([s[k] for s in scores])
                passes = f.accumulate(stack.reshape(stop - start, slices + 2, *stack.shape[1:]),
                                      tuple(frame.for_backprojection(t) for t in chunk), acc, memory_budget, compile)
                for _ in passes or ():  # a chunk's backprojection can take seconds: an event per pass
                    yield Progress("slices", done_slices, total_slices, "slices", detail=True)
            if partials and stop < angles:
                yield Partial(value(stop), stop, angles)
    except Exception as exc:  # the ranks agree on a failure before the reduce pairs their sums
        agree_on_failure(exc, world)
    agree_on_failure(None, world)
    for acc in accs:
        reduce_in_slabs(acc, world)
    yield Partial(value(angles, final=True), angles, angles, final=True)


def reconstruct_iter(volume, scorer: Scorer, **options) -> Iterator[Progress | Partial]:
    """Generator form of :func:`reconstruct`.

    Yields ``Progress("slices", done, total)`` after every scorer batch and every backprojection
    pass (a slab of at most ``memory_budget`` bytes of temporaries), and, every
    ``directions_per_update`` directions, ``Partial`` with the heatmap of the directions seen so
    far (a ``(D, H, W)`` tensor, normalised for that prefix; skipped when ``partials`` is false).
    The last event is always ``Partial(final=True)`` holding the result of :func:`reconstruct`.
    Keywords: those of :func:`reconstruct` plus ``batch_size``, ``directions_per_update``,
    ``partials`` and ``memory_budget`` (bytes of backprojection temporaries).
    """
    return tomography_iter(volume, scorer, TONNO, **options)


def final_result(events) -> torch.Tensor:
    """Run an engine generator to its end and return the final :class:`Partial`'s value."""
    for event in events:
        if isinstance(event, Partial) and event.final:
            return event.value
    raise RuntimeError("the generator ended without a final result")  # pragma: no cover


def reconstruct(
    volume,
    scorer: Scorer,
    *,
    slices: int = 100,
    angles: int = 2000,
    slice_size=224,
    hemisphere: bool = False,
    device=None,
    output_shape=None,
    geometry: str = "paper",
    spacing=None,
    field_of_view: str = "full",
    **options,
) -> torch.Tensor:
    """3D heatmap from a 2D scorer by tomographic reconstruction (ToNNO).

    ``volume``: ``(D, H, W)`` array or tensor; ``scorer``: slices ``(B, h, w)`` → scores ``(B,)``;
    ``slices`` = M (``M + 2`` offsets per direction), ``angles`` = L directions on the Fibonacci
    lattice (the whole sphere, or with ``hemisphere`` one half, whose planes are the same);
    ``slice_size``: int or ``(h, w)``. ``geometry``: ``"paper"`` (every axis spans ``[-1, 1]``)
    or ``"physical"`` (one isotropic scale from ``spacing``, mm per array axis, with
    ``field_of_view`` ``"full"`` or ``"ball"``; see :mod:`tonno_engine.tomography.frames`).
    Returns a float32 tensor shaped like ``volume`` (or ``output_shape``, the same extent) on
    ``device`` (``None``/"auto" → CUDA when present). Further keywords go to :func:`reconstruct_iter`.
    """
    options["partials"] = False
    return final_result(reconstruct_iter(
        volume, scorer, slices=slices, angles=angles, slice_size=slice_size, hemisphere=hemisphere,
        device=device, output_shape=output_shape, geometry=geometry, spacing=spacing,
        field_of_view=field_of_view, **options,
    ))
