"""Is a data set's slice task learnable at all? Train on slices whose labels are right: planes through a lesion
voxel (from the masks) for positive volumes, planes through the bright spots of negative ones (the look-alikes,
:func:`tonno_engine.data.spots.bright_spots`), and score held-out slices cut the same way. High AUC here and
chance from weak labels means the weak labels, not the network or the slice size, are what fails.

    .venv/bin/python bench/bench_oracle_slices.py DATA [--steps 300] [--slice-size 64] [--spots 12] [--context 0]
        [--seed 0] [--uniform] [--coords] [--save OUT.pt --like CKPT]

Split: ``tonno benchmark``'s (30 % held out, seed 0); ``resnet10t``, batch norm, ``robust`` intensities,
AdamW 1e-3, 4 volumes × 16 slices a step, BCE per slice. Prints the training loss and the held-out slice AUC
(8 planes per volume) and volume AUC (their maximum) every 50 steps; first, over every positive case, how
many have a bright spot on a lesion (the mask dilated by a voxel) and what share of the spots lie on one.
``--context C``: 2.5D input, each slice with the planes ``C`` pixels below and above it (``slice_stacks``).
``--coords``: three more channels, each pixel's normalised ``(x0, x1, x2)`` in the volume (row ``i`` along
``u``, column ``j`` along ``v``, as :func:`extract_slices` cuts), so the network is told where each pixel lies.
``--uniform``: half of each volume's 16 slices are uniform random planes instead, labelled by whether they cut a
lesion (within 0.02 of the normalised space, about 0.6 voxel of a 64-voxel axis), so the network also sees the
planes a reconstruction cuts. ``--save OUT.pt --like CKPT``: train on ``CKPT``'s training cases and save the
weights with its description, so that ``tonno benchmark DATA --checkpoint OUT.pt`` scores the heatmaps of a
classifier that was told where the lesions are, on the same split (what right labels alone buy).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

from tonno_engine.data.augment import Augmentation, augment_intensity, in_plane_axes, random_planes
from tonno_engine.data.dataset import read_cases, split_cases
from tonno_engine.data.preprocessing import Preprocessing
from tonno_engine.data.spots import bright_spots
from tonno_engine.evaluation.auc import roc_auc
from tonno_engine.models.checkpoint import load_checkpoint, save_checkpoint
from tonno_engine.models.encoders import create_encoder
from tonno_engine.tomography.geometry import axis_coords
from tonno_engine.tomography.slicing import input_channels, slice_stacks


def load(case, prep: Preprocessing, spots: int):
    """``(volume (D, H, W), points (n, 3) in t, label, lesion voxels (k, 3) in t)``: the points are the lesion
    voxels of a positive, the bright spots of a negative."""
    volume = prep(nib.load(str(case.image)).get_fdata(dtype=np.float32))
    mask = nib.load(str(case.mask)).get_fdata() > 0 if case.label else np.zeros(volume.shape, bool)
    lesions = -1.0 + 2.0 * np.argwhere(mask) / (np.asarray(volume.shape) - 1.0)
    points = lesions if len(lesions) else bright_spots(volume, spots)
    return torch.from_numpy(volume), torch.from_numpy(points), float(case.label), torch.from_numpy(lesions)


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


def cut(volume, offsets, n, u, v, size: int, context: float, coords: bool) -> torch.Tensor:
    """``slice_stacks`` ``(P, C, size, size)``, with ``coords`` followed by each pixel's ``(x0, x1, x2)`` ``(P, 3, ...)``."""
    stacks = slice_stacks(volume, offsets, n, u, v, (size, size), context)
    if not coords:
        return stacks
    a = axis_coords(size, torch.float64)
    where = (offsets[:, None, None, None] * n[:, :, None, None] + a[:, None] * u[:, :, None, None]
             + a[None, :] * v[:, :, None, None])  # (P, 3, h, w): row i along u, column j along v
    return torch.cat([stacks, where.to(stacks.dtype)], 1)


def planes_through(volume, points, count: int, gen, aug, size: int, context: float = 0.0,
                   coords: bool = False) -> torch.Tensor:
    """``count`` slices ``(count, C, size, size)``, each through a random one of ``points``, normal uniform."""
    p = points[torch.randint(len(points), (count,), generator=gen)]
    n = torch.randn(count, 3, generator=gen, dtype=torch.float64)
    n = n / n.norm(dim=1, keepdim=True)
    u, v = in_plane_axes(n, gen, aug)
    return cut(volume, (n * p).sum(1), n, u, v, size, context, coords)


def training_slices(vol, args, gen, aug) -> tuple[torch.Tensor, list[float]]:
    """One volume's 16 training slices ``(16, C, h, w)`` and their labels: all through its points, or with
    ``--uniform`` 8 through them and 8 uniform planes labelled by whether they cut a lesion voxel."""
    volume, points, label, lesions = vol
    if not args.uniform:
        return planes_through(volume, points, 16, gen, aug, args.slice_size, args.context, args.coords), [label] * 16
    through = planes_through(volume, points, 8, gen, aug, args.slice_size, args.context, args.coords)
    offsets, n, u, v = random_planes(8, gen, aug)
    uniform = cut(volume, offsets, n, u, v, args.slice_size, args.context, args.coords)
    cuts = ((lesions @ n.T - offsets[None]).abs() < 0.02).any(0) if len(lesions) else torch.zeros(8, dtype=torch.bool)
    return torch.cat([through, uniform]), [label] * 8 + cuts.float().tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--slice-size", type=int, default=64)
    ap.add_argument("--spots", type=int, default=12)
    ap.add_argument("--context", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--uniform", action="store_true")
    ap.add_argument("--coords", action="store_true")
    ap.add_argument("--save", default="")
    ap.add_argument("--like", default="")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    cases = read_cases(args.data)
    train, test = split_cases(cases, 0.3, 0)
    prep = Preprocessing("robust")
    count, hit, share = spot_hits(cases, prep, args.spots)
    print(f"{hit} of {count} positive cases have one of their {args.spots} bright spots on a lesion; "
          f"{share:.0%} of the spots lie on one", flush=True)
    like = load_checkpoint(args.like, "cpu").description if args.like else None
    if like is not None:  # the reference run's training cases, in its order
        by_name = {c.case: c for c in cases}
        train = [by_name[name] for name in like.train_cases]
    train_vols = [load(c, prep, args.spots) for c in train]
    gen, held_gen, aug = torch.Generator().manual_seed(args.seed), torch.Generator().manual_seed(5), Augmentation()
    held = [(planes_through(v, p, 8, held_gen, Augmentation.off(), args.slice_size, args.context, args.coords), y)
            for v, p, y, _ in (load(c, prep, args.spots) for c in test)]
    model = create_encoder("resnet10t", norm="bn", in_chans=input_channels(args.context) + 3 * args.coords)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=0.01)
    as_input = lambda x: x.contiguous(memory_format=torch.channels_last)  # noqa: E731
    start, losses = time.perf_counter(), []
    for step in range(1, args.steps + 1):
        picks = torch.randint(len(train_vols), (4,), generator=gen).tolist()
        drawn = [training_slices(train_vols[i], args, gen, aug) for i in picks]
        x, y = torch.cat([d[0] for d in drawn]), torch.tensor([label for d in drawn for label in d[1]])
        planes = input_channels(args.context)  # the channels after them are coordinates, which stay exact
        image = augment_intensity(x[:, :planes].flatten(1, 2), gen, aug).view_as(x[:, :planes])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            model(as_input(torch.cat([image, x[:, planes:]], 1))).flatten(), y)
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
    if args.save:
        if args.coords:
            raise SystemExit("--coords is an experiment of this script: no reconstruction feeds coordinates")
        if like is None:
            raise SystemExit("--save needs --like CKPT: the run whose split and description the weights take")
        save_checkpoint(args.save, model.eval(), replace(like, step=args.steps))
        print(f"saved {args.save}")


if __name__ == "__main__":
    main()
