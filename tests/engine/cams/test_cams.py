"""CAM maps: cross-checked against pytorch-grad-cam, raw (unnormalised), mapped back to the slice."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tonno_engine.cams.extractor import CamExtractor, cam_to_plane, layer_module
from tonno_engine.models.encoders import create_encoder

pgc = pytest.importorskip("pytorch_grad_cam")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_encoder("resnet10t", norm="bn").eval()


def _minmax(a: torch.Tensor) -> torch.Tensor:
    lo, hi = a.amin(dim=(-2, -1), keepdim=True), a.amax(dim=(-2, -1), keepdim=True)
    return (a - lo) / (hi - lo + 1e-7)


REFERENCE = {"gradcam": "GradCAM", "layercam": "LayerCAM", "gradcam++": "GradCAMPlusPlus", "scorecam": "ScoreCAM"}


@pytest.mark.parametrize("layer", [1, 2, 3, 4])
@pytest.mark.parametrize("method", list(REFERENCE))
def test_maps_match_pytorch_grad_cam_after_min_max(model, method, layer):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(layer))
    ours = CamExtractor(model, method, layer, channels_last=False)(x)
    assert ours.shape == (3, 64 // 2 ** (layer + 1), 64 // 2 ** (layer + 1))
    with getattr(pgc, REFERENCE[method])(model=model, target_layers=[layer_module(model, layer)]) as ref_cam:
        ref_cam.batch_size = 512  # ScoreCAM's masked inputs per forward
        ref = ref_cam(input_tensor=x[:, None], targets=[ClassifierOutputTarget(0)] * 3)
    # pytorch-grad-cam: min-max per image, cv2 bilinear resize (half-pixel centres), min-max again.
    up = F.interpolate(_minmax(ours)[:, None], size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    np.testing.assert_allclose(_minmax(up).numpy(), ref, atol=2e-4)


def test_maps_are_raw_and_scale_with_the_logit(model):
    x = torch.randn(4, 64, 64, generator=torch.Generator().manual_seed(9))
    maps = {m: CamExtractor(model, m, 2)(x) for m in ("gradcam", "layercam")}
    head = model.get_classifier()
    with torch.no_grad():
        head.weight.mul_(2.0)
        head.bias.mul_(2.0)
    try:
        doubled = {m: CamExtractor(model, m, 2)(x) for m in ("gradcam", "layercam")}
    finally:
        with torch.no_grad():
            head.weight.div_(2.0)
            head.bias.div_(2.0)
    for m in maps:
        assert maps[m].amax() > 0 and not torch.allclose(maps[m].amax(dim=(1, 2)), torch.ones(4))
        torch.testing.assert_close(doubled[m], 2.0 * maps[m], rtol=1e-4, atol=1e-7)


def test_extractor_leaves_the_model_trainable(model):
    CamExtractor(model, "layercam", 3)(torch.randn(2, 64, 64))
    assert all(p.requires_grad for p in model.parameters())


def test_unknown_cam_or_layer_is_refused(model):
    with pytest.raises(ValueError, match="unknown CAM"):
        CamExtractor(model, "eigencam")
    with pytest.raises(ValueError, match="layer must be"):
        CamExtractor(model, "gradcam", 5)


def test_cam_cells_sit_at_block_centres():
    cams = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])  # 2×2 cells over an 8×8 slice
    plane = cam_to_plane(cams, (8, 8))[0]
    # Pixel j sits at j' = 2j/7 - 1 (align_corners=True); the cells' centres at -0.5 and 0.5
    # (align_corners=False); beyond them the border value holds.
    weight = torch.clamp(2 * torch.arange(8) / 7 - 0.5, 0, 1)
    torch.testing.assert_close(plane[0], weight)
    torch.testing.assert_close(plane[:, 0], 2 * weight)
    torch.testing.assert_close(plane, 2 * weight[:, None] + weight[None, :])
