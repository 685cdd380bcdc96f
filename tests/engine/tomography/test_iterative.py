"""Iterative ToNNO on the R_Σ check: closer to the volume than the filtered backprojection at few
directions; events per iteration; every direction in one process."""

import pytest
import torch

from tonno_engine.base.events import Partial, Progress
from tonno_engine.tomography.iterative import ITERATIVE_TONNO, IterativeTonno
from tonno_engine.tomography.phantoms import balls_phantom, quality_in_unit_ball
from tonno_engine.tomography.plan import Plan
from tonno_engine.tomography.reconstruction import TONNO, reconstruct, reconstruct_iter
from tonno_engine.tomography.scorers import radon_sum
from tonno_engine.tomography.solvers import SolverSettings

SMALL = dict(slices=24, directions=40, slice_size=20, device="cpu", batch_size=512)


def test_iterative_tonno_beats_the_filtered_backprojection_at_few_directions():
    volume = balls_phantom((20, 20, 20))
    fbp = quality_in_unit_ball(reconstruct(volume, radon_sum, Plan(**SMALL), TONNO), volume)
    iterative = quality_in_unit_ball(reconstruct(volume, radon_sum, Plan(**SMALL), ITERATIVE_TONNO), volume)
    prior = IterativeTonno(SolverSettings(regulariser="tv", strength=0.1, nonnegative=True))
    with_prior = quality_in_unit_ball(reconstruct(volume, radon_sum, Plan(**SMALL), prior), volume)
    assert iterative[0] > fbp[0] + 0.01 and iterative[1] < fbp[1]
    assert with_prior[0] > iterative[0]  # a piecewise-constant phantom: TV and f >= 0 help further


def test_each_iteration_is_an_event_and_the_last_value_is_the_result():
    volume = balls_phantom((16, 16, 16))
    formula = IterativeTonno(SolverSettings(iterations=5, tolerance=0.0))
    events = list(reconstruct_iter(volume, radon_sum, Plan(**{**SMALL, "directions": 20}), (formula,)))
    solving = [e for e in events if isinstance(e, Progress) and e.stage == "solving"]
    assert [e.done for e in solving] == [1, 2, 3, 4, 5] and all(e.total == 5 for e in solving)
    partials = [e for e in events if isinstance(e, Partial)]
    assert partials[-1].final and not partials[-2].final  # the estimate after the last iteration, then the result
    torch.testing.assert_close(partials[-1].value, partials[-2].value)
    torch.testing.assert_close(partials[-1].value[0], reconstruct(volume, radon_sum, Plan(**{**SMALL, "directions": 20}),
                                                                  formula))


def test_an_iterative_method_refuses_a_subset_of_the_directions():
    with pytest.raises(ValueError, match="every direction in one process"):
        list(reconstruct_iter(torch.rand(8, 8, 8), radon_sum, Plan(slices=4, directions=4, slice_size=8, device="cpu"),
                              (ITERATIVE_TONNO,), subset=[0, 2]))
