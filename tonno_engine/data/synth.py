"""Synthetic weak-label data: the project's benchmark and demo.

Three kinds, all writing ``OUT/images/*.nii.gz``, ``OUT/masks/*.nii.gz`` (binary lesion masks),
``OUT/labels.csv`` (``case,label,image,mask``) and ``OUT/dataset.json`` (generator settings and
the recommended intensity mode):

- ``phantom``: an ellipsoidal body with 3–5 organ-like compartments of different intensity, smooth
  texture and noise. Lesions are solid, bright ovoids.
- ``brain``: the MNI152 template shipped with nilearn (2 mm, loaded offline), cropped to the brain,
  resampled to ``shape``, randomly deformed (smooth displacement field), with random gamma, bias
  field and noise. Lesions are small hyperintense ovoids, 90 % centred in white matter (MS-like).
- ``petct``: a toy body with two channels on one grid, PET (SUV) ``images/<case>_0000.nii.gz`` and CT (HU)
  ``images/<case>_0001.nii.gz``: columns ``image_0000,image_0001`` instead of ``image``, and ``dataset.json``
  lists the ``channels`` and their intensity modes instead of one ``intensity``. Lesions are hot spots that only
  CT tells from physiological uptake (:mod:`tonno_engine.data.synth_petct`).

With ``findings`` (``brain`` only), every case holds each finding type of :data:`FINDING_TYPES`
independently (half the cases each), the mask is a label image (value ``k + 1``: finding ``k``) and
each finding has its own binary mask and column (docs/findings.md).

Positive cases (half of them) hold 1 to ``max_lesions`` lesions of varied size and contrast;
negative cases none. Both classes hold the same number distribution of look-alike distractors of
the same brightness range — hollow shells (phantom) or short tubes (brain, vessel-like) — so that
brightness alone does not separate the classes; the shape does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..base.atomic import write_text_atomic
from ..base.events import Progress
from ..base.folder_lock import folder_lock
from ..tomography.frames import check_spacing
from . import synth_shapes as shapes
from .acquisition import resample_like_a_scanner, tilt
from .dicom_write import SeriesTags, write_dicom_series
from .nifti import save_nifti
from .synth_petct import CHANNELS, PetCtCase, petct_case

KINDS = ("phantom", "brain", "petct")
IMAGE_FORMATS = ("nifti", "dicom")
DEFAULT_SHAPES = {"phantom": (64, 64, 64), "brain": (64, 76, 64), "petct": (64, 64, 64)}
#: the intensity mode ``dataset.json`` recommends (``petct``: one per channel, :data:`~.synth_petct.CHANNELS`)
INTENSITY_FOR_KIND = {"phantom": "none", "brain": "mr"}


@dataclass(frozen=True, kw_only=True)
class CaseWritten(Progress):
    """One synthetic case written: its name, label and number of lesions."""

    case: str
    label: int
    lesions: int


@dataclass(frozen=True)
class SynthCase:
    image: np.ndarray  # (D, H, W) float32
    mask: np.ndarray  # (D, H, W) uint8, 1 inside lesions
    affine: np.ndarray  # (4, 4)
    label: int
    lesions: int


def _add_lesions(rng, grid, image, mask, centres, count, size, contrast):
    for _ in range(count):
        radii = rng.uniform(*size, size=3).astype(np.float32)
        dist = shapes.ellipsoid_distance(grid, shapes.pick_centre(rng, centres), radii, shapes.random_rotation(rng))
        blob = shapes.soft(dist)
        image += rng.uniform(*contrast) * blob
        mask |= dist <= 1.0


def _add_shells(rng, grid, image, centres, count, size, contrast):
    for _ in range(count):
        radius = rng.uniform(*size)
        dist = shapes.ellipsoid_distance(grid, shapes.pick_centre(rng, centres), np.full(3, radius, np.float32), np.eye(3))
        shell = np.clip(1.0 - np.abs(dist - 0.8) / 0.25, 0.0, 1.0)
        image += rng.uniform(*contrast) * shell


def _add_tubes(rng, grid, image, centres, count, length, radius, contrast):
    for _ in range(count):
        radii = np.array([rng.uniform(*length), radius, radius], np.float32)
        dist = shapes.ellipsoid_distance(grid, shapes.pick_centre(rng, centres), radii, shapes.random_rotation(rng))
        image += rng.uniform(*contrast) * shapes.soft(dist, edge=0.3)


def phantom_case(rng, shape, label: int, max_lesions: int = 3) -> SynthCase:
    """A textured body with organ-like compartments; ``label`` 1 adds lesions."""
    grid = shapes.grid(shape)
    centre = (np.asarray(shape, np.float32) - 1) / 2
    half = np.asarray(shape, np.float32) / 2
    body_radii = half * rng.uniform(0.78, 0.9, size=3)
    body = shapes.ellipsoid_distance(grid, centre, body_radii, np.eye(3))
    image = 0.3 * shapes.soft(body, 0.03)
    inside = body < 0.75
    for _ in range(rng.integers(3, 6)):
        organ_c = centre + rng.uniform(-0.45, 0.45, size=3) * body_radii
        organ_r = body_radii * rng.uniform(0.2, 0.4, size=3)
        contrast = rng.uniform(-0.15, 0.25)  # drawn before the rotation, as always
        image += contrast * shapes.soft(shapes.ellipsoid_distance(grid, organ_c, organ_r, shapes.random_rotation(rng)), 0.1)
    image += shapes.smooth_noise(rng, shape, 2.0, 0.04) * (body < 1)
    mask = np.zeros(shape, bool)
    candidates = np.argwhere(inside)
    scale = min(shape)
    n_lesions = int(rng.integers(1, max_lesions + 1)) if label else 0
    _add_lesions(rng, grid, image, mask, candidates, n_lesions, (0.08 * scale, 0.14 * scale), (0.3, 0.6))
    _add_shells(rng, grid, image, candidates, int(rng.integers(1, 4)), (0.09 * scale, 0.14 * scale), (0.3, 0.6))
    image += rng.normal(0, 0.02, size=shape).astype(np.float32)
    return SynthCase(image.astype(np.float32), mask.astype(np.uint8), np.eye(4), label, n_lesions)


def load_mni_brain(shape) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """T1, white-matter probability, brain mask (each ``shape``) and the matching affine.

    nilearn ships the 2 mm MNI152 templates and loads them offline; they are cropped to the brain's
    bounding box and resampled (linear) to ``shape``.
    """
    from nilearn import datasets

    t1 = datasets.load_mni152_template(resolution=2)
    wm = datasets.load_mni152_wm_template(resolution=2).get_fdata(dtype=np.float32)
    brain = datasets.load_mni152_brain_mask(resolution=2).get_fdata(dtype=np.float32)
    arrays = [t1.get_fdata(dtype=np.float32), wm, brain]
    box = tuple(slice(i.min(), i.max() + 1) for i in np.nonzero(brain > 0))
    zoom = [s / (b.stop - b.start) for s, b in zip(shape, box)]
    out = [ndimage.zoom(a[box] * (brain[box] > 0), zoom, order=1)[: shape[0], : shape[1], : shape[2]] for a in arrays]
    affine = t1.affine.copy()
    affine[:3, 3] = affine[:3, :3] @ np.array([b.start for b in box]) + affine[:3, 3]
    affine[:3, :3] = affine[:3, :3] / np.asarray(zoom)[None, :]
    return out[0], out[1], out[2] > 0.5, affine


#: MS-like lesion semi-axes, in voxels of a 64-voxel-wide volume
MS_LESION_RADIUS = (1.8, 3.8)


@dataclass(frozen=True)
class Difficulty:
    """How hard a ``brain`` data set is. ``lesion_radius``: semi-axes (voxels per 64); ``contrast``: lesion
    brightness over white matter (fraction of its median); ``distractors``: how many lesion-like round
    blobs (lesion size and contrast, in grey matter rather than white) every case gets, both classes."""

    lesion_radius: tuple[float, float]
    contrast: tuple[float, float] = (0.5, 0.9)
    distractors: tuple[int, int] = (0, 0)


#: ``tonno synth --difficulty``: ``large`` is the demo's, ``ms`` the MS-like default, ``hard`` small faint
#: lesions among look-alikes that only their place (white matter) tells apart
DIFFICULTIES = {
    "large": Difficulty((3.5, 6.0)),
    "ms": Difficulty(MS_LESION_RADIUS),
    "hard": Difficulty((1.2, 2.6), contrast=(0.35, 0.7), distractors=(1, 4)),
}


#: ``tonno synth --findings``: what tells each finding apart — a bright ovoid, a dark core with a bright
#: rim, a bright elongated lesion (twice to three times longer than wide, thicker than the vessel-like tubes)
FINDING_TYPES = ("bright", "ring", "elongated")


@dataclass(frozen=True)
class _Finding:
    """One lesion to draw: its finding type ``kind`` (:data:`FINDING_TYPES`), the ``value`` its voxels get in
    the label image, and the ``(min, max)`` range of its semi-axes in voxels."""

    kind: str
    value: int
    radius: tuple[float, float]


def _add_finding(rng, grid, image, labels, finding: _Finding, centres, wm_ref: float) -> None:
    """One lesion of ``finding`` centred on one of ``centres``; its voxels get ``finding.value`` in ``labels``."""
    kind = finding.kind
    r = rng.uniform(*finding.radius)
    if kind == "elongated":
        radii = np.array([r * rng.uniform(2.0, 3.0), r * 0.6, r * 0.6], np.float32)
    else:
        radii = (r * rng.uniform(0.85, 1.15, size=3)).astype(np.float32)
    dist = shapes.ellipsoid_distance(grid, shapes.pick_centre(rng, centres), radii, shapes.random_rotation(rng))
    if kind == "ring":
        core = shapes.soft(dist / 0.65)
        rim = np.clip(1.0 - np.abs(dist - 0.85) / 0.2, 0.0, 1.0)
        image *= 1.0 - rng.uniform(0.6, 0.8) * core
        image += rng.uniform(0.5, 0.8) * wm_ref * rim
    else:
        image += rng.uniform(0.5, 0.9) * wm_ref * shapes.soft(dist)
    labels[dist <= 1.0] = finding.value


@dataclass(frozen=True)
class BrainSpec:
    """What :func:`brain_case` draws in a brain (every field has the default of earlier versions).

    ``max_lesions``: a positive case holds 1 to this many lesions. ``lesion_radius``: range of lesion
    semi-axes in voxels of a 64-voxel-wide volume (scaled with the shape). ``difficulty``: lesion contrast
    and lesion-like distractors (its radius is the caller's to pass as ``lesion_radius``; ``None``: the
    contrast of :class:`Difficulty`, no distractors); their random draws come after all others, so the cases
    of a difficulty without distractors are those of earlier versions. ``contrast_scale`` multiplies the
    lesions' (and distractors') contrast; ``bias_field`` > 0 multiplies the image by a slowly varying field
    ``exp(b · g)`` (``g`` smooth, unit standard deviation), as a receive coil leaves in MR; drawn last, so
    that 0 gives the cases of earlier versions. ``findings``: ``(type, count)`` pairs (count 0: absent):
    their lesions, after the vessel-like tubes, make the mask a label image (value ``k + 1``).
    """

    max_lesions: int = 3
    lesion_radius: tuple[float, float] = MS_LESION_RADIUS
    difficulty: Difficulty | None = None
    contrast_scale: float = 1.0
    bias_field: float = 0.0
    findings: tuple[tuple[str, int], ...] = ()


def brain_case(rng, template, label: int, spec: BrainSpec | None = None) -> SynthCase:
    """A deformed, re-contrasted MNI brain (``template``: :func:`load_mni_brain`'s four values); ``label`` 1
    adds MS-like lesions; ``spec``: what else it draws (:class:`BrainSpec`; default: its defaults)."""
    spec = spec or BrainSpec()
    max_lesions, lesion_radius, bias_field, findings = spec.max_lesions, spec.lesion_radius, spec.bias_field, spec.findings
    difficulty = spec.difficulty or Difficulty(tuple(lesion_radius))
    if spec.contrast_scale != 1.0:
        difficulty = replace(difficulty, contrast=tuple(c * spec.contrast_scale for c in difficulty.contrast))
    t1, wm, brain, affine = template
    shape = t1.shape
    coords = shapes.grid(shape) + np.stack([shapes.smooth_noise(rng, shape, 6.0, 1.5) for _ in range(3)])
    warp = [ndimage.map_coordinates(a.astype(np.float32), coords, order=1) for a in (t1, wm, brain)]
    t1w, wmw, brainw = warp[0], warp[1], warp[2] > 0.5
    image = np.clip(t1w, 0, None) ** rng.uniform(0.8, 1.25)
    image *= 1.0 + shapes.smooth_noise(rng, shape, 10.0, 0.08)
    grid = shapes.grid(shape)
    mask = np.zeros(shape, bool)
    wm_ref = float(np.median(image[wmw > 0.5])) if (wmw > 0.5).any() else 1.0
    in_wm, in_brain = np.argwhere(wmw > 0.6), np.argwhere(brainw)
    n_lesions = int(rng.integers(1, max_lesions + 1)) if label else 0
    scale = min(shape) / 64.0
    for _ in range(n_lesions):
        pool = in_wm if rng.random() < 0.9 and len(in_wm) else in_brain
        _add_lesions(rng, grid, image, mask, pool, 1, (lesion_radius[0] * scale, lesion_radius[1] * scale),
                     (difficulty.contrast[0] * wm_ref, difficulty.contrast[1] * wm_ref))
    _add_tubes(rng, grid, image, in_brain, int(rng.integers(1, 4)), (4.0 * scale, 7.0 * scale), 1.3 * scale,
               (0.5 * wm_ref, 0.9 * wm_ref))
    labels = np.zeros(shape, np.uint8)
    for k, (kind, count) in enumerate(findings):
        for _ in range(count):
            finding = _Finding(kind, k + 1, (lesion_radius[0] * scale, lesion_radius[1] * scale))
            _add_finding(rng, grid, image, labels, finding, in_wm if len(in_wm) else in_brain, wm_ref)
    image = image * brainw + rng.normal(0, 0.02 * wm_ref, size=shape).astype(np.float32) * brainw
    low, high = difficulty.distractors
    if high:
        in_grey = np.argwhere(brainw & (wmw < 0.2))
        _add_lesions(rng, grid, image, np.zeros(shape, bool), in_grey if len(in_grey) else in_brain,
                     int(rng.integers(low, high + 1)), (lesion_radius[0] * scale, lesion_radius[1] * scale),
                     (difficulty.contrast[0] * wm_ref, difficulty.contrast[1] * wm_ref))
        image *= brainw
    if bias_field > 0:
        image *= np.exp(bias_field * shapes.smooth_noise(rng, shape, 16.0, 1.0))
    if findings:
        return SynthCase(image.astype(np.float32), labels * brainw, affine, label, sum(c for _, c in findings))
    return SynthCase(image.astype(np.float32), (mask & brainw).astype(np.uint8), affine, label, n_lesions)


@dataclass(frozen=True)
class SynthRequest:
    """What :func:`synthesize` makes: ``n`` cases (half positive) of ``kind`` (:data:`KINDS`) from ``seed``.

    ``shape``: the volume shape (``None``: :data:`DEFAULT_SHAPES`). ``max_lesions``: a positive case holds
    1 to this many lesions. ``lesion_radius``: ``(min, max)`` lesion semi-axes in voxels (per 64 voxels of
    the volume's smallest side) for ``brain``; default: the ``difficulty``'s (:data:`DIFFICULTIES`, default
    ``ms``). ``spacing`` (mm per array axis): each case, made on its usual grid, is re-acquired with voxels
    of that size (thick slices average, :mod:`tonno_engine.data.acquisition`; the mask is the same average
    > 0.5), the same anatomy in the same millimetres. ``oblique``: tilt the affine by this many degrees.
    ``image_format`` (:data:`IMAGE_FORMATS`): ``dicom`` writes each image as a DICOM series folder
    ``images/<case>/`` (int16 with a RescaleSlope that keeps 1/32000 of the largest value; masks stay
    NIfTI). ``contrast_scale`` and ``bias_field``: see :class:`BrainSpec`. ``findings``: types of
    :data:`FINDING_TYPES`, each present in ``prevalence`` of the cases (drawn apart), a column and a mask
    ``masks/<case>_<finding>.nii.gz`` each; ``unknown``: the fraction of finding labels left blank in
    ``labels.csv`` (unknown to training; the masks still say the truth); ``prevalence``: the fraction of
    cases each finding is present in (rare findings: class imbalance).
    """

    kind: str = "phantom"
    n: int = 20
    seed: int = 0
    shape: tuple[int, int, int] | None = None
    max_lesions: int = 3
    lesion_radius: tuple[float, float] | None = None
    spacing: tuple[float, float, float] | None = None
    oblique: float = 0.0
    image_format: str = "nifti"
    difficulty: str | None = None
    contrast_scale: float = 1.0
    bias_field: float = 0.0
    findings: tuple[str, ...] = ()
    unknown: float = 0.0
    prevalence: float = 0.5


def _check_request(request: SynthRequest) -> tuple[int, int, int]:
    """``ValueError`` for what :func:`synthesize` cannot make; the volume shape it makes."""
    kind, n, spacing, difficulty = request.kind, request.n, request.spacing, request.difficulty
    findings, unknown, prevalence = tuple(request.findings or ()), request.unknown, request.prevalence
    contrast_scale, bias_field, image_format = request.contrast_scale, request.bias_field, request.image_format
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    bad = [f for f in findings if f not in FINDING_TYPES]
    if bad or len(set(findings)) != len(findings):
        raise ValueError(f"findings must be distinct types of {', '.join(FINDING_TYPES)}; got {', '.join(findings)}")
    if findings and kind != "brain":
        raise ValueError("findings are made in brains: use --kind brain")
    if kind == "petct" and image_format == "dicom":
        raise ValueError("petct writes two channels (PET and CT) per case, and a DICOM series holds one: "
                         "use --format nifti")
    if not 0.0 < prevalence < 1.0:
        raise ValueError(f"prevalence must be a fraction in (0, 1), got {prevalence}")
    if not 0.0 <= unknown < 1.0:
        raise ValueError(f"unknown must be a fraction in [0, 1), got {unknown}")
    if n < 2:
        raise ValueError(f"n must be >= 2 (both classes), got {n}")
    shape = tuple(int(s) for s in (request.shape or DEFAULT_SHAPES[kind]))
    if len(shape) != 3 or min(shape) < 16:
        raise ValueError(f"shape must be three sizes >= 16, got {shape}")
    if spacing is not None:
        check_spacing(spacing)
    if contrast_scale <= 0 or bias_field < 0:
        raise ValueError(f"contrast_scale must be > 0 and bias_field >= 0, got {contrast_scale}, {bias_field}")
    if difficulty is not None and difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {difficulty!r}; valid: {', '.join(DIFFICULTIES)}")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"unknown image format {image_format!r}; valid: {', '.join(IMAGE_FORMATS)}")
    return shape


def _images(case: SynthCase | PetCtCase) -> dict[str, np.ndarray]:
    """A case's images by the suffix of their file names: ``""`` for one image, ``_0000`` (PET) and ``_0001`` (CT)."""
    if isinstance(case, PetCtCase):
        return {"_0000": case.pet, "_0001": case.ct}
    return {"": case.image}


def _write_case(out: Path, name: str, case: SynthCase | PetCtCase, request: SynthRequest,
                findings: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Write one case's images (re-acquired at the ``request``'s spacing, tilted by its ``oblique``, in its
    image format) and its mask; returns the images' entries for ``labels.csv``, the mask as written (a label
    image with ``findings``) and the affine."""
    spacing, oblique, image_format = request.spacing, request.oblique, request.image_format
    images, mask, affine = _images(case), case.mask, case.affine
    if spacing is not None:
        resampled = {k: resample_like_a_scanner(image, case.affine, spacing) for k, image in images.items()}
        images = {k: image for k, (image, _) in resampled.items()}
        affine = next(iter(resampled.values()))[1]
        mask = np.zeros(next(iter(images.values())).shape, np.uint8)
        for k in range(max(1, findings)):  # a label image value by value
            part = resample_like_a_scanner((case.mask == k + 1).astype(np.float32), case.affine, spacing)[0]
            mask[part > 0.5] = k + 1
    if oblique:
        affine = tilt(affine, oblique, mask.shape)
    entries = []
    for suffix, image in images.items():
        if image_format == "dicom":  # one image (_check_request)
            entries.append(f"images/{name}")
            tags = SeriesTags(slope=max(float(np.abs(image).max()), 1e-6) / 32000,
                              description=f"tonno synth {request.kind}")
            write_dicom_series(out / entries[-1], image, affine, tags)
        else:
            entries.append(f"images/{name}{suffix}.nii.gz")
            save_nifti(out / entries[-1], image, affine)
    save_nifti(out / "masks" / f"{name}.nii.gz", mask, affine, dtype=np.uint8)
    return entries, mask, affine


def _finding_presence(rng, n: int, count: int, prevalence: float = 0.5) -> np.ndarray:
    """``(n, count)`` booleans: each finding present in ``prevalence`` of the cases (at least one, not all),
    drawn apart from the others."""
    present = np.zeros((n, count), bool)
    share = min(n - 1, max(1, round(n * prevalence)))
    for k in range(count):
        present[rng.permutation(n)[:share], k] = True
    return present


def synthesize(out: str | Path, request: SynthRequest | None = None) -> Iterator[Progress]:
    """Write the cases of ``request`` (:class:`SynthRequest`; default: its defaults) under ``out``; yields one
    event per case.

    ``labels.csv`` and ``dataset.json`` (the request's settings and the recommended intensity mode) are
    written last, atomically, so a folder that has them is complete. Raises ``ValueError`` for a bad kind,
    ``n < 2``, a bad shape or any other setting it cannot make (when iterated), and ``DataError`` when another
    tonno process is writing into ``out`` (it holds the folder's lock while it writes).
    """
    request = request or SynthRequest()
    shape = _check_request(request)
    with folder_lock(out):
        yield from _synthesize(Path(out), request, shape)


def _metadata(request: SynthRequest, shape: tuple[int, int, int]) -> dict:
    """``dataset.json``: the request's settings and the recommended intensity mode (``petct``: the channels, each
    with its mode, and no top-level ``intensity``, as :mod:`~.convert.autopet` writes)."""
    spacing, lesion_radius = request.spacing, request.lesion_radius
    meta = {"kind": request.kind, "n": request.n, "seed": request.seed, "shape": list(shape),
            "max_lesions": request.max_lesions, "spacing": list(check_spacing(spacing)) if spacing is not None else None,
            "oblique": request.oblique, "lesion_radius": list(lesion_radius) if lesion_radius else None,
            "difficulty": request.difficulty or "ms", "contrast_scale": request.contrast_scale,
            "bias_field": request.bias_field, "findings": list(request.findings or ()), "unknown": request.unknown,
            "prevalence": request.prevalence}
    if request.kind == "petct":
        meta["channels"] = [dict(c) for c in CHANNELS]
    else:
        meta["intensity"] = INTENSITY_FOR_KIND[request.kind]
    return {**meta, "image_format": request.image_format, "generator": "tonno_engine.data.synth"}


def _synthesize(out: Path, request: SynthRequest, shape: tuple[int, int, int]) -> Iterator[Progress]:
    """:func:`synthesize`'s cases, ``labels.csv`` and ``dataset.json``, written with the folder's lock held."""
    kind, n, seed, max_lesions = request.kind, request.n, request.seed, request.max_lesions
    findings, difficulty, lesion_radius = tuple(request.findings or ()), request.difficulty, request.lesion_radius
    level = DIFFICULTIES[difficulty or "ms"]
    rng = np.random.default_rng(seed)
    labels = np.array([1] * (n // 2) + [0] * (n - n // 2))
    rng.shuffle(labels)
    present = _finding_presence(np.random.default_rng([seed, 1_000_003]), n, len(findings), request.prevalence)  # (n, K)
    hidden = np.random.default_rng([seed, 2_000_003]).random(present.shape) < request.unknown
    template = load_mni_brain(shape) if kind == "brain" else None
    spec = BrainSpec(max_lesions, lesion_radius or level.lesion_radius, level, contrast_scale=request.contrast_scale,
                     bias_field=request.bias_field)
    columns = [c["column"] for c in CHANNELS] if kind == "petct" else ["image"]
    rows = [",".join(["case", "label", *columns, "mask", *findings, *(f"mask_{f}" for f in findings)])]
    for i, label in enumerate(labels):
        case_rng = np.random.default_rng([seed, i])
        counts = tuple((f, int(case_rng.integers(1, max_lesions + 1)) if present[i, k] else 0)
                       for k, f in enumerate(findings))
        label = int(present[i].any()) if findings else label
        if kind == "petct":
            case = petct_case(case_rng, shape, int(label), max_lesions)
        elif template is not None:
            case = brain_case(case_rng, template, 0 if findings else int(label), replace(spec, findings=counts))
        else:
            case = phantom_case(case_rng, shape, int(label), max_lesions)
        name = f"{kind}_{i:04d}"
        image_entries, mask, affine = _write_case(out, name, case, request, len(findings))
        cells = [name, str(label), *image_entries, f"masks/{name}.nii.gz"]
        cells += ["" if hidden[i, k] else str(int(present[i, k])) for k in range(len(findings))]
        for k, f in enumerate(findings):
            save_nifti(out / "masks" / f"{name}_{f}.nii.gz", (mask == k + 1).astype(np.uint8), affine, dtype=np.uint8)
            cells.append(f"masks/{name}_{f}.nii.gz")
        rows.append(",".join(cells))
        yield CaseWritten("synth", i + 1, n, "cases", case=name, label=int(label), lesions=case.lesions)
    write_text_atomic(out / "dataset.json", json.dumps(_metadata(request, shape), indent=2) + "\n")
    write_text_atomic(out / "labels.csv", "\n".join(rows) + "\n")
