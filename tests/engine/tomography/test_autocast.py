"""bf16 autocast (CUDA only) against float32: the logits and the CAM maps must track each other."""

import pytest
import torch

pytestmark = pytest.mark.gpu


def test_bf16_logits_and_cams_track_fp32(accelerator):
    from tonno_engine.cams.extractor import CamExtractor
    from tonno_engine.models.encoders import create_encoder
    from tonno_engine.tomography.scorers import ModuleScorer

    torch.manual_seed(0)
    model = create_encoder("resnet10t", norm="gn").to(accelerator)
    x = torch.randn(16, 64, 64, device=accelerator)
    fp32 = ModuleScorer(model, autocast=False)(x)
    bf16 = ModuleScorer(model, autocast=True)(x)
    assert torch.corrcoef(torch.stack([fp32, bf16]))[0, 1] > 0.99
    maps32 = CamExtractor(model, "layercam", 2, autocast=False)(x)
    maps16 = CamExtractor(model, "layercam", 2, autocast=True)(x)
    assert torch.corrcoef(torch.stack([maps32.flatten(), maps16.flatten()]))[0, 1] > 0.98
