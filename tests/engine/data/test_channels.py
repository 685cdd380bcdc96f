"""Scans of several images: the CSV columns, the names and modes, reading onto one grid, preprocessing, slicing."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from tonno_engine.base.errors import DataError
from tonno_engine.data.channels import ChannelSpec, load_scan, parse_names, resolve_channels
from tonno_engine.data.dataset import dataset_channel_specs, hash_cases, read_cases, write_cases_csv
from tonno_engine.data.preprocessing import Channel, Preprocessing
from tonno_engine.tomography.plan import Plan
from tonno_engine.tomography.reconstruction import reconstruct
from tonno_engine.tomography.scorers import radon_sum
from tonno_engine.tomography.slicing import slice_stacks


def _save(path, array, affine=None):
    nib.save(nib.Nifti1Image(np.asarray(array, np.float32), np.eye(4) if affine is None else affine), str(path))
    return path


def _two_channel_csv(tmp_path, extra=""):
    rng = np.random.default_rng(0)
    for case in ("a", "b"):
        _save(tmp_path / f"{case}_0000.nii.gz", rng.random((8, 9, 10)))
        _save(tmp_path / f"{case}_0001.nii.gz", rng.random((8, 9, 10)))
    (tmp_path / "labels.csv").write_text(f"case,label,image_0000,image_0001{extra}\n"
                                         "a,1,a_0000.nii.gz,a_0001.nii.gz\nb,0,b_0000.nii.gz,b_0001.nii.gz\n")
    return tmp_path / "labels.csv"


def test_csv_with_channel_columns_reads_every_image_in_order(tmp_path):
    cases = read_cases(_two_channel_csv(tmp_path))
    assert [c.case for c in cases] == ["a", "b"]
    assert [p.name for p in cases[0].images] == ["a_0000.nii.gz", "a_0001.nii.gz"]
    assert cases[0].image == cases[0].channels[0]
    out = tmp_path / "again.csv"
    write_cases_csv(out, cases)
    assert out.read_text().splitlines()[0].startswith("case,label,image_0000,image_0001,mask")
    assert read_cases(out) == cases


def test_the_data_hash_covers_every_image(tmp_path):
    cases = read_cases(_two_channel_csv(tmp_path))
    before = hash_cases(cases)[0]
    _save(tmp_path / "a_0001.nii.gz", np.zeros((8, 9, 10)))
    assert hash_cases(cases)[0] != before


@pytest.mark.parametrize(("header", "message"), [
    ("case,label,image_0000,image_0002", "without a gap"),
    ("case,label,image,image_0000", "not both"),
])
def test_bad_channel_columns_are_refused_naming_the_csv(tmp_path, header, message):
    (tmp_path / "labels.csv").write_text(f"{header}\na,1,x.nii.gz,y.nii.gz\n")
    with pytest.raises(DataError, match=message) as info:
        read_cases(tmp_path / "labels.csv", check_files=False)
    assert "labels.csv" in str(info.value)


def test_a_missing_channel_file_is_named(tmp_path):
    csv = _two_channel_csv(tmp_path)
    (tmp_path / "b_0001.nii.gz").unlink()
    with pytest.raises(DataError, match="image_0001 file not found.*b_0001"):
        read_cases(csv)


def test_dataset_json_names_the_channels_and_the_user_may_rename_them(tmp_path):
    csv = _two_channel_csv(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"channels": [
        {"column": "image_0000", "name": "SUV", "intensity": "pet"},
        {"column": "image_0001", "name": "CTres", "intensity": "ct"}]}))
    named = dataset_channel_specs(csv)
    assert named == (ChannelSpec("SUV", "pet"), ChannelSpec("CTres", "ct"))
    assert resolve_channels(2, named, ("PET", "CT")) == (ChannelSpec("PET", "pet"), ChannelSpec("CT", "ct"))
    assert resolve_channels(2, named, (), ("robust",)) == named  # one mode for all fills only the unnamed ones
    assert resolve_channels(2, (), (), ("robust",))[1] == ChannelSpec("image_0001", "robust")
    assert resolve_channels(2, named, (), ("mr", "robust")) == (ChannelSpec("SUV", "mr"), ChannelSpec("CTres", "robust"))
    with pytest.raises(DataError, match="3 channel name"):
        resolve_channels(2, named, ("A", "B", "C"), where=csv)
    with pytest.raises(DataError, match="one image per case"):
        resolve_channels(0, (), ("A", "B"))
    with pytest.raises(ValueError, match="distinct"):
        parse_names("CT,CT")


def test_an_image_on_another_grid_is_resampled_onto_the_first_with_a_note(tmp_path):
    # the second image: half the voxels at twice the size, the same world extent; a linear ramp in x survives
    # trilinear resampling exactly, so the resampled image must equal the first's ramp inside the field of view
    ramp = np.broadcast_to(np.arange(16, dtype=np.float32)[:, None, None], (16, 8, 8))
    first = _save(tmp_path / "fine.nii.gz", ramp)
    coarse_affine = np.diag([2.0, 1.0, 1.0, 1.0])
    coarse_affine[0, 3] = 0.5  # voxel centre k of the coarse grid sits at x = 2k + 0.5
    second = _save(tmp_path / "coarse.nii.gz", 2 * np.arange(8, dtype=np.float32)[:, None, None] + 0.5
                   + np.zeros((8, 8, 8), np.float32), coarse_affine)
    volume, notes = load_scan([first, second])
    assert volume.array.shape == (2, 16, 8, 8)
    np.testing.assert_allclose(volume.array[1, 1:15], ramp[1:15], atol=1e-4)
    assert len(notes) == 1 and "coarse.nii.gz" in notes[0] and "resampled onto the grid of" in notes[0]
    same, quiet = load_scan([first, first])
    assert quiet == () and np.array_equal(same.array[0], same.array[1])


def test_each_image_is_normalised_by_its_own_mode_inside_one_crop_box():
    ct = np.full((20, 20, 20), -1000.0, np.float32)
    ct[5:15, 5:15, 5:15] = 40.0
    pet = np.zeros((20, 20, 20), np.float32)
    pet[3:9, 3:9, 3:9] = 10.0  # reaches outside the CT body: the box holds both foregrounds
    prep = Preprocessing(crop=True, channels=(Channel("PET", "pet"), Channel("CT", "ct")))
    out, _, box = prep.run(np.stack([pet, ct]), (1.0, 1.0, 1.0))
    assert out.shape[0] == 2 and box[0].start <= 1 and box[0].stop >= 17
    assert out[0].max() == pytest.approx(10.0 / 20.0)  # pet: SUV / 20
    assert out[1].min() == pytest.approx(0.0) and out[1].max() == pytest.approx(1040.0 / 2000.0)  # ct window
    assert Preprocessing.from_dict(prep.as_dict()) == prep
    with pytest.raises(ValueError, match="takes 2 images"):
        prep.run(pet, (1.0, 1.0, 1.0))
    assert "channels" not in Preprocessing("ct").as_dict()  # one-image checkpoints keep their description


def test_a_scan_of_two_images_is_sliced_image_by_image():
    volume = torch.rand(2, 12, 13, 14, dtype=torch.float32)
    offsets = torch.tensor([-0.3, 0.0, 0.4], dtype=torch.float64)
    n = torch.tensor([[0.0, 0.6, 0.8]] * 3, dtype=torch.float64)
    u = torch.tensor([[1.0, 0.0, 0.0]] * 3, dtype=torch.float64)
    v = torch.linalg.cross(n, u)
    both = slice_stacks(volume, offsets, (n, u, v), (9, 9), 1.5)
    assert both.shape == (3, 6, 9, 9)
    torch.testing.assert_close(both[:, 3:], slice_stacks(volume[1], offsets, (n, u, v), (9, 9), 1.5))
    torch.testing.assert_close(slice_stacks(volume, offsets, (n, u, v), (9, 9))[:, 0],
                               slice_stacks(volume[0], offsets, (n, u, v), (9, 9))[:, 0])


def test_the_papers_check_gives_back_the_second_image_of_a_scan():
    """R_Σ of the second image's slices in place of the network: the reconstruction is the second image."""
    volume = torch.zeros(2, 24, 24, 24)
    volume[0, 4:10, 4:10, 4:10] = 1.0
    volume[1, 12:20, 8:16, 10:14] = 1.0
    plan = Plan(slices=40, directions=300, slice_size=32)
    both = reconstruct(volume, lambda s: radon_sum(s[:, 1]), plan)
    alone = reconstruct(volume[1], radon_sum, plan)
    torch.testing.assert_close(both, alone)
    assert both[14:18, 10:14, 11:13].mean() > 0.5 > both[5:9, 5:9, 5:9].abs().mean()
