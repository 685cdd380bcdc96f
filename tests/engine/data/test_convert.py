"""``tonno convert``'s engine on tiny stand-ins of each provider's layout: every study, label, grade, group, channel
and mask right; the check names a missing study and an unexpected file; bad input writes nothing."""

import csv
import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from tests.engine.data.convert_standins import (
    AUTOPET_STUDIES,
    AUTOPET_TINY,
    DUKE_AFFINE,
    DUKE_MIDLINE,
    DUKE_SHAPE,
    DUKE_TINY,
    MOSMED_GRADES,
    MOSMED_TINY,
    make_autopet,
    make_duke,
    make_mosmed,
    nifti,
)
from tonno_engine.base.errors import DataError, MissingExtra
from tonno_engine.base.events import Progress
from tonno_engine.data.convert.autopet import convert_autopet
from tonno_engine.data.convert.boxes import read_boxes
from tonno_engine.data.convert.common import ConvertResult
from tonno_engine.data.convert.duke import DukeRequest, Series, choose_series, convert_duke
from tonno_engine.data.convert.mosmed import MOSMED, convert_mosmed
from tonno_engine.data.dataset import read_cases


def run(events) -> ConvertResult:
    events = list(events)
    assert all(isinstance(e, Progress) for e in events[:-1]) and events
    assert isinstance(events[-1], ConvertResult)
    return events[-1]


def rows(out) -> tuple[list[str], dict[str, dict[str, str]]]:
    with open(out / "labels.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        table = {row["case"]: row for row in reader}
        return reader.fieldnames, table


# MosMed


def test_mosmed_every_study_label_grade_mask_and_the_papers_split(tmp_path):
    raw = make_mosmed(tmp_path)
    result = run(convert_mosmed(raw, tmp_path / "out", paper_split=True, totals=MOSMED_TINY))
    columns, table = rows(tmp_path / "out")
    assert columns == ["case", "label", "image", "mask", "grade", "split"]
    assert sorted(table) == [f"study_{n:04d}" for n in range(1, 9)]
    for number, grade in MOSMED_GRADES.items():
        row = table[f"study_{number:04d}"]
        assert row["grade"] == str(grade) and row["label"] == str(int(grade > 0))
        assert row["image"] == str((raw / "studies" / f"CT-{grade}" / f"study_{number:04d}.nii.gz").resolve())
        masked = number in (3, 4)
        assert row["mask"] == (str((raw / "masks" / f"study_{number:04d}_mask.nii.gz").resolve()) if masked else "")
        assert row["split"] == ("validation" if masked else "")
    assert result.check_passed and result.cases == 8 and result.missing == result.unexpected == ()
    assert dict(result.found) == {"studies": 8, "CT-0": 2, "CT-1": 3, "CT-2": 1, "CT-3": 1, "CT-4": 1, "masks": 2}
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["intensity"] == "ct"
    cases = read_cases(tmp_path / "out")  # tonno reads it as it is: images in place, masks where given
    assert [c.label for c in cases] == [0, 0, 1, 1, 1, 1, 1, 1] and cases[2].mask is not None and cases[5].mask is None
    assert not list((tmp_path / "out").glob("*.nii.gz")) and not (tmp_path / "out" / "images").exists()


def test_mosmed_without_the_papers_split_has_no_split_column_and_the_ct_folders_alone_fit(tmp_path):
    raw = make_mosmed(tmp_path)
    shutil.rmtree(raw / "masks")
    run(convert_mosmed(raw / "studies", tmp_path / "out", totals=MOSMED_TINY))  # a download without studies/ above
    columns, table = rows(tmp_path / "out")
    assert columns == ["case", "label", "image", "mask", "grade"] and len(table) == 8
    assert all(row["mask"] == "" for row in table.values())


def test_mosmed_check_names_a_missing_study_and_an_unexpected_file(tmp_path):
    raw = make_mosmed(tmp_path)
    (raw / "studies" / "CT-2" / "study_0006.nii.gz").unlink()
    (raw / "studies" / "CT-1" / "notes.txt").write_text("x")
    nifti(raw / "masks" / "study_0099_mask.nii.gz")
    (raw / "studies" / "CT-1" / "study_0001.nii.gz.bak").write_bytes(b"old copy")
    result = run(convert_mosmed(raw, tmp_path / "out", totals=MOSMED_TINY))
    assert result.missing == ("studies/CT-2/study_0006.nii.gz",)
    assert set(result.unexpected) == {"studies/CT-1/notes.txt", "studies/CT-1/study_0001.nii.gz.bak",
                                      "masks/study_0099_mask.nii.gz (no such study)"}
    assert set(result.differences) == {("studies", 7, 8), ("CT-2", 0, 1)} and not result.check_passed
    report = (tmp_path / "out" / "report.md").read_text()
    assert "studies/CT-2/study_0006.nii.gz" in report and "studies/CT-1/notes.txt" in report
    assert "| CT-2 | 0 **≠** | 1 |" in report
    assert json.loads((tmp_path / "out" / "report.json").read_text())["missing"] == ["studies/CT-2/study_0006.nii.gz"]
    assert "study_0006" not in rows(tmp_path / "out")[1]


def test_mosmed_against_the_published_totals_lists_every_absent_study_and_mask(tmp_path):
    """The real totals: 1,110 studies numbered by category, 50 masks from study_0255."""
    assert dict(MOSMED.published().totals) == {"studies": 1110, "CT-0": 254, "CT-1": 684, "CT-2": 125, "CT-3": 45,
                                                "CT-4": 2, "masks": 50}
    assert MOSMED.study_category()[254] == "CT-0" and MOSMED.study_category()[255] == "CT-1"
    assert MOSMED.study_category()[1110] == "CT-4" and MOSMED.masked() == list(range(255, 305))
    result = run(convert_mosmed(make_mosmed(tmp_path), tmp_path / "out"))
    assert len(result.missing) == 1110 - 8 + 50 and "studies/CT-4/study_1110.nii.gz" in result.missing
    assert "masks/study_0304_mask.nii.gz" in result.missing
    # the stand-in's numbers sit in other categories than the published ones: each is flagged
    assert "studies/CT-2/study_0006.nii.gz (published in CT-0)" in result.unexpected


def test_mosmed_study_in_two_categories_is_a_data_error_and_writes_nothing(tmp_path):
    raw = make_mosmed(tmp_path)
    nifti(raw / "studies" / "CT-3" / "study_0001.nii.gz")
    with pytest.raises(DataError, match="study_0001 is also in"):
        run(convert_mosmed(raw, tmp_path / "out", totals=MOSMED_TINY))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("dataset", ["mosmed", "autopet", "duke"])
def test_a_folder_of_no_layout_is_a_data_error_naming_it_and_writes_nothing(dataset, tmp_path):
    raw = tmp_path / "downloads"
    nifti(raw / "scans" / "a.nii.gz")
    sheet = make_duke(tmp_path / "sheet")[1]
    events = {"mosmed": lambda: convert_mosmed(raw, tmp_path / "out"),
              "autopet": lambda: convert_autopet(raw, tmp_path / "out"),
              "duke": lambda: convert_duke(raw, tmp_path / "out", DukeRequest(sheet))}[dataset]()
    expected = {"mosmed": "CT-0", "autopet": "PETCT_", "duke": "Breast_MRI_NNN"}[dataset]
    with pytest.raises(DataError, match=expected) as info:
        run(events)
    assert info.value.where == str(raw)
    assert not (tmp_path / "out").exists()


def test_the_output_must_lie_outside_raw_and_be_new_empty_or_a_conversion(tmp_path):
    raw = make_mosmed(tmp_path)
    with pytest.raises(DataError, match="inside RAW"):
        run(convert_mosmed(raw, raw / "tonno", totals=MOSMED_TINY))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("x")
    with pytest.raises(DataError, match="not empty"):
        run(convert_mosmed(raw, tmp_path / "busy", totals=MOSMED_TINY))
    run(convert_mosmed(raw, tmp_path / "out", totals=MOSMED_TINY))
    assert run(convert_mosmed(raw, tmp_path / "out", totals=MOSMED_TINY)).cases == 8  # a rerun replaces it


# AutoPET


def test_autopet_every_study_label_group_channel_and_mask(tmp_path):
    raw = make_autopet(tmp_path)
    result = run(convert_autopet(raw, tmp_path / "out", published=AUTOPET_TINY))
    columns, table = rows(tmp_path / "out")
    assert columns == ["case", "label", "image_0000", "image_0001", "mask", "group"]
    root = raw / "FDG-PET-CT-Lesions"
    assert "PETCT_0af7ffe12a_08-12-2005-NA-PET-CT_Ganzkoerper_primaer_mit_KM-10445" in table
    assert len(table) == 3
    for (patient, study), label in AUTOPET_STUDIES.items():
        row = next(r for r in table.values() if r["mask"] == str((root / patient / study / "SEG.nii.gz").resolve()))
        assert row["label"] == str(label) and row["group"] == patient
        assert row["image_0000"] == str((root / patient / study / "SUV.nii.gz").resolve())
        assert row["image_0001"] == str((root / patient / study / "CTres.nii.gz").resolve())
    assert result.check_passed and dict(result.found) == {"studies": 3, "patients": 2, "positive": 1, "negative": 2}
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert [(c["column"], c["name"], c["intensity"]) for c in meta["channels"]] == [("image_0000", "SUV", "pet"),
                                                                                   ("image_0001", "CTres", "ct")]


def test_autopet_check_names_a_missing_file_and_unexpected_ones(tmp_path):
    raw = make_autopet(tmp_path)
    root = raw / "FDG-PET-CT-Lesions"
    (study := root / "PETCT_1b199d094d" / "11-02-2003-NA-Unspecified CT ABDOMEN-93008" / "CTres.nii.gz").unlink()
    (root / "PETCT_0af7ffe12a" / "08-12-2005-NA-PET-CT Ganzkoerper  primaer mit KM-10445" / "notes.txt").write_text("x")
    (root / "Clinical Metadata.csv").write_text("x")
    (root / "PETCT_ffffffffff").mkdir()
    result = run(convert_autopet(raw, tmp_path / "out", published=AUTOPET_TINY))
    assert set(result.missing) == {study.relative_to(root).as_posix(), "PETCT_ffffffffff/ (no study folder)"}
    assert set(result.unexpected) == {"PETCT_0af7ffe12a/08-12-2005-NA-PET-CT Ganzkoerper  primaer mit KM-10445/notes.txt",
                                      "Clinical Metadata.csv"}
    assert result.left_out == ("PETCT_1b199d094d/11-02-2003-NA-Unspecified CT ABDOMEN-93008: no CTres.nii.gz",)
    assert set(result.differences) == {("studies", 2, 3), ("patients", 3, 2), ("negative", 1, 2)}
    assert set(rows(tmp_path / "out")[1]) == {"PETCT_0af7ffe12a_08-12-2005-NA-PET-CT_Ganzkoerper_primaer_mit_KM-10445",
                                              "PETCT_0af7ffe12a_03-15-2006-NA-PET-CT_Ganzkoerper_primaer_mit_KM-52210"}


def test_autopet_unreadable_seg_is_a_data_error_naming_it_and_writes_nothing(tmp_path):
    raw = make_autopet(tmp_path)
    seg = next(raw.rglob("SEG.nii.gz"))
    seg.write_bytes(seg.read_bytes()[:40])
    with pytest.raises(DataError, match="unreadable or truncated mask") as info:
        run(convert_autopet(raw, tmp_path / "out", published=AUTOPET_TINY))
    assert info.value.where == str(seg)
    assert not (tmp_path / "out" / "labels.csv").exists() and not (tmp_path / "out" / "report.md").exists()


# Duke


def test_duke_each_breast_a_case_split_at_the_bodys_midline_with_the_box_as_mask(tmp_path):
    raw, sheet = make_duke(tmp_path)
    result = run(convert_duke(raw, tmp_path / "out", DukeRequest(sheet, totals=DUKE_TINY)))
    assert result.cases == 4 and dict(result.found)["patients converted"] == 2
    out = tmp_path / "out"
    columns, table = rows(out)
    assert columns == ["case", "label", "image", "mask", "group"]
    assert {c: (r["label"], r["group"]) for c, r in table.items()} == {
        "Breast_MRI_001_left": ("0", "Breast_MRI_001"), "Breast_MRI_001_right": ("1", "Breast_MRI_001"),
        "Breast_MRI_002_left": ("1", "Breast_MRI_002"), "Breast_MRI_002_right": ("0", "Breast_MRI_002")}
    for case, row in table.items():
        image, mask = nib.load(row["image"]), nib.load(row["mask"])
        assert row["image"] == str((out / "images" / f"{case}.nii.gz").resolve())
        # column index grows to the patient's left: the right breast is the half before the body's midline (7, not
        # the field of view's 6), and each half keeps its place in space
        start = 0 if case.endswith("_right") else DUKE_MIDLINE
        assert image.shape == (DUKE_MIDLINE if start == 0 else DUKE_SHAPE[0] - DUKE_MIDLINE, *DUKE_SHAPE[1:])
        assert np.allclose(image.affine[:3, 3], DUKE_AFFINE[:3, :3] @ [start, 0, 0], atol=1e-4)
        assert image.get_fdata()[-1, 3, 2] == 200  # the first post-contrast series (the pre-contrast one is 100)
        assert mask.shape == image.shape and (mask.get_fdata().any() == (row["label"] == "1"))
    right = np.asarray(nib.load(table["Breast_MRI_001_right"]["mask"]).dataobj)
    expected = np.zeros_like(right)
    expected[3:5, 1:3, 1:3] = 1  # columns 4-5, rows 2-3, slices 2-3, 1-based
    assert np.array_equal(right, expected)
    left = np.asarray(nib.load(table["Breast_MRI_002_left"]["mask"]).dataobj)
    expected = np.zeros_like(left)
    expected[8 - DUKE_MIDLINE:11 - DUKE_MIDLINE, 4:6, 4:6] = 1  # slices 1-2 in InstanceNumber order: the last two
    assert np.array_equal(left, expected)
    assert json.loads((out / "dataset.json").read_text())["intensity"] == "mr"
    assert len(read_cases(out)) == 4
    assert not list(out.glob(".tonno-part.*"))


def test_duke_check_names_missing_patients_boxes_and_left_out_ones(tmp_path):
    raw, sheet = make_duke(tmp_path)
    result = run(convert_duke(raw, tmp_path / "out", DukeRequest(sheet, totals=DUKE_TINY)))
    assert set(result.missing) == {"Breast_MRI_004/ (patient)", "box of Breast_MRI_005 (not in the sheet)"}
    assert result.left_out[0].startswith("Breast_MRI_003: no series description holds '1st' or '1ax' or '1/ax'")
    assert "ax dyn pre" in result.left_out[0] and result.left_out[1] == "Breast_MRI_005: no box in the sheet"
    assert set(result.differences) == {("patients", 4, 5), ("boxes", 4, 5), ("cases", 4, 10)}
    (raw / "Duke-Breast-Cancer-MRI" / "Breast_MRI_999").mkdir()
    (raw / "Duke-Breast-Cancer-MRI" / "metadata.csv").write_text("x")
    sheet.write_text(sheet.read_text() + "Breast_MRI_777,1,2,1,2,1,1\n")
    result = run(convert_duke(raw, tmp_path / "out", DukeRequest(sheet, totals=DUKE_TINY)))
    assert {"Breast_MRI_999 (not a published patient)", "metadata.csv"} <= set(result.unexpected)
    assert any(u.endswith("Breast_MRI_777 (not a published patient)") for u in result.unexpected)


def test_duke_another_sequence_is_chosen_by_its_description(tmp_path):
    raw, sheet = make_duke(tmp_path)
    run(convert_duke(raw, tmp_path / "out", DukeRequest(sheet, sequences=("nope", "PRE"), totals=DUKE_TINY)))
    table = rows(tmp_path / "out")[1]
    assert len(table) == 6  # 003 has the pre-contrast series too
    assert nib.load(table["Breast_MRI_001_left"]["image"]).get_fdata().max() == 100
    series = [Series(tmp_path, "1", "ax dyn 1st pass", 9), Series(tmp_path, "2", "Ax 1st pass sub", 7),
              Series(tmp_path, "3", "1ax 3d dyn", 5)]
    assert choose_series(series, ("1st", "1ax")).uid == "2" and choose_series(series, ("2nd",)) is None


def test_duke_box_outside_the_series_is_left_out(tmp_path):
    raw, sheet = make_duke(tmp_path)
    sheet.write_text(sheet.read_text().replace("Breast_MRI_002,5,6,9,11,1,2", "Breast_MRI_002,5,6,9,13,1,2"))
    result = run(convert_duke(raw, tmp_path / "out", DukeRequest(sheet, totals=DUKE_TINY)))
    assert any(r.startswith("Breast_MRI_002: the box") and "another sequence?" in r for r in result.left_out)
    assert sorted(rows(tmp_path / "out")[1]) == ["Breast_MRI_001_left", "Breast_MRI_001_right"]
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == ["Breast_MRI_001_left.nii.gz",
                                                                               "Breast_MRI_001_right.nii.gz"]


@pytest.mark.parametrize(("line", "message"), [
    ("Breast_MRI_005,3,2,4,5,2,3", "End Row 2 lies before Start Row 3"),
    ("Breast_MRI_005,2,3,4,x,2,3", "End Column must be a whole number"),
    ("Breast_MRI_002,1,1,1,1,1,1", "Breast_MRI_002 has a box already"),
])
def test_a_bad_box_sheet_is_a_data_error_naming_the_row_and_writes_nothing(line, message, tmp_path):
    raw, sheet = make_duke(tmp_path)
    sheet.write_text(sheet.read_text() + line + "\n")
    with pytest.raises(DataError, match=message) as info:
        run(convert_duke(raw, tmp_path / "out", DukeRequest(sheet, totals=DUKE_TINY)))
    assert f"{sheet}, row 7" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_box_sheet_columns_and_xlsx(tmp_path):
    sheet = tmp_path / "boxes.csv"
    sheet.write_text("Patient ID,Start Row,End Row,Start Column\nBreast_MRI_001,1,2,3\n")
    with pytest.raises(DataError, match="missing column.*End Column, Start Slice, End Slice"):
        read_boxes(sheet)
    boxes = make_duke(tmp_path / "d")[1]
    assert read_boxes(boxes)["Breast_MRI_002"].columns == (9, 11)
    xlsx = tmp_path / "Annotation_Boxes.xlsx"
    try:
        import openpyxl
    except ImportError:
        xlsx.write_bytes(b"PK")
        with pytest.raises(MissingExtra, match="openpyxl.*save the sheet as CSV"):
            read_boxes(xlsx)
        return
    book = openpyxl.Workbook()
    for row in csv.reader(boxes.read_text().splitlines()):
        book.active.append([int(c) if c.isdigit() else c for c in row])
    book.save(xlsx)
    assert read_boxes(xlsx) == {k: type(v)(v.rows, v.columns, v.slices, v.where.replace(str(boxes), str(xlsx)))
                                for k, v in read_boxes(boxes).items()}
