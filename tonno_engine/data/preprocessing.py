"""Intensity normalisation and optional isotropic resampling, stored with the model.

Intensity modes (each returns float32, same shape):
- ``ct``: clip to the HU window ``[lo, hi]`` (default -1000…1000), scale to ``[0, 1]``.
- ``mr``: clip to the ``p_lo``/``p_hi`` percentiles of the foreground (as ``robust`` reads it, below),
  z-score with the foreground's mean and std; background set to 0.
- ``pet``: clip SUV to ``[0, suv_max]`` (default 20), scale to ``[0, 1]``.
- ``robust``: any modality: ``(a − median) / (IQR / 1.349)`` of the foreground, clipped only at ``±z_max``
  (default 20) robust standard deviations; background 0. The foreground is ``otsu`` (the default:
  :func:`~tonno_engine.data.foreground.foreground_mask`) or ``above-min`` (every voxel above the volume's
  minimum: what checkpoints written before 0.4 used; on a scan with noise around the body it is the whole box,
  its IQR is the noise's, and the body is clipped flat at ``+z_max``: docs/studies/foreign.md). Unlike ``mr``'s
  percentile clip it keeps lesions brighter than everything else: a few hundred lesion voxels lie above the
  99.5th percentile of a brain and ``mr`` flattens them to white matter's level.
- ``none``: unchanged.

``channels``: a scan of several images (PET and CT, MR sequences; ``(I, D, H, W)``, one grid) has a mode per image
(:class:`Channel`, with its name); each image is cropped to the same box, resampled alike and normalised by its own
mode. Without ``channels`` a scan is one image ``(D, H, W)`` with ``intensity``.

``crop``: cut the scan to its foreground's box (:func:`~tonno_engine.data.foreground.foreground_box`, 2 voxels of
margin; with several images the box of every image's foreground) before resampling and normalising, so that
slices cut through the body, not the air around it; the heatmaps are pasted back onto the scan's grid
(:class:`~tonno_engine.methods.run.PreparedCase`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from .foreground import foreground_box, foreground_mask

INTENSITIES = ("ct", "mr", "pet", "robust", "none")
DEFAULTS = {"ct": {"lo": -1000.0, "hi": 1000.0}, "mr": {"p_lo": 0.5, "p_hi": 99.5, "foreground": "otsu"},
            "pet": {"suv_max": 20.0}, "robust": {"z_max": 20.0, "foreground": "otsu"}, "none": {}}
#: ``robust``'s foreground: Otsu's threshold with holes filled, or every voxel above the minimum (before 0.4)
FOREGROUNDS = ("otsu", "above-min")
#: voxels of margin around the foreground's box when cropping
CROP_MARGIN = 2


class Preprocessed(NamedTuple):
    """A preprocessed scan: ``array`` ``(D', H', W')`` float32 (``(I, D', H', W')`` for ``I`` images), its ``spacing``
    (mm per axis, after resampling) and the ``box`` ``(slice, slice, slice)`` of the scan's own grid it covers
    (``None``: the whole scan)."""

    array: np.ndarray
    spacing: tuple[float, float, float]
    box: tuple[slice, slice, slice] | None = None


def _checked_params(intensity: str, params: dict) -> dict:
    """``params`` over the mode's :data:`DEFAULTS`; ``ValueError`` for an unknown mode or foreground."""
    if intensity not in INTENSITIES:
        raise ValueError(f"unknown intensity mode {intensity!r}; valid: {', '.join(INTENSITIES)}")
    params = {**DEFAULTS[intensity], **params}
    if params.get("foreground", "otsu") not in FOREGROUNDS:
        raise ValueError(f"unknown foreground {params['foreground']!r}; valid: {', '.join(FOREGROUNDS)}")
    return params


@dataclass(frozen=True)
class Channel:
    """One image of a scan of several: its ``name`` (``SUV``, ``CT``, ``FLAIR``) and intensity mode with ``params``."""

    name: str
    intensity: str = "none"
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "params", _checked_params(self.intensity, self.params))


@dataclass(frozen=True)
class Preprocessing:
    """Intensity mode ``intensity`` with its ``params``; ``spacing`` (mm) resamples to isotropic voxels when set;
    ``crop``: cut to the foreground's box first; ``channels``: the images of a scan of several, each with its own
    mode (``intensity`` and ``params`` are then the first's)."""

    intensity: str = "none"
    params: dict = field(default_factory=dict)
    spacing: float | None = None
    crop: bool = False
    channels: tuple[Channel, ...] = ()

    def __post_init__(self):
        channels = tuple(c if isinstance(c, Channel) else Channel(**c) for c in self.channels)
        if len(channels) == 1:
            raise ValueError("one channel is one image: give its intensity mode without channels")
        object.__setattr__(self, "channels", channels)
        if channels:  # the first channel's mode, its params checked already
            object.__setattr__(self, "intensity", channels[0].intensity)
        object.__setattr__(self, "params", dict(channels[0].params) if channels
                           else _checked_params(self.intensity, self.params))

    @property
    def images(self) -> int:
        """The images per scan it takes (1 without channels)."""
        return max(1, len(self.channels))

    @property
    def channel_names(self) -> tuple[str, ...]:
        """The names of its channels (empty: one image)."""
        return tuple(c.name for c in self.channels)

    def as_dict(self) -> dict:
        out = asdict(self)
        if not self.channels:  # what a one-image checkpoint always held
            del out["channels"]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        # checkpoints written before 0.2 call the intensity mode "preset"
        intensity, params = d.get("intensity", d.get("preset", "none")), dict(d.get("params", {}))
        if intensity in ("robust", "mr"):  # before 0.4 their foreground was every voxel above the minimum
            params.setdefault("foreground", "above-min")
        channels = tuple(Channel(c["name"], c.get("intensity", "none"), dict(c.get("params", {})))
                         for c in d.get("channels", ()))
        return cls(intensity, params, d.get("spacing"), bool(d.get("crop", False)), channels)

    def __call__(self, array: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
        """``(D, H, W)`` (``(I, D, H, W)`` with channels) → preprocessed float32 (cropped and resampled to
        ``self.spacing`` mm if set)."""
        return self.run(array, spacing).array

    def run(self, array: np.ndarray, spacing) -> Preprocessed:
        """``(D, H, W)`` (``(I, D, H, W)``: one per channel) with ``spacing`` (mm per axis) → :class:`Preprocessed`:
        the array, the spacing after resampling (which is what the array's geometry must use) and the box of the
        scan it covers. ``ValueError`` when the scan's images are not the channels' count."""
        spacing = tuple(float(s) for s in spacing)
        images = np.asarray(array, dtype=np.float32)
        if images.ndim != (4 if self.channels else 3) or (self.channels and len(images) != len(self.channels)):
            want = f"{len(self.channels)} images (I, D, H, W)" if self.channels else "one image (D, H, W)"
            raise ValueError(f"this preprocessing takes {want}, got shape {images.shape}")
        images = images if self.channels else images[None]
        box = None
        if self.crop:
            box = foreground_box(np.logical_or.reduce([foreground_mask(a) for a in images]), CROP_MARGIN)
        modes = self.channels or (Channel("image", self.intensity, self.params),)
        out = []
        for image, mode in zip(images, modes):
            if box is not None:
                image = np.ascontiguousarray(image[box])
            if self.spacing:
                image = resample_isotropic(image, spacing, self.spacing)
            out.append(_INTENSITY[mode.intensity](image, **mode.params))
        out = np.stack(out) if self.channels else out[0]
        return Preprocessed(out, (float(self.spacing),) * 3 if self.spacing else spacing, box)

    def apply(self, volume, *, physical: bool = False) -> Preprocessed:
        """A loaded :class:`~tonno_engine.data.nifti.Volume` through :meth:`run`. ``physical``: the header's
        spacing must be usable (checked, naming the file)."""
        return self.run(volume.array, volume.checked_spacing() if physical else volume.spacing)


def resample_isotropic(array: np.ndarray, spacing, target: float, order: int = 1) -> np.ndarray:
    """Resample ``(D, H, W)`` with voxel ``spacing`` (mm per axis) to ``target`` mm voxels."""
    zoom = [float(s) / float(target) for s in spacing]
    return ndimage.zoom(array, zoom, order=order).astype(np.float32)


def _ct(a, lo, hi):
    return ((np.clip(a, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def _pet(a, suv_max):
    return (np.clip(a, 0.0, suv_max) / suv_max).astype(np.float32)


def _foreground(a, foreground: str) -> np.ndarray:
    """The voxels ``mr`` and ``robust`` take their statistics from (:data:`FOREGROUNDS`)."""
    return foreground_mask(a) if foreground == "otsu" else a > a.min()


def _mr(a, p_lo, p_hi, foreground="otsu"):
    fg = _foreground(a, foreground)
    if not fg.any():
        return np.zeros_like(a, dtype=np.float32)
    lo, hi = np.percentile(a[fg], [p_lo, p_hi])
    clipped = np.clip(a, lo, hi)
    mean, std = clipped[fg].mean(), clipped[fg].std()
    out = (clipped - mean) / (std if std > 0 else 1.0)
    out[~fg] = 0.0
    return out.astype(np.float32)


def _robust(a, z_max, foreground="otsu"):
    fg = _foreground(a, foreground)
    if not fg.any():
        return np.zeros_like(a, dtype=np.float32)
    q1, median, q3 = np.percentile(a[fg], [25, 50, 75])
    scale = (q3 - q1) / 1.349  # the standard deviation of a normal with this IQR
    out = np.clip((a - median) / (scale if scale > 0 else 1.0), -z_max, z_max)
    out[~fg] = 0.0
    return out.astype(np.float32)


def _none(a):
    return a.astype(np.float32)


_INTENSITY = {"ct": _ct, "mr": _mr, "pet": _pet, "robust": _robust, "none": _none}
