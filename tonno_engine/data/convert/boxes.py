"""Duke-Breast-Cancer-MRI's lesion boxes: ``Annotation_Boxes.xlsx`` as TCIA ships it, or that sheet saved as CSV.

One row per patient: ``Patient ID`` (``Breast_MRI_NNN``), ``Start Row``, ``End Row``, ``Start Column``,
``End Column``, ``Start Slice``, ``End Slice``: 1-based, inclusive ranges of the DICOM image's rows and columns and
of the series' slices (counted in the order of their InstanceNumber). The header is the first row naming
``Patient ID`` (a title row above it is skipped). XLSX needs ``openpyxl``; without it, save the sheet as CSV.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ...base.errors import DataError, MissingExtra

ID_COLUMN = "Patient ID"
RANGES = (("rows", "Start Row", "End Row"), ("columns", "Start Column", "End Column"),
          ("slices", "Start Slice", "End Slice"))


@dataclass(frozen=True)
class Box:
    """One patient's lesion box as the sheet gives it: 1-based inclusive ``(start, end)`` of the DICOM rows, columns
    and slices (in InstanceNumber order); ``where`` names the sheet's row."""

    rows: tuple[int, int]
    columns: tuple[int, int]
    slices: tuple[int, int]
    where: str


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _sheet_rows(path: Path) -> list[list[str]]:
    """Every row of the CSV, or of the XLSX's first worksheet, as text."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        try:
            import openpyxl
        except ImportError as exc:
            raise MissingExtra(f"{path}: reading an XLSX sheet needs openpyxl (pip install openpyxl); or save the sheet "
                               "as CSV in a spreadsheet program and give that") from exc
        try:
            book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:  # noqa: BLE001 - openpyxl and zipfile raise many types for a broken file
            raise DataError(path, f"unreadable XLSX ({type(exc).__name__}: {exc})") from exc
        rows = [[_cell(v) for v in row] for row in book.worksheets[0].iter_rows(values_only=True)]
        book.close()
        return rows
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return [[c.strip() for c in row] for row in csv.reader(fh)]
    except UnicodeDecodeError as exc:
        raise DataError(path, "not a text CSV (an XLSX sheet must end in .xlsx)") from exc


def _number(text: str, where: str, column: str) -> int:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value.is_integer() or value < 1:
        raise DataError(where, f"{column} must be a whole number from 1, got {text!r}")
    return int(value)


def read_boxes(path: str | Path) -> dict[str, Box]:
    """``{patient ID: Box}`` of the sheet at ``path``; :class:`DataError` naming the file (and row) for a missing file
    or column, a value that is not a whole number from 1, an end before its start, or a patient listed twice;
    :class:`MissingExtra` for an XLSX without openpyxl."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "box sheet not found (Annotation_Boxes.xlsx, or that sheet saved as CSV)")
    rows = _sheet_rows(path)
    start = next((k for k, row in enumerate(rows[:20]) if ID_COLUMN.lower() in (c.lower() for c in row)), None)
    if start is None:
        raise DataError(path, f"no header row naming {ID_COLUMN!r} (need {ID_COLUMN}, "
                              f"{', '.join(c for _, *pair in RANGES for c in pair)})")
    header = {c.lower(): k for k, c in enumerate(rows[start])}
    absent = [c for c in (ID_COLUMN, *(c for _, *pair in RANGES for c in pair)) if c.lower() not in header]
    if absent:
        raise DataError(path, f"missing column(s) {', '.join(absent)}")
    boxes: dict[str, Box] = {}
    for row_no, row in enumerate(rows[start + 1:], start=start + 2):
        cells = {name: (row[k] if k < len(row) else "") for name, k in header.items()}
        if not any(cells.values()):
            continue
        where = f"{path}, row {row_no}"
        patient = cells[ID_COLUMN.lower()]
        if not patient:
            raise DataError(where, f"empty {ID_COLUMN}")
        if patient in boxes:
            raise DataError(where, f"{patient} has a box already ({boxes[patient].where}); one box per patient")
        ranges = {}
        for name, first, last in RANGES:
            lo, hi = (_number(cells[c.lower()], where, c) for c in (first, last))
            if hi < lo:
                raise DataError(where, f"{last} {hi} lies before {first} {lo}")
            ranges[name] = (lo, hi)
        boxes[patient] = Box(where=where, **ranges)
    return boxes
