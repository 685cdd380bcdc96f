"""The slices and scores along given directions (paper Fig. 2b): logit profiles, and one direction's
stack of slices as the network sees them. Same offsets, bases and slicing as :func:`reconstruct`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..base.devices import resolve_device
from ..base.events import Partial, Progress
from ..base.inputs import as_volume
from .geometry import orthonormal_basis, slice_offsets
from .plan import Plan
from .reconstruction import Scorer, default_batch_size, iter_profiles
from .scorers import scorer_context
from .slicing import plane_channel


def profiles(volume, scorer: Scorer, normals: torch.Tensor, plan: Plan = Plan()) -> torch.Tensor:
    """Logit profiles ``p_m(n_l)`` for ``m = -1 … M``: ``(L, M + 2)`` on the CPU, float32.

    ``normals``: ``(L, 3)`` unit vectors in ``(x0, x1, x2)``; ``(u, v)`` from :func:`orthonormal_basis`, the same
    as :func:`reconstruct` uses; ``plan``: its ``slices``, ``slice_size``, ``device`` and ``batch_size``.
    """
    dev = resolve_device(plan.device)
    vol = as_volume(volume, dev, channels=True)
    normals = torch.as_tensor(normals, dtype=torch.float64).reshape(-1, 3)
    basis = (normals, *orthonormal_basis(normals))
    offsets = slice_offsets(plan.slices)
    scores = [s[0] for _, s in iter_profiles(vol, scorer, offsets, basis, plan.size,
                                             plan.batch_size or default_batch_size(dev))]
    return torch.cat(scores).reshape(len(normals), plan.slices + 2).cpu()


@dataclass(frozen=True)
class DirectionStack:
    """The ``M + 2`` slices along one direction and their scores.

    ``images``: the slices ``(M + 2, h, w)`` float32 on the CPU, ``scores``: ``(M + 2,)``, ``offsets``:
    ``s_m`` ``(M + 2,)``, ``normal``/``u``/``v``: ``(3,)`` float64 in ``(x0, x1, x2)``.
    """

    images: torch.Tensor | None
    scores: torch.Tensor
    offsets: torch.Tensor
    normal: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor


def direction_stack_iter(volume, scorer: Scorer, normal, plan: Plan = Plan(), *,
                         keep_images: bool = True) -> Iterator[Progress | Partial]:
    """Cut and score the slices the network sees along one direction (paper Fig. 2b).

    ``normal``: ``(3,)`` in ``(x0, x1, x2)`` of the sliced space (see
    :mod:`tonno_engine.tomography.frames` for the ``plan``'s geometry); ``(u, v)`` from
    :func:`orthonormal_basis`, as in :func:`reconstruct`. Yields ``Progress("scoring")`` per scorer
    batch, then a final :class:`Partial` holding a :class:`DirectionStack` (without images unless
    ``keep_images``); its ``normal``, ``u``, ``v`` are those of the sliced space.
    """
    dev = resolve_device(plan.device)
    vol = as_volume(volume, dev, channels=True)
    n = torch.as_tensor(normal, dtype=torch.float64).reshape(1, 3)
    n = n / n.norm()
    u, v = orthonormal_basis(n)
    offsets = slice_offsets(plan.slices)
    frame = plan.frame(vol.shape[-3:])
    cut = tuple(frame.for_slicing(w) for w in (n, u, v))
    kept: list[torch.Tensor] = []

    def scoring(batch: torch.Tensor) -> torch.Tensor:
        if keep_images:  # the plane itself of the first image (the middle channel of its 2.5D stack)
            kept.append((batch if batch.ndim == 3 else batch[:, plane_channel(scoring.context)]).cpu())
        return scorer(batch)

    scoring.context = scorer_context(scorer)

    scores, done = [], 0
    for count, batch_scores in iter_profiles(vol, scoring, offsets, cut, plan.size,
                                             plan.batch_size or default_batch_size(dev)):
        scores.append(batch_scores[0].cpu())
        done += count
        yield Progress("scoring", done, len(offsets), "slices", detail=True)
    stack = DirectionStack(torch.cat(kept) if keep_images else None, torch.cat(scores), offsets, n[0], u[0], v[0])
    yield Partial(stack, 1, 1, final=True)
