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

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import torch

from ..base.defaults import ACCELERATOR_BATCH_SIZE, CPU_BATCH_SIZE, TONNO_DIRECTIONS
from ..base.devices import resolve_device
from ..base.events import Partial, Progress
from ..base.inputs import as_shape3, as_volume, check_count
from ..base.registry import MethodRecord, register_method
from .backprojection import backproject_passes, reconstruction_scale, second_difference
from .frames import Frame
from .geometry import fibonacci_directions, orthonormal_basis, slice_offsets, spread_order
from .operators import Acquisition
from .plan import Plan
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
    basis: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    size: tuple[int, int],
    batch_size: int,
    compile: bool = False,
) -> Iterator[tuple[int, tuple[torch.Tensor, ...]]]:
    """Score the ``L × K`` slices at ``offsets`` ``(K,)`` along ``basis`` = ``(normals, u, v)``, each ``(L, 3)``.

    Yields ``(count, scores)`` per scorer batch: ``scores`` a tuple of the scorer's outputs (one, unless it returns
    a tuple), each float32 ``(count, ...)`` (``(count,)`` for a network's logit, ``(count, a, b)`` for CAM maps);
    concatenated in order, each reshapes to ``(L, K, ...)``. ``compile``: slice with the fused ``torch.compile``-d
    kernel. A scorer with a ``context`` is handed each plane with its neighbours
    (:func:`~tonno_engine.tomography.scorers.scorer_context`).
    """
    context = scorer_context(scorer)
    normals = basis[0]
    count = len(normals) * len(offsets)
    flat_s = offsets.repeat(len(normals))
    flat = tuple(a.repeat_interleave(len(offsets), dim=0) for a in basis)
    for start in range(0, count, batch_size):
        sl = slice(start, min(count, start + batch_size))
        # inference mode around the work only: a generator suspended inside the context would leave
        # it switched on in the consumer's thread (and in a pooled thread after an abort)
        with torch.inference_mode():
            cut = tuple(a[sl] for a in flat)
            batch = (slice_stacks(volume, flat_s[sl], cut, size, context, compile=compile) if context or volume.ndim == 4
                     else extract_slices(volume, flat_s[sl], *cut, size, compile=compile))
            scores = scorer(batch)
            outputs = tuple(scores) if isinstance(scores, (tuple, list)) else (scores,)
            outputs = tuple(o[:, 0] if o.ndim == 2 and o.shape[1] == 1 else o for o in outputs)
            for o in outputs:
                if o.shape[0] != batch.shape[0]:
                    raise ValueError(f"scorer returned {o.shape[0]} scores for {batch.shape[0]} slices")
            outputs = tuple(o.float() for o in outputs)
        yield sl.stop - sl.start, outputs


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
class _Run:
    """What every chunk of one reconstruction shares: the volume on its device, the scorer and formulas, the
    plan's frame, lattice, offsets and accumulators ``(F, D, H, W)`` (one per formula), the lattice directions to
    add (``picks``) and, per formula that solves, the stacks of every chunk (``None`` when it does not)."""

    volume: torch.Tensor
    scorer: Scorer
    formulas: tuple
    plan: Plan
    frame: Frame
    lattice: Directions
    offsets: torch.Tensor
    batch_size: int
    picks: torch.Tensor
    accs: torch.Tensor
    collected: tuple

    @classmethod
    def start(cls, volume, scorer: Scorer, formulas: tuple, plan: Plan, subset) -> _Run:
        dev = resolve_device(plan.device)
        vol = as_volume(volume, dev, channels=True)
        formulas = tuple(formulas)
        grid = tuple(vol.shape[-3:])
        out_shape = grid if plan.output_shape is None else as_shape3(plan.output_shape)
        picks = torch.arange(plan.directions) if subset is None else torch.as_tensor(subset, dtype=torch.long)
        # one block, a view per formula: a run of formulas added together writes its (C, D, H, W) slice
        accs = torch.zeros((len(formulas), *out_shape), dtype=torch.float32, device=dev)
        return cls(vol, scorer, formulas, plan, plan.frame(grid),
                   make_directions(plan.directions, hemisphere=plan.hemisphere), slice_offsets(plan.slices),
                   check_count(plan.batch_size or default_batch_size(dev), 1, "batch_size"), picks, accs,
                   _collectors(formulas, subset))

    def basis(self, pick: torch.Tensor) -> tuple:
        return self.lattice.normals[pick], self.lattice.u[pick], self.lattice.v[pick]

    def value(self, count: int, final: bool = False) -> tuple:
        """The heatmaps after ``count`` directions, one per formula (``final``: scaled in place)."""
        return tuple((a.mul_ if final else a.mul)(f.scale(count)) for f, a in zip(self.formulas, self.accs))

    def stacks(self, scores: list, pick: torch.Tensor) -> list[tuple]:
        """``(formula, stack, acc)`` per run of formulas added together, from a chunk's scorer batches ``scores``
        (each a tuple of outputs, one per formula); keeps the stacks of the formulas that solve."""
        added = []
        for first, stop in _channel_groups(self):
            stacks = []
            for k in range(first, stop):
                stack = torch.cat([s[k] for s in scores])
                stacks.append(stack.reshape(len(pick), len(self.offsets), *stack.shape[1:]))
                if self.collected[k] is not None:
                    self.collected[k].append(stacks[-1].clone())
            together = stop - first > 1
            added.append((self.formulas[first], torch.stack(stacks) if together else stacks[0],
                          self.accs[first:stop] if together else self.accs[first]))
        return added


def _score_chunk(run: _Run, pick: torch.Tensor, progress: list[int]):
    """Score the slices of directions ``pick``: yields ``Progress`` per scorer batch (``progress`` is
    ``[done, total]`` slices, advanced here); returns the scorer batches' outputs."""
    cut = tuple(run.frame.for_slicing(t) for t in run.basis(pick))
    scores = []
    for count, batch_scores in iter_profiles(run.volume, run.scorer, run.offsets, cut, run.plan.size, run.batch_size,
                                             run.plan.compile):
        scores.append(batch_scores)
        progress[0] += count
        yield Progress("scoring", progress[0], progress[1], "slices", detail=True)
    return scores


def _channel_groups(run: _Run) -> list[tuple[int, int]]:
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


def reconstruct_iter(volume, scorer: Scorer, plan: Plan = Plan(), formulas: tuple = (TONNO,), *,
                     partials: bool = True, subset=None) -> Iterator[Progress | Partial]:
    """Slice along the ``plan``'s lattice of directions, score every slice, add each chunk of directions by each
    of ``formulas``.

    ``volume``: ``(D, H, W)``; ``scorer``: slices ``(B, h, w)`` → scores ``(B,)``, or a tuple of outputs, one per
    formula; ``plan``: every setting (:class:`~tonno_engine.tomography.plan.Plan`). ``subset``: the lattice
    directions to add (default all; the sum is scaled for all ``L``, so disjoint subsets add up to the
    heatmap). Yields ``Progress("scoring", done, total, "slices")`` per scorer batch and backprojection pass (at
    most ``plan.memory_budget`` bytes), ``Progress("solving")`` per iteration of an iterative formula, a
    ``Partial`` every ``plan.directions_per_update`` directions (with ``partials``), and last
    ``Partial(final=True)``. Every value is a tuple of heatmaps, one per formula: float32 ``(D, H, W)`` (or
    ``plan.output_shape``, the same extent) on ``plan.device``.
    """
    run = _Run.start(volume, scorer, formulas, plan, subset)
    picks, step = run.picks, plan.directions_per_update
    progress = [0, len(picks) * (plan.slices + 2)]
    for start in range(0, len(picks), step):
        pick = picks[start:start + step]
        scores = yield from _score_chunk(run, pick, progress)
        where = tuple(run.frame.for_backprojection(t) for t in run.basis(pick))
        for formula, stack, acc in run.stacks(scores, pick):
            for _ in formula.accumulate(stack, where, acc, memory_budget=plan.memory_budget, compile=plan.compile):
                # a chunk's backprojection can take seconds: an event per pass
                yield Progress("scoring", progress[0], progress[1], "slices", detail=True)
        if partials and start + len(pick) < len(picks):
            yield Partial(run.value(start + len(pick)), start + len(pick), len(picks))
    maps = run.value(plan.directions, final=True)
    if any(c is not None for c in run.collected):  # the iterative methods refine their filtered backprojection
        maps = yield from _solve(run, maps, partials)
    yield Partial(maps, len(picks), len(picks), final=True)


def _collectors(formulas, subset) -> tuple:
    """Per formula, a list for its chunks' stacks when it solves, else ``None``; an iterative method sees
    every direction, so it refuses a ``subset``."""
    solving = tuple([] if hasattr(f, "solve") else None for f in formulas)
    if subset is not None and any(c is not None for c in solving):
        raise ValueError("an iterative method needs every direction in one process: run it without --shard-directions")
    return solving


def _solve(run: _Run, maps: tuple, partials: bool):
    """Refine the heatmaps of the formulas that solve, each from its filtered backprojection in ``maps``:
    yields ``Progress("solving")`` per iteration (and partial heatmaps); returns the tuple of heatmaps."""
    acquisition = Acquisition(tuple(run.accs.shape[1:]), *(run.frame.for_slicing(t) for t in run.basis(run.picks)),
                              run.offsets, run.plan.size, run.plan.memory_budget)
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
                yield Partial(tuple(estimate if j == k else m for j, m in enumerate(maps)), done, total)
    return tuple(maps)


def final_result(events) -> torch.Tensor:
    """Run an engine generator to its end and return the final :class:`Partial`'s value."""
    for event in events:
        if isinstance(event, Partial) and event.final:
            return event.value
    raise RuntimeError("the generator ended without a final result")  # pragma: no cover


def reconstruct(volume, scorer: Scorer, plan: Plan = Plan(), formula: Formula = TONNO) -> torch.Tensor:
    """3D heatmap ``(D, H, W)`` (or ``plan.output_shape``) from a 2D scorer by tomographic reconstruction with one
    ``formula`` (ToNNO by default): the final heatmap of :func:`reconstruct_iter`, without partials.

    >>> heatmap = reconstruct(volume, radon_sum, Plan(slices=96, directions=2000, slice_size=96))  # doctest: +SKIP
    """
    return final_result(reconstruct_iter(volume, scorer, plan, (formula,), partials=False))[0]
