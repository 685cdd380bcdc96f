"""Figures (matplotlib, Agg backend, no display): the paper's Fig. 6 layout for one test case, and a
training run's loss and AUC curves."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..base.atomic import atomic_path
from ..data.heatmap_folder import output_path
from ..data.images import load_image
from ..data.nifti import axial_axis, load_nifti


@dataclass(frozen=True)
class _Slice:
    case: object
    index: int
    axis: int


def _pick_slice(cases) -> _Slice:
    """The positive case with the most lesion voxels and its axial slice (``index`` along ``axis``) with the most
    lesion."""
    best = None
    for case in cases:
        if not case.label or case.mask is None:
            continue
        mask = load_image(case.mask, kind="mask")
        axis = axial_axis(mask.affine)
        area = (mask.array > 0.5).sum(axis=tuple(a for a in range(3) if a != axis))
        if best is None or area.max() > best[0]:
            best = (area.max(), case, int(area.argmax()), axis)
    if best is None:
        raise ValueError("no positive case with a mask to show")
    return _Slice(best[1], best[2], best[3])


def comparison_figure(path, cases, heat_dir, methods, thresholds: dict) -> Path:
    """Input slice, ground truth, and for each method its heatmap (top) and binarisation (bottom) at
    ``thresholds[label]`` (a :class:`~tonno_engine.evaluation.metrics.Threshold`, its level taken on the whole heatmap)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picked = _pick_slice(cases)
    case, index, axis = picked.case, picked.index, picked.axis

    def cut(array):
        return np.take(array, index, axis=axis).T  # rows: the higher remaining axis, shown bottom-up

    image = cut(load_image(case.image).array)
    truth = cut(load_image(case.mask, kind="mask").array > 0.5)
    ncol = 2 + len(methods)
    fig, axes = plt.subplots(2, ncol, figsize=(2.1 * ncol, 4.6), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    axes[0, 0].imshow(image, cmap="gray", origin="lower")
    axes[0, 0].set_title(f"{case.case}\nslice {index}", fontsize=8)
    axes[0, 1].imshow(image, cmap="gray", origin="lower")
    axes[0, 1].contour(truth, levels=[0.5], colors="lime", linewidths=0.8)
    axes[0, 1].set_title("ground truth", fontsize=8)
    axes[1, 1].imshow(truth, cmap="gray", origin="lower", vmin=0, vmax=1)
    for k, spec in enumerate(methods):
        volume = load_nifti(output_path(heat_dir, case.case, spec), kind="heatmap").array
        heat, level = cut(volume), thresholds[spec.label].level(volume)
        col = 2 + k
        axes[0, col].imshow(image, cmap="gray", origin="lower")
        axes[0, col].imshow(heat, cmap="jet", origin="lower", alpha=0.5)
        axes[0, col].set_title(spec.title.replace(" (", "\n("), fontsize=8)
        axes[1, col].imshow(heat > level, cmap="gray", origin="lower", vmin=0, vmax=1)
        axes[1, col].contour(truth, levels=[0.5], colors="lime", linewidths=0.6)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_curves(metrics_csv: Path, png: Path) -> None:
    """Loss and validation AUC curves from ``metrics.csv`` into a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return
    step = np.array([int(r["step"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(step, loss, lw=0.6, alpha=0.4, label="loss")
    k = max(1, len(loss) // 30)
    ax1.plot(step[k - 1:], np.convolve(loss, np.ones(k) / k, mode="valid"), label=f"loss (mean of {k})")
    val = [r for r in rows if r["val_loss"]]
    if val:
        ax1.plot([int(r["step"]) for r in val], [float(r["val_loss"]) for r in val], "o-", label="val loss")
        at = [int(r["step"]) for r in val]
        for key in ("val_slice_auc", "val_volume_auc"):
            ax2.plot(at, [float(r[key]) for r in val], "o-", label=key)
        if all(r.get("val_volume_auc_lo") for r in val):  # older runs' metrics.csv lack the interval
            ax2.fill_between(at, [float(r["val_volume_auc_lo"]) for r in val],
                             [float(r["val_volume_auc_hi"]) for r in val], color="C1", alpha=0.2,
                             label="val_volume_auc, 95 % interval")
        baseline = [float(r["val_intensity_auc"]) for r in val if r.get("val_intensity_auc")]
        if baseline and np.isfinite(baseline[-1]):
            ax2.axhline(baseline[-1], color="0.4", ls="--", lw=1, label="intensity baseline")
    ax1.set_xlabel("step"), ax1.set_ylabel("BCE"), ax1.legend()
    ax2.set_xlabel("step"), ax2.set_ylabel("AUC"), ax2.set_ylim(0, 1.02)
    if val:
        ax2.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
