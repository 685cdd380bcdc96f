"""MosMedData (COVID19_1110) → ``labels.csv``: one case per study, referenced in place.

The provider's layout: ``studies/CT-0 … CT-4/study_NNNN.nii.gz`` (the category folder is the study's grade of
lung involvement: CT-0 none, CT-1 under 25 %, CT-2 25–50 %, CT-3 50–75 %, CT-4 over 75 %) and
``masks/study_NNNN_mask.nii.gz`` (ground-glass opacities and consolidation, for 50 studies of CT-1). A download
that holds the ``CT-k`` folders without ``studies/`` fits too. Columns: ``case`` (``study_NNNN``), ``label``
(0 for CT-0, else 1), ``image``, ``mask`` (blank without one), ``grade`` (0–4) and, with ``paper_split``,
``split``: ``validation`` for every masked study (the paper's validation set), blank otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ...base.errors import DataError
from ...base.events import Progress
from .common import (
    ConvertResult,
    Findings,
    OutputSpec,
    Published,
    check_folders,
    find_root,
    output_folder,
    relative,
    visible,
    write_conversion,
)

#: MosMedData's published studies per category, in the order they are numbered (study_0001 … study_1110)
MOSMED_CATEGORIES = (("CT-0", 254), ("CT-1", 684), ("CT-2", 125), ("CT-3", 45), ("CT-4", 2))
#: the published masks: those of the first 50 studies of CT-1 (study_0255 … study_0304)
MOSMED_MASKS = 50
MOSMED_SOURCE = ("Morozov et al., MosMedData: Chest CT Scans With COVID-19 Related Findings Dataset, arXiv:2005.06465 "
                 "(2020) and the data set's README (mosmed.ai): 1,110 studies, CT-0 254, CT-1 684, CT-2 125, CT-3 45, "
                 "CT-4 2, numbered study_0001 … study_1110 in that order; 50 masks, study_0255 … study_0304 of CT-1")
#: files the provider ships beside the folders (not unexpected)
KNOWN_EXTRAS = re.compile(r"(readme.*|dataset_registry\.(xlsx|csv)|licen[cs]e.*)", re.IGNORECASE)
STUDY = re.compile(r"study_(\d{4})\.nii(\.gz)?")
MASK = re.compile(r"study_(\d{4})_mask\.nii(\.gz)?")


@dataclass(frozen=True)
class MosMedTotals:
    """The published layout: studies per category (numbered in this order from 1) and the masked studies (the
    first ``masks`` of the second category)."""

    categories: tuple[tuple[str, int], ...] = MOSMED_CATEGORIES
    masks: int = MOSMED_MASKS
    source: str = MOSMED_SOURCE

    def study_category(self) -> dict[int, str]:
        """Every published study number and its category."""
        numbers, start = {}, 1
        for category, count in self.categories:
            numbers.update(dict.fromkeys(range(start, start + count), category))
            start += count
        return numbers

    def masked(self) -> list[int]:
        first = 1 + self.categories[0][1]
        return list(range(first, first + self.masks))

    def published(self) -> Published:
        totals = (("studies", sum(n for _, n in self.categories)), *self.categories, ("masks", self.masks))
        return Published("MosMedData COVID19_1110", totals, self.source)


#: the published totals every conversion is checked against (a test may put a stand-in's here)
MOSMED = MosMedTotals()


def _has_categories(folder: Path) -> bool:
    return any((folder / f"CT-{k}").is_dir() for k in range(5)) or any((folder / "studies" / f"CT-{k}").is_dir()
                                                                       for k in range(5))


def _scan_studies(root: Path, raw: Path, totals: MosMedTotals, found: Findings) -> dict[int, tuple[Path, int]]:
    """``{study number: (file, grade)}`` of every ``CT-k`` folder under ``root``; the rest is unexpected."""
    published = totals.study_category()
    categories = {name for name, _ in totals.categories}
    studies: dict[int, tuple[Path, int]] = {}
    for entry in visible(root):
        if entry.name not in categories or not entry.is_dir():
            if not (entry.name == "masks" and root == raw) and not KNOWN_EXTRAS.fullmatch(entry.name):
                found.unexpected.append(relative(entry, raw))
            continue
        grade = int(entry.name.split("-")[1])
        for file in visible(entry):
            match = STUDY.fullmatch(file.name)
            if match is None or not file.is_file():
                found.unexpected.append(relative(file, raw))
                continue
            number = int(match.group(1))
            if number in studies:
                raise DataError(file, f"study_{number:04d} is also in {relative(studies[number][0], raw)}: its grade "
                                      "is ambiguous; remove one")
            studies[number] = (file, grade)
            found.count("studies")
            found.count(entry.name)
            if published.get(number, entry.name) != entry.name:
                found.unexpected.append(f"{relative(file, raw)} (published in {published[number]})")
    for category, _ in totals.categories:
        if not (root / category).is_dir():
            found.missing.append(f"{relative(root / category, raw)}/ (the whole category)")
    return studies


def _scan_masks(folder: Path, raw: Path, studies: dict, found: Findings) -> dict[int, Path]:
    """``{study number: mask}`` of ``folder``; a mask of no study found, or any other file, is unexpected."""
    masks: dict[int, Path] = {}
    for file in visible(folder) if folder.is_dir() else []:
        match = MASK.fullmatch(file.name)
        if match is None or not file.is_file():
            found.unexpected.append(relative(file, raw))
        elif int(match.group(1)) not in studies:
            found.unexpected.append(f"{relative(file, raw)} (no such study)")
        else:
            masks[int(match.group(1))] = file
            found.count("masks")
    return masks


def _missing(root: Path, raw: Path, totals: MosMedTotals, studies: dict, masks: dict, found: Findings) -> None:
    for number, category in totals.study_category().items():
        if number not in studies:
            found.missing.append(relative(root / category / f"study_{number:04d}.nii.gz", raw))
    for number in totals.masked():
        if number not in masks:
            found.missing.append(relative(raw / "masks" / f"study_{number:04d}_mask.nii.gz", raw))


def convert_mosmed(raw: str | Path, out: str | Path, *, paper_split: bool = False,
                   totals: MosMedTotals | None = None) -> Iterator[Progress | ConvertResult]:
    """Write ``out/labels.csv`` (columns in the module's docstring), ``dataset.json`` (intensity ``ct``) and the
    report for the MosMedData folder ``raw``; yields :class:`Progress`, then the :class:`ConvertResult`.
    ``totals``: the published layout to check against (default :data:`MOSMED`). :class:`DataError` naming ``raw``
    when it does not hold the layout, or a study in two categories; nothing is written then."""
    raw, out = Path(raw), Path(out)
    totals = totals or MOSMED
    check_folders(raw, out)
    base = find_root(raw, _has_categories, "studies/CT-0 … CT-4/study_NNNN.nii.gz and masks/study_NNNN_mask.nii.gz "
                                            "(MosMedData's COVID19_1110 folder)")
    root = base / "studies" if (base / "studies").is_dir() else base
    found = Findings()
    yield Progress("scan", 0, 2, "folders")
    studies = _scan_studies(root, base, totals, found)
    masks = _scan_masks(base / "masks", base, studies, found)
    yield Progress("scan", 1, 2, "folders")
    _missing(root, base, totals, studies, masks, found)
    for number, (file, grade) in sorted(studies.items()):
        row = {"case": f"study_{number:04d}", "label": str(int(grade > 0)), "image": str(file.resolve()),
               "mask": str(masks[number].resolve()) if number in masks else "", "grade": str(grade)}
        if paper_split:
            row["split"] = "validation" if number in masks else ""
        found.rows.append(row)
    columns = ("case", "label", "image", "mask", "grade", *(("split",) if paper_split else ()))
    meta = {"dataset": "MosMedData COVID19_1110", "intensity": "ct", "modality": "CT", "converted_from": str(base.resolve()),
            "label": "1 for CT-1 … CT-4 (COVID-19 findings), 0 for CT-0", "paper_split": paper_split}
    with output_folder(out):
        result = write_conversion(out, found, OutputSpec("mosmed", base, columns, meta, totals.published()))
    yield Progress("scan", 2, 2, "folders")
    yield result
