"""The CAMs of the registry (:mod:`tonno_engine.base.registry`), one function each, registered here.

Each takes a :class:`~tonno_engine.cams.extractor.CamExtractor` and its input ``x``
``(B, 1, h, w)`` and returns ``(logits (B,), maps (B, a, b))``: raw float32 maps at the layer's
resolution, clamped at 0 and never normalised per slice. Those marked ``several_targets`` explain
every one of the extractor's ``targets`` (when it has them) from one forward pass: maps ``(B, F, a, b)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..base.registry import CamRecord, register_cam


def gradient_cam(weigh: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
    """A CAM from the layer's activations ``A`` and gradients ``G`` (each ``(B, C, a, b)``):
    ``weigh(A, G)`` returns the per-cell map ``(B, a, b)`` before the final clamp at 0."""

    def impl(extractor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, acts = extractor.forward(x, need_grad=True)
        if extractor.targets is None:
            (grads,) = torch.autograd.grad(logits.sum(), acts)
            return logits, weigh(acts.detach().float(), grads.float()).clamp(min=0).contiguous()
        maps = []
        for k, target in enumerate(extractor.targets):  # one backward pass per finding, the forward kept
            (grads,) = torch.autograd.grad(extractor.all_logits[:, target].sum(), acts,
                                           retain_graph=k < len(extractor.targets) - 1)
            maps.append(weigh(acts.detach().float(), grads.float()).clamp(min=0))
        return logits, torch.stack(maps, 1).contiguous()

    impl.__doc__ = weigh.__doc__
    impl.several_targets = True
    return impl


@gradient_cam
def gradcam(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """GradCAM (Selvaraju et al. 2017): channels weighted by their mean gradient."""
    return (grads.mean(dim=(2, 3), keepdim=True) * acts).sum(1)


@gradient_cam
def layercam(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """LayerCAM (Jiang et al. 2021): each cell weighted by its own positive gradient."""
    return (grads.clamp(min=0) * acts).sum(1)


@gradient_cam
def gradcampp(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """GradCAM++ (Chattopadhay et al. 2018, eq. 19, with the exponential's derivatives)."""
    g2 = grads * grads
    denom = 2 * g2 + acts.sum(dim=(2, 3), keepdim=True) * g2 * grads + 1e-6
    alpha = torch.where(grads != 0, g2 / denom, 0.0)
    weights = (grads.clamp(min=0) * alpha).sum(dim=(2, 3), keepdim=True)
    return (weights * acts).sum(1)


@torch.no_grad()
def scorecam(extractor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ScoreCAM (Wang et al. 2020): channel weights = softmax of the logits of masked inputs."""
    logits, acts = extractor.forward(x, need_grad=False)
    acts = acts.float()
    b, c = acts.shape[:2]
    up = F.interpolate(acts, size=x.shape[-2:], mode="bilinear", align_corners=True)
    lo = up.amin(dim=(2, 3), keepdim=True)
    hi = up.amax(dim=(2, 3), keepdim=True)
    masks = (up - lo) / (hi - lo + 1e-8)
    # x (B, k, h, w): its k input channels (2.5D: k = 3) masked alike by each of the C masks
    masked = (x[:, None] * masks[:, :, None]).reshape(b * c, x.shape[1], *x.shape[-2:])
    scores = []
    for start in range(0, len(masked), extractor.scorecam_batch):
        chunk = masked[start:start + extractor.scorecam_batch]
        if extractor.channels_last:
            chunk = chunk.contiguous(memory_format=torch.channels_last)
        with extractor.amp(x.device):
            scores.append(extractor.model(chunk).float().reshape(len(chunk), -1))
    scores = torch.cat(scores)
    if extractor.targets is None:
        weights = torch.softmax(scores[:, extractor.target].reshape(b, c), dim=1)[:, :, None, None]
        return logits, (weights * acts).sum(1).clamp(min=0).contiguous()
    weights = torch.softmax(scores[:, list(extractor.targets)].reshape(b, c, -1), dim=1)  # (B, C, F)
    return logits, torch.einsum("bcf,bcij->bfij", weights, acts).clamp(min=0).contiguous()


scorecam.several_targets = True


for _record in (
    CamRecord("gradcam", "GradCAM", "gradcam", gradcam, "Selvaraju et al. 2017"),
    CamRecord("layercam", "LayerCAM", "layercam", layercam, "Jiang et al. 2021"),
    CamRecord("gradcam++", "GradCAM++", "gradcampp", gradcampp, "Chattopadhay et al. 2018"),
    CamRecord("scorecam", "ScoreCAM", "scorecam", scorecam, "Wang et al. 2020"),
):
    register_cam(_record)
del _record
