import pytest
import timm
import torch
from torchvision.ops.misc import FrozenBatchNorm2d  # what timm.layers.freeze_batch_norm_2d uses

from tonno_engine.models.encoders import create_encoder


@pytest.mark.parametrize("norm", ["frozen_bn", "bn", "gn"])
def test_one_logit_per_slice_with_the_chosen_norm(norm):
    model = create_encoder("resnet10t", norm=norm).eval()
    assert model(torch.rand(3, 1, 32, 32)).shape == (3, 1)
    kinds = {type(m) for m in model.modules()}
    assert (torch.nn.BatchNorm2d in kinds) == (norm == "bn")
    assert (FrozenBatchNorm2d in kinds) == (norm == "frozen_bn")
    assert (torch.nn.GroupNorm in kinds) == (norm == "gn")


def test_local_imagenet_weights_are_adapted_and_kept_through_gn(tmp_path):
    imagenet = timm.create_model("resnet10t", pretrained=False)  # 3 channels, 1000 classes
    path = tmp_path / "resnet10t.pth"
    torch.save(imagenet.state_dict(), path)
    model = create_encoder("resnet10t", norm="gn", weights=path)
    ref = imagenet.state_dict()
    # timm sums the RGB filters for a single input channel
    torch.testing.assert_close(model.conv1[0].weight, ref["conv1.0.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(model.layer1[0].conv1.weight, ref["layer1.0.conv1.weight"])
    torch.testing.assert_close(model.bn1.weight, ref["bn1.weight"])  # GN affine starts from BN's
    assert isinstance(model.bn1, torch.nn.GroupNorm)
    assert model.fc.out_features == 1


def test_bad_model_norm_or_weights():
    with pytest.raises(ValueError, match="unknown timm model"):
        create_encoder("resnet_does_not_exist")
    with pytest.raises(ValueError, match="valid: frozen_bn, bn, gn"):
        create_encoder("resnet10t", norm="ln")
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        create_encoder("resnet10t", weights="/nonexistent/w.pth")


@pytest.mark.parametrize("norm", ["bn", "frozen_bn"])
def test_folded_batch_norms_give_the_same_logits(norm):
    from tonno_engine.models.encoders import create_encoder
    from tonno_engine.tomography.scorers import ModuleScorer, fold_batch_norms

    torch.manual_seed(0)
    model = create_encoder("resnet10t", norm=norm).eval()
    for module in model.modules():
        if hasattr(module, "running_var"):  # non-trivial statistics, so folding changes the weights
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    folded = fold_batch_norms(model)
    assert not any("BatchNorm" in type(m).__name__ for m in folded.modules())
    assert any("BatchNorm" in type(m).__name__ for m in model.modules())  # the model itself is untouched
    x = torch.randn(8, 48, 48)
    plain, fast = ModuleScorer(model, fold_bn=False)(x), ModuleScorer(model)(x)
    assert plain.abs().max() > 1e-3
    torch.testing.assert_close(fast, plain, atol=1e-4 * plain.abs().max().item(), rtol=0)
