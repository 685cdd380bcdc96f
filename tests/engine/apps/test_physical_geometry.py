"""Physical geometry end to end: training on anisotropic volumes records it in the checkpoint,
reconstruction follows the checkpoint, and a header without a usable spacing fails by name."""

import json

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from tonno_cli.app import app
from tonno_engine.data.synth import SynthRequest, synthesize
from tonno_engine.models.checkpoint import read_checkpoint

runner = CliRunner()


@pytest.fixture(scope="module")
def thick(tmp_path_factory):
    root = tmp_path_factory.mktemp("thick")
    list(synthesize(root, SynthRequest(kind="phantom", n=6, seed=2, shape=(24, 24, 24), spacing=(1.0, 1.0, 3.0))))
    return root


@pytest.fixture(scope="module")
def physical_checkpoint(thick, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    res = runner.invoke(app, ["train", str(thick), "-o", str(run), "--steps", "2", "--slice-size", "32", "--norm", "gn",
                              "--val-every", "2", "--geometry", "physical", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    return run / "checkpoint_last.pt"


def test_the_checkpoint_records_geometry_and_millimetres_per_pixel(physical_checkpoint):
    meta = read_checkpoint(physical_checkpoint)["meta"]
    assert meta["geometry"] == "physical" and meta["field_of_view"] == "full"
    # 24 × 24 × 8 voxels of 1 × 1 × 3 mm: half-diagonal |(11.5, 11.5, 10.5)| mm over 31 pixel steps
    assert meta["mm_per_pixel"] == pytest.approx(2 * np.linalg.norm([11.5, 11.5, 10.5]) / 31, rel=1e-6)


def test_reconstruction_follows_the_checkpoint_and_keeps_the_affine(thick, physical_checkpoint, tmp_path):
    out = tmp_path / "out"
    image = thick / "images" / "phantom_0000.nii.gz"
    res = runner.invoke(app, ["reconstruct", "-i", str(image), "-o", str(out), "-c", str(physical_checkpoint),
                              "--method", "tonno,layercam", "--slices", "4", "--directions", "6", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    args = json.loads((out / "run.json").read_text())["arguments"]
    assert args["geometry"] == "physical" and args["field_of_view"] == "full"
    src = nib.load(str(image))
    for label in ("tonno", "layercam-l2"):
        heat = nib.load(str(out / f"phantom_0000_{label}.nii.gz"))
        assert heat.shape == src.shape and np.array_equal(heat.affine, src.affine)
        assert np.isfinite(np.asarray(heat.dataobj)).all()
    paper = tmp_path / "paper"
    res = runner.invoke(app, ["reconstruct", "-i", str(image), "-o", str(paper), "-c", str(physical_checkpoint),
                              "--geometry", "paper", "--slices", "4", "--directions", "6", "--device", "cpu", "-q"])
    assert res.exit_code == 0 and json.loads((paper / "run.json").read_text())["arguments"]["geometry"] == "paper"
    assert not np.allclose(nib.load(str(paper / "phantom_0000_tonno.nii.gz")).get_fdata(),
                           nib.load(str(out / "phantom_0000_tonno.nii.gz")).get_fdata())


@pytest.mark.parametrize("zooms", [(1.0, 0.0, 1.0), (0.0, 0.0, 0.0), (1.0, -2.0, 1.0), (1.0, float("nan"), 1.0)])
def test_a_header_without_a_usable_spacing_fails_by_name(physical_checkpoint, tmp_path, zooms):
    """A zero (missing), negative or NaN pixdim, which nibabel would silently turn into 1 or |x| mm."""
    img = nib.Nifti1Image(np.random.default_rng(0).random((12, 12, 12)).astype(np.float32), None)
    img.header["pixdim"][1:4] = zooms
    path = tmp_path / "bad.nii.gz"
    nib.save(img, str(path))
    out = tmp_path / "out"
    res = runner.invoke(app, ["reconstruct", "-i", str(path), "-o", str(out), "-c", str(physical_checkpoint),
                              "--slices", "4", "--directions", "6", "--device", "cpu", "-q"])
    assert res.exit_code == 1
    assert "bad.nii.gz" in res.output and "spacing" in res.output
    assert not list(out.glob("*.nii.gz"))


def test_a_larger_field_of_view_keeps_the_millimetres_per_pixel(thick, physical_checkpoint, tmp_path):
    """The same anatomy padded to a larger field of view is sliced at the checkpoint's mm per pixel:
    more pixels per slice; a slice size the user sets wins."""
    import csv

    src = nib.load(str(thick / "images" / "phantom_0001.nii.gz"))
    data = np.pad(np.asarray(src.dataobj), 6)
    affine = src.affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ np.full(3, 6.0)
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "wide.nii.gz"))
    mm = read_checkpoint(physical_checkpoint)["meta"]["mm_per_pixel"]
    half = (np.array(data.shape) - 1) * np.array([1.0, 1.0, 3.0]) / 2
    expected = round(2 * np.linalg.norm(half) / mm) + 1
    for extra, size in (([], expected), (["--slice-size", "40"], 40)):
        out = tmp_path / f"out{size}"
        res = runner.invoke(app, ["reconstruct", "-i", str(tmp_path / "wide.nii.gz"), "-o", str(out), "-c",
                                  str(physical_checkpoint), "--slices", "4", "--directions", "4", "--device", "cpu", "-q",
                                  *extra])
        assert res.exit_code == 0, res.output
        with open(out / "summary.csv", newline="") as fh:
            assert next(csv.DictReader(fh))["slice_size"] == str(size)
    assert expected > 32  # the checkpoint's own 32 pixels would have spread the same mm over fewer pixels
