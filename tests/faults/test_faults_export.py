"""Fault injection, issue 43: what passes from `tonno benchmark` to `tonno export nnunet` to `tonno segment train`.

Each test is a trial of docs/faults.md: the README's road with heatmaps of another checkpoint, a heatmap folder
of two checkpoints, a level above every heatmap, numbers that cannot be right in thresholds.json, an id nnU-Net
would refuse, reviews that would be dropped, an unknown intensity mode, a finding no case has, and `--test` given
the folder of images its help offers, and cases of two images with a case of one among them.
"""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from tonno_cli.app import app

runner = CliRunner()
EXPORTED = "Dataset501_TonnoLesions"


@pytest.fixture(autouse=True)
def _no_nnunet_check(monkeypatch):
    """nnU-Net's own integrity check (a child process, ~30 s) is not what these trials test; tests/engine/apps/
    test_export_nnunet.py runs it."""
    monkeypatch.setattr("tonno_engine.apps.export_nnunet.nnunet_integrity_check", lambda folder: "not run (test)")


def _export(data, heat, raw, *extra):
    return runner.invoke(app, ["export", "nnunet", str(data), "--heatmaps", str(heat), "-o", str(raw), "-q", *extra])


def _reconstructed(cases, out, checkpoint):
    done = runner.invoke(app, ["reconstruct", "-i", str(cases), "-o", str(out), "-c", str(checkpoint), "--method",
                               "tonno", "--slices", "5", "--directions", "8", "--device", "cpu", "-q"])
    assert done.exit_code == 0, done.output
    return out


def _thresholds(path, level, checkpoint_sha256, relative=0.0):
    from tonno_engine.evaluation.metrics import Threshold
    from tonno_engine.evaluation.thresholds_file import write_thresholds

    return write_thresholds(path, {"tonno": Threshold("calibrated", level, relative)}, checkpoint="bench/model.pt",
                            checkpoint_sha256=checkpoint_sha256)


def _positive_level(heat) -> float:
    """A level every positive heatmap of ``heat`` reaches: the smallest of their 99th percentiles."""
    return min(float(np.percentile(np.asarray(nib.load(p).dataobj), 99)) for p in sorted(heat.glob("*_tonno.nii.gz")))


# 1. the README's road: thresholds calibrated on one checkpoint's heatmaps, heatmaps of another
def test_export_refuses_thresholds_calibrated_on_another_checkpoints_heatmaps(tiny_cases, tiny_checkpoint, tmp_path):
    from tonno_engine.base.hashing import file_sha256

    heat = _reconstructed(tiny_cases, tmp_path / "heat", tiny_checkpoint)
    other = "ab" * 32  # the benchmark's model: not the one that made these heatmaps
    thresholds = _thresholds(tmp_path / "thresholds.json", _positive_level(heat), other)
    refused = _export(tiny_cases, heat, tmp_path / "raw", "--thresholds", str(thresholds))
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    made_by = file_sha256(tiny_checkpoint)
    assert f"calibrated on heatmaps of checkpoint {other[:12]}" in refused.output and made_by[:12] in refused.output
    assert "--allow-mismatch" in refused.output and not (tmp_path / "raw").exists()
    allowed = _export(tiny_cases, heat, tmp_path / "raw", "--thresholds", str(thresholds), "--allow-mismatch")
    assert allowed.exit_code == 0, allowed.output
    assert "warning: exported although" in allowed.output
    record = json.loads((tmp_path / "raw" / EXPORTED / "tonno_export.json").read_text())
    assert record["calibrated_on"] == other and len(record["mismatches_allowed"]) == 1
    # thresholds of the checkpoint that made the heatmaps: exported without a word
    same = _thresholds(tmp_path / "same.json", _positive_level(heat), made_by)
    agreed = _export(tiny_cases, heat, tmp_path / "raw2", "--thresholds", str(same))
    assert agreed.exit_code == 0 and "warning" not in agreed.output, agreed.output


# 2. a heatmap folder that holds heatmaps of two checkpoints
def test_export_refuses_a_heatmap_folder_of_two_checkpoints(tiny_cases, tiny_checkpoint, tmp_path):
    from tonno_engine.models.checkpoint import read_description, save_checkpoint
    from tonno_engine.models.encoders import create_encoder

    heat = _reconstructed(tiny_cases, tmp_path / "heat", tiny_checkpoint)
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    other = save_checkpoint(tmp_path / "other.pt", create_encoder("resnet10t", norm="gn"), read_description(tiny_checkpoint))
    second = _reconstructed(tiny_cases, tmp_path / "heat2", other)
    shutil.copy2(second / "phantom_0001_tonno.nii.gz", heat / "phantom_0001_tonno.nii.gz")  # a user's copy
    refused = _export(tiny_cases, heat, tmp_path / "raw", "--percentile", "99")
    assert refused.exit_code == 1 and "the heatmaps come from 2 checkpoints" in refused.output, refused.output
    assert "phantom_0001_tonno.nii.gz" in refused.output and not (tmp_path / "raw").exists()


# 3. a level above every heatmap: positive scans without a lesion voxel; segment train on such an export
def test_a_level_above_every_heatmap_is_refused_and_segment_train_refuses_an_export_without_lesions(
        masked_phantoms, tmp_path):
    from tonno_engine.data.nnunet_layout import labels_sha256

    cases, heat = masked_phantoms(4)
    refused = _export(tmp_path / "data", heat, tmp_path / "raw", "--level", "5")
    assert refused.exit_code == 1 and "none of the" in refused.output and "holds a lesion voxel" in refused.output
    assert not (tmp_path / "raw" / EXPORTED).exists()
    # an export made before that refusal: its labels hold no lesion voxel, its record says so
    assert _export(tmp_path / "data", heat, tmp_path / "raw", "--level", "0.5").exit_code == 0
    folder = tmp_path / "raw" / EXPORTED
    for label in (folder / "labelsTr").iterdir():
        img = nib.load(label)
        nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine, img.header), label)
    record = json.loads((folder / "tonno_export.json").read_text())
    record["labels_sha256"] = labels_sha256(folder)
    for case in record["cases"]:
        case["lesion"] = 0
    (folder / "tonno_export.json").write_text(json.dumps(record))
    trained = runner.invoke(app, ["segment", "train", str(folder), "-o", str(tmp_path / "seg"), "--steps", "1",
                                  "--patch", "16", "--device", "cpu", "-q"])
    assert trained.exit_code == 1 and "no label holds a lesion voxel" in trained.output, trained.output
    assert not (tmp_path / "seg" / "segmenter.pt").exists()


# 4. numbers that cannot be right: in thresholds.json, and as --level
@pytest.mark.parametrize("text, says", [
    ('{"tonno": NaN}', "NaN is not a number"),
    ('{"tonno": Infinity}', "Infinity is not a number"),
    ('{"tonno": true}', "the threshold of 'tonno' is true"),
    ('{"tonno": {"level": [1]}}', "the threshold of 'tonno' is"),
    ('{"tonno": {"level": 1, "relative": 1.5}}', "relative must be in [0, 1)"),
    ('[0.5]', "a JSON list, not an object"),
    ('{"format": 2, "methods": {"tonno": 0.5}}', "names no checkpoint_sha256"),
])
def test_thresholds_json_that_cannot_be_right_is_refused_by_name(masked_phantoms, tmp_path, text, says):
    _, heat = masked_phantoms(2)
    (tmp_path / "thresholds.json").write_text(text)
    res = _export(tmp_path / "data", heat, tmp_path / "raw", "--thresholds", str(tmp_path / "thresholds.json"))
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "thresholds.json" in res.output and says in res.output, res.output
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize("option, value", [("--level", "nan"), ("--level", "inf"), ("--percentile", "150"),
                                           ("--intensity", "foo")])
def test_export_option_values_that_cannot_be_right_are_usage_errors(masked_phantoms, tmp_path, option, value):
    _, heat = masked_phantoms(2)
    extra = [option, value] if option != "--intensity" else ["--level", "0.5", option, value]
    res = _export(tmp_path / "data", heat, tmp_path / "raw", *extra)
    assert res.exit_code == 2 and option in res.output and not (tmp_path / "raw").exists(), res.output


# 6. an id nnU-Net would refuse: one id, two names
def test_export_refuses_an_id_another_name_holds(masked_phantoms, tmp_path):
    _, heat = masked_phantoms(2)
    assert _export(tmp_path / "data", heat, tmp_path / "raw", "--level", "0.5").exit_code == 0
    res = _export(tmp_path / "data", heat, tmp_path / "raw", "--level", "0.5", "--name", "Other")
    assert res.exit_code == 1 and f"{EXPORTED}: already holds the id 501" in res.output, res.output
    assert "choose another --id (e.g. 1)" in res.output and not (tmp_path / "raw" / "Dataset501_Other").exists()


# 7. reviews that would be dropped: a mistyped folder, a review of a case the export does not label
def test_export_refuses_reviews_it_would_drop(masked_phantoms, tmp_path):
    _, heat = masked_phantoms(2)
    missing = _export(tmp_path / "data", heat, tmp_path / "raw", "--level", "0.5", "--annotations",
                      str(tmp_path / "reviwes"))
    assert missing.exit_code == 1 and "reviwes: no such annotations folder" in missing.output
    reviews = tmp_path / "reviews"
    reviews.mkdir()
    shutil.copy2(next(heat.iterdir()), reviews / "someone_else.nii.gz")
    stray = _export(tmp_path / "data", heat, tmp_path / "raw", "--level", "0.5", "--annotations", str(reviews))
    assert stray.exit_code == 1 and "someone_else.nii.gz" in stray.output and "does not label" in stray.output
    assert not (tmp_path / "raw" / EXPORTED).exists()


# 10. a finding no case has
def test_export_of_a_finding_no_case_has_is_refused_before_nnunet(masked_phantoms, tmp_path):
    import csv

    cases, heat = masked_phantoms(2)
    table = tmp_path / "findings.csv"
    with open(table, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["case", "image", "nodule"])
        writer.writerows([[c.case, str(c.image), ""] for c in cases])
    res = _export(table, heat, tmp_path / "raw", "--level", "0.5", "--finding", "nodule")
    assert res.exit_code == 1 and "nodule is unknown in every case: nothing to export" in res.output, res.output
    assert "Traceback" not in res.output and not (tmp_path / "raw").exists()


# 11. --test given what its help offers: an image, a folder of images, a CSV of cases without labels
def test_export_test_cases_are_an_image_a_folder_of_images_or_a_csv_without_labels(masked_phantoms, tmp_path):
    import csv

    cases, heat = masked_phantoms(2)
    new = tmp_path / "new"  # a folder of images, no labels.csv: the cases to segment later
    new.mkdir()
    for k, case in enumerate(cases):
        shutil.copy2(case.image, new / f"new_{k}.nii.gz")
    res = _export(tmp_path / "data", heat, tmp_path / "raw", "--level", "0.5", "--test", str(new))
    assert res.exit_code == 0, res.output
    assert "2 training cases" in res.output and "2 test cases" in res.output
    made = tmp_path / "raw" / EXPORTED
    assert sorted(p.name for p in (made / "imagesTs").iterdir()) == ["new_0_0000.nii.gz", "new_1_0000.nii.gz"]
    assert (made / "imagesTs" / "new_0_0000.nii.gz").read_bytes() == (new / "new_0.nii.gz").read_bytes()
    assert json.loads((made / "tonno_export.json").read_text())["test_cases"] == ["new_0", "new_1"]
    table = tmp_path / "new.csv"  # a labels CSV with no label column
    with open(table, "w", newline="") as fh:
        csv.writer(fh).writerows([["case", "image"], ["later", str(new / "new_1.nii.gz")]])
    from_csv = _export(tmp_path / "data", heat, tmp_path / "raw2", "--level", "0.5", "--test", str(table))
    assert from_csv.exit_code == 0 and "1 test cases" in from_csv.output, from_csv.output
    one = _export(tmp_path / "data", heat, tmp_path / "raw3", "--level", "0.5", "--test", str(new / "new_0.nii.gz"))
    assert one.exit_code == 0 and "1 test cases" in one.output, one.output
    (new / "new_1.nii.gz").unlink()  # the CSV's image is gone: refused by name before anything is written
    gone = _export(tmp_path / "data", heat, tmp_path / "raw4", "--level", "0.5", "--test", str(table))
    assert gone.exit_code == 1 and "new_1.nii.gz" in gone.output and "'later' not found" in gone.output, gone.output
    assert not (tmp_path / "raw4").exists()


def test_an_export_that_fails_on_a_case_leaves_no_raw_folder(masked_phantoms, tmp_path):
    cases, heat = masked_phantoms(3)
    positive = next(c for c in cases if c.label)
    (heat / f"{positive.case}_tonno.nii.gz").unlink()
    res = _export(tmp_path / "data", heat, tmp_path / "raw", "--level", "0.5")
    assert res.exit_code == 1 and f"no tonno heatmap for the positive case '{positive.case}'" in res.output
    assert not (tmp_path / "raw").exists()  # the raw folder this run made is gone again, lock and all


# 13. cases of several images (image_0000, image_0001 columns): one file per image and channel; a case of another
# image count (here a --test image of one) refused by name before anything is written
def test_export_of_cases_of_two_images_and_a_case_of_one_among_them(two_channel_phantoms, tmp_path):
    cases, heat, csv_path = two_channel_phantoms(3)
    res = _export(csv_path, heat, tmp_path / "raw", "--level", "0.5")
    assert res.exit_code == 0, res.output
    assert "resampled onto the grid of" in res.output  # the last case's second image lies on a coarser grid
    made = tmp_path / "raw" / EXPORTED
    assert json.loads((made / "dataset.json").read_text())["channel_names"] == {"0": "T1", "1": "CT"}
    assert len(list((made / "imagesTr").iterdir())) == 6
    per_image = _export(csv_path, heat, tmp_path / "mr", "--level", "0.5", "--intensity", "mr,ct")
    record = json.loads((tmp_path / "mr" / EXPORTED / "tonno_export.json").read_text())
    assert per_image.exit_code == 0 and [c["intensity"] for c in record["channels"]] == ["mr", "ct"], per_image.output
    odd = _export(csv_path, heat, tmp_path / "raw2", "--level", "0.5", "--test", str(cases[0].images[0]))
    assert odd.exit_code == 1 and "Traceback" not in odd.output, odd.output
    assert f"{cases[0].case}_0000: has 1 image(s) but {cases[0].case} has 2" in odd.output
    assert not (tmp_path / "raw2").exists()
