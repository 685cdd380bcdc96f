import math

import pytest
import torch

from tonno_engine.tomography.geometry import (
    axis_coords,
    fibonacci_directions,
    orthonormal_basis,
    slice_offsets,
    spread_order,
    to_grid_sample_order,
    voxel_coords,
)


@pytest.mark.parametrize("hemisphere", [False, True])
def test_directions_are_unit_and_cover_the_right_part(hemisphere):
    n = fibonacci_directions(500, hemisphere=hemisphere)
    assert n.shape == (500, 3)
    torch.testing.assert_close(n.norm(dim=1), torch.ones(500, dtype=torch.float64))
    if hemisphere:
        assert (n[:, 1] > 0).all()
    else:  # paper's lattice runs from pole to pole and is balanced
        assert n[0, 1] == -1 and n[-1, 1] == 1
        assert n.mean(0).abs().max() < 0.01


def test_hemisphere_points_stand_for_equal_solid_angles():
    # midpoint rule in y: bands of equal height have equal area on the sphere (Archimedes)
    y = fibonacci_directions(1000, hemisphere=True)[:, 1]
    counts = torch.histc(y, bins=10, min=0, max=1)
    assert counts.min() == counts.max() == 100


def test_basis_is_orthonormal_and_right_handed():
    n = fibonacci_directions(300)
    u, v = orthonormal_basis(n)
    for a, b in [(n, u), (n, v), (u, v)]:
        assert (a * b).sum(1).abs().max() < 1e-12
    torch.testing.assert_close(u.norm(dim=1), torch.ones(300, dtype=torch.float64))
    torch.testing.assert_close(torch.linalg.cross(u, v), n)


def _covering_angle(points, reference, axes):
    """Largest angle from any reference point to its nearest neighbour in ``points``
    (between axes, i.e. up to sign, when ``axes``)."""
    cos = reference @ points.T
    cos = (cos.abs() if axes else cos).clamp(-1, 1).max(dim=1).values
    return torch.arccos(cos).max().item()


@pytest.mark.parametrize("hemisphere", [False, True])
def test_spread_order_prefixes_are_well_spread(hemisphere):
    n = fibonacci_directions(1000, hemisphere=hemisphere)
    order = spread_order(n, hemisphere=hemisphere)
    assert sorted(order.tolist()) == list(range(1000))
    for k in (10, 50, 200):
        ordered = _covering_angle(n[order[:k]], n, hemisphere)
        naive = _covering_angle(n[:k], n, hemisphere)  # lattice order walks from pole to pole
        fresh = _covering_angle(fibonacci_directions(k, hemisphere=hemisphere), n, hemisphere)
        assert ordered < 2.0 * fresh, (k, ordered, fresh)
        assert ordered < 0.5 * naive


def test_offsets_and_axis_coords():
    s = slice_offsets(5)
    torch.testing.assert_close(s, torch.tensor([-1.5, -1, -0.5, 0, 0.5, 1, 1.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="slices must be >= 3"):
        slice_offsets(2)
    assert axis_coords(1).tolist() == [0.0]
    assert axis_coords(3).tolist() == [-1.0, 0.0, 1.0]


def test_voxel_coords_and_grid_sample_flip():
    x = voxel_coords((2, 3, 4))
    assert x.shape == (24, 3)
    assert x[0].tolist() == [-1, -1, -1] and x[-1].tolist() == [1, 1, 1]
    assert x[1].tolist()[:2] == [-1, -1] and math.isclose(x[1, 2].item(), -1 / 3, rel_tol=1e-6)
    assert to_grid_sample_order(torch.tensor([1.0, 2.0, 3.0])).tolist() == [3.0, 2.0, 1.0]


def test_index_and_normalised_coordinates_and_moving_onto_a_plane():
    import numpy as np

    from tonno_engine.tomography.geometry import index_to_normalised, normalised_to_index, point_at_offset

    shape = (5, 9, 3)
    np.testing.assert_allclose(index_to_normalised((0, 4, 2), shape), (-1.0, 0.0, 1.0))
    np.testing.assert_array_equal(normalised_to_index((-1.0, 0.0, 2.0), shape), (0, 4, 2))  # clipped
    n = np.array([0.0, 0.6, 0.8])
    moved = point_at_offset((0.3, 0.1, -0.2), n, 0.5)
    assert moved @ n == pytest.approx(0.5) and moved[0] == pytest.approx(0.3)
