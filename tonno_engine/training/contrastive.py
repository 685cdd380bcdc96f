"""Self-supervised pretraining of the slice encoder on the volumes themselves (paper §5), no labels read.

SimCLR's objective (Chen et al. 2020, NT-Xent): two views of the same place in a volume should embed close
together and apart from every other slice of the batch. A view pair is a random plane and a neighbour of
it, its normal tilted by a few degrees and its offset moved a little, each with its own in-plane rotation,
scale, shear, mirror and intensity change (:func:`~tonno_engine.data.augment.neighbour_planes`): the 3D
volume provides the augmentation that SimCLR's image crops provide in 2D. The encoder's pooled features
feed a two-layer projection head (dropped afterwards), as in SimCLR.

The loss is written here (fifteen lines) rather than taken from lightly: lightly would bring its own
training framework and PIL-based image transforms, and our views are cut from 3D volumes on the training
device; torch has the pieces (``F.normalize``, ``F.cross_entropy``).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ..base.atomic import write_bytes_atomic
from ..data.augment import Augmentation, augment_intensity, neighbour_planes, random_planes
from ..tomography.slicing import slice_stacks

#: the projection head's hidden and output widths (SimCLR's 2048/128 scaled to a small encoder)
HIDDEN, EMBEDDING = 512, 128


class ContrastiveModel(torch.nn.Module):
    """A timm ``encoder`` (one-logit classifier; its pooled pre-logit features are used) with a projection
    head: ``(N, 1, h, w)`` → ``(N, EMBEDDING)``."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = torch.nn.Sequential(torch.nn.Linear(encoder.num_features, HIDDEN), torch.nn.ReLU(inplace=True),
                                        torch.nn.Linear(HIDDEN, EMBEDDING))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder.forward_head(self.encoder.forward_features(x), pre_logits=True)
        return self.head(features)


def nt_xent(temperature: float):
    """The NT-Xent loss of a batch ``(2N · EMBEDDING,)`` flattened as the training step passes it: rows
    ``i`` and ``i + N`` are the two views of one plane; ``y`` is not read (there are no labels)."""

    def loss(flat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = F.normalize(flat.view(-1, EMBEDDING), dim=1)
        n = len(z) // 2
        similarity = z @ z.T / temperature
        similarity.fill_diagonal_(-math.inf)  # a view is not its own positive
        partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
        return F.cross_entropy(similarity, partner)

    return loss


def sample_view_pairs(vols, cfg, gen: torch.Generator, aug: Augmentation, device: torch.device):
    """``2 · B · S`` slices ``(2N, I, h, w)`` (``I`` images per case; 1 for one): first every plane's view, then its
    neighbour's in the same order; labels ``(2N,)`` zeros (unused)."""
    picks = torch.randint(len(vols), (cfg.batch_volumes,), generator=gen).tolist()
    size = (cfg.slice_size, cfg.slice_size)
    first, second = [], []
    for idx in picks:
        frame, volume = vols[idx].frame, vols[idx].volume
        a = random_planes(cfg.slices_per_volume, gen, aug)
        b = neighbour_planes(a[0], a[1], gen, aug, tilt_degrees=cfg.view_tilt, shift=cfg.view_shift)
        for planes, out in ((a, first), (b, second)):
            offsets, n, u, v = planes
            out.append(slice_stacks(volume, offsets, tuple(frame.for_slicing(w) for w in (n, u, v)), size))
    x = torch.cat(first + second)
    # one contrast, brightness and noise level per slice, the same over its images: (2N, I·h, w) for the call
    x = augment_intensity(x.flatten(1, 2), gen, aug).view_as(x)
    return x, torch.zeros(len(x), device=device)


def export_encoder(model: ContrastiveModel, path: str | Path) -> Path:
    """The encoder's state dict (timm's key names, no head) as a weights file ``tonno train --weights``
    takes; written atomically."""
    import io

    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.encoder.state_dict().items()}, buffer)
    write_bytes_atomic(path, buffer.getbuffer())
    return Path(path)
