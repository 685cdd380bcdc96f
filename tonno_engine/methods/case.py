"""One case, from a scan and a checkpoint to its heatmaps: the road every front end takes.

``tonno reconstruct`` (through :mod:`tonno_engine.apps.batch`), ``tonno benchmark``, the napari
Reconstruct widget and Python users call :func:`reconstruct_case_iter`; the Logit profiles and
Direction slices widgets call :func:`prepare_case` and slice the volume it returns. Both preprocess
the scan as the checkpoint says and resolve the settings against the checkpoint in one place, so
that the same scan and checkpoint give the same heatmap whichever front end asks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..base.defaults import DIRECTIONS_PER_UPDATE
from ..base.distributed import World
from ..base.events import Partial, Progress
from ..data.preprocessing import Preprocessing
from ..models.checkpoint import LoadedCheckpoint
from .run import AXIAL_AXIS, PAPER, methods_iter
from .settings import ReconstructionSettings


@dataclass(frozen=True)
class PreparedCase:
    """A scan as the checkpoint's model sees it: ``volume`` ``(D', H', W')`` float32 (preprocessed,
    resampled when the checkpoint says so), its ``spacing`` (mm per axis, after resampling), the
    ``settings`` resolved against the checkpoint for this volume, and the scan's own ``shape`` (the
    heatmaps' grid)."""

    volume: np.ndarray
    spacing: tuple[float, float, float]
    settings: ReconstructionSettings
    shape: tuple[int, int, int]


def case_spacing(volume, checkpoint: LoadedCheckpoint, settings: ReconstructionSettings = PAPER):
    """The spacing to slice a read ``Volume`` with: its header's checked spacing in physical geometry (a header
    that cannot be used is a :class:`DataError` naming the file), else the header's spacing as it is."""
    physical = settings.resolved(checkpoint.description).geometry == "physical"
    return volume.checked_spacing() if physical else volume.spacing


def prepare_case(image, spacing, checkpoint: LoadedCheckpoint,
                 settings: ReconstructionSettings = PAPER) -> PreparedCase:
    """Preprocess ``image`` ``(D, H, W)`` with voxel ``spacing`` (mm per axis, as in its header) as
    ``checkpoint`` says, and resolve ``settings`` against it (:meth:`ReconstructionSettings.resolved`)."""
    image = np.asarray(image)
    preprocessing = Preprocessing.from_dict(checkpoint.description.preprocessing)
    volume, spacing = preprocessing.run(image, spacing)
    resolved = settings.resolved(checkpoint.description, volume.shape, spacing)
    return PreparedCase(volume, spacing, resolved, tuple(image.shape))


@dataclass(frozen=True)
class CasePrepared:
    """The event a case yields once preprocessed: its :class:`PreparedCase` (what the heatmaps are made with)."""

    case: PreparedCase


def reconstruct_case_iter(
    image,
    spacing,
    checkpoint: LoadedCheckpoint,
    specs,
    settings: ReconstructionSettings = PAPER,
    *,
    axial_axis: int = AXIAL_AXIS,
    partials: bool = False,
    directions_per_update: int = DIRECTIONS_PER_UPDATE,
    world: World | None = None,
) -> Iterator[CasePrepared | Progress | Partial]:
    """Heatmaps of the methods ``specs`` for one scan ``image`` ``(D, H, W)`` with voxel ``spacing``.

    Preprocesses as the checkpoint says (:func:`prepare_case`), then runs the methods on the
    checkpoint's device, sharing passes over the slices where they can. ``axial_axis``: the array
    axis of the slice-wise methods (a NIfTI's from its affine); ``world``: a joined ``torchrun`` group
    over which every case's directions are split (rank 0 holds the heatmaps). Yields
    :class:`CasePrepared` first, then the methods' ``Progress`` events, partial heatmaps
    ``{label: (D, H, W)}`` with ``partials``, and a final ``Partial`` with ``{label: heatmap}``: float32
    on the scan's own grid ``(D, H, W)``, on the checkpoint's device.
    """
    case = prepare_case(image, spacing, checkpoint, settings)
    yield CasePrepared(case)
    yield from methods_iter(specs, case.volume, checkpoint.model, case.settings, device=checkpoint.device,
                            output_shape=case.shape, axial_axis=axial_axis, spacing=case.spacing, partials=partials,
                            directions_per_update=directions_per_update, world=world,
                            context=checkpoint.description.context)
