"""How Averaged and Tomographic CAM read the CAM cells: bilinear (default) vs nearest, with ToNNO beside them.

    .venv/bin/python bench/bench_cam_cells.py DATA CHECKPOINT [--layer 2] [--slices 24] [--directions 192] [--cases 8]

One pass over the slices of each positive case (the ``demo`` quality by default: M=24, L=192 on the
hemisphere) gives ToNNO and both CAM variants with both cell readings. Threshold-free scores, averaged
over the cases: the voxel AUC of lesion against the rest of the brain, and the share of lesions
(connected components of the mask) whose heatmap maximum reaches the brain's 99th percentile.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy import ndimage

from tonno_engine.cams.extractor import CamExtractor
from tonno_engine.cams.tomographic import AveragedCam, TomographicCam
from tonno_engine.data.dataset import read_cases
from tonno_engine.data.images import load_image
from tonno_engine.data.preprocessing import Preprocessing
from tonno_engine.evaluation.auc import roc_auc
from tonno_engine.models.checkpoint import load_model
from tonno_engine.tomography.reconstruction import TONNO, reconstruct

VARIANTS = {"ToNNO": TONNO, "Averaged, bilinear cells": AveragedCam("bilinear"),
            "Averaged, nearest cells": AveragedCam("nearest"), "Tomographic, bilinear cells": TomographicCam("bilinear"),
            "Tomographic, nearest cells": TomographicCam("nearest")}


def scores(heatmap: np.ndarray, mask: np.ndarray, brain: np.ndarray) -> tuple[float, float]:
    inside = brain | mask
    auc = roc_auc(mask[inside].astype(int).tolist(), heatmap[inside])
    level = np.percentile(heatmap[brain], 99)
    labels, count = ndimage.label(mask)
    peaks = ndimage.maximum(heatmap, labels, range(1, count + 1)) if count else []
    return auc, float(np.mean(np.asarray(peaks) >= level)) if count else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("checkpoint")
    ap.add_argument("--layer", type=int, default=2)
    ap.add_argument("--slices", type=int, default=24)
    ap.add_argument("--directions", type=int, default=192)
    ap.add_argument("--cases", type=int, default=8)
    args = ap.parse_args()
    model, meta = load_model(args.checkpoint, "cpu")
    prep = Preprocessing.from_dict(meta.preprocessing)
    extractor = CamExtractor(model, "layercam", args.layer, with_logits=True)
    keep = [0] + [1] * (len(VARIANTS) - 1)  # ToNNO reads the logits, the CAM variants the maps

    def scorer(batch):
        outputs = extractor(batch)
        return tuple(outputs[k] for k in keep)

    cases = [c for c in read_cases(args.data) if c.label == 1 and c.mask][: args.cases]
    results = {name: [] for name in VARIANTS}
    start = time.perf_counter()
    for case in cases:
        volume = load_image(case.image)
        array = prep(volume.array, volume.spacing)
        mask = load_image(case.mask, kind="mask").array > 0.5
        brain = array != 0
        maps = reconstruct(array, scorer, formula=tuple(VARIANTS.values()), slices=args.slices,
                           directions=args.directions, slice_size=meta.slice_size, hemisphere=True, device="cpu")
        for name, heat in zip(VARIANTS, maps):
            results[name].append(scores(heat.numpy(), mask, brain))
    print(f"{len(cases)} positive cases, layer {args.layer}, M={args.slices}, L={args.directions} (hemisphere), "
          f"{time.perf_counter() - start:.0f} s\n")
    print("| heatmap | voxel AUC, lesion vs brain | lesions whose peak reaches the brain's 99th percentile |")
    print("|---|---|---|")
    for name, rows in results.items():
        auc, found = np.nanmean(np.array(rows), axis=0)
        print(f"| {name} | {auc:.3f} | {found:.2f} |")


if __name__ == "__main__":
    torch.set_grad_enabled(True)
    main()
