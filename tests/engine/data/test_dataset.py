import nibabel as nib
import numpy as np
import pytest

from tonno_engine.base.errors import DataError
from tonno_engine.data.dataset import check_both_classes, data_hash, hash_cases, read_cases, split_cases
from tonno_engine.data.preprocessing import Preprocessing, resample_isotropic


def _dataset(tmp_path, rows, header="case,label,image"):
    for name in ("a", "b", "c"):
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), str(tmp_path / f"{name}.nii.gz"))
    (tmp_path / "labels.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    return tmp_path


def test_csv_with_relative_paths_and_folder_form(tmp_path):
    _dataset(tmp_path, ["a,1,a.nii.gz", "b,0,b.nii.gz"])
    cases = read_cases(tmp_path)  # folder holding labels.csv
    assert [(c.case, c.label) for c in cases] == [("a", 1), ("b", 0)]
    assert cases[0].image == (tmp_path / "a.nii.gz").resolve()
    assert read_cases(tmp_path / "labels.csv") == cases
    check_both_classes(cases, tmp_path)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["a,2,a.nii.gz", "b,0,b.nii.gz"], "row 2: label must be 0 or 1"),
        (["a,1,a.nii.gz", "b,0,missing.nii.gz"], "row 3: image file not found"),
        (["a,1,a.nii.gz", "a,0,b.nii.gz"], "duplicate case"),
    ],
)
def test_bad_rows_are_named(tmp_path, rows, message):
    _dataset(tmp_path, rows)
    with pytest.raises(DataError, match=message) as info:
        read_cases(tmp_path)
    assert "labels.csv" in str(info.value)


def test_missing_column_and_single_class(tmp_path):
    _dataset(tmp_path, ["a,1"], header="case,label")
    with pytest.raises(DataError, match="missing column"):
        read_cases(tmp_path)
    _dataset(tmp_path, ["a,1,a.nii.gz", "b,1,b.nii.gz"])
    with pytest.raises(DataError, match="only label 1 present"):
        check_both_classes(read_cases(tmp_path), tmp_path)


def test_split_is_by_case_stratified_and_seeded(tmp_path):
    _dataset(tmp_path, [f"{n}{i},{i % 2},{n}.nii.gz" for i, n in enumerate("abcabcabca")])
    cases = read_cases(tmp_path)
    train, val = split_cases(cases, 0.2, seed=3)
    assert {c.label for c in val} == {0, 1}
    assert not {c.case for c in train} & {c.case for c in val}
    assert len(train) + len(val) == len(cases)
    assert split_cases(cases, 0.2, seed=3) == (train, val)


def test_data_hash_changes_with_content(tmp_path):
    _dataset(tmp_path, ["a,1,a.nii.gz", "b,0,b.nii.gz"])
    before = data_hash(read_cases(tmp_path))
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), str(tmp_path / "a.nii.gz"))
    assert data_hash(read_cases(tmp_path)) != before


def test_an_image_hash_finds_an_image_under_another_name_and_changes_with_its_bytes(tmp_path):
    _dataset(tmp_path, ["a,1,a.nii.gz", "b,0,b.nii.gz", "c,0,a.nii.gz"])
    nib.save(nib.Nifti1Image(np.full((4, 4, 4), 2.0, np.float32), np.eye(4)), str(tmp_path / "b.nii.gz"))
    whole, images = hash_cases(read_cases(tmp_path))
    assert whole == data_hash(read_cases(tmp_path)) and set(images) == {"a", "b", "c"}
    assert images["a"] == images["c"] != images["b"]  # the same bytes under another name and label
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), str(tmp_path / "a.nii.gz"))
    assert hash_cases(read_cases(tmp_path))[1]["a"] != images["a"]


def test_presets():
    hu = np.array([-2000.0, -1000, 0, 1000, 3000]).reshape(1, 1, 5)
    np.testing.assert_allclose(Preprocessing("ct")(hu).ravel(), [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(Preprocessing("pet")(np.array([-1.0, 10, 40]).reshape(1, 1, 3)).ravel(), [0, 0.5, 1])
    rng = np.random.default_rng(0)
    mr = np.zeros((10, 10, 10))
    mr[2:8, 2:8, 2:8] = rng.normal(100, 10, (6, 6, 6))
    out = Preprocessing("mr")(mr)
    fg = mr > 0
    assert abs(out[fg].mean()) < 1e-5 and abs(out[fg].std() - 1) < 0.05 and (out[~fg] == 0).all()
    with pytest.raises(ValueError, match="valid: ct, mr, pet, robust, none"):
        Preprocessing("xray")
    assert Preprocessing.from_dict(Preprocessing("ct", spacing=2.0).as_dict()) == Preprocessing("ct", spacing=2.0)


def test_isotropic_resampling_shape():
    assert resample_isotropic(np.zeros((10, 20, 30)), (2.0, 1.0, 0.5), 1.0).shape == (20, 20, 15)


def test_robust_intensity_keeps_a_small_bright_lesion_that_mr_flattens():
    rng = np.random.default_rng(0)
    brain = np.zeros((40, 40, 40), np.float32)
    brain[4:36, 4:36, 4:36] = rng.normal(1.0, 0.05, (32, 32, 32))
    brain[18:21, 18:21, 18:21] = 1.6  # 27 voxels: 0.08 % of the foreground, above its 99.5th percentile
    lesion, tissue = (slice(18, 21),) * 3, brain > 0
    mr, robust = Preprocessing("mr")(brain), Preprocessing("robust")(brain)
    top_tissue = np.percentile(mr[tissue], 99)
    assert mr[lesion].max() - top_tissue < 0.5  # mr's clip: the lesion is barely above bright tissue
    assert robust[lesion].min() > np.percentile(robust[tissue], 99) + 5  # robust: > 5 SDs above it
    assert abs(np.median(robust[tissue])) < 0.05 and (robust[~tissue] == 0).all()
    assert robust.dtype == np.float32 and np.abs(robust).max() <= 20
