"""Iterative CAM: the volume whose slices, average-pooled onto the CAM's cells, best match the CAM maps.

The paper's open problem (§3.5, §5; Fig. 4): Averaged CAM blurs coarse maps and Tomographic CAM
over-sharpens fine ones. Modelling each map as what it is, the slice average-pooled to the layer's
grid (:class:`~tonno_engine.tomography.operators.SliceOperator` with ``cells``), and solving
``min_f ||A f − maps||²`` by CGLS from the Averaged CAM inverts that pooling at any map resolution.
"""

from __future__ import annotations

from ..base.defaults import CAM_DIRECTIONS
from ..base.registry import MethodRecord, register_method
from ..tomography.iterative import RefinedFormula, operator_for
from ..tomography.operators import Acquisition
from ..tomography.solvers import cgls_iter
from .tomographic import AVERAGED_CAM


class IterativeCam(RefinedFormula):
    """Averaged CAM refined by least squares on the pooled-slice operator (a :class:`Formula` that solves)."""

    start = AVERAGED_CAM

    def solve(self, start, data, acquisition: Acquisition):
        op = operator_for(acquisition, start.device, cells=tuple(data.shape[2:]))
        return (yield from cgls_iter(op, data.to(start.device).float(), start, self.settings))


ITERATIVE_CAM = IterativeCam()

register_method(MethodRecord(
    "iterative-cam", title="Iterative {cam} (layer {layer})", label="iterative-{cam}-l{layer}", kind="tomographic",
    needs="cam", default_directions=CAM_DIRECTIONS,
    description="Iterative CAM, least squares on the slices average-pooled to the CAM's cells (paper §5's open problem)",
    equation="min_f ||A f − maps||², A = the slices average-pooled onto the map cells; CGLS from eq. 12",
    formula=ITERATIVE_CAM))
