"""``tonno reconstruct`` on DICOM series folders, MHA and NIfTI side by side; a bad series fails alone."""

import csv
import os

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from typer.testing import CliRunner

from tonno_cli.app import app
from tonno_engine.data.dicom_write import write_dicom_series

FAST = ["--slices", "6", "--directions", "16", "--device", "cpu", "-q"]
runner = CliRunner()


def test_series_folders_reconstruct_with_the_nifti_affine(tiny_cases, tiny_checkpoint, tmp_path):
    source = nib.load(tiny_cases / "images" / "phantom_0001.nii.gz")
    array = np.asarray(source.dataobj, dtype=np.float32) * 1000  # stored as int16: keep the detail
    affine = np.array([[0.9, 0.1, 0, -20], [-0.1, 0.9, 0, 15], [0, 0, 2.0, -8], [0, 0, 0, 1]])
    cases = tmp_path / "cases"
    write_dicom_series(cases / "series_ok", array, affine, order=np.random.default_rng(0).permutation(array.shape[2]))
    write_dicom_series(cases / "series_gap", array, affine)
    os.remove(cases / "series_gap" / "slice_0010.dcm")
    nifti = cases / "as_nifti.nii.gz"
    nib.save(nib.Nifti1Image(np.rint(array), affine), nifti)
    sitk.WriteImage(sitk.ReadImage(str(nifti)), str(cases / "as_mha.mha"))
    out = tmp_path / "out"
    res = runner.invoke(app, ["reconstruct", "-i", str(cases), "-o", str(out), "-c", str(tiny_checkpoint), *FAST])
    assert res.exit_code == 1, res.output  # one case failed, the others are written
    with open(out / "summary.csv", newline="") as fh:
        rows = {r["case"]: r for r in csv.DictReader(fh)}
    assert {c: r["status"] for c, r in rows.items()} == {"as_mha": "ok", "as_nifti": "ok", "series_ok": "ok",
                                                         "series_gap": "failed"}
    assert "series_gap" in rows["series_gap"]["error"] and "uneven slice spacing" in rows["series_gap"]["error"]
    heat = {c: nib.load(out / rows[c]["output"]) for c in ("as_mha", "as_nifti", "series_ok")}
    for img in heat.values():
        np.testing.assert_allclose(img.affine, nib.load(nifti).affine, atol=1e-5)
    # the same voxels in three formats give the same heatmap
    np.testing.assert_allclose(heat["series_ok"].get_fdata(), heat["as_nifti"].get_fdata(), atol=1e-5)
    np.testing.assert_allclose(heat["as_mha"].get_fdata(), heat["as_nifti"].get_fdata(), atol=1e-5)
    assert not (out / "series_gap_tonno.nii.gz").exists()
