"""Class activation maps of a one-logit slice classifier, raw and on the device.

A :class:`CamExtractor` maps slices ``(B, h, w)`` to raw maps ``(B, a, b)`` float32 at the
resolution of the chosen layer (``a = h / 2^(layer+1)`` for a ResNet), for the target "the
logit". Maps keep their scale (no per-image normalisation): reconstructions average and
differentiate them across slices, so a per-slice min-max would destroy the signal.

Written with our own hooks rather than pytorch-grad-cam (which min-max normalises each image and
moves maps to numpy) or torchcam (no GradCAM++/ScoreCAM batching for one logit); the maps are
cross-checked against pytorch-grad-cam in the tests after min-max normalising both. Gradients are
taken with respect to the layer's activations only (no weight gradients), which keeps LayerCAM at
layer 4 near the cost of a forward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..base.defaults import CAM, CAM_LAYER
from ..base.registry import LAYERS, cam


def layer_module(model: torch.nn.Module, layer: int) -> torch.nn.Module:
    """The module whose output is "layer ``layer``" (1…4): the last stage at stride ``2^(layer+1)``.

    Uses timm's ``feature_info``, so it works for ResNets (``layer1`` … ``layer4``) and other
    timm CNNs alike.
    """
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
    info = getattr(model, "feature_info", None)
    if not info:
        raise ValueError(f"{type(model).__name__} has no timm feature_info; cannot locate layer {layer}")
    names = [f["module"] for f in info if f["reduction"] == 2 ** (layer + 1)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no stage at stride {2 ** (layer + 1)} (layer {layer})")
    return model.get_submodule(names[-1])


class CamExtractor:
    """Raw CAM maps of ``model`` at ``layer`` with the registered CAM ``method``.

    ``__call__(slices (B, h, w)) -> (B, a, b)`` float32 on the slices' device. The model runs in
    eval mode with ``channels_last``, under bf16 autocast on CUDA when ``autocast``.
    The class's ``scorecam_batch`` bounds the masked inputs per forward pass for ScoreCAM. With
    ``with_logits`` the call returns ``(logits (B,), maps)``: the logit comes free with the maps,
    so ToNNO and the CAM variants can share one pass over the slices.

    ``targets``: the logits (findings) to explain; ``None`` explains logit 0 with the shapes above.
    Given, the call returns maps ``(B, F, a, b)``, one per target, and with ``with_logits`` every logit
    ``(B, K)``. The gradient CAMs take one forward pass and one backward pass per target (from the logit
    down to the layer only); ScoreCAM one forward pass of the masked inputs for all targets; a CAM
    registered by another package, which explains one logit at a time, one pass per target.
    ``context``: the checkpoint's 2.5D input (slice pixels; the call then takes ``(B, C, h, w)``, 0: one plane).
    """

    #: masked inputs per forward pass of ScoreCAM
    scorecam_batch = 256

    def __init__(self, model: torch.nn.Module, method: str = CAM, layer: int = CAM_LAYER, *,
                 channels_last: bool = True, autocast: bool = True, with_logits: bool = False,
                 targets: tuple[int, ...] | None = None, context: float = 0.0):
        self.context = context
        self.impl = cam(method).impl  # (extractor, x) -> (logits, maps): see tonno_engine.cams.maps
        self.targets = tuple(targets) if targets is not None else None
        #: the logit ``forward`` returns, for a CAM that explains one at a time
        self.target = 0
        #: every logit ``(B, K)`` of the last :meth:`forward`
        self.all_logits: torch.Tensor | None = None
        self.model = model.eval()
        self.method, self.layer = method, layer
        self.module = layer_module(model, layer)
        self.channels_last, self.autocast = channels_last, autocast
        self.with_logits = with_logits
        if channels_last:
            self.model.to(memory_format=torch.channels_last)

    def _input(self, slices: torch.Tensor) -> torch.Tensor:
        x = (slices[:, None] if slices.ndim == 3 else slices).float()
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def amp(self, device: torch.device):
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.autocast and device.type == "cuda")

    def forward(self, x: torch.Tensor, need_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Logit :attr:`target` ``(B,)`` and the layer's activations ``(B, C, a, b)`` (a grad leaf if
        ``need_grad``); every logit ``(B, K)`` is kept in :attr:`all_logits`."""
        store = {}

        def hook(_module, _inputs, output):
            out = output.detach().requires_grad_(need_grad)
            store["a"] = out
            return out

        handle = self.module.register_forward_hook(hook)
        # Weights stop requiring grad for the call (no graph, no weight gradients), then are restored.
        params = [p for p in self.model.parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        try:
            with torch.set_grad_enabled(need_grad), self.amp(x.device):
                self.all_logits = self.model(x).reshape(len(x), -1)
        finally:
            handle.remove()
            for p in params:
                p.requires_grad_(True)
        return self.all_logits[:, self.target], store["a"]

    def __call__(self, slices: torch.Tensor):
        with torch.inference_mode(False):
            x = self._input(slices.clone() if slices.is_inference() else slices)
            if self.targets is None:
                logits, maps = self.impl(self, x)
            elif getattr(self.impl, "several_targets", False):  # all targets from one forward pass
                _, maps = self.impl(self, x)
                logits = self.all_logits
            else:  # a CAM that explains one logit per call
                maps = []
                for target in self.targets:
                    self.target = target
                    maps.append(self.impl(self, x)[1])
                self.target = 0
                logits, maps = self.all_logits, torch.stack(maps, 1)
        return (logits.detach().float(), maps) if self.with_logits else maps


def cam_to_plane(cams: torch.Tensor, size: tuple[int, int], extent: tuple[float, float] = (1.0, 1.0)) -> torch.Tensor:
    """Resample maps ``(B, a, b)`` onto ``size`` pixels of the same slice: ``(B, h, w)``.

    Cell ``(a, b)`` covers a block of the slice, so cells sit at ``align_corners=False`` centres
    while pixels sit at ``align_corners=True`` positions ``i' = extent·(2i/(h-1) - 1)``
    (docs/methods.md); ``extent`` ``(e_h, e_w)`` ≤ 1 reads only the central part of the slice
    (the volume's plane inside a zero-padded square slice). Beyond the outer cell centres the
    border value holds.
    """
    h, w = size
    dtype, device = cams.dtype, cams.device
    ii = torch.linspace(-1.0, 1.0, h, dtype=dtype, device=device) * extent[0]
    jj = torch.linspace(-1.0, 1.0, w, dtype=dtype, device=device) * extent[1]
    grid = torch.stack(torch.meshgrid(jj, ii, indexing="xy"), dim=-1)  # (h, w, 2) as (x=j, y=i)
    grid = grid.expand(len(cams), h, w, 2)
    return F.grid_sample(cams[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0]
