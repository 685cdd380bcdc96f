"""Scans of several images (PET and CT, MR sequences): their columns, names and modes, and reading them as one.

A labels CSV names a case's images in the nnU-Net convention, columns ``image_0000``, ``image_0001``, … instead of
``image``. Their names and intensity modes come from ``dataset.json`` beside the CSV (``"channels"``: a list of
``{"column", "name", "intensity"}``, what ``tonno convert autopet`` and ``tonno synth --kind petct`` write) or from the
user (``--channels SUV,CT``, ``--intensity pet,ct``). :func:`load_scan` reads the images and puts every one on the
first one's grid: ``array`` ``(I, D, H, W)``, the first image's affine and header.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..base.errors import DataError
from .nifti import Volume

#: a channel column of a labels CSV: ``image_`` and four digits, numbered from 0000 without gaps
CHANNEL_COLUMN = re.compile(r"image_(\d{4})")
#: how far (mm, and in direction cosines) two images' grids may differ and still count as one grid
GRID_TOLERANCE = 1e-3
#: the intensity mode of a channel that neither the user nor ``dataset.json`` gives one: ``robust`` suits any modality
CHANNEL_INTENSITY = "robust"


def channel_column(k: int) -> str:
    """The CSV column of image ``k``: ``image_0000``, ``image_0001``, …"""
    return f"image_{k:04d}"


def channel_columns(header: Sequence[str], where) -> tuple[str, ...]:
    """The channel columns of a CSV ``header`` in order (empty: none); :class:`DataError` naming ``where`` when they
    do not run from ``image_0000`` without a gap, or stand beside an ``image`` column."""
    numbers = sorted(int(m.group(1)) for h in header if (m := CHANNEL_COLUMN.fullmatch(h)))
    if not numbers:
        return ()
    if numbers != list(range(len(numbers))):
        raise DataError(where, f"channel columns must run image_0000, image_0001, … without a gap; found "
                               f"{', '.join(channel_column(n) for n in numbers)}")
    if "image" in header:
        raise DataError(where, "give a case's images either as one image column or as image_0000, image_0001, …, "
                               "not both")
    return tuple(channel_column(n) for n in numbers)


@dataclass(frozen=True)
class ChannelSpec:
    """A channel as a data set or a user names it: ``name`` and intensity mode (``None``: not said)."""

    name: str
    intensity: str | None = None


def parse_names(text: str | None, what: str = "--channels", *, distinct: bool = True) -> tuple[str, ...]:
    """``"SUV,CT"`` → ``("SUV", "CT")`` (``None`` or empty: ``()``); ``ValueError`` for an empty name, or a repeated
    one when ``distinct``."""
    if not text:
        return ()
    names = tuple(n.strip() for n in text.split(","))
    if any(not n for n in names) or (distinct and len(set(names)) != len(names)):
        kind = "distinct, non-empty" if distinct else "non-empty"
        raise ValueError(f"{what} must be {kind} names separated by commas, got {text!r}")
    return names


def dataset_channels(meta: dict, where) -> tuple[ChannelSpec, ...]:
    """The ``channels`` of a ``dataset.json`` (``meta``, read from ``where``): one :class:`ChannelSpec` per column in
    order; ``()`` when it names none. :class:`DataError` naming ``where`` for a malformed list."""
    entries = meta.get("channels")
    if entries is None:
        return ()
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in entries):
        raise DataError(where, "`channels` must be a list of {\"column\", \"name\", \"intensity\"} objects")
    columns = [e.get("column", channel_column(k)) for k, e in enumerate(entries)]
    if columns != [channel_column(k) for k in range(len(entries))]:
        raise DataError(where, f"`channels` must list image_0000, image_0001, … in order, got {', '.join(map(str, columns))}")
    return tuple(ChannelSpec(e["name"], e.get("intensity")) for e in entries)


def resolve_channels(found: int, named: Sequence[ChannelSpec], names: Sequence[str] = (),
                     intensities: Sequence[str] = (), where="data set") -> tuple[ChannelSpec, ...]:
    """The channels of a data set whose CSV has ``found`` channel columns (0: one ``image`` column): the data set's
    ``named`` ones, renamed by the user's ``names`` when given. ``intensities``: one per channel replaces the data
    set's modes; a single one (a recipe's default, or ``--intensity robust``) serves the channels whose mode the data
    set does not name. ``()`` for a data set of one image. :class:`DataError` naming ``where`` when a count
    disagrees."""
    if not found:
        if len(names) > 1 or len(intensities) > 1:
            raise DataError(where, "the data set has one image per case (an image column) but several channels or "
                                   "intensity modes were given; name its images image_0000, image_0001, …")
        return ()
    specs = tuple(named) or tuple(ChannelSpec(channel_column(k)) for k in range(found))
    if len(specs) != found:
        raise DataError(where, f"dataset.json names {len(specs)} channel(s) but the CSV has {found} image columns")
    if names:
        if len(names) != found:
            raise DataError(where, f"{len(names)} channel name(s) given ({', '.join(names)}) for {found} image columns")
        specs = tuple(replace(s, name=n) for s, n in zip(specs, names))
    if intensities:
        if len(intensities) not in (1, found):
            raise DataError(where, f"{len(intensities)} intensity modes given for {found} channels; give one for all "
                                   "or one per channel")
        if len(intensities) == found:
            specs = tuple(replace(s, intensity=m) for s, m in zip(specs, intensities))
        else:
            specs = tuple(s if s.intensity else replace(s, intensity=intensities[0]) for s in specs)
    return specs


def first_image(array):
    """The first image ``(D, H, W)`` of a scan of several ``(I, D, H, W)``, or the one image as it is: what the
    intensity baseline and the bright spots read."""
    return array[0] if array.ndim == 4 else array


def case_notes(notes: Sequence[str]):
    """The notices a scan's reading made, as events (:class:`~tonno_engine.base.events.Notice`)."""
    from ..base.events import Notice

    return [Notice(n) for n in notes]


def same_grid(a: Volume, b: Volume) -> bool:
    """Whether two images lie on one voxel grid: the same shape, affines within :data:`GRID_TOLERANCE`."""
    return a.array.shape == b.array.shape and np.allclose(a.affine, b.affine, atol=GRID_TOLERANCE)


def load_scan(paths: Sequence[str | Path], *, kind: str = "image") -> tuple[Volume, tuple[str, ...]]:
    """The images ``paths`` of one case as one :class:`Volume` and the notes its reading made: one path reads as
    :func:`~tonno_engine.data.images.load_image` does (``(D, H, W)``); several give ``array`` ``(I, D, H, W)`` on the
    first image's grid (its affine, header, path and spacing), each other image resampled onto that grid (trilinear,
    nibabel's ``resample_from_to``; outside its own field of view its minimum) when its grid differs, with a note
    naming it. :class:`DataError` naming the file for each reading problem."""
    from .images import load_image

    volumes = [load_image(p, kind=kind) for p in paths]
    first, notes = volumes[0], []
    if len(volumes) == 1:
        return first, ()
    arrays = [first.array]
    for path, volume in zip(paths[1:], volumes[1:]):
        array, note = onto_grid(volume, first, path, paths[0])
        arrays.append(array)
        notes += [note] if note else []
    return replace(first, array=np.stack(arrays).astype(np.float32, copy=False)), tuple(notes)


def onto_grid(volume: Volume, target: Volume, path, target_path) -> tuple[np.ndarray, str | None]:
    """``volume``'s image ``(D, H, W)`` on ``target``'s grid: as it is when it lies there (:func:`same_grid`), else
    resampled (:func:`_resampled_onto`) with the note that names it (``path``) and ``target_path``."""
    if same_grid(volume, target):
        return volume.array, None
    return _resampled_onto(volume, target), (
        f"{path}: resampled onto the grid of {target_path} ({'×'.join(map(str, volume.array.shape))} → "
        f"{'×'.join(map(str, target.array.shape))} voxels)")


def _resampled_onto(volume: Volume, target: Volume) -> np.ndarray:
    """``volume``'s image on ``target``'s grid ``(D, H, W)``, by world coordinates (both affines RAS)."""
    import nibabel as nib
    from nibabel.processing import resample_from_to

    source = nib.Nifti1Image(np.asarray(volume.array, dtype=np.float32), volume.affine)
    moved = resample_from_to(source, (target.array.shape, target.affine), order=1, mode="constant",
                             cval=float(volume.array.min()))
    return np.asarray(moved.dataobj, dtype=np.float32)
