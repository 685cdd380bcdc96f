"""Cases of two images (PET and CT, two MR sequences) along the whole road: training (loaded and streamed), every
heatmap method, classification and the intensity baseline, ``tonno reconstruct`` on NIfTI, NRRD and an image on
another grid, and the refusals of a case whose images are not the checkpoint's. A network of two input channels
fails on one, so every output below shows that its path cut both images."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tonno_cli.app import app
from tonno_engine.apps.classification import volume_score
from tonno_engine.base.errors import DataError
from tonno_engine.base.events import Partial
from tonno_engine.base.registry import METHODS, MethodSpec
from tonno_engine.data.channels import load_scan
from tonno_engine.data.dataset import read_cases
from tonno_engine.data.nifti import read_provenance
from tonno_engine.data.synth import SynthRequest, synthesize
from tonno_engine.methods.case import Scan, reconstruct_case_iter
from tonno_engine.methods.settings import ReconstructionSettings
from tonno_engine.models.checkpoint import load_checkpoint, read_checkpoint

CHANNELS = [{"column": "image_0000", "name": "T1", "intensity": "none"},
            {"column": "image_0001", "name": "FLAIR", "intensity": "robust"}]
TRAIN = ["--slice-size", "32", "--steps", "2", "--batch-volumes", "2", "--slices-per-volume", "2", "--norm", "gn",
         "--val-every", "2", "--device", "cpu", "-q"]


def _second_image(image: np.ndarray) -> np.ndarray:
    """Another contrast of the same anatomy: what a second sequence shows."""
    return (np.sqrt(np.abs(image)) * 100.0 + 5.0).astype(np.float32)


@pytest.fixture(scope="module")
def two_images(tmp_path_factory):
    """Six phantoms, each as two images: ``{case}_0000.nii.gz`` and ``{case}_0001`` (NIfTI; NRRD for the first case;
    on a grid of half the voxels along the first axis for the second case), with dataset.json naming them."""
    import SimpleITK as sitk

    root = tmp_path_factory.mktemp("two")
    list(synthesize(root / "synth", SynthRequest(kind="phantom", n=6, seed=3, shape=(24, 24, 24))))
    rows = []
    for k, case in enumerate(read_cases(root / "synth")):
        volume = nib.load(case.image)
        image = np.asarray(volume.dataobj, dtype=np.float32)
        first = root / f"{case.case}_0000.nii.gz"
        nib.save(nib.Nifti1Image(image, volume.affine), first)
        second = _second_image(image)
        if k == 0:  # through SimpleITK, which writes the NRRD of the same grid
            path, staged = root / f"{case.case}_0001.nrrd", root / "staged.nii.gz"
            nib.save(nib.Nifti1Image(second, volume.affine), staged)
            sitk.WriteImage(sitk.ReadImage(str(staged)), str(path))
            staged.unlink()
        elif k == 1:
            path = root / f"{case.case}_0001.nii.gz"
            coarse = volume.affine @ np.diag([2.0, 1.0, 1.0, 1.0])
            coarse[:3, 3] += volume.affine[:3, 0] * 0.5
            nib.save(nib.Nifti1Image(0.5 * (second[0::2] + second[1::2]), coarse), path)
        else:
            path = root / f"{case.case}_0001.nii.gz"
            nib.save(nib.Nifti1Image(second, volume.affine), path)
        rows.append(f"{case.case},{case.label},{first.name},{path.name},{case.mask}")
    (root / "labels.csv").write_text("case,label,image_0000,image_0001,mask\n" + "\n".join(rows) + "\n")
    (root / "dataset.json").write_text(json.dumps({"channels": CHANNELS}))
    return root


@pytest.fixture(scope="module")
def trained(two_images, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    res = CliRunner().invoke(app, ["train", str(two_images), "--out", str(run), *TRAIN, "--context", "1.5"])
    assert res.exit_code == 0, res.output
    return run / "checkpoint_last.pt"


def test_training_records_the_channels_and_feeds_both_images(trained):
    meta = read_checkpoint(trained)["meta"]
    assert meta["in_chans"] == 6 and meta["version"] == 4  # two images, each with its neighbours
    assert [(c["name"], c["intensity"]) for c in meta["preprocessing"]["channels"]] == [("T1", "none"),
                                                                                          ("FLAIR", "robust")]
    assert load_checkpoint(trained, "cpu").description.channels == ("T1", "FLAIR")


def test_streamed_training_takes_both_images_and_the_user_may_rename_them(two_images, tmp_path):
    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", str(two_images), "--out", str(run), *TRAIN, "--cache-gb", "0.05",
                                   "--channels", "A,B", "--intensity", "mr,robust"])
    assert res.exit_code == 0, res.output
    channels = read_checkpoint(run / "checkpoint_last.pt")["meta"]["preprocessing"]["channels"]
    assert [(c["name"], c["intensity"]) for c in channels] == [("A", "mr"), ("B", "robust")]
    res = CliRunner().invoke(app, ["train", str(two_images), "--out", str(tmp_path / "bad"), *TRAIN,
                                   "--channels", "A,B,C"])
    assert res.exit_code != 0 and "3 channel name(s) given (A, B, C) for 2 image columns" in res.output


def test_an_image_on_another_grid_is_resampled_onto_the_first(two_images):
    case = read_cases(two_images)[1]
    volume, notes = load_scan(case.images)
    assert volume.array.shape == (2, 24, 24, 24) and len(notes) == 1 and "_0001.nii.gz" in notes[0]
    first = nib.load(case.images[0])
    expected = _second_image(np.asarray(first.dataobj, dtype=np.float32))
    # the block mean of pairs, read back on the fine grid: equal where the image is smooth along the axis
    assert np.corrcoef(volume.array[1].ravel(), expected.ravel())[0, 1] > 0.95


def test_every_method_the_classification_and_the_baseline_take_both_images(two_images, trained):
    loaded = load_checkpoint(trained, "cpu")
    case = read_cases(two_images)[0]  # its second image is an NRRD file
    volume, _ = load_scan(case.images)
    specs = [MethodSpec(name) for name in METHODS]
    settings = ReconstructionSettings(slices=5, directions=12, hemisphere=True)
    final = list(reconstruct_case_iter(Scan.of(volume, ("T1", "FLAIR")), loaded, specs, settings))[-1]
    assert isinstance(final, Partial) and set(final.value) == {s.label for s in specs}
    for label, heat in final.value.items():
        assert heat.shape == (24, 24, 24) and torch.isfinite(heat).all() and heat.abs().max() > 0, label
    logits, extremes = volume_score(case, loaded, settings)
    assert len(logits) == 1 and np.isfinite(logits[0]) and all(np.isfinite(extremes))


def test_a_case_whose_images_are_not_the_checkpoints_is_refused_by_name(two_images, trained):
    loaded = load_checkpoint(trained, "cpu")
    case = read_cases(two_images)[2]
    one, _ = load_scan(case.images[:1])
    with pytest.raises(DataError, match=r"takes 2 images per case \(T1, FLAIR\); this case has 1") as info:
        list(reconstruct_case_iter(Scan.of(one), loaded, [MethodSpec("tonno")]))
    assert case.images[0].name in str(info.value)
    both, _ = load_scan(case.images)
    with pytest.raises(DataError, match="images are FLAIR, T1 but the checkpoint takes T1, FLAIR"):
        list(reconstruct_case_iter(Scan.of(both, ("FLAIR", "T1")), loaded, [MethodSpec("tonno")]))


def test_reconstruct_writes_heatmaps_of_two_image_cases_and_fails_one_image_cases(two_images, trained, tmp_path):
    out = tmp_path / "heat"
    args = ["--slices", "5", "--directions", "12", "--device", "cpu", "-q"]
    res = CliRunner().invoke(app, ["reconstruct", "-i", str(two_images), "-o", str(out), "-c", str(trained), *args])
    assert res.exit_code == 0, res.output
    heatmaps = sorted(out.glob("*_tonno.nii.gz"))
    assert len(heatmaps) == 6
    made = nib.load(heatmaps[1])
    assert made.shape == (24, 24, 24)
    assert read_provenance(heatmaps[1])["parts"]["input"]["files"] == 2  # the heatmap says both images made it
    singles = tmp_path / "singles"
    singles.mkdir()
    for path in sorted(two_images.glob("*_0000.nii.gz"))[:2]:
        (singles / path.name).symlink_to(path)
    res = CliRunner().invoke(app, ["reconstruct", "-i", str(singles), "-o", str(tmp_path / "h1"), "-c", str(trained),
                                   *args])
    assert res.exit_code != 0 and "takes 2 images per case (T1, FLAIR); this case has 1" in res.output
    assert not list((tmp_path / "h1").glob("*.nii.gz"))
