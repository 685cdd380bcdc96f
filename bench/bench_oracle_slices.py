"""Is a data set's slice task learnable at all? Train on slices whose labels are right: planes through a lesion
voxel (from the masks) for positive volumes, planes through the bright spots of negative ones (the look-alikes,
:func:`tonno_engine.data.spots.bright_spots`), and score held-out slices cut the same way. High AUC here and
chance from weak labels means the weak labels, not the network or the slice size, are what fails.

    .venv/bin/python bench/bench_oracle_slices.py DATA [--steps 300] [--slice-size 64] [--spots 12] [--context 0]
        [--seed 0]

Split: ``tonno benchmark``'s (30 % held out, seed 0); ``resnet10t``, batch norm, ``robust`` intensities,
AdamW 1e-3, 4 volumes × 16 slices a step, BCE per slice. Prints the training loss and the held-out slice AUC
(8 planes per volume) and volume AUC (their maximum) every 50 steps; first, over every positive case, how
many have a bright spot on a lesion (the mask dilated by a voxel) and what share of the spots lie on one.
``--context C``: 2.5D input, each slice with the planes ``C`` pixels below and above it (``slice_stacks``).
"""

from __future__ import annotations

import argparse
import time

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

from tonno_engine.data.augment import Augmentation, augment_intensity, in_plane_axes
from tonno_engine.data.dataset import read_cases, split_cases
from tonno_engine.data.preprocessing import Preprocessing
from tonno_engine.data.spots import bright_spots
from tonno_engine.evaluation.auc import roc_auc
from tonno_engine.models.encoders import create_encoder
from tonno_engine.tomography.slicing import input_channels, slice_stacks


def load(case, prep: Preprocessing, spots: int):
    """``(volume (D, H, W), points (n, 3) in t, label)``: lesion voxels of a positive, bright spots of a negative."""
    volume = prep(nib.load(str(case.image)).get_fdata(dtype=np.float32))
    mask = nib.load(str(case.mask)).get_fdata() > 0 if case.label else None
    if mask is not None and mask.any():
        points = -1.0 + 2.0 * np.argwhere(mask) / (np.asarray(volume.shape) - 1.0)
    else:
        points = bright_spots(volume, spots)
    return torch.from_numpy(volume), torch.from_numpy(points), float(case.label)


def spot_hits(cases, prep: Preprocessing, spots: int) -> tuple[int, int, float]:
    """``(positive cases, those with a spot on a lesion, the mean share of spots on a lesion)``."""
    with_lesion, shares = 0, []
    positives = [c for c in cases if c.label and c.mask]
    for case in positives:
        volume = prep(nib.load(str(case.image)).get_fdata(dtype=np.float32))
        mask = ndimage.binary_dilation(nib.load(str(case.mask)).get_fdata() > 0)
        t = bright_spots(volume, spots)
        on = mask[tuple(np.rint((t + 1.0) / 2.0 * (np.asarray(volume.shape) - 1.0)).astype(int).T)]
        with_lesion += bool(on.any())
        shares.append(float(on.mean()) if len(on) else 0.0)
    return len(positives), with_lesion, float(np.mean(shares)) if shares else float("nan")


def planes_through(volume, points, count: int, gen, aug, size: int, context: float = 0.0) -> torch.Tensor:
    """``count`` slices ``(count, C, size, size)``, each through a random one of ``points``, normal uniform."""
    p = points[torch.randint(len(points), (count,), generator=gen)]
    n = torch.randn(count, 3, generator=gen, dtype=torch.float64)
    n = n / n.norm(dim=1, keepdim=True)
    u, v = in_plane_axes(n, gen, aug)
    return slice_stacks(volume, (n * p).sum(1), n, u, v, (size, size), context)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--slice-size", type=int, default=64)
    ap.add_argument("--spots", type=int, default=12)
    ap.add_argument("--context", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    cases = read_cases(args.data)
    train, test = split_cases(cases, 0.3, 0)
    prep = Preprocessing("robust")
    count, hit, share = spot_hits(cases, prep, args.spots)
    print(f"{hit} of {count} positive cases have one of their {args.spots} bright spots on a lesion; "
          f"{share:.0%} of the spots lie on one", flush=True)
    train_vols = [load(c, prep, args.spots) for c in train]
    gen, held_gen, aug = torch.Generator().manual_seed(args.seed), torch.Generator().manual_seed(5), Augmentation()
    held = [(planes_through(v, p, 8, held_gen, Augmentation.off(), args.slice_size, args.context), y)
            for v, p, y in (load(c, prep, args.spots) for c in test)]
    model = create_encoder("resnet10t", norm="bn", in_chans=input_channels(args.context))
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=0.01)
    as_input = lambda x: x.contiguous(memory_format=torch.channels_last)  # noqa: E731
    start, losses = time.perf_counter(), []
    for step in range(1, args.steps + 1):
        picks = torch.randint(len(train_vols), (4,), generator=gen).tolist()
        x = torch.cat([planes_through(*train_vols[i][:2], 16, gen, aug, args.slice_size, args.context) for i in picks])
        y = torch.tensor([train_vols[i][2] for i in picks]).repeat_interleave(16)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            model(as_input(augment_intensity(x.flatten(1, 2), gen, aug).view_as(x))).flatten(), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % 50 == 0:
            model.eval()
            with torch.no_grad():
                scores = [model(as_input(x)).flatten() for x, _ in held]
            model.train()
            slice_auc = roc_auc([y for x, y in held for _ in x], torch.cat(scores).numpy())
            volume_auc = roc_auc([y for _, y in held], [float(s.max()) for s in scores])
            print(f"step {step}: loss {np.mean(losses[-50:]):.3f}, held-out slice AUC {slice_auc:.3f}, "
                  f"volume AUC {volume_auc:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
