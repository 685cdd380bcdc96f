import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from tonno_engine import (
    Partial,
    Progress,
    backproject,
    profiles,
    radon_sum,
    reconstruct,
    reconstruct_iter,
    reconstruction_scale,
)
from tonno_engine.tomography.geometry import fibonacci_directions, slice_offsets, voxel_coords
from tonno_engine.tomography.phantoms import balls_phantom, quality_in_unit_ball
from tonno_engine.tomography.plan import Plan


def test_constants_against_the_analytic_radon_transform_of_a_ball():
    """Independent of slicing: feed the exact plane integrals of a centred ball of radius a,
    ``R f(s) = π (a² - s²)`` for ``|s| < a``, and the backprojection must return 1 inside it."""
    a, slices, angles = 0.6, 201, 2000
    s = slice_offsets(slices)
    p = (math.pi * (a * a - s * s)).clamp(min=0).expand(angles, -1)
    delta = 2.0 / (slices - 1)
    q = (p[:, 2:] + p[:, :-2] - 2 * p[:, 1:-1]) / delta**2
    out = torch.zeros(21, 21, 21, dtype=torch.float64)
    backproject(q, fibonacci_directions(angles), out)
    out *= reconstruction_scale(angles)
    assert out[10, 10, 10] == pytest.approx(1.0, abs=1e-6)  # centre
    assert out[10, 10, 14] == pytest.approx(1.0, abs=1e-6)  # x2 = 0.4, inside
    radius = voxel_coords((21, 21, 21), torch.float64).norm(dim=1).reshape(21, 21, 21)
    assert out[radius < 0.5].sub(1).abs().max() < 1e-3
    # outside, angular sampling of the edge spikes leaves streaks that average out
    assert abs(out[(radius > 0.75) & (radius < 1)].mean()) < 0.03


def test_hemisphere_is_at_least_as_good_for_the_same_number_of_slices(device):
    volume = balls_phantom((32, 32, 32))
    kw = dict(slices=48, directions=400, slice_size=48, device=device, batch_size=512)
    full = quality_in_unit_ball(reconstruct(volume, radon_sum, Plan(**kw)), volume)
    half = quality_in_unit_ball(reconstruct(volume, radon_sum, Plan(hemisphere=True, **kw)), volume)
    assert half[0] >= full[0] and half[1] <= full[1], (full, half)


def test_profiles_are_antipodally_symmetric(device):
    """The plane (n, s) is the plane (-n, -s): profiles of -n are those of n reversed."""
    volume = balls_phantom((20, 24, 28)) + torch.rand(20, 24, 28)
    n = fibonacci_directions(7)
    p = profiles(volume, radon_sum, torch.cat([n, -n]), Plan(slices=15, slice_size=40, device=device))
    torch.testing.assert_close(p[7:], p[:7].flip(-1), atol=2e-4, rtol=1e-4)


def test_partial_stream_ends_at_the_one_shot_result(device):
    volume = balls_phantom((16, 16, 16))
    kw = dict(slices=16, directions=50, slice_size=24, device=device)
    events = list(reconstruct_iter(volume, radon_sum, Plan(directions_per_update=8, **kw)))
    partials = [e for e in events if isinstance(e, Partial)]
    assert [p.done for p in partials] == [8, 16, 24, 32, 40, 48, 50]
    assert partials[-1].final and not any(p.final for p in partials[:-1])
    assert any(isinstance(e, Progress) for e in events)
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].done == progress[-1].total == 50 * 18
    one_shot = reconstruct(volume, radon_sum, Plan(**kw))
    assert all(isinstance(p.value, tuple) and len(p.value) == 1 for p in partials)  # one heatmap per formula
    torch.testing.assert_close(partials[-1].value[0], one_shot, rtol=1e-5, atol=1e-5)
    # prefixes are valid coarser heatmaps that improve as directions accumulate
    corr = [quality_in_unit_ball(p.value[0], volume)[0] for p in partials]
    assert corr[0] > 0.5 and corr[-1] > corr[0]


@pytest.mark.parametrize("shape", [(17, 24, 31), (33, 20, 25)])
def test_non_cubic_and_odd_shapes(shape, device):
    volume = balls_phantom(shape)
    heatmap = reconstruct(volume, radon_sum, Plan(slices=48, directions=300, slice_size=48, device=device))
    assert heatmap.shape == shape and heatmap.dtype == torch.float32
    corr, _ = quality_in_unit_ball(heatmap, volume)
    assert corr > 0.93


def test_output_shape_and_numpy_input(device):
    volume = balls_phantom((16, 20, 24)).numpy().astype(np.float64)
    plan = Plan(slices=16, directions=100, slice_size=24, device=device)
    heatmap = reconstruct(volume, radon_sum, replace(plan, output_shape=(8, 10, 12)))
    assert heatmap.shape == (8, 10, 12)
    # the output grid samples the same normalised coordinates: its centre is near the input's
    full = reconstruct(volume, radon_sum, replace(plan, output_shape=(9, 11, 13)))
    coarse = reconstruct(volume, radon_sum, replace(plan, output_shape=(17, 21, 25)))
    torch.testing.assert_close(full, coarse[::2, ::2, ::2], rtol=1e-4, atol=1e-4)


def test_scorer_that_ignores_the_batch_size_is_rejected(device):
    with pytest.raises(ValueError, match="scorer returned"):
        reconstruct(torch.rand(8, 8, 8), lambda x: x.new_zeros(1), Plan(slices=4, directions=2, slice_size=8, device=device))


@pytest.mark.parametrize(
    ("volume", "kwargs", "message"),
    [
        (np.zeros((4, 4)), {}, "must be 3D"),
        (np.zeros((2, 2, 4, 4, 4)), {}, "must be 3D"),
        (np.zeros((0, 4, 4)), {}, "empty"),
        (np.full((4, 4, 4), np.nan), {}, "NaN or Inf"),
        (np.full((4, 4, 4), np.inf), {}, "NaN or Inf"),
        (np.array([["a"]]), {}, "numeric"),
        (np.zeros((4, 4, 4)), {"slices": 2}, "slices must be an integer >= 3"),
        (np.zeros((4, 4, 4)), {"directions": 0}, "directions must be an integer >= 1"),
        (np.zeros((4, 4, 4)), {"device": "quantum"}, "unknown device 'quantum'"),
        (np.zeros((4, 4, 4)), {"device": "cuda:7"}, "cuda:7"),
        (np.zeros((4, 4, 4)), {"output_shape": (4, 4)}, "output_shape"),
        (np.zeros((4, 4, 4)), {"slice_size": 1}, "slice_size"),
    ],
)
def test_bad_input_names_the_problem(volume, kwargs, message):
    with pytest.raises(ValueError, match=message):
        reconstruct(volume, radon_sum, Plan(**{"slices": 4, "directions": 2, "slice_size": 8, **kwargs}))


def test_consumers_of_the_generator_keep_their_grad_mode(device):
    from tonno_engine import radon_sum, reconstruct_iter

    events = reconstruct_iter(torch.rand(8, 8, 8), radon_sum, Plan(slices=4, directions=4, slice_size=8, device=device))
    next(events)  # suspended mid-way, as a napari worker is between events or after an abort
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    events.close()


def test_backprojection_matches_the_formula_voxel_by_voxel():
    from tonno_engine.tomography.geometry import voxel_coords

    gen = torch.Generator().manual_seed(3)
    directions, samples, shape = 13, 10, (7, 9, 11)
    q = torch.randn(directions, samples, generator=gen, dtype=torch.float64)
    q[:, 0] = q[:, -1] = 0.0  # q̃ is continuous at |s| = 1, so rounding at the boundary cannot matter
    normals = fibonacci_directions(directions)
    out = backproject(q.float(), normals, torch.zeros(shape), memory_budget=20_000)  # several slabs
    s = voxel_coords(shape, torch.float64) @ normals.T  # (voxels, L)
    t = ((s + 1) * (samples - 1) / 2).clamp(0, samples - 1)
    i0 = t.floor().long().clamp(max=samples - 2)
    rows = torch.arange(directions).expand_as(i0)
    value = torch.lerp(q[rows, i0], q[rows, i0 + 1], t - i0)
    expected = torch.where(s.abs() <= 1, value, 0.0).sum(1).reshape(shape)
    torch.testing.assert_close(out.double(), expected, atol=1e-4, rtol=1e-4)


def test_backprojection_is_zero_beyond_the_last_offset():
    """q̃ = 0 for |s| > 1 even where q's end samples are not 0 (grid_sample alone would fade)."""
    from tonno_engine.tomography.geometry import voxel_coords

    gen = torch.Generator().manual_seed(4)
    directions, samples, shape = 17, 9, (8, 10, 9)
    q = torch.randn(directions, samples, generator=gen, dtype=torch.float64) + 3.0  # ends far from 0
    normals = torch.cat([torch.eye(3, dtype=torch.float64), fibonacci_directions(directions - 3)])
    out = backproject(q.float(), normals, torch.zeros(shape), memory_budget=30_000)
    s = voxel_coords(shape, torch.float64) @ normals.T  # (voxels, L)
    t = ((s + 1) * (samples - 1) / 2).clamp(0, samples - 1)
    i0 = t.floor().long().clamp(max=samples - 2)
    rows = torch.arange(directions).expand_as(i0)
    value = torch.where(s.abs() <= 1 + 1e-9, torch.lerp(q[rows, i0], q[rows, i0 + 1], t - i0), 0.0)
    clear = (((s.abs() - 1).abs() > 1e-3) | (s.abs() == 1)).all(1).reshape(shape)  # no rounding ambiguity
    assert (s.abs() > 1.05).any() and clear.float().mean() > 0.5
    torch.testing.assert_close(out.double()[clear], value.sum(1).reshape(shape)[clear], atol=1e-4, rtol=1e-4)


def test_a_misspelt_keyword_names_reconstruct():
    with pytest.raises(TypeError, match=r"^reconstruct\(\) got an unexpected keyword argument 'directins'"):
        reconstruct(torch.rand(4, 4, 4), radon_sum, directins=3)
    with pytest.raises(TypeError, match=r"^reconstruct_iter\(\) got an unexpected keyword argument"):
        reconstruct_iter(torch.rand(4, 4, 4), radon_sum, directins=3)
