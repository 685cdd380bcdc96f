"""ToNNO: slices at many directions → scores → filtered backprojection (paper §3.4).

The core accumulates the directions it is given and knows nothing of processes:
:func:`reconstruct_iter` (a generator of :class:`Progress` and :class:`Partial` events whose partial
heatmaps refine as directions accumulate and end exactly at the one-shot result) and
:func:`reconstruct` (one call, the heatmap). How a chunk of directions is added is a
:class:`Formula`; ToNNO's (:class:`Tonno`, eq. 11) is defined and registered here, the CAM variants'
in :mod:`tonno_engine.cams.tomographic`. Splitting the directions over ``torchrun`` processes is
:mod:`tonno_engine.tomography.sharding`'s.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import torch

from ..base.defaults import (
    ACCELERATOR_BATCH_SIZE,
    CPU_BATCH_SIZE,
    DEVICE,
    DIRECTIONS_PER_UPDATE,
    FIELD_OF_VIEW,
    GEOMETRY,
    MEMORY_BUDGET,
    SLICE_SIZE,
    SLICES,
    TONNO_DIRECTIONS,
)
from ..base.devices import resolve_device
from ..base.events import Partial, Progress
from ..base.inputs import as_shape3, as_size2, as_volume, check_count
from ..base.registry import MethodRecord, register_method
from .backprojection import backproject_passes, reconstruction_scale, second_difference
from .frames import Frame, make_frame
from .geometry import fibonacci_directions, orthonormal_basis, slice_offsets, spread_order
from .operators import Acquisition
from .scorers import scorer_context
from .slicing import extract_slices, slice_stacks

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


def make_directions(directions: int, *, hemisphere: bool = False) -> Directions:
    """The Fibonacci lattice of ``directions`` normals, permuted so that every prefix is well spread, with ``(u, v)``."""
    normals = fibonacci_directions(directions, hemisphere=hemisphere)
    normals = normals[spread_order(normals, hemisphere=hemisphere)]
    u, v = orthonormal_basis(normals)
    return Directions(normals, u, v, hemisphere)


def default_batch_size(device: torch.device) -> int:
    """Slices per scorer call: small on CPU (latency, memory), large on accelerators."""
    return CPU_BATCH_SIZE if device.type == "cpu" else ACCELERATOR_BATCH_SIZE


def iter_profiles(
    volume: torch.Tensor,
    scorer: Scorer,
    offsets: torch.Tensor,
    normals: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    size: tuple[int, int],
    batch_size: int,
    compile: bool = False,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Score the ``L × K`` slices at ``offsets`` ``(K,)`` along ``normals`` ``(L, 3)``.

    Yields ``(count, scores)`` per scorer batch, ``scores`` float32 ``(count, ...)`` (``(count,)``
    for a network's logit, ``(count, a, b)`` for CAM maps), or a tuple of such when the scorer
    returns several outputs; concatenated in order, each reshapes to ``(L, K, ...)``.
    ``compile``: slice with the fused ``torch.compile``-d kernel. A scorer with a ``context`` is handed each
    plane with its neighbours (:func:`~tonno_engine.tomography.scorers.scorer_context`).
    """
    context = scorer_context(scorer)
    count = len(normals) * len(offsets)
    flat_s = offsets.repeat(len(normals))
    flat_n, flat_u, flat_v = (a.repeat_interleave(len(offsets), dim=0) for a in (normals, u, v))
    for start in range(0, count, batch_size):
        sl = slice(start, min(count, start + batch_size))
        # inference mode around the work only: a generator suspended inside the context would leave
        # it switched on in the consumer's thread (and in a pooled thread after an abort)
        with torch.inference_mode():
            planes = (volume, flat_s[sl], flat_n[sl], flat_u[sl], flat_v[sl], size)
            batch = (slice_stacks(*planes, context, compile=compile) if context
                     else extract_slices(*planes, compile=compile))
            scores = scorer(batch)
            outputs = tuple(scores) if isinstance(scores, (tuple, list)) else (scores,)
            outputs = tuple(o[:, 0] if o.ndim == 2 and o.shape[1] == 1 else o for o in outputs)
            for o in outputs:
                if o.shape[0] != batch.shape[0]:
                    raise ValueError(f"scorer returned {o.shape[0]} scores for {batch.shape[0]} slices")
            outputs = tuple(o.float() for o in outputs)
        yield sl.stop - sl.start, outputs if isinstance(scores, (tuple, list)) else outputs[0]


class Formula(Protocol):
    """How one chunk of per-direction results ``(Lc, M + 2, ...)`` is added to the heatmap.

    ``accumulate`` returns an iterator that adds the chunk's (unscaled) sum over its directions into
    ``acc`` ``(D, H, W)``, yielding after every bounded pass (where the work can be cancelled); the caller
    runs it to its end. ``directions`` is ``(normals, u, v)``, each ``(Lc, 3)`` in backprojection
    coordinates. ``compile``: a fused kernel where the formula has one. ``scale(L)`` turns the sum over
    ``L`` directions into the heatmap. A formula whose ``channels`` is true also takes several stacks at once,
    ``(C, Lc, M + 2, ...)`` into ``acc`` ``(C, D, H, W)`` (the findings of one method share one pass). A
    formula may also ``solve`` (the iterative methods, :mod:`tonno_engine.tomography.iterative`): from its
    scaled heatmap, every chunk's stack ``(L, M + 2, ...)`` and the :class:`Acquisition`, a generator of
    ``(iteration, iterations, estimate)`` returning the refined heatmap.
    """

    def accumulate(self, stack: torch.Tensor, directions: tuple, acc: torch.Tensor, *, memory_budget: int,
                   compile: bool) -> Iterator[None]: ...

    def scale(self, directions: int) -> float: ...


class Tonno:
    """ToNNO (eq. 11): the second difference of the logit profiles, filtered backprojection slab by slab."""

    channels = True  # takes several profiles at once: (C, L, M + 2) into (C, D, H, W)

    def accumulate(self, stack, directions, acc, *, memory_budget, compile):
        return backproject_passes(second_difference(stack, stack.shape[-1] - 2, dim=-1), directions[0], acc,
                                  memory_budget=memory_budget, compile=compile)

    def scale(self, directions: int) -> float:
        return reconstruction_scale(directions)


TONNO = Tonno()

register_method(MethodRecord(
    "tonno", title="ToNNO", label="tonno", kind="tomographic", needs="logits", default_directions=TONNO_DIRECTIONS,
    description="ToNNO, filtered backprojection of slice logits at many directions (paper 3.4)",
    equation="eq. 11: G(x) = c·|S²|/L · Σ_l q̃_l(x·n_l), q = second difference of the logit profile / Δ²",
    formula=TONNO))


@dataclass(frozen=True)
class _Pass:
    """What every chunk of one reconstruction shares."""

    volume: torch.Tensor
    scorer: Scorer
    formulas: tuple
    several: bool  # formulas came as a tuple: the scorer returns a tuple of outputs, one per formula
    frame: Frame
    lattice: Directions
    offsets: torch.Tensor
    size: tuple[int, int]
    batch_size: int
    memory_budget: int
    compile: bool
    #: per formula, the stacks of every chunk when the formula solves (``None`` when it does not)
    collected: tuple


def _add_chunk(run: _Pass, pick: torch.Tensor, accs: torch.Tensor, progress: list[int]) -> Iterator[Progress]:
    """Score the slices of directions ``pick`` and add them into ``accs`` ``(F, D, H, W)``, one per formula;
    ``progress`` is ``[done, total]`` slices, advanced here."""
    chunk = (run.lattice.normals[pick], run.lattice.u[pick], run.lattice.v[pick])
    cut = tuple(run.frame.for_slicing(t) for t in chunk)
    scores = []
    for count, batch_scores in iter_profiles(run.volume, run.scorer, run.offsets, *cut, run.size, run.batch_size,
                                             run.compile):
        scores.append(batch_scores if run.several else (batch_scores,))
        progress[0] += count
        yield Progress("scoring", progress[0], progress[1], "slices", detail=True)
    where = tuple(run.frame.for_backprojection(t) for t in chunk)
    for first, stop in _channel_groups(run):
        formula = run.formulas[first]
        stacks = []
        for k in range(first, stop):
            stack = torch.cat([s[k] for s in scores])
            stacks.append(stack.reshape(len(pick), len(run.offsets), *stack.shape[1:]))
            if run.collected[k] is not None:
                run.collected[k].append(stacks[-1].clone())
        stack, acc = (stacks[0], accs[first]) if stop - first == 1 else (torch.stack(stacks), accs[first:stop])
        for _ in formula.accumulate(stack, where, acc, memory_budget=run.memory_budget, compile=run.compile):
            # a chunk's backprojection can take seconds: an event per pass
            yield Progress("scoring", progress[0], progress[1], "slices", detail=True)


def _channel_groups(run: _Pass) -> list[tuple[int, int]]:
    """``[first, stop)`` runs of formulas added together: neighbours that are the same formula (one method's
    findings), take channels and do not solve; every other formula alone."""
    groups, k = [], 0
    while k < len(run.formulas):
        stop = k + 1
        if getattr(run.formulas[k], "channels", False) and run.collected[k] is None:
            while stop < len(run.formulas) and run.formulas[stop] is run.formulas[k]:
                stop += 1
        groups.append((k, stop))
        k = stop
    return groups


def reconstruct_iter(
    volume,
    scorer: Scorer,
    *,
    formula: Formula | tuple = TONNO,
    slices: int = SLICES, directions: int = TONNO_DIRECTIONS, slice_size=SLICE_SIZE,
    hemisphere: bool = False,
    device=DEVICE,
    output_shape=None,
    batch_size: int | None = None,
    directions_per_update: int = DIRECTIONS_PER_UPDATE, partials: bool = True,
    memory_budget: int = MEMORY_BUDGET,
    compile: bool = False,
    geometry: str = GEOMETRY, spacing=None, field_of_view: str = FIELD_OF_VIEW,
    subset=None,
) -> Iterator[Progress | Partial]:
    """Slice along the lattice's ``directions``, score every slice, add each chunk of directions by ``formula``.

    ``volume``: ``(D, H, W)``; ``scorer``: slices ``(B, h, w)`` → scores ``(B,)`` (with a tuple of formulas, a
    tuple of outputs, one per formula). ``slices`` = M (``M + 2`` offsets per direction), ``directions`` = L on
    the Fibonacci lattice (``hemisphere``: one half, the same planes); ``slice_size``: int or ``(h, w)``;
    ``geometry``/``spacing``/``field_of_view``: :mod:`tonno_engine.tomography.frames`. ``subset``: the lattice
    directions to add (default all; the sum is scaled for all ``L``, so disjoint subsets add up to the
    heatmap). ``compile``: fused ``torch.compile``-d slicing and backprojection. Yields
    ``Progress("scoring", done, total, "slices")`` per scorer batch and backprojection pass (at most
    ``memory_budget`` bytes), ``Progress("solving")`` per iteration of an iterative formula, a ``Partial``
    heatmap every ``directions_per_update`` (with ``partials``), and last ``Partial(final=True)``: float32
    ``(D, H, W)`` (or ``output_shape``, the same extent) on ``device``, a tuple for a tuple of formulas.
    """
    dev = resolve_device(device)
    vol = as_volume(volume, dev)
    slices = check_count(slices, 3, "slices", " (the second difference needs them)")
    directions = check_count(directions, 1, "directions")
    step = check_count(directions_per_update, 1, "directions_per_update")
    several = isinstance(formula, (tuple, list))
    formulas = tuple(formula) if several else (formula,)
    solving = _collectors(formulas, subset)
    frame = make_frame(vol.shape, geometry=geometry, spacing=spacing, field_of_view=field_of_view)
    run = _Pass(vol, scorer, formulas, several, frame, make_directions(directions, hemisphere=hemisphere),
                slice_offsets(slices), as_size2(slice_size), check_count(batch_size or default_batch_size(dev), 1,
                                                                         "batch_size"), memory_budget, compile, solving)
    picks = torch.arange(directions) if subset is None else torch.as_tensor(subset, dtype=torch.long)
    out_shape = tuple(vol.shape) if output_shape is None else as_shape3(output_shape)
    # one block, a view per formula: a run of formulas added together writes its (C, D, H, W) slice
    accs = torch.zeros((len(formulas), *out_shape), dtype=torch.float32, device=dev)
    progress = [0, len(picks) * (slices + 2)]

    def value(count: int, final: bool = False):
        maps = tuple((a.mul_ if final else a.mul)(f.scale(count)) for f, a in zip(formulas, accs))
        return maps if several else maps[0]

    for start in range(0, len(picks), step):
        stop = min(len(picks), start + step)
        yield from _add_chunk(run, picks[start:stop], accs, progress)
        if partials and stop < len(picks):
            yield Partial(value(stop), stop, len(picks))
    maps = value(directions, final=True)
    if any(c is not None for c in solving):  # the iterative methods refine their filtered backprojection
        maps = (yield from _solve(run, picks, maps if several else (maps,), out_shape, partials))[slice(None) if several else 0]
    yield Partial(maps, len(picks), len(picks), final=True)


def _collectors(formulas, subset) -> tuple:
    """Per formula, a list for its chunks' stacks when it solves, else ``None``; an iterative method sees
    every direction, so it refuses a ``subset``."""
    solving = tuple([] if hasattr(f, "solve") else None for f in formulas)
    if subset is not None and any(c is not None for c in solving):
        raise ValueError("an iterative method needs every direction in one process: run it without --shard-directions")
    return solving


def _solve(run: _Pass, picks: torch.Tensor, maps: tuple, shape, partials: bool):
    """Refine the heatmaps of the formulas that solve, each from its filtered backprojection in ``maps``:
    yields ``Progress("solving")`` per iteration (and partial heatmaps); returns the tuple of heatmaps."""
    chunk = (run.lattice.normals[picks], run.lattice.u[picks], run.lattice.v[picks])
    acquisition = Acquisition(shape, *(run.frame.for_slicing(t) for t in chunk), run.offsets, run.size,
                              run.memory_budget)
    maps = list(maps)
    for k, formula in enumerate(run.formulas):
        if run.collected[k] is None:
            continue
        solving = formula.solve(maps[k], torch.cat(run.collected[k]), acquisition)
        while True:
            try:
                done, total, estimate = next(solving)
            except StopIteration as finished:
                maps[k] = finished.value
                break
            yield Progress("solving", done, total, "iterations", detail=True)
            if partials:
                yield Partial(tuple(estimate if j == k else m for j, m in enumerate(maps))
                              if run.several else estimate, done, total)
    return tuple(maps)


def final_result(events) -> torch.Tensor:
    """Run an engine generator to its end and return the final :class:`Partial`'s value."""
    for event in events:
        if isinstance(event, Partial) and event.final:
            return event.value
    raise RuntimeError("the generator ended without a final result")  # pragma: no cover


_RECONSTRUCT_ITER = inspect.signature(reconstruct_iter)


def reconstruct(volume, scorer: Scorer, **options) -> torch.Tensor:
    """3D heatmap from a 2D scorer by tomographic reconstruction (ToNNO): the final value of
    :func:`reconstruct_iter` (the same keywords, ``partials`` aside), with no partials."""
    # the keywords are reconstruct_iter's, checked here so that a misspelt one names this function
    try:
        _RECONSTRUCT_ITER.bind(volume, scorer, **options)
    except TypeError as exc:
        raise TypeError(f"reconstruct() {exc}") from None
    return final_result(reconstruct_iter(volume, scorer, **{**options, "partials": False}))


reconstruct.__signature__ = _RECONSTRUCT_ITER.replace(
    parameters=[p for name, p in _RECONSTRUCT_ITER.parameters.items() if name != "partials"])
