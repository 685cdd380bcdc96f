"""The forward operators (plane integrals, pooled slices) with exact adjoints, and the CGLS solver."""

import pytest
import torch

from tonno_engine.tomography.frames import make_frame
from tonno_engine.tomography.geometry import slice_offsets
from tonno_engine.tomography.operators import Acquisition, SliceOperator
from tonno_engine.tomography.reconstruction import make_directions
from tonno_engine.tomography.solvers import SolverSettings, cgls_iter


def _operator(geometry, cells, shape=(12, 14, 10), directions=7, budget=10**5):
    spacing = (1.0, 1.0, 3.0) if geometry == "physical" else None
    frame = make_frame(shape, geometry=geometry, spacing=spacing, field_of_view="full")
    lattice = make_directions(directions)
    n, u, v = (frame.for_slicing(t) for t in (lattice.normals, lattice.u, lattice.v))
    acquisition = Acquisition(shape, n, u, v, slice_offsets(6), (16, 16), memory_budget=budget)
    return SliceOperator(acquisition, (16, 16), cells=cells, centre=cells is None)


@pytest.mark.parametrize("geometry", ["paper", "physical"])
@pytest.mark.parametrize("cells", [None, (4, 4)], ids=["plane-integrals", "pooled-slices"])
def test_the_adjoint_is_exact(geometry, cells):
    """<A x, y> = <x, Aᵀ y> to float32 precision, over several chunks of directions."""
    op = _operator(geometry, cells)
    assert len(op._chunks()) > 1
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        x, y = torch.randn(op.shape, generator=generator), torch.randn(op.data_shape, generator=generator)
        left, right = (op.forward(x) * y).sum().double(), (x * op.adjoint(y)).sum().double()
        assert abs(left - right) <= 1e-5 * (op.forward(x).norm() * y.norm()).item()


def test_the_operator_is_the_slices_reduction():
    """Plane integrals are radon_sum of the slices (4 × their mean); centring removes each direction's mean."""
    from tonno_engine.tomography.scorers import radon_sum
    from tonno_engine.tomography.slicing import extract_slices

    op = _operator("paper", None)
    acq = op.acquisition
    x = torch.rand(op.shape, generator=torch.Generator().manual_seed(1))
    k = len(acq.offsets)
    flat = [t.repeat_interleave(k, 0) for t in (acq.normals, acq.u, acq.v)]
    plain = radon_sum(extract_slices(x, acq.offsets.repeat(len(acq.normals)), *flat, op.size)).view(-1, k)
    torch.testing.assert_close(op.forward(x), plain - plain.mean(1, keepdim=True), rtol=1e-5, atol=1e-6)


def test_cgls_recovers_a_volume_from_consistent_data():
    op = _operator("paper", (4, 4), shape=(8, 8, 8), directions=40, budget=10**6)
    truth = torch.rand(op.shape, generator=torch.Generator().manual_seed(2))
    data = op.forward(truth)
    steps = list(cgls_iter(op, data, torch.zeros(op.shape), SolverSettings(iterations=60, tolerance=1e-6)))
    estimate = steps[-1][2]
    residuals = [(op.forward(e) - data).norm().item() for _, _, e in steps[::10]]
    assert residuals == sorted(residuals, reverse=True) and residuals[-1] < 0.05 * data.norm().item()
    assert torch.corrcoef(torch.stack([estimate.flatten(), truth.flatten()]))[0, 1] > 0.9
    assert [s[0] for s in steps] == list(range(1, len(steps) + 1))  # one event per iteration


def test_regularisers_and_non_negativity():
    op = _operator("paper", (4, 4), shape=(8, 8, 8), directions=20, budget=10**6)
    truth = torch.zeros(op.shape)
    truth[2:6, 2:6, 2:6] = 1.0
    data = op.forward(truth) + 0.05 * torch.randn(op.data_shape, generator=torch.Generator().manual_seed(3))

    def solve(**settings):
        *_, (_, _, last) = cgls_iter(op, data, torch.zeros(op.shape), SolverSettings(iterations=30, **settings))
        return last

    def variation(x):
        return sum(torch.diff(x, dim=d).abs().sum() for d in range(3)).item()

    plain = solve()
    assert solve(nonnegative=True).min() >= 0 and plain.min() < 0
    assert variation(solve(regulariser="tv", strength=1.0)) < variation(plain)
    assert variation(solve(regulariser="gradient", strength=1.0)) < variation(plain)
    with pytest.raises(ValueError, match="unknown regulariser"):
        SolverSettings(regulariser="l1")
