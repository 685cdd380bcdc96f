"""Scorers: callables from a batch of slices ``(B, h, w)`` to scores ``(B,)``.

A scorer of a network trained on 2.5D input has a ``context`` (slice pixels, > 0): it is then handed the
planes with their neighbours, ``(B, C, h, w)`` (:func:`~tonno_engine.tomography.slicing.slice_stacks`).
"""

from __future__ import annotations

import copy
from typing import Protocol

import torch


class Scorer(Protocol):
    def __call__(self, slices: torch.Tensor) -> torch.Tensor:  # (B, h, w) or, with a context, (B, C, h, w) -> (B,)
        ...


def scorer_context(scorer) -> float:
    """The ``context`` (slice pixels) of the input ``scorer`` takes; 0 (one plane) when it has none."""
    return float(getattr(scorer, "context", 0.0) or 0.0)


def radon_sum(slices: torch.Tensor) -> torch.Tensor:
    """``R_Σ`` (paper eq. 5), the plane integral: the ``[-1, 1]²`` patch has area 4, so 4 × mean.

    ``slices``: ``(B, h, w)`` → ``(B,)``. Replacing the network by this scorer must give back the
    volume inside the unit ball; that is the check that proves the reconstruction.
    """
    return 4.0 * slices.mean(dim=(-2, -1))


class ModuleScorer:
    """Wrap a 2D network with one logit as a scorer: ``(B, h, w)`` → ``(B,)`` float32.

    Adds the channel axis, runs in eval mode under ``inference_mode``, in ``channels_last``
    memory format (faster for convolutions on CPU and GPU), and under bf16 autocast on CUDA
    when ``autocast`` (the logit itself is returned in float32). ``fold_bn``: score with a copy
    whose eval-mode batch norms are folded into the convolutions before them (same logits to
    float rounding, about 1.3× faster on a 2-core CPU; ``model`` itself is left as it is, and
    the copy is taken here: make the scorer after training, not before). ``compile``: run
    the model through ``torch.compile`` (compiled on the first batch of each new shape; pays off
    on GPUs for long runs, not on a CPU). ``every_logit``: return all ``K`` logits ``(B, K)`` (one
    per finding) instead of the first. ``context``: the checkpoint's (2.5D input, ``(B, C, h, w)``; 0: one plane).
    """

    def __init__(self, model: torch.nn.Module, *, channels_last: bool = True, autocast: bool = True,
                 fold_bn: bool = True, compile: bool = False, every_logit: bool = False, context: float = 0.0):
        self.model = model.eval()
        self.context = context
        self.every_logit = every_logit
        self.channels_last = channels_last
        self.autocast = autocast
        scoring = fold_batch_norms(self.model) if fold_bn else self.model
        if channels_last:
            scoring.to(memory_format=torch.channels_last)
        self.forward = torch.compile(scoring) if compile else scoring

    def __call__(self, slices: torch.Tensor) -> torch.Tensor:
        x = slices[:, None] if slices.ndim == 3 else slices
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        use_amp = self.autocast and x.device.type == "cuda"
        with torch.inference_mode(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = self.forward(x).float().reshape(len(x), -1)
            return logits if self.every_logit else logits[:, 0]


def fold_batch_norms(model: torch.nn.Module) -> torch.nn.Module:
    """An eval-mode copy of ``model`` with every batch norm that follows a convolution folded into
    it (``torch.fx``'s ``fuse``; timm's frozen batch norms are turned into ordinary ones first).
    Returns ``model`` itself when ``torch.fx`` cannot trace it (data-dependent control flow)."""
    from timm.layers import unfreeze_batch_norm_2d
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(unfreeze_batch_norm_2d(copy.deepcopy(model)).eval(), inplace=True)
    except (torch.fx.proxy.TraceError, NotImplementedError, TypeError, RuntimeError):
        return model
