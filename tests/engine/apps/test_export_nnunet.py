"""``tonno export nnunet``: files, geometry, reviews laid over pseudo-labels, interruptions and nnU-Net's own check."""

from __future__ import annotations

import importlib.util
import json

import nibabel as nib
import numpy as np
import pytest

from tonno_engine.base.errors import DataError


@pytest.fixture
def phantoms(masked_phantoms):
    """Six phantoms ``(16, 18, 20)`` with their masks as ``tonno`` heatmaps."""
    return masked_phantoms(6)


def _export(cases, test, heat, root, **kw):
    from tonno_engine.apps.export_nnunet import ExportConfig, ExportResult, export_nnunet_iter

    events = list(export_nnunet_iter(cases, test, heat, root, ExportConfig(method="tonno", level=0.5, **kw)))
    assert isinstance(events[-1], ExportResult)
    return events[-1]


def _labels(result, case) -> np.ndarray:
    return np.asarray(nib.load(result.folder / "labelsTr" / f"{case}.nii.gz").dataobj)


def test_export_writes_the_nnunet_layout_with_the_inputs_geometry(phantoms, tmp_path):
    cases, heat = phantoms
    result = _export(cases[:4], cases[4:], heat, tmp_path / "raw", intensity="mr")
    folder = result.folder
    assert folder.name == "Dataset501_TonnoLesions" and (result.training, result.testing) == (4, 2)
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "MR"} and meta["file_ending"] == ".nii.gz" and meta["numTraining"] == 4
    assert meta["labels"] == {"background": 0, "lesion": 1, "ignore": 2}
    datalist = json.loads((folder / "datalist.json").read_text())
    assert [e["case"] for e in datalist["training"]] == [c.case for c in cases[:4]]
    assert sorted(p.name for p in (folder / "imagesTs").iterdir()) == [f"{c.case}_0000.nii.gz" for c in cases[4:]]
    for c in cases[:4]:
        source = nib.load(c.image)
        image = nib.load(folder / "imagesTr" / f"{c.case}_0000.nii.gz")
        label = nib.load(folder / "labelsTr" / f"{c.case}.nii.gz")
        np.testing.assert_allclose(image.affine, source.affine, atol=1e-6)
        np.testing.assert_allclose(label.affine, source.affine, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(image.dataobj), np.asarray(source.dataobj))
        values = _labels(result, c.case)
        assert set(np.unique(values)) <= {0, 1, 2}
        mask = np.asarray(nib.load(c.mask).dataobj) > 0
        if c.label:  # the heatmap is the mask: lesion there, an ignore shell around it, background beyond
            assert (values[mask] == 1).all() and (values == 2).any() and (values == 0).any()
        else:
            assert not values.any()  # a negative volume is background everywhere
    record = json.loads((folder / "tonno_export.json").read_text())
    assert record["labels_sha256"] == result.labels_sha256 and record["level"] == 0.5 and record["method"] == "tonno"
    assert "channels" not in record and "images" not in record["cases"][0]  # one image per case: as it always was
    assert datalist["training"][0]["image"] == f"imagesTr/{cases[0].case}_0000.nii.gz"
    ct = _export(cases[:2], [], heat, tmp_path / "ct", intensity="ct").folder
    assert json.loads((ct / "dataset.json").read_text())["channel_names"] == {"0": "CT"}  # nnU-Net's CT normalisation


def test_an_annotators_review_replaces_the_pseudo_label(phantoms, tmp_path):
    from tonno_engine.apps.export_review import add_review
    from tonno_engine.evaluation.candidates import decision_row, find_candidates
    from tonno_engine.training.segmenter import read_export

    cases, heat = phantoms
    positive = next(c for c in cases[:4] if c.label)
    heatmap = np.asarray(nib.load(heat / f"{positive.case}_tonno.nii.gz").dataobj)
    found = find_candidates(heatmap, 0.5)
    assert found.candidates  # the heatmap has a component to reject
    annotation = np.zeros(heatmap.shape, np.uint16)
    annotation[1:3, 1:3, 1:3] = 1  # a lesion the heatmap missed
    decisions = [decision_row(found.candidates[0], "reject", 0, found.level)]
    first = _export(cases[:4], [], heat, tmp_path / "raw")
    before = _labels(first, positive.case)
    assert (before[found.labels == 1] == 1).all() and (before[1:3, 1:3, 1:3] == 0).all()
    entry = add_review(first.folder, positive.case, annotation, decisions)
    after = _labels(first, positive.case)
    assert entry["reviewed"] and (after[1:3, 1:3, 1:3] == 1).all() and (after[found.labels == 1] == 0).all()
    _, labels = read_export(first.folder)  # the record follows the new label
    assert labels["labels_sha256"] != first.labels_sha256 and labels["reviewed"] == [positive.case]
    # the same review given to a fresh export through --annotations gives the same label
    again = _export(cases[:4], [], heat, tmp_path / "raw2", annotations=first.folder / "reviews")
    np.testing.assert_array_equal(_labels(again, positive.case), after)
    assert again.reviewed == [positive.case]
    # an export whose labels were edited by hand is refused, naming the folder
    path = first.folder / "labelsTr" / f"{cases[0].case}.nii.gz"
    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.ones(img.shape, np.uint8), img.affine, img.header), path)
    with pytest.raises(DataError, match="labelsTr.*edited since"):
        add_review(first.folder, positive.case, annotation, decisions)
    with pytest.raises(DataError, match="not a training case"):
        add_review(again.folder, "nobody", annotation, decisions)


def test_a_review_made_on_another_heatmap_is_refused(phantoms, tmp_path):
    from tonno_engine.apps.export_review import add_review
    from tonno_engine.evaluation.candidates import decision_row, find_candidates

    cases, heat = phantoms
    positive = next(c for c in cases[:4] if c.label)
    other = np.zeros(nib.load(positive.image).shape, np.float32)
    other[2:4, 2:4, 2:4] = 1.0
    found = find_candidates(other, 0.5)
    result = _export(cases[:4], [], heat, tmp_path / "raw")
    with pytest.raises(DataError, match="another heatmap"):
        add_review(result.folder, positive.case, np.zeros(other.shape, np.uint16),
                   [decision_row(found.candidates[0], "reject", 0, found.level)])
    assert json.loads((result.folder / "tonno_export.json").read_text())["labels_sha256"] == result.labels_sha256


def test_an_interrupted_export_leaves_nothing_and_the_next_one_completes(phantoms, tmp_path):
    from tonno_engine.apps.export_nnunet import ExportConfig, export_nnunet_iter
    from tonno_engine.base.atomic import make_part_folder

    cases, heat = phantoms
    root = tmp_path / "raw"
    events = export_nnunet_iter(cases[:4], cases[4:], heat, root, ExportConfig(method="tonno", level=0.5))
    next(events), next(events)  # two cases written, then the consumer stops (Ctrl-C in the CLI, Cancel in napari)
    events.close()
    assert not root.exists()  # the raw folder this export made is removed again, lock and all
    root.mkdir()
    stale = make_part_folder(root / "Dataset501_TonnoLesions")  # what a kill -9 leaves behind
    (stale / "imagesTr").mkdir()
    result = _export(cases[:4], cases[4:], heat, root)
    assert not stale.exists() and result.training == 4
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".tonno.lock")) == [result.folder.name]
    with pytest.raises(DataError, match="not empty"):
        _export(cases[:2], [], heat, root)
    assert len(list((result.folder / "labelsTr").iterdir())) == 4  # untouched
    replaced = _export(cases[:2], [], heat, root, overwrite=True)
    assert len(list((replaced.folder / "labelsTr").iterdir())) == 2


def test_a_positive_case_without_its_heatmap_is_named(phantoms, tmp_path):
    cases, heat = phantoms
    positive = next(c for c in cases if c.label)
    (heat / f"{positive.case}_tonno.nii.gz").unlink()
    with pytest.raises(DataError, match=f"no tonno heatmap for the positive case '{positive.case}'"):
        _export(cases, [], heat, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()  # made by this export, removed again


@pytest.mark.skipif(importlib.util.find_spec("nnunetv2") is None, reason="the nnunet extra is not installed")
def test_nnunets_own_integrity_check_passes_on_the_export_and_fails_on_a_broken_one(phantoms, tmp_path):
    from tonno_engine.apps.export_nnunet import nnunet_integrity_check

    cases, heat = phantoms
    result = _export(cases[:4], cases[4:], heat, tmp_path / "raw")
    assert result.nnunet_check == "passed"
    path = result.folder / "labelsTr" / f"{cases[0].case}.nii.gz"
    img = nib.load(path)
    broken = np.asarray(img.dataobj).copy()
    broken[0, 0, 0] = 5  # a label nnU-Net was not told of
    nib.save(nib.Nifti1Image(broken, img.affine, img.header), path)
    with pytest.raises(DataError, match="integrity check failed"):
        nnunet_integrity_check(result.folder)


def test_a_case_of_two_images_exports_each_image_on_the_first_ones_grid(two_channel_phantoms, tmp_path):
    from tonno_engine.apps.export_nnunet import ExportConfig, ExportResult, export_nnunet_iter
    from tonno_engine.base.events import Notice
    from tonno_engine.data.dataset import dataset_channel_specs

    cases, heat, csv = two_channel_phantoms(4)
    coarse = cases[-1]  # its second image lies on a grid twice as coarse
    channels = tuple((s.name, s.intensity) for s in dataset_channel_specs(csv))
    assert channels == (("T1", "robust"), ("CT", "ct"))
    events = list(export_nnunet_iter(cases[1:], cases[:1], heat, tmp_path / "raw",
                                     ExportConfig(method="tonno", level=0.5, channels=channels)))
    result, folder = events[-1], events[-1].folder
    assert isinstance(result, ExportResult) and (result.training, result.testing) == (3, 1)
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert len(notices) == 1 and notices[0].startswith(f"{coarse.case}: ") and "resampled" in notices[0]
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == sorted(
        f"{c.case}_{k:04d}.nii.gz" for c in cases[1:] for k in (0, 1))
    assert sorted(p.name for p in (folder / "imagesTs").iterdir()) == [f"{cases[0].case}_{k:04d}.nii.gz" for k in (0, 1)]
    for c in cases[1:]:
        for k, source in enumerate(c.images):
            written = folder / "imagesTr" / f"{c.case}_{k:04d}.nii.gz"
            if c is not coarse or k == 0:  # the first image, and another on its grid: byte for byte
                assert written.read_bytes() == source.read_bytes()
    first, resampled = nib.load(coarse.images[0]), nib.load(folder / "imagesTr" / f"{coarse.case}_0001.nii.gz")
    assert resampled.shape == first.shape and np.allclose(resampled.affine, first.affine, atol=1e-6)
    on_both = np.asarray(resampled.dataobj)[::2, ::2, ::2]  # the voxels the coarse grid holds
    np.testing.assert_allclose(on_both, np.asarray(nib.load(coarse.images[1]).dataobj), atol=1e-3)
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "T1", "1": "CT"}  # CT: nnU-Net's CT normalisation; T1 z-scored
    datalist = json.loads((folder / "datalist.json").read_text())
    assert datalist["training"][0]["image"] == [f"imagesTr/{cases[1].case}_0000.nii.gz",
                                                f"imagesTr/{cases[1].case}_0001.nii.gz"]
    assert datalist["testing"][0]["image"] == [f"imagesTs/{cases[0].case}_0000.nii.gz",
                                               f"imagesTs/{cases[0].case}_0001.nii.gz"]
    record = json.loads((folder / "tonno_export.json").read_text())
    assert record["channels"] == [{"name": "T1", "intensity": "robust", "nnunet": "T1"},
                                  {"name": "CT", "intensity": "ct", "nnunet": "CT"}]
    assert record["cases"][0]["images"] == [str(p) for p in cases[1].images]
    # without the data set's names: the columns' names, each z-scored by nnU-Net
    plain = _export(cases[:2], [], heat, tmp_path / "plain").folder
    assert json.loads((plain / "dataset.json").read_text())["channel_names"] == {"0": "image_0000", "1": "image_0001"}


def test_a_case_of_another_image_count_is_refused_by_name_before_anything_is_written(two_channel_phantoms, tmp_path):
    from dataclasses import replace

    cases, heat, _ = two_channel_phantoms(4)
    one = replace(cases[2], channels=())  # a case of one image among cases of two
    with pytest.raises(DataError, match=f"{one.case}: has 1 image.* but {cases[0].case} has 2"):
        _export([cases[0], cases[1], one], [], heat, tmp_path / "raw")
    with pytest.raises(DataError, match=f"{one.case}: has 1 image"):  # among the test cases as well
        _export(cases[:2], [one], heat, tmp_path / "raw")
    with pytest.raises(DataError, match=r"3 channel\(s\) named \(A, B, C\) for cases of 2 images"):
        _export(cases[:2], [], heat, tmp_path / "raw", channels=(("A", None), ("B", None), ("C", None)))
    assert not (tmp_path / "raw").exists()
