"""Physical geometry: the frame's numbers, the R_Σ proof on an anisotropic phantom in millimetres,
isometric slices, and every method on anisotropic voxels."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from tonno_engine import radon_sum, reconstruct
from tonno_engine.tomography.frames import make_frame
from tonno_engine.tomography.phantoms import (
    CORNER_BALLS_MM,
    anisotropic_phantom,
    ball_masks_mm,
    balls_phantom,
    balls_phantom_mm,
)
from tonno_engine.tomography.plan import Plan
from tonno_engine.tomography.slicing import extract_slices


def test_frame_scales():
    full = make_frame((64, 48, 14), geometry="physical", spacing=(1, 1, 3), field_of_view="full")
    half = np.array([31.5, 23.5, 19.5])
    assert full.mm_per_unit == pytest.approx(np.linalg.norm(half))
    assert np.linalg.norm(full.scale) == pytest.approx(1.0)  # the corners lie on the unit sphere
    ball = make_frame((64, 48, 14), geometry="physical", spacing=(1, 1, 3), field_of_view="ball")
    assert ball.scale == pytest.approx(tuple(half / 31.5)) and ball.mm_per_unit == 31.5
    assert ball.mm_per_pixel(64) == pytest.approx(63 / 63)
    assert make_frame((5, 6, 7)).is_identity and make_frame((5, 6, 7), geometry=None, field_of_view=None).is_identity


@pytest.mark.parametrize("spacing", [(1, 1, 0), (1, -2, 1), (1, float("nan"), 1), (1, 1), None, "abc"])
def test_bad_spacing_is_refused(spacing):
    with pytest.raises(ValueError, match="spacing"):
        make_frame((8, 8, 8), geometry="physical", spacing=spacing)


def test_unknown_geometry_or_field_of_view():
    with pytest.raises(ValueError, match="valid: paper, physical"):
        make_frame((8, 8, 8), geometry="mm")
    with pytest.raises(ValueError, match="valid: ball, full"):
        make_frame((8, 8, 8), geometry="physical", spacing=(1, 1, 1), field_of_view="all")


def test_physical_ball_on_a_cube_of_isotropic_voxels_is_the_paper_geometry(device):
    volume = balls_phantom((16, 16, 16))
    kw = dict(slices=10, directions=24, slice_size=20, device=device)
    paper = reconstruct(volume, radon_sum, Plan(**kw))
    physical = reconstruct(volume, radon_sum, Plan(geometry="physical", spacing=(0.7, 0.7, 0.7), field_of_view="ball", **kw))
    torch.testing.assert_close(physical, paper)


def test_slices_are_isometric_in_millimetres():
    """An axial slice through a ball in a 40 × 20 × 40 mm box (2 mm voxels along axis 1) is a disc
    in physical geometry, and an ellipse stretched 2× in the paper's."""
    spacing = (1.0, 2.0, 1.0)
    volume = balls_phantom_mm((41, 11, 41), spacing, [((0.0, 0.0, 0.0), 8.0, 1.0)])
    n, u, v = (torch.eye(3, dtype=torch.float64)[k][None] for k in (2, 0, 1))

    def extents(geometry):
        frame = make_frame(volume.shape, geometry=geometry, spacing=spacing, field_of_view="ball")
        cut = extract_slices(volume, torch.zeros(1, dtype=torch.float64),
                             *(frame.for_slicing(w) for w in (n, u, v)), (121, 121))[0]
        return (cut > 0.5).any(1).sum().item(), (cut > 0.5).any(0).sum().item()  # rows (axis 0), columns (axis 1)

    rows, cols = extents("physical")
    assert abs(rows / cols - 1) < 0.08, (rows, cols)  # 16 mm both ways at 1/3 mm per pixel: ~48 pixels
    rows, cols = extents("paper")
    assert cols / rows > 1.7, (rows, cols)


@pytest.mark.slow
def test_radon_sum_check_in_physical_geometry_recovers_the_whole_anisotropic_volume(device):
    """The paper's proof on balls defined in mm at 1 × 1 × 3 mm, two of them near the corners."""
    volume, spacing = anisotropic_phantom()
    masks = ball_masks_mm(volume.shape, spacing)
    kw = dict(slices=64, directions=800, slice_size=64, device=device, batch_size=512, spacing=spacing)
    full = reconstruct(volume, radon_sum, Plan(geometry="physical", field_of_view="full", **kw)).cpu()
    paper = reconstruct(volume, radon_sum, Plan(geometry="paper", **kw)).cpu()
    corr = torch.corrcoef(torch.stack([full.flatten().double(), volume.flatten().double()]))[0, 1].item()
    assert corr >= 0.95, corr
    for mask, (_, _, value) in zip(masks[1:], CORNER_BALLS_MM[1:]):  # the corner balls come back
        assert full[mask].mean() >= 0.7 * value
        assert paper[mask].mean() < 0.5 * value  # outside the paper geometry's unit ball


def test_every_method_in_physical_geometry(device):
    from tonno_engine.base.registry import METHODS, MethodSpec
    from tonno_engine.methods.run import run_methods
    from tonno_engine.methods.settings import ReconstructionSettings
    from tonno_engine.models.encoders import create_encoder

    torch.manual_seed(0)
    model = create_encoder("resnet10t", norm="gn").to(device)
    volume = balls_phantom_mm((20, 16, 8), (1.0, 1.0, 3.0), [((0.0, 0.0, 0.0), 5.0, 1.0)])
    specs = [MethodSpec(name, layer=3) for name in METHODS if name != "scorecam"]
    settings = ReconstructionSettings(slices=6, directions=8, slice_size=32, geometry="physical")
    maps = run_methods(specs, volume, model, settings, device=device, spacing=(1.0, 1.0, 3.0))
    assert all(m.shape == (20, 16, 8) and torch.isfinite(m).all() for m in maps.values())


def test_slicewise_maps_come_back_on_the_input_grid(device):
    """With the slice itself as the 'CAM', the slice-wise stack is the volume again, although each
    slice is a padded square in mm and the plane covers only part of it."""
    from tonno_engine.base.events import Partial
    from tonno_engine.cams.slicewise import slicewise_iter

    spacing = (1.0, 2.5, 1.0)
    volume = balls_phantom_mm((30, 12, 20), spacing, [((3.0, 2.0, -2.0), 7.0, 1.0)])
    volume = torch.from_numpy(ndimage.gaussian_filter(volume.numpy(), 1.0).astype(np.float32))
    plan = Plan(slice_size=64, device=device, geometry="physical", spacing=spacing)
    events = list(slicewise_iter(volume, lambda batch: batch, plan, axes=(0, 1, 2)))
    heat = events[-1].value[0].cpu()
    assert isinstance(events[-1], Partial) and heat.shape == volume.shape
    corr = torch.corrcoef(torch.stack([heat.flatten(), volume.flatten()]))[0, 1].item()
    assert corr > 0.98 and math.isfinite(corr)
