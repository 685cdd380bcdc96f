"""Iterative ToNNO: the least-squares heatmap whose plane integrals best match the logit profiles.

The filtered backprojection (eq. 11) inverts the Radon transform of the continuous sphere of
directions; with L directions and M offsets it is an approximation, and streaks remain where L is
small. This method keeps its network evaluations (the same slices, scored once) and fits
``min_f ||P(A f − p)||²`` with the exact discrete plane-integral operator ``A``
(:class:`~tonno_engine.tomography.operators.SliceOperator`) by CGLS from the filtered backprojection;
``P`` removes each direction's mean logit (the network's bias), as the second difference does for ToNNO.
"""

from __future__ import annotations

from ..base.defaults import TONNO_DIRECTIONS
from ..base.registry import MethodRecord, register_method
from .operators import Acquisition, SliceOperator
from .reconstruction import TONNO
from .solvers import SolverSettings, cgls_iter


def operator_size(acquisition: Acquisition, cells: tuple[int, int] | None = None) -> tuple[int, int]:
    """Pixels per slice of the operator: the network's slice size, but not finer than the heatmap's
    voxels need (its longest side), which bounds the cost of an iteration; with CAM ``cells``, a whole
    number of pixels per cell (at least one), as the network's slice has."""
    side = max(acquisition.shape)
    if cells is None:
        return tuple(min(s, side) for s in acquisition.size)
    return tuple(c * max(1, min(s // c, -(-side // c))) for s, c in zip(acquisition.size, cells))


def operator_for(acquisition: Acquisition, device, *, cells: tuple[int, int] | None = None,
                 centre: bool = False) -> SliceOperator:
    """The forward operator of the slices behind a formula's data, on ``device`` (see :func:`operator_size`)."""
    return SliceOperator(acquisition.to(device), operator_size(acquisition, cells), cells=cells, centre=centre)


class RefinedFormula:
    """A formula whose heatmap is its ``start`` formula's, refined by a solver: ``accumulate`` and ``scale``
    are the start's; subclasses add ``solve`` (the iterative methods)."""

    #: the formula whose heatmap the solver starts from
    start = TONNO

    def __init__(self, settings: SolverSettings = SolverSettings()):
        self.settings = settings

    def with_solver(self, settings: SolverSettings) -> RefinedFormula:
        """The same method with other solver settings."""
        return self if settings == self.settings else type(self)(settings)

    def accumulate(self, stack, directions, acc, *, memory_budget, compile):
        return self.start.accumulate(stack, directions, acc, memory_budget=memory_budget, compile=compile)

    def scale(self, directions: int) -> float:
        return self.start.scale(directions)


class IterativeTonno(RefinedFormula):
    """ToNNO's filtered backprojection, refined by least squares (a :class:`Formula` that solves)."""

    start = TONNO

    def solve(self, start, data, acquisition: Acquisition):
        target = data.to(start.device).float()
        return (yield from cgls_iter(operator_for(acquisition, start.device, centre=True),
                                     target - target.mean(dim=1, keepdim=True), start, self.settings))


ITERATIVE_TONNO = IterativeTonno()

register_method(MethodRecord(
    "tonno-iterative", title="Iterative ToNNO", label="tonno-iterative", kind="tomographic", needs="logits",
    default_directions=TONNO_DIRECTIONS,
    description="ToNNO refined by least squares: CGLS on the exact plane-integral operator, from eq. 11",
    equation="min_f ||P(A f − p)||², A = plane integrals of the slices, P removes each direction's mean; "
             "CGLS from eq. 11",
    formula=ITERATIVE_TONNO))
