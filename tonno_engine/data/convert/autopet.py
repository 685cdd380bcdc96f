"""AutoPET (FDG-PET-CT-Lesions, the AutoPET II training data) → ``labels.csv``: one case per study, two channels.

The layout the challenge's DICOM-to-NIfTI script (github.com/lab-midas/autoPET, ``data_conversion/tcia2nifti.py``)
writes: ``PETCT_<id>/<study>/{CT,CTres,PET,SUV,SEG}.nii.gz``, one folder per patient, one subfolder per study
(its folder name is the study's date and description), ``SUV`` (PET in SUV), ``CTres`` (CT resampled to the PET
grid) and ``SEG`` (the lesion mask) on one grid. A folder holding the ``PETCT_*`` folders one or two levels down
(``FDG-PET-CT-Lesions/``) fits too. Columns: ``case`` (``<patient>_<study>``, other characters than letters,
digits, ``._-`` as ``_``), ``label`` (1 when SEG has a voxel above 0), ``image_0000`` (SUV), ``image_0001``
(CTres), ``mask`` (SEG) and ``group`` (the patient: keep a patient's studies on one side of a split).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

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
    safe_name,
    visible,
    write_conversion,
)

#: AutoPET II's published training data (FDG-PET-CT-Lesions): studies, patients, studies with and without lesions
AUTOPET_TOTALS = (("studies", 1014), ("patients", 900), ("positive", 501), ("negative", 513))
AUTOPET_SOURCE = ("Gatidis et al., A whole-body FDG-PET/CT dataset with manually annotated tumor lesions, Sci Data 9, 601 "
                  "(2022); TCIA FDG-PET-CT-Lesions (doi:10.7937/gkr0-xv29), the AutoPET II challenge's training data: "
                  "1,014 studies of 900 patients, 513 of them negative controls (so 501 with lesions)")
#: the channels, in the order of the image_0000, image_0001 columns, with their intensity modes
CHANNELS = (("SUV", "pet"), ("CTres", "ct"))
#: the files of a study folder: the channels and the mask are needed, CT and PET are expected but not used
NEEDED = ("SUV.nii.gz", "CTres.nii.gz", "SEG.nii.gz")
STUDY_FILES = (*NEEDED, "CT.nii.gz", "PET.nii.gz")
#: the published totals every conversion is checked against (a test may put a stand-in's here)
AUTOPET = Published("AutoPET II (FDG-PET-CT-Lesions)", AUTOPET_TOTALS, AUTOPET_SOURCE)


def _has_patients(folder: Path) -> bool:
    return any(p.is_dir() and p.name.startswith("PETCT_") for p in folder.iterdir())


def _studies(root: Path, found: Findings) -> list[tuple[str, Path]]:
    """``[(patient, study folder)]`` under ``root``; every other entry is unexpected, a patient without a study
    missing its studies."""
    studies = []
    for entry in visible(root):
        if not (entry.is_dir() and entry.name.startswith("PETCT_")):
            found.unexpected.append(relative(entry, root))
            continue
        found.count("patients")
        inside = visible(entry)
        found.unexpected += [relative(p, root) for p in inside if not p.is_dir()]
        folders = [p for p in inside if p.is_dir()]
        if not folders:
            found.missing.append(f"{entry.name}/ (no study folder)")
        studies += [(entry.name, folder) for folder in folders]
    return studies


def _seg_is_empty(seg: Path) -> bool:
    """Whether the mask has no voxel above 0 (read in its stored type); :class:`DataError` naming an unreadable one."""
    import nibabel as nib

    try:
        data = np.asanyarray(nib.load(seg).dataobj)
    except Exception as exc:  # noqa: BLE001 - nibabel, gzip and zlib raise many types for a broken file
        raise DataError(seg, f"unreadable or truncated mask ({type(exc).__name__}: {exc}); nothing was written") from exc
    return not bool(np.any(data > 0))


def _study_row(patient: str, folder: Path, root: Path, found: Findings) -> dict[str, str] | None:
    """The row of one study folder, or ``None`` (left out, with its missing files listed)."""
    names = {p.name for p in visible(folder)}
    found.unexpected += [relative(folder / n, root) for n in sorted(names - set(STUDY_FILES))]
    absent = [n for n in STUDY_FILES if n not in names]
    found.missing += [relative(folder / n, root) for n in absent]
    if any(n in absent for n in NEEDED):
        found.left_out.append(f"{relative(folder, root)}: no {', '.join(n for n in NEEDED if n in absent)}")
        return None
    found.count("studies")
    label = int(not _seg_is_empty(folder / "SEG.nii.gz"))
    found.count("positive" if label else "negative")
    row = {"case": safe_name(f"{patient}_{folder.name}"), "label": str(label), "mask": str((folder / "SEG.nii.gz").resolve()),
           "group": patient}
    row.update({f"image_{k:04d}": str((folder / f"{name}.nii.gz").resolve()) for k, (name, _) in enumerate(CHANNELS)})
    return row


def convert_autopet(raw: str | Path, out: str | Path, *, published: Published | None = None
                    ) -> Iterator[Progress | ConvertResult]:
    """Write ``out/labels.csv`` (columns in the module's docstring), ``dataset.json`` (the channels and their
    intensity modes, ``pet`` and ``ct``) and the report for the AutoPET NIfTI folder ``raw``; yields one
    :class:`Progress` per study, then the :class:`ConvertResult`. Every SEG is read (its label); an unreadable one
    is a :class:`DataError` naming it, as is a ``raw`` that does not hold the layout: nothing is written then.
    ``published``: the totals to check against (default :data:`AUTOPET`)."""
    raw, out = Path(raw), Path(out)
    check_folders(raw, out)
    root = find_root(raw, _has_patients, "PETCT_<id>/<study>/{CT,CTres,PET,SUV,SEG}.nii.gz (the NIfTI folder that "
                                         "AutoPET's tcia2nifti.py writes, e.g. FDG-PET-CT-Lesions/)")
    found = Findings()
    studies = _studies(root, found)
    names: dict[str, str] = {}
    for k, (patient, folder) in enumerate(studies):
        row = _study_row(patient, folder, root, found)
        if row is not None:
            if (taken := row["case"]) in names:
                row["case"] = safe_name(f"{row['case']}_{k}")
                found.notes.append(f"{relative(folder, root)}: named {row['case']} (its name is taken by {names[taken]})")
            names[row["case"]] = relative(folder, root)
            found.rows.append(row)
        yield Progress("studies", k + 1, len(studies), "studies")
    channels = [{"column": f"image_{k:04d}", "name": name, "intensity": mode} for k, (name, mode) in enumerate(CHANNELS)]
    meta = {"dataset": "AutoPET II (FDG-PET-CT-Lesions)", "modality": "PET/CT", "channels": channels,
            "converted_from": str(root.resolve()), "label": "1 when SEG holds a lesion voxel", "group": "patient"}
    columns = ("case", "label", *(c["column"] for c in channels), "mask", "group")
    with output_folder(out):
        result = write_conversion(out, found, OutputSpec("autopet", root, columns, meta, published or AUTOPET))
    yield result
