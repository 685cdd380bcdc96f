"""``tonno synth --kind petct``: two channels on one grid, lesions that PET shows and only CT tells apart."""

import csv
import json

import numpy as np
import pytest
from scipy import ndimage

from tonno_engine.data.nifti import load_nifti
from tonno_engine.data.synth import SynthRequest, synthesize
from tonno_engine.data.synth_petct import CHANNELS, _objects, petct_case


def _rows(folder):
    with open(folder / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_petct_writes_pet_and_ct_on_one_grid_with_the_autopet_layout(tmp_path):
    shape = (40, 40, 48)
    events = list(synthesize(tmp_path, SynthRequest(kind="petct", n=4, seed=1, shape=shape)))
    assert (tmp_path / "labels.csv").read_text().splitlines()[0] == "case,label,image_0000,image_0001,mask"
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta["channels"] == [{"column": "image_0000", "name": "PET", "intensity": "pet"},
                                {"column": "image_0001", "name": "CT", "intensity": "ct"}]
    assert "intensity" not in meta and meta["kind"] == "petct" and meta["shape"] == list(shape)
    rows = _rows(tmp_path)
    assert sorted(int(r["label"]) for r in rows) == [0, 0, 1, 1]
    lesions = {e.case: e.lesions for e in events}
    for r in rows:
        name = r["case"]
        assert (r["image_0000"], r["image_0001"], r["mask"]) == (
            f"images/{name}_0000.nii.gz", f"images/{name}_0001.nii.gz", f"masks/{name}.nii.gz")
        pet, ct, mask = (load_nifti(tmp_path / r[c]) for c in ("image_0000", "image_0001", "mask"))
        assert pet.array.shape == ct.array.shape == mask.array.shape == shape
        np.testing.assert_allclose(pet.affine, ct.affine)
        np.testing.assert_allclose(pet.affine, mask.affine)
        assert set(np.unique(mask.array)) <= {0, 1}
        assert (mask.array.sum() > 0) == (r["label"] == "1") == (lesions[name] > 0)
        # SUV: 0 outside the body, 0.5-1.5 in most of it; CT: air outside, bone somewhere
        assert pet.array.min() >= 0 and pet.array[0, 0].max() == 0
        assert 0.5 <= np.median(pet.array[pet.array > 0]) <= 1.5
        assert abs(ct.array[0, 0].mean() + 1000) < 10 and ct.array.max() > 500
        if mask.array.any():  # the lesions are hot in PET
            assert pet.array[mask.array > 0].mean() > 3 * np.median(pet.array[pet.array > 0])


def _contrast(ct, region):
    """Mean absolute CT difference (HU) between ``region`` and the median of the 2 voxels around it."""
    shell = ndimage.binary_dilation(region, iterations=2) & ~region
    return float(np.abs(ct[region] - np.median(ct[shell])).mean())


def _per_spot(values, spots):
    labelled, count = ndimage.label(spots)
    return [values(labelled == k) for k in range(1, count + 1)]


def test_lesions_and_look_alikes_are_alike_in_pet_and_apart_in_ct():
    """Measured per hot spot in 24 cases (18 lesions, 47 look-alikes): PET shows lesions and look-alikes equally
    hot in both classes (mean SUV over the spot per body median: medians 6.0 lesions, 6.1 and 5.3 look-alikes of
    negatives and positives); CT shows each look-alike inside an organ that stands out from the tissue around it
    (mean absolute difference 60-338 HU, median 108; cold organs alike) and lesions as next to nothing (6-15 HU,
    median 10)."""
    suv = {"lesion": [], "look-alike, negative": [], "look-alike, positive": []}
    contrast = {"lesion": [], "look-alike organ": [], "cold organ": []}
    for i in range(24):
        case = petct_case(np.random.default_rng([7, i]), (48, 48, 48), i % 2)
        median = np.median(case.pet[case.pet > 0])
        assert case.mask.any() == bool(case.label)
        suv["lesion"] += _per_spot(lambda s: case.pet[s].mean() / median, case.mask > 0)  # noqa: B023
        suv[f"look-alike, {('negative', 'positive')[case.label]}"] += _per_spot(
            lambda s: case.pet[s].mean() / median, case.hot > 0)  # noqa: B023
        contrast["lesion"] += _per_spot(lambda s: _contrast(case.ct, s), case.mask > 0)  # noqa: B023
        contrast["look-alike organ"] += _per_spot(lambda s: _contrast(case.ct, s), case.organs == 1)  # noqa: B023
        contrast["cold organ"] += _per_spot(lambda s: _contrast(case.ct, s), case.organs == 2)  # noqa: B023
    assert all(len(v) >= 8 for v in (*suv.values(), *contrast.values()))
    typical = {k: float(np.median(v)) for k, v in suv.items()}
    assert min(typical.values()) > 4 and max(typical.values()) < 1.4 * min(typical.values()), typical
    assert min(min(v) for v in suv.values()) > 2
    assert max(contrast["lesion"]) < 25 < 45 < min(contrast["look-alike organ"] + contrast["cold organ"]), contrast
    assert np.median(contrast["look-alike organ"]) > 80 and np.median(contrast["lesion"]) < 15


def test_neither_channel_alone_counts_what_tells_the_classes_apart():
    """For every seed both labels draw the same number of PET hot spots and the same number of CT organs: a
    positive's lesions replace look-alikes, and it holds one cold organ more per lesion."""
    for seed in range(200):
        negative, positive = (_objects(np.random.default_rng(seed), label, 3) for label in (0, 1))
        assert "lesion" not in negative and 1 <= positive.count("lesion") <= 3
        hot = [sum(o.count(k) for k in ("lesion", "lookalike")) for o in (negative, positive)]
        organs = [sum(o.count(k) for k in ("lookalike", "cold")) for o in (negative, positive)]
        assert hot[0] == hot[1] and organs[0] == organs[1]


def test_same_seed_same_files(tmp_path):
    for folder in ("a", "b"):
        list(synthesize(tmp_path / folder, SynthRequest(kind="petct", n=2, seed=3, shape=(32, 32, 40))))
    for r in _rows(tmp_path / "a"):
        for column in ("image_0000", "image_0001", "mask"):
            assert (tmp_path / "a" / r[column]).read_bytes() == (tmp_path / "b" / r[column]).read_bytes()


def test_petct_is_re_acquired_channel_by_channel_and_refuses_dicom(tmp_path):
    list(synthesize(tmp_path / "thick", SynthRequest(kind="petct", n=2, seed=0, shape=(32, 32, 40), spacing=(3, 3, 6))))
    for r in _rows(tmp_path / "thick"):
        images = [load_nifti(tmp_path / "thick" / r[c]) for c in ("image_0000", "image_0001", "mask")]
        assert {i.array.shape for i in images} == {(32, 32, 20)}
        np.testing.assert_allclose(images[0].affine, images[1].affine)
    with pytest.raises(ValueError, match="two channels .* use --format nifti"):
        list(synthesize(tmp_path / "dicom", SynthRequest(kind="petct", n=2, image_format="dicom")))
    assert not (tmp_path / "dicom" / "labels.csv").exists()
    assert [c["column"] for c in CHANNELS] == ["image_0000", "image_0001"]
