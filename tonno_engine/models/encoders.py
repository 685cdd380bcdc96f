"""Slice classifiers: any timm encoder with one logit (or one per finding), with a choice of normalisation.

``norm``: ``"bn"`` (batch norm, trains running statistics), ``"frozen_bn"`` (paper default: BN
layers frozen to their initial affine and statistics), ``"gn"`` (every BN replaced by GroupNorm
whose affine starts from the BN's; all other pretrained weights kept). Pretrained weights come from
a local file or from timm's published weights (:mod:`tonno_engine.models.weights`).
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from timm.layers import freeze_batch_norm_2d

from ..base.errors import DataError
from .weights import WeightsSource, check_reachable, resolve_weights

NORMS = ("frozen_bn", "bn", "gn")


def _group_count(channels: int, target: int = 32) -> int:
    """Largest divisor of ``channels`` not above ``target`` (GroupNorm needs an exact split)."""
    for g in range(min(target, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


def batchnorm_to_groupnorm(module: torch.nn.Module) -> torch.nn.Module:
    """Replace every ``BatchNorm2d`` by ``GroupNorm`` in place, copying the affine parameters.

    Written here because timm converts BN to frozen BN but not to GN while keeping weights.
    """
    for name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm2d):
            gn = torch.nn.GroupNorm(_group_count(child.num_features), child.num_features, eps=child.eps)
            if child.affine:
                with torch.no_grad():
                    gn.weight.copy_(child.weight)
                    gn.bias.copy_(child.bias)
            setattr(module, name, gn)
        else:
            batchnorm_to_groupnorm(child)
    return module


def model_problem(name: str) -> str | None:
    """Why ``name`` is no model :func:`create_encoder` can build (``None``: it is one of timm's)."""
    return None if timm.is_model(name) else f"unknown timm model {name!r} (see timm.list_models())"


def _from_weights_file(name: str, file: str, kwargs: dict) -> torch.nn.Module:
    """timm's model ``name`` with the weights of a local ``file``; :class:`DataError` naming the file when
    it holds no state dict or one of another architecture (timm raises bare pickle/key errors)."""
    try:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=file), **kwargs)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        raise DataError(file, f"these weights do not fit {name} (another architecture?): {' '.join(lines[:3])[:400]}") from exc
    except Exception as exc:  # noqa: BLE001 - unpickling or safetensors parsing fails with many types
        raise DataError(file, f"not a weights file that timm can read ({type(exc).__name__}: {str(exc)[:200]})") from exc


def create_encoder(name: str = "resnet10t", norm: str = "frozen_bn", in_chans: int = 1,
                   weights: WeightsSource | str | Path | None = None, outputs: int = 1) -> torch.nn.Module:
    """A timm model ``name`` with ``in_chans`` input channels and ``outputs`` logits (one per finding).

    ``weights``: a :class:`WeightsSource` or what :func:`resolve_weights` accepts (a local file,
    ``"imagenet"``, a timm tag); timm adapts the first convolution to ``in_chans`` (summing RGB for
    one channel) and drops the 1000-class head. Raises ``ValueError`` for an unknown model, norm or
    tag, ``FileNotFoundError`` for a missing weights file, :class:`DataError` when published weights
    cannot be fetched.
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
    if (problem := model_problem(name)) is not None:
        raise ValueError(problem)
    kwargs = dict(num_classes=outputs, in_chans=in_chans)
    source = weights if isinstance(weights, WeightsSource) else resolve_weights(name, weights)
    if source.kind == "file":
        model = _from_weights_file(name, source.location, kwargs)
    elif source.kind == "hub":
        check_reachable(source)
        try:
            model = timm.create_model(source.name, pretrained=True, **kwargs)
        except (OSError, RuntimeError) as exc:  # huggingface_hub's and urllib's errors derive from these
            raise DataError(source.spec, f"could not fetch the published weights {source.name} ({type(exc).__name__}: "
                                         f"{exc}); pass --weights FILE with a local copy") from exc
    else:
        model = timm.create_model(name, pretrained=False, **kwargs)
    if norm == "frozen_bn":
        model = freeze_batch_norm_2d(model)
    elif norm == "gn":
        model = batchnorm_to_groupnorm(model)
    return model
