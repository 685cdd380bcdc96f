"""One case, from a scan and a checkpoint to its heatmaps: the road every front end takes.

``tonno reconstruct`` (through :mod:`tonno_engine.apps.batch`), ``tonno benchmark``, the napari
Reconstruct widget and Python users hand a :class:`Scan` (the array with its geometry) to
:func:`reconstruct_case_iter`; the Logit profiles and Direction slices widgets call :func:`prepare_case` and
slice the volume it returns. The case entry preprocesses the scan as the checkpoint says, resolves the settings
against the checkpoint and the scan once (slice size, geometry, M, and L per method), expands the methods over
the checkpoint's findings, and plans the passes; nothing below it defaults anything again, so the same scan and
checkpoint give the same heatmap whichever front end asks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..base.errors import DataError
from ..base.events import Partial, Progress
from ..base.inputs import images_problem
from ..data.nifti import Volume, axial_axis
from ..data.preprocessing import Preprocessing
from ..models.checkpoint import LoadedCheckpoint
from ..tomography.frames import check_spacing
from .run import AXIAL_AXIS, PAPER, CaseRun, PreparedCase, for_findings, passes_iter, plan_passes
from .settings import ReconstructionSettings


@dataclass(frozen=True)
class Scan:
    """A scan with its geometry, as a front end hands it over: ``array`` ``(D, H, W)`` (``(I, D, H, W)`` for a scan of
    several images on one grid, in the checkpoint's channel order), ``spacing`` (mm per array
    axis, as its header states it), its NIfTI ``affine`` ``(4, 4)`` if known (``None``: the axes of RAS/LPS data)
    and the ``volume`` it was read as, if any (whose header physical geometry checks, naming the file); ``channels``:
    the names of its images when its data set names them (checked against the checkpoint's); ``source``: what
    an error names when the scan has no file (a napari layer's name)."""

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    affine: np.ndarray | None = None
    volume: Volume | None = None
    channels: tuple[str, ...] = ()
    source: str = "scan"

    @classmethod
    def of(cls, volume: Volume, channels: tuple[str, ...] = ()) -> Scan:
        """A scan read from a file (:func:`~tonno_engine.data.images.load_image`, or
        :func:`~tonno_engine.data.channels.load_scan` for several images named ``channels``): its header's spacing
        and axes."""
        return cls(volume.array, volume.spacing, volume.affine, volume, tuple(channels))

    @classmethod
    def with_affine(cls, array, affine, spacing=None) -> Scan:
        """An array with its NIfTI ``affine`` and ``spacing`` (default: the affine's column lengths)."""
        affine = np.asarray(affine, dtype=float)
        spacing = tuple(float(s) for s in (np.linalg.norm(affine[:3, :3], axis=0) if spacing is None else spacing))
        return cls(np.asarray(array), spacing, affine)

    @property
    def axial_axis(self) -> int:
        """The array axis of the slice-wise methods: the one closest to the scanner's superior-inferior direction
        (read when a case is prepared, after its spacing is checked)."""
        return AXIAL_AXIS if self.affine is None else axial_axis(self.affine)

    def spacing_for(self, geometry: str) -> tuple[float, float, float]:
        """The spacing to slice with: in physical geometry the header's, checked (a header that cannot be used is a
        :class:`~tonno_engine.base.errors.DataError` naming the file, or a ``ValueError``), else as it is."""
        if geometry != "physical":
            return self.spacing
        return self.volume.checked_spacing() if self.volume is not None else check_spacing(self.spacing)


def channels_problem(description, images: int, names=()) -> str | None:
    """Why a case of ``images`` images (named ``names``, when its data set names them) cannot be fed to the
    checkpoint of ``description`` (``None``: it can): another count of images, or other names or order."""
    return images_problem("checkpoint", description.channels, description.images, images, names)


def prepare_case(scan: Scan, checkpoint: LoadedCheckpoint, settings: ReconstructionSettings = PAPER) -> PreparedCase:
    """Preprocess ``scan`` as ``checkpoint`` says and resolve ``settings`` against it
    (:meth:`ReconstructionSettings.resolved`); :class:`DataError` naming the scan's file when its images are not the
    checkpoint's channels (:func:`channels_problem`)."""
    image = np.asarray(scan.array)
    problem = channels_problem(checkpoint.description, image.shape[0] if image.ndim == 4 else 1, scan.channels)
    if problem is not None:
        raise DataError(scan.volume.path if scan.volume is not None and scan.volume.path else scan.source, problem)
    # the geometry first (it says which spacing to trust), then everything against the preprocessed volume
    spacing = scan.spacing_for(settings.resolved(checkpoint.description).geometry)
    preprocessing = Preprocessing.from_dict(checkpoint.description.preprocessing)
    volume, spacing, box = preprocessing.run(image, spacing)
    resolved = settings.resolved(checkpoint.description, volume.shape[-3:], spacing)
    return PreparedCase(volume, spacing, resolved, tuple(image.shape[-3:]), scan.axial_axis, box)


@dataclass(frozen=True)
class CasePrepared:
    """The event a case yields first: its :class:`PreparedCase` (what the heatmaps are made with) and the methods
    it makes heatmaps of (``specs``, one per finding of the checkpoint)."""

    case: PreparedCase
    specs: tuple = ()


def reconstruct_case_iter(scan: Scan, checkpoint: LoadedCheckpoint, specs, settings: ReconstructionSettings = PAPER,
                          *, findings=None, run: CaseRun = CaseRun()) -> Iterator[CasePrepared | Progress | Partial]:
    """Heatmaps of the methods ``specs`` for one ``scan``, each once per finding of the checkpoint (``findings``:
    only these; ``ValueError`` naming an unknown one).

    Preprocesses the scan and resolves everything now (:func:`prepare_case`, :func:`~tonno_engine.methods.run.
    plan_passes`: errors are raised by this call), then returns the events of its passes on the checkpoint's
    device (:func:`~tonno_engine.methods.run.passes_iter`; ``run``: partials, memory budget, a ``torchrun`` world):
    :class:`CasePrepared` first, then ``Progress`` events, partial heatmaps ``{label: (D, H, W)}`` with
    ``run.partials``, and a final ``Partial`` with ``{label: heatmap}``: float32 on the scan's own grid
    ``(D, H, W)``, on the checkpoint's device.
    """
    specs = for_findings(specs, checkpoint.description.findings, findings)
    case = prepare_case(scan, checkpoint, settings)
    events = passes_iter(case, checkpoint.model, plan_passes(specs, case.settings), run, device=checkpoint.device,
                         context=checkpoint.description.context)
    # returned, not yielded from: the case is a plan handed to its passes, not a frame on the road below
    return itertools.chain((CasePrepared(case, tuple(specs)),), events)
