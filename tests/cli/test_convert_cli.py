"""``tonno convert mosmed|autopet|duke RAW OUT [--check]`` on the tiny stand-ins: the CSV, the check's lines and exit
codes (0 written, 1 a data error or a check that differs, 2 a usage error)."""

import csv

from typer.testing import CliRunner

from tests.engine.data.convert_standins import AUTOPET_TINY, DUKE_TINY, MOSMED_TINY, make_autopet, make_duke, make_mosmed
from tonno_cli.app import app
from tonno_engine.data.convert import autopet, duke, mosmed

runner = CliRunner()


def test_convert_mosmed_check_passes_then_names_a_missing_study_and_an_unexpected_file(tmp_path, monkeypatch):
    monkeypatch.setattr(mosmed, "MOSMED", MOSMED_TINY)
    raw = make_mosmed(tmp_path)
    res = runner.invoke(app, ["convert", "mosmed", str(raw), str(tmp_path / "out"), "--check", "--paper-split", "-q"])
    assert res.exit_code == 0, res.output
    assert "wrote 8 cases" in res.output and "check: matches the published totals" in res.output
    with open(tmp_path / "out" / "labels.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [r["split"] for r in table].count("validation") == 2 and {r["grade"] for r in table} == set("01234")
    (raw / "studies" / "CT-3" / "study_0007.nii.gz").unlink()
    (raw / "masks" / "readme.txt").write_text("x")
    res = runner.invoke(app, ["convert", "mosmed", str(raw), str(tmp_path / "out"), "--check", "-q"])
    assert res.exit_code == 1, res.output
    assert "missing (1):\n  studies/CT-3/study_0007.nii.gz" in res.output
    assert "unexpected (1):\n  masks/readme.txt" in res.output
    assert "CT-3" in res.output and "0 of 1  ≠" in res.output and "error: check: differs" in res.output
    assert "wrote 7 cases" in res.output  # the CSV is written all the same


def test_convert_without_check_exits_0_and_warns_of_what_it_left_out(tmp_path, monkeypatch):
    monkeypatch.setattr(autopet, "AUTOPET", AUTOPET_TINY)
    raw = make_autopet(tmp_path)
    next(raw.rglob("SUV.nii.gz")).unlink()
    res = runner.invoke(app, ["convert", "autopet", str(raw), str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.output
    assert "wrote 2 cases" in res.output and "warning: left out PETCT_" in res.output and "no SUV.nii.gz" in res.output
    assert "published totals" not in res.output and "check:" not in res.output
    header = (tmp_path / "out" / "labels.csv").read_text().splitlines()[0]
    assert header == "case,label,image_0000,image_0001,mask,group"


def test_convert_duke_writes_both_breasts_and_needs_the_box_sheet(tmp_path, monkeypatch):
    monkeypatch.setattr(duke, "DUKE", DUKE_TINY)
    raw, sheet = make_duke(tmp_path)
    res = runner.invoke(app, ["convert", "duke", str(raw), str(tmp_path / "out"), "-q"])
    assert res.exit_code == 2 and "--boxes" in res.output
    res = runner.invoke(app, ["convert", "duke", str(raw), str(tmp_path / "out"), "--boxes", str(sheet), "--sequence", " ",
                              "-q"])
    assert res.exit_code == 2 and "--sequence" in res.output and not (tmp_path / "out").exists()
    res = runner.invoke(app, ["convert", "duke", str(raw), str(tmp_path / "out"), "--boxes", str(sheet), "--check", "-q"])
    assert res.exit_code == 1, res.output
    assert "wrote 4 cases" in res.output and "Breast_MRI_004/ (patient)" in res.output
    assert sorted(p.name for p in (tmp_path / "out" / "masks").iterdir())[0] == "Breast_MRI_001_left.nii.gz"


def test_convert_a_folder_of_no_layout_or_a_bad_sheet_is_one_line_and_exit_1(tmp_path):
    (tmp_path / "raw" / "misc").mkdir(parents=True)
    res = runner.invoke(app, ["convert", "autopet", str(tmp_path / "raw"), str(tmp_path / "out")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"error: {tmp_path / 'raw'}: does not hold the data set's layout; expected PETCT_" in res.output
    raw, sheet = make_duke(tmp_path / "d")
    sheet.write_text("Patient,Row\nBreast_MRI_001,1\n")
    res = runner.invoke(app, ["convert", "duke", str(raw), str(tmp_path / "out"), "--boxes", str(sheet)])
    assert res.exit_code == 1 and "no header row naming 'Patient ID'" in res.output
    assert not (tmp_path / "out").exists()
