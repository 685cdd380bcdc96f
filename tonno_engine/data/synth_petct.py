"""Synthetic PET/CT (``tonno synth --kind petct``): a toy body with CT anatomy and a PET channel.

Array axes ``(x, y, z)``: right→left of the image, posterior→anterior, feet→head (RAS affine, isotropic
:data:`PETCT_SPACING` mm voxels, PET and CT on one grid, as AutoPET's CTres is on the PET grid). CT is in
Hounsfield units (air −1000, lung −820, fat −100, soft tissue 40, liver 55, bone 700), PET in SUV (0 outside
the body, 0.5–1.5 in it), blurred to :data:`PET_FWHM_MM`, with noise in both.

The body: a trunk with a subcutaneous fat layer, a spine, liver, two lungs, a heart (myocardial uptake that
varies from case to case), a bladder (water density, hot urine), a neck and a head (a bony skull around a hot
brain) at the top end. These are in every case, at slightly varied places.

What makes it a two-channel benchmark (PET alone cannot tell the classes apart, CT with PET can):

- **Hot spots** are ovoids of semi-axes :data:`HOT_RADIUS` voxels (per 64) and SUV :data:`HOT_SUV`, drawn in
  plain soft tissue or liver of the abdomen. Each case holds ``T`` of them, ``T`` uniform in
  ``1..max_lesions + 1`` in both classes; a positive case's first ``L`` (1 to ``min(T, max_lesions)``) are
  lesions, the rest, and all of a negative case's, are **look-alikes**: physiological uptake of the same size,
  shape and SUV, each filling a small **organ** that CT shows (:data:`ORGANS`: a water cyst with an enhancing
  wall, a dense enhancing gland, or a bone-rimmed shell), the organ 1.3 times the hot spot. So PET shows the
  same number and kind of hot spots in both classes.
- Lesions show on CT as at most a faint soft-tissue nodule (+0…15 HU, under the noise).
- Every case also holds ``0..2`` **cold organs** (the same organs without uptake), and a positive case one more
  per lesion, so that the number of CT organs is that of a negative case: CT alone does not tell the classes
  apart either. A lesion is what no single channel shows: a hot spot where CT shows no organ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from . import synth_shapes as shapes

#: voxel size in mm (isotropic; the PET grid of a whole-body scanner is 2–4 mm)
PETCT_SPACING = 3.0
#: PET resolution, full width at half maximum, in mm
PET_FWHM_MM = 6.0
#: semi-axes of lesions and look-alikes, in voxels per 64 voxels of the volume's smallest side
HOT_RADIUS = (2.0, 4.0)
#: SUV of lesions and look-alikes (a plateau before the PET blur)
HOT_SUV = (4.0, 15.0)
#: an organ's semi-axes over those of the hot spot it holds
ORGAN_SCALE = 1.3
#: Hounsfield units of the body's tissues
HU = {"air": -1000.0, "lung": -820.0, "fat": -100.0, "soft": 40.0, "liver": 55.0, "bone": 700.0, "water": 10.0,
      "brain": 35.0}
#: SUV of the tissues (before the case's own factor 0.8–1.2)
SUV = {"soft": 1.0, "fat": 0.5, "lung": 0.5, "liver": 1.4, "bone": 0.8, "brain": 7.0, "blood": 1.5}
#: the organs look-alikes sit in, by their CT: ``(content HU range, wall HU range or None, wall from dist)``;
#: ``dist`` is the organ's normalised radius (1 on its surface); the hot spot fills ``dist <= 1 / ORGAN_SCALE``
ORGANS = {
    "cyst": ((0.0, 20.0), (150.0, 250.0), 1 / ORGAN_SCALE),  # bladder-like: water, an enhancing wall
    "gland": ((120.0, 200.0), None, 1.0),  # a dense, enhancing organ
    "shell": ((30.0, 40.0), (500.0, 800.0), 0.8),  # brain-like: soft content in a bony shell
}
#: the PET and CT channels as ``dataset.json`` lists them (the columns image_0000, image_0001 of labels.csv)
CHANNELS = ({"column": "image_0000", "name": "PET", "intensity": "pet"},
            {"column": "image_0001", "name": "CT", "intensity": "ct"})


@dataclass(frozen=True)
class PetCtCase:
    """One case: ``pet`` (SUV) and ``ct`` (HU), each ``(X, Y, Z)`` float32; ``mask`` ``(X, Y, Z)`` uint8 (1 in
    lesions); ``affine`` ``(4, 4)``; ``lesions`` and ``lookalikes`` counted; ``organs`` ``(X, Y, Z)`` uint8:
    1 in the look-alikes' organs, 2 in the cold organs, 0 elsewhere (for tests; not written)."""

    pet: np.ndarray
    ct: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    label: int
    lesions: int
    lookalikes: int
    organs: np.ndarray
    hot: np.ndarray


@dataclass
class _Body:
    """The case being drawn: ``grid`` ``(3, X, Y, Z)`` voxel coordinates, ``ct`` (HU) and ``pet`` (SUV)
    ``(X, Y, Z)``, ``inside`` (the body) and ``plain`` (soft tissue and liver of the abdomen, where hot spots go)."""

    grid: np.ndarray
    ct: np.ndarray
    pet: np.ndarray
    inside: np.ndarray
    plain: np.ndarray


def _paint(body: _Body, region: np.ndarray, hu: float, suv: float) -> None:
    body.ct[region], body.pet[region] = hu, suv


def _anatomy(rng, shape) -> _Body:
    """The body every case shares (trunk, fat, spine, liver, lungs, heart, bladder, neck, head), varied a little."""
    grid = shapes.grid(shape)
    x, y, z = grid
    size = np.asarray(shape, np.float32)
    u = z / (size[2] - 1)  # 0 at the feet end, 1 at the head end
    cx, cy = (size[:2] - 1) / 2 + rng.uniform(-0.03, 0.03, 2) * size[:2]
    a, b = size[0] * rng.uniform(0.37, 0.43), size[1] * rng.uniform(0.27, 0.32)
    r = np.sqrt(((x - cx) / a) ** 2 + ((y - cy) / b) ** 2)
    trunk, neck = (r <= 1) & (u <= 0.8), (r <= 0.35) & (u > 0.75) & (u <= 0.88)
    head = shapes.ellipsoid_distance(grid, (cx, cy, 0.92 * (size[2] - 1)), (0.5 * a, 0.65 * b, 0.1 * size[2]), np.eye(3))
    body = _Body(grid, np.full(shape, HU["air"], np.float32), np.zeros(shape, np.float32), trunk | neck | (head <= 1),
                 np.zeros(shape, bool))
    _paint(body, body.inside, HU["soft"], SUV["soft"])
    _paint(body, trunk & (r > 1 - rng.uniform(0.08, 0.14)), HU["fat"], SUV["fat"])
    _paint(body, (head <= 1) & (head > 0.85), HU["bone"], SUV["bone"])
    _paint(body, head <= 0.85, HU["brain"], SUV["brain"] * rng.uniform(0.8, 1.2))
    organ = lambda c, radii: shapes.ellipsoid_distance(grid, c, radii, np.eye(3)) <= 1  # noqa: E731
    zc = lambda f: (f + rng.uniform(-0.02, 0.02)) * (size[2] - 1)  # noqa: E731
    liver = organ((cx - 0.4 * a, cy + 0.05 * b, zc(0.42)), (0.4 * a, 0.55 * b, 0.1 * size[2])) & (r < 0.85)
    _paint(body, liver, HU["liver"], SUV["liver"])
    spine = (np.sqrt((x - cx) ** 2 + (y - cy + 0.62 * b) ** 2) <= 0.16 * b) & (u <= 0.86)
    lungs = (organ((cx - 0.45 * a, cy, zc(0.63)), (0.36 * a, 0.65 * b, 0.14 * size[2]))
             | organ((cx + 0.45 * a, cy, zc(0.63)), (0.36 * a, 0.65 * b, 0.14 * size[2]))) & (r < 0.85)
    _paint(body, lungs, HU["lung"], SUV["lung"])
    heart = shapes.ellipsoid_distance(grid, (cx + 0.1 * a, cy + 0.25 * b, zc(0.56)), (0.28 * a, 0.38 * b, 0.08 * size[2]),
                                      np.eye(3))
    _paint(body, heart <= 1.15, HU["fat"], SUV["fat"])  # pericardial fat
    _paint(body, heart <= 1, HU["soft"], rng.uniform(1.5, 8.0))  # myocardium: its uptake varies a lot
    _paint(body, heart <= 0.65, HU["soft"], SUV["blood"])
    bladder = organ((cx, cy + 0.3 * b, zc(0.08)), (0.3 * a, 0.3 * b, 0.07 * size[2]))
    _paint(body, bladder, HU["water"], rng.uniform(*HOT_SUV))
    _paint(body, spine, HU["bone"], SUV["bone"])
    body.plain = (body.ct >= HU["soft"]) & (body.ct <= HU["liver"]) & trunk & (u < 0.5) & ~bladder
    return body


def _room(body: _Body) -> np.ndarray:
    """``(X, Y, Z)``: each plain voxel's distance in voxels to the nearest voxel that is not plain (or outside)."""
    return ndimage.distance_transform_edt(np.pad(body.plain, 1))[1:-1, 1:-1, 1:-1]


def _place(rng, room: np.ndarray, placed: list[tuple[np.ndarray, float]], reach: float) -> np.ndarray:
    """A centre for an object reaching ``reach`` voxels: in plain tissue with that much room, apart from the
    ``placed`` ``(centre, reach)`` pairs (appended to); the roomiest places when none fits."""
    candidates = np.argwhere(room >= min(reach, room.max()))
    if placed:
        gap = np.min([np.linalg.norm(candidates - c, axis=1) - r for c, r in placed], axis=0) - reach
        fits = candidates[gap > 1]
        candidates = fits if len(fits) else candidates[gap >= gap.max() - 1]
    centre = shapes.pick_centre(rng, candidates)
    placed.append((centre, reach))
    return centre


def _organ(rng, body: _Body, dist: np.ndarray) -> np.ndarray:
    """Paint an organ of a random type of :data:`ORGANS` around the hot spot of normalised radius ``dist``
    (CT only); returns the organ's voxels."""
    content, wall, wall_from = ORGANS[list(ORGANS)[rng.integers(len(ORGANS))]]
    d = dist / ORGAN_SCALE
    inside = shapes.soft(d, 0.08)
    body.ct += (rng.uniform(*content) - body.ct) * inside
    if wall is not None:
        rim = inside * np.clip((d - wall_from) / 0.08 + 0.5, 0.0, 1.0)
        body.ct += (rng.uniform(*wall) - body.ct) * rim
    return d <= 1


def _objects(rng, label: int, max_lesions: int) -> list[str]:
    """What one case holds, in a random order: ``lesion``, ``lookalike`` (a hot organ) and ``cold`` (an organ).
    The number of hot spots and that of organs are drawn before the label is looked at: the same in both classes."""
    total, cold = int(rng.integers(1, max_lesions + 2)), int(rng.integers(0, 3))
    lesions = int(rng.integers(1, min(total, max_lesions) + 1)) if label else 0
    cold += lesions
    objects = ["lesion"] * lesions + ["lookalike"] * (total - lesions) + ["cold"] * cold
    return [objects[k] for k in rng.permutation(len(objects))]


def petct_case(rng, shape, label: int, max_lesions: int = 3) -> PetCtCase:
    """A PET/CT body of ``shape`` (voxels ``(X, Y, Z)``, Z along the body); ``label`` 1 adds 1 to ``max_lesions``
    lesions (the module's docstring says what else it holds)."""
    body = _anatomy(rng, shape)
    scale = min(shape) / 64.0
    low, high = HOT_RADIUS[0] * scale, HOT_RADIUS[1] * scale
    room, placed = _room(body), []
    mask, hot, organs = np.zeros(shape, bool), np.zeros(shape, bool), np.zeros(shape, np.uint8)
    objects = _objects(rng, label, max_lesions)
    for what in objects:
        radii = rng.uniform(low, high, size=3).astype(np.float32)
        centre = _place(rng, room, placed, float(radii.max()) * ORGAN_SCALE + 1)  # lesions keep the same room
        dist = shapes.ellipsoid_distance(body.grid, centre, radii, shapes.random_rotation(rng))
        suv = rng.uniform(*HOT_SUV)
        if what == "lesion":
            body.ct += rng.uniform(0.0, 15.0) * shapes.soft(dist)
            mask |= dist <= 1
        else:
            organs[_organ(rng, body, dist)] = 1 if what == "lookalike" else 2
            hot |= (dist <= 1) & (what == "lookalike")
        if what != "cold":
            body.pet += (suv - body.pet) * shapes.soft(dist)
    return _finish(rng, body, PetCtCase(body.pet, body.ct, mask.astype(np.uint8), _affine(shape), label,
                                        objects.count("lesion"), objects.count("lookalike"), organs, hot.astype(np.uint8)))


def _affine(shape) -> np.ndarray:
    """RAS, :data:`PETCT_SPACING` mm voxels, the volume centred on the origin."""
    affine = np.diag([PETCT_SPACING] * 3 + [1.0])
    affine[:3, 3] = -PETCT_SPACING * (np.asarray(shape) - 1) / 2
    return affine


def _finish(rng, body: _Body, case: PetCtCase) -> PetCtCase:
    """The PET blurred to :data:`PET_FWHM_MM` with count-like noise, 0 outside the body; CT texture and noise."""
    shape = body.ct.shape
    pet = body.pet * rng.uniform(0.8, 1.2) * (1.0 + shapes.smooth_noise(rng, shape, 3.0, 0.08))
    pet = ndimage.gaussian_filter(pet, PET_FWHM_MM / 2.355 / PETCT_SPACING)
    pet = pet + rng.normal(size=shape).astype(np.float32) * 0.12 * np.sqrt(np.clip(pet, 0.0, None))
    pet = np.clip(pet, 0.0, None) * body.inside
    ct = body.ct + shapes.smooth_noise(rng, shape, 1.5, 8.0) * body.inside + rng.normal(0, 10, size=shape)
    return PetCtCase(pet.astype(np.float32), np.clip(ct, -1024, 3071).astype(np.float32), case.mask, case.affine,
                     case.label, case.lesions, case.lookalikes, case.organs, case.hot)
