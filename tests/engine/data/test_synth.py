import csv
import json

import numpy as np
import pytest

from tonno_engine.data.dataset import read_cases
from tonno_engine.data.nifti import load_nifti
from tonno_engine.data.synth import SynthRequest, synthesize


@pytest.mark.parametrize(("kind", "shape"), [("phantom", (24, 28, 32)), ("brain", (32, 38, 32))])
def test_synth_writes_a_consistent_weak_label_data_set(tmp_path, kind, shape):
    events = list(synthesize(tmp_path, SynthRequest(kind=kind, n=6, seed=1, shape=shape)))
    assert [e.done for e in events] == [1, 2, 3, 4, 5, 6]
    cases = read_cases(tmp_path)
    assert sorted(c.label for c in cases) == [0, 0, 0, 1, 1, 1]
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta["kind"] == kind and meta["intensity"] in ("none", "mr")
    lesions = {e.case: e.lesions for e in events}
    for case in cases:
        image, mask = load_nifti(case.image), load_nifti(case.mask)
        assert image.array.shape == shape == mask.array.shape
        np.testing.assert_allclose(image.affine, mask.affine)
        # positives hold lesions in their mask, negatives none
        assert (mask.array.sum() > 0) == bool(case.label) == (lesions[case.case] > 0)


def test_brightness_alone_does_not_separate_the_classes(tmp_path):
    list(synthesize(tmp_path, SynthRequest(kind="phantom", n=16, seed=0, shape=(32, 32, 32))))
    with open(tmp_path / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    peak = {r["case"]: np.percentile(load_nifti(tmp_path / r["image"]).array, 99.9) for r in rows}
    pos = [peak[r["case"]] for r in rows if r["label"] == "1"]
    neg = [peak[r["case"]] for r in rows if r["label"] == "0"]
    # distractors are as bright as lesions: the brightest voxels overlap between classes
    assert max(neg) > min(pos)


def test_same_seed_same_data(tmp_path):
    list(synthesize(tmp_path / "a", SynthRequest(n=2, seed=5, shape=(16, 16, 16))))
    list(synthesize(tmp_path / "b", SynthRequest(n=2, seed=5, shape=(16, 16, 16))))
    for name in ("phantom_0000", "phantom_0001"):
        a = load_nifti(tmp_path / "a" / "images" / f"{name}.nii.gz").array
        b = load_nifti(tmp_path / "b" / "images" / f"{name}.nii.gz").array
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("kwargs", "message"), [({"kind": "x"}, "unknown kind"), ({"n": 1}, "n must be >= 2"),
                                                 ({"shape": (8, 8, 8)}, "shape must be")])
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        list(synthesize(tmp_path, SynthRequest(**kwargs)))


def test_difficulties_add_look_alikes_to_both_classes(tmp_path):
    import json

    from tonno_engine.data.synth import DIFFICULTIES, SynthRequest, synthesize

    shape = (32, 38, 32)
    list(synthesize(tmp_path / "ms", SynthRequest(kind="brain", n=4, seed=5, shape=shape, difficulty="ms")))
    list(synthesize(tmp_path / "default", SynthRequest(kind="brain", n=4, seed=5, shape=shape)))
    list(synthesize(tmp_path / "hard", SynthRequest(kind="brain", n=4, seed=5, shape=shape, difficulty="hard")))
    assert json.loads((tmp_path / "hard" / "dataset.json").read_text())["difficulty"] == "hard"
    rows = (tmp_path / "ms" / "labels.csv").read_text().splitlines()[1:]
    negative = next(r.split(",")[0] for r in rows if r.split(",")[1] == "0")
    read = lambda kind, what="images": load_nifti(tmp_path / kind / what / f"{negative}.nii.gz").array  # noqa: E731
    np.testing.assert_array_equal(read("ms"), read("default"))  # "ms" is what synth always made
    extra = read("hard") - read("ms")  # a negative case: the same brain plus the look-alikes
    wm_ref = np.percentile(read("ms")[read("ms") > 0], 75)
    assert extra.min() >= -1e-5 and extra.max() > DIFFICULTIES["hard"].contrast[0] * 0.5 * wm_ref
    assert read("hard", "masks").sum() == 0  # look-alikes are not lesions


def test_lesion_contrast_and_a_bias_field_change_only_what_they_say(tmp_path):
    shape = (32, 38, 32)
    for name, extra in (("plain", {}), ("faint", {"contrast_scale": 0.5}), ("biased", {"bias_field": 0.3})):
        list(synthesize(tmp_path / name, SynthRequest(kind="brain", n=4, seed=5, shape=shape, **extra)))
    rows = (tmp_path / "plain" / "labels.csv").read_text().splitlines()[1:]
    positive = next(r.split(",")[0] for r in rows if r.split(",")[1] == "1")

    def read(kind, what="images"):
        return load_nifti(tmp_path / kind / what / f"{positive}.nii.gz").array

    lesion = read("plain", "masks") > 0
    np.testing.assert_array_equal(lesion, read("faint", "masks") > 0)
    np.testing.assert_array_equal(lesion, read("biased", "masks") > 0)
    from scipy.ndimage import binary_dilation

    brighter = read("plain") - read("faint")  # the lesions' excess halves (and their soft rim); the rest stays
    assert brighter[lesion].mean() > 0.1 and np.abs(brighter[~binary_dilation(lesion, iterations=4)]).max() < 1e-5
    ratio = read("biased")[read("plain") > 0] / read("plain")[read("plain") > 0]
    assert 0.2 < ratio.std() / ratio.mean() < 0.6 and ratio.min() > 0  # a smooth multiplicative field
    assert json.loads((tmp_path / "biased" / "dataset.json").read_text())["bias_field"] == 0.3
    with pytest.raises(ValueError, match="contrast_scale"):
        list(synthesize(tmp_path / "bad", SynthRequest(kind="brain", n=2, contrast_scale=0)))
