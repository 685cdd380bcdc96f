import torch

from tonno_engine.tomography.geometry import axis_coords
from tonno_engine.tomography.slicing import extract_slices

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


def _reference_slices(volume, offsets, n, u, v, size):
    """Straightforward eq. 4: the whole (B, h, w, 3) grid, one grid_sample, mask from the grid."""
    h, w = size
    ii, jj = torch.linspace(-1, 1, h, dtype=torch.float64), torch.linspace(-1, 1, w, dtype=torch.float64)
    pts = (offsets[:, None, None, None] * n[:, None, None, :] + ii[None, :, None, None] * u[:, None, None, :]
           + jj[None, None, :, None] * v[:, None, None, :]).float()
    out = torch.nn.functional.grid_sample(volume[None, None], pts.flip(-1)[None], align_corners=True)[0, 0]
    return out.masked_fill(pts.abs().amax(-1) > 1 + 1e-6, 0.0)


def test_fast_slicing_equals_the_straightforward_one():
    """Parallel parts and the per-row inside interval give eq. 4's slices, the rim included."""
    gen = torch.Generator().manual_seed(0)
    volume = torch.rand(11, 13, 12, generator=gen) + 1  # non-zero border: the mask matters
    b = 37
    n = torch.nn.functional.normalize(torch.randn(b, 3, generator=gen, dtype=torch.float64), dim=1)
    u = torch.randn(b, 3, generator=gen, dtype=torch.float64)  # neither unit nor orthogonal
    v = torch.randn(b, 3, generator=gen, dtype=torch.float64)
    offsets = torch.rand(b, generator=gen, dtype=torch.float64) * 2.4 - 1.2
    # axis-aligned rows and columns, a plane on the cube's face, vectors with zero components
    n[:3], u[:3], v[:3], offsets[:3] = E, E[[1, 2, 0]], E[[2, 0, 1]], torch.tensor([1.0, -1.0, 0.3])
    out = extract_slices(volume, offsets, n, u, v, (9, 10))
    ref = _reference_slices(volume, offsets, n, u, v, (9, 10))
    assert (ref == 0).any() and (ref > 0).any()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    face = extract_slices(volume, offsets[:1], n[:1], u[:1], v[:1], (13, 12))[0]
    torch.testing.assert_close(face, volume[-1], atol=1e-5, rtol=0)  # the plane x0 = 1 is kept


def _ramp(shape=(9, 11, 13), axis=0):
    """A volume whose value is its normalised coordinate ``t_axis`` (``-1`` … ``1`` along ``axis``)."""
    t = axis_coords(shape[axis], torch.float32)
    return t.view(*[shape[axis] if a == axis else 1 for a in range(3)]).expand(shape).contiguous()


def test_slice_stacks_put_the_neighbouring_planes_context_pixels_off_the_plane():
    from tonno_engine.tomography.slicing import input_channels, slice_stacks

    volume, size = _ramp(), (17, 17)
    offsets = torch.tensor([-0.3, 0.0, 0.4], dtype=torch.float64)
    n, u, v = E[0].expand(3, 3), E[1].expand(3, 3), E[2].expand(3, 3)
    single = slice_stacks(volume, offsets, (n, u, v), size)
    assert single.shape == (3, 1, 17, 17) and input_channels(0.0) == 1
    torch.testing.assert_close(single[:, 0], extract_slices(volume, offsets, n, u, v, size))
    stack = slice_stacks(volume, offsets, (n, u, v), size, 2.0)
    assert stack.shape == (3, input_channels(2.0), 17, 17)
    torch.testing.assert_close(stack[:, 1], single[:, 0])
    step = 2.0 * 2.0 / (17 - 1)  # two pixels of the [-1, 1] patch: the ramp's value moves by that much
    centre = stack[:, :, 8, 8]
    torch.testing.assert_close(centre[:, 2] - centre[:, 1], torch.full((3,), step), atol=1e-5, rtol=0)
    torch.testing.assert_close(centre[:, 1] - centre[:, 0], torch.full((3,), step), atol=1e-5, rtol=0)
    wide = slice_stacks(volume, offsets, (n, u, v), size, 2.0, pixel=0.05)
    torch.testing.assert_close(wide[:, 2, 8, 8] - wide[:, 1, 8, 8], torch.full((3,), 0.1), atol=1e-5, rtol=0)
