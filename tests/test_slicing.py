import torch

from tonno_engine.slicing import extract_slices

E = torch.eye(3, dtype=torch.float64)


def _axis_slices(volume, axis):
    """All slices of ``volume`` normal to ``axis``, cut at the array's own index positions."""
    size = volume.shape[axis]
    others = [a for a in range(3) if a != axis]
    offsets = torch.linspace(-1, 1, size, dtype=torch.float64)
    n = E[axis].expand(size, 3)
    u, v = E[others[0]].expand(size, 3), E[others[1]].expand(size, 3)
    return extract_slices(volume, offsets, n, u, v, (volume.shape[others[0]], volume.shape[others[1]]))


def test_axis_aligned_slices_equal_the_array_slices():
    volume = torch.rand(5, 7, 9)
    torch.testing.assert_close(_axis_slices(volume, 0), volume, atol=1e-6, rtol=0)
    torch.testing.assert_close(_axis_slices(volume, 1), volume.permute(1, 0, 2), atol=1e-6, rtol=0)
    torch.testing.assert_close(_axis_slices(volume, 2), volume.permute(2, 0, 1), atol=1e-6, rtol=0)


def test_outside_the_volume_is_zero():
    volume = torch.rand(6, 6, 6) + 1
    out = extract_slices(volume, torch.tensor([1.5, -1.2]), E[:2], E[[1, 2]], E[[2, 0]], (4, 4))
    assert out.abs().max() == 0


def test_midpoint_between_voxels_is_trilinear():
    volume = torch.arange(8.0).reshape(2, 2, 2)
    # the centre of the cube is the mean of all 8 corners
    out = extract_slices(volume, torch.tensor([0.0]), E[:1], E[1:2] * 1e-9, E[2:3] * 1e-9, (2, 2))
    torch.testing.assert_close(out, torch.full((1, 2, 2), 3.5))


def test_scaled_and_sheared_vectors_are_honoured():
    volume = torch.rand(9, 9, 9)
    # u of half length samples the central half of the axis: indices 2, 4, 6 at 3 samples
    out = extract_slices(volume, torch.tensor([0.0]), E[:1], 0.5 * E[1:2], E[2:3], (3, 9))
    torch.testing.assert_close(out[0], volume[4, 2:7:2, :], atol=1e-6, rtol=0)
    # shear: v = e2 + e1 moves along both in-plane axes
    sheared = extract_slices(volume, torch.tensor([0.0]), E[:1], 0.5 * E[1:2], 0.5 * (E[1:2] + E[2:3]), (3, 3))
    assert torch.isclose(sheared[0, 1, 2], volume[4, 6, 6], atol=1e-6)
