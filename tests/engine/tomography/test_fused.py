"""The ``compile`` option's fused kernels give the eager paths' numbers."""

import pytest
import torch

from tonno_engine import radon_sum, reconstruct
from tonno_engine.tomography.backprojection import backproject
from tonno_engine.tomography.fused import backprojection_sum, trilinear_slices
from tonno_engine.tomography.geometry import axis_coords
from tonno_engine.tomography.phantoms import balls_phantom
from tonno_engine.tomography.plan import Plan
from tonno_engine.tomography.slicing import extract_slices


def _random_planes(count, gen):
    n = torch.nn.functional.normalize(torch.randn(count, 3, generator=gen), dim=1)
    u, v = torch.randn(count, 3, generator=gen), torch.randn(count, 3, generator=gen)
    return torch.rand(count, generator=gen) * 2.4 - 1.2, n, u, v


def test_fused_slices_equal_extract_slices():
    gen = torch.Generator().manual_seed(1)
    volume = torch.rand(11, 13, 1, generator=gen) + 1  # a flat axis too: no neighbour to read there
    planes = _random_planes(29, gen)
    ref = extract_slices(volume, *planes, (9, 10))
    assert (ref == 0).any() and (ref > 0).any()
    torch.testing.assert_close(trilinear_slices(volume, *planes, 9, 10), ref, atol=1e-5, rtol=0)


def test_fused_backprojection_equals_backproject():
    gen = torch.Generator().manual_seed(2)
    q = torch.randn(20, 15, generator=gen)
    normals = torch.nn.functional.normalize(torch.randn(20, 3, generator=gen), dim=1)
    ref = backproject(q, normals, torch.zeros(10, 12, 14))
    fused = backprojection_sum(q, normals, *(axis_coords(k) for k in (10, 12, 14)))
    torch.testing.assert_close(fused, ref, atol=1e-4 * ref.abs().max().item(), rtol=0)


@pytest.mark.slow
def test_compiled_reconstruction_equals_eager(device):
    """torch.compile's kernels (Inductor: C++ on a CPU, Triton on a GPU) in the whole pipeline."""
    volume = balls_phantom((12, 14, 13))
    kw = dict(slices=9, directions=12, slice_size=16, device=device, batch_size=40)
    eager = reconstruct(volume, radon_sum, Plan(**kw))
    compiled = reconstruct(volume, radon_sum, Plan(compile=True, **kw))
    assert eager.abs().max() > 0.1
    torch.testing.assert_close(compiled, eager, atol=1e-4 * eager.abs().max().item(), rtol=0)


@pytest.mark.slow
def test_compiled_network_equals_eager(device):
    from tonno_engine.models.encoders import create_encoder
    from tonno_engine.tomography.scorers import ModuleScorer

    torch.manual_seed(0)
    model = create_encoder("resnet10t", norm="bn").to(device)
    x = torch.randn(8, 32, 32, device=device)
    plain, compiled = ModuleScorer(model, autocast=False)(x), ModuleScorer(model, autocast=False, compile=True)(x)
    torch.testing.assert_close(compiled, plain, atol=1e-3 * plain.abs().max().item(), rtol=0)
