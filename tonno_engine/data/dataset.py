"""Data sets of weakly labelled volumes.

A data set is a CSV with the columns ``case,label,image[,mask]`` (paths relative to the CSV are
allowed; an image or mask is any format :func:`~tonno_engine.data.images.load_image` reads, a DICOM
series as its folder or ``folder#SeriesInstanceUID``; ``label`` is 0 or 1; ``mask`` is an optional
ground-truth lesion mask used only for evaluation), or a folder that holds such a CSV named
``labels.csv`` (what ``tonno synth`` writes).
An optional ``dataset.json`` beside the CSV may name the intensity mode (``"intensity"``).
A case of several images (PET and CT, MR sequences) names them in columns ``image_0000``, ``image_0001``, … instead
of ``image`` (nnU-Net's convention; :mod:`~tonno_engine.data.channels`), their names and modes in ``dataset.json``'s
``"channels"``.
An optional ``group`` column (e.g. the patient) keeps cases together: every split (:func:`split_cases`) puts a
group's cases on one side; without the column every case is its own group. A blank ``group`` cell is an error.

Several findings (docs/findings.md): ``findings`` names one 0/1 column per finding instead of ``label``
(blank, ``nan`` or ``-1``: unknown); their masks are ``mask_<finding>`` columns, or one ``mask`` label
image whose value ``k + 1`` marks finding ``k`` (0: background). ``id_column`` names the case column
(e.g. CT-RATE's ``VolumeName``); without an ``image`` column the id is the image's path relative to the CSV.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..base.errors import DataError
from ..base.hashing import update_hashes
from .channels import channel_columns
from .dicomweb import is_dicomweb_url
from .images import image_exists, image_stem, input_files

REQUIRED = ("case", "label", "image")
#: the optional column whose cases every split keeps on one side (e.g. a patient's studies)
GROUP = "group"
#: what a finding column may hold for "not known" (masked out of the loss, never read as 0)
UNKNOWN_VALUES = ("", "nan", "na", "-1", "-1.0")


@dataclass(frozen=True)
class Case:
    """One volume. ``label``: its class (with several findings: 1 when any finding is known present);
    ``findings``: one label per named finding (``nan``: unknown), empty for the one ``label`` column;
    ``finding_masks``: one mask per finding (``mask_<finding>`` columns), empty when ``mask`` serves all;
    ``group``: the ``group`` column's entry (``None``: no such column, the case is its own group; see
    :func:`group_of`); ``channels``: every image of a case of several (``image_0000``, … columns; ``image`` is then
    the first), empty for one ``image``."""

    case: str
    label: int
    image: Path
    mask: Path | None = None
    findings: tuple[float, ...] = ()
    finding_masks: tuple[Path | None, ...] = ()
    group: str | None = None
    channels: tuple[Path, ...] = ()

    @property
    def images(self) -> tuple[Path, ...]:
        """The case's images, in channel order: ``channels``, or its one ``image``."""
        return self.channels or (self.image,)

    @property
    def targets(self) -> tuple[float, ...]:
        """The label of every finding (``nan``: unknown): ``(label,)`` without named findings."""
        return self.findings or (float(self.label),)

    def truth(self, finding: int | None) -> tuple[Path | None, int | None, int | None]:
        """``(mask file, mask value, label)`` of finding ``finding`` (``None``: the case's one label).
        The value is ``None`` when any non-zero voxel counts (a binary mask), else the label image's
        ``finding + 1``; the label is ``None`` when unknown."""
        if finding is None or not self.findings:
            return self.mask, None, self.label
        known = self.findings[finding]
        label = None if math.isnan(known) else int(known)
        if self.finding_masks:
            return self.finding_masks[finding], None, label
        return self.mask, (finding + 1 if len(self.findings) > 1 else None), label


def resolve_csv(source: str | Path) -> Path:
    """The CSV behind ``source``: the file itself, or ``source/labels.csv`` for a folder."""
    path = Path(source)
    if path.is_dir():
        path = path / "labels.csv"
    if not path.exists():
        raise DataError(path, "data set not found (give a labels CSV or a folder holding labels.csv)")
    return path


def read_cases(source: str | Path, *, check_files: bool = True, findings: Sequence[str] | None = None,
               id_column: str | None = None, need_labels: bool = True) -> list[Case]:
    """Parse and validate a data set CSV; raises :class:`DataError` naming the file and row.
    ``findings``: the finding columns to read (``None``: the ``label`` column); ``id_column``: the
    case column (``None``: ``case``). ``need_labels=False`` for a reader that uses no labels (reconstruction,
    stage-2 prediction, pretraining): no label or finding column is required or read, and every case's
    ``label`` is 0 (meaningless)."""
    if findings and not need_labels:
        raise ValueError("findings are labels: read them with need_labels=True")
    path = resolve_csv(source)
    key = id_column or "case"
    # utf-8-sig: spreadsheets save "CSV UTF-8" with a byte-order mark before the first column name
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        labels = (*(findings or ("label",)),) if need_labels else ()
        channels = channel_columns(header, path)
        needed = (key, *labels, *(("image",) if id_column is None and not channels else ()))
        missing = [c for c in needed if c not in header]
        if missing:
            need = ",".join((key, *labels)) + (",image" if id_column is None else "[,image]") + "[,mask]"
            raise DataError(path, f"missing column(s) {', '.join(missing)}; need {need} (or image_0000, image_0001, "
                                  "… for several images per case)")
        per_finding_masks = findings and any(f"mask_{f}" in header for f in findings)
        grouped = GROUP in header
        cases, seen = [], set()
        for row_no, raw in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
            where = f"{path}, row {row_no}"
            if not row[key]:
                raise DataError(where, f"empty {key}")
            values, label = _row_labels(row, findings, need_labels, where)
            if empty := [c for c in channels if not row[c]]:
                raise DataError(where, f"empty {', '.join(empty)} (every case needs each of its images)")
            images = tuple(_resolve(path.parent, row[c]) for c in channels)
            name = row[key] if row.get("image") or channels else image_stem(Path(row[key]))
            if name in seen:
                raise DataError(where, f"duplicate case {name!r}")
            seen.add(name)
            image = images[0] if images else _resolve(path.parent, row.get("image") or row[key])
            mask = _resolve(path.parent, row["mask"]) if row.get("mask") else None
            masks = tuple(_resolve(path.parent, row[f"mask_{f}"]) if row.get(f"mask_{f}") else None
                          for f in findings) if per_finding_masks else ()
            named = tuple(zip(channels, images)) or (("image", image),)
            for kind, file in (*named, ("mask", mask), *((f"mask_{f}", m) for f, m in zip(findings or (), masks))):
                if check_files and file is not None and not image_exists(file):
                    raise DataError(where, f"{kind} file not found: {file}")
            if grouped and not row[GROUP]:
                raise DataError(where, f"empty {GROUP} (every case of a data set with a {GROUP} column needs one; "
                                       "give a case of no other group its own name)")
            cases.append(Case(name, label, image, mask, values, masks, row[GROUP] if grouped else None, images))
    if not cases:
        raise DataError(path, "no cases")
    return cases


def cases_of_finding(source: str | Path, finding: str, id_column: str | None = None) -> tuple[list[Case], list[str]]:
    """The cases whose label of ``finding`` is known, each with ``label`` that finding's (0/1), and the names of
    those where it is unknown (left out): one finding of several, seen as a one-label data set (e.g. to export
    its pseudo-labels)."""
    cases = read_cases(source, findings=[finding], id_column=id_column)
    known = [c for c in cases if not math.isnan(c.findings[0])]
    return known, [c.case for c in cases if math.isnan(c.findings[0])]


def _row_labels(row: dict, findings, need_labels: bool, where) -> tuple[tuple[float, ...], int]:
    """``(finding values, label)`` of a CSV row: each finding's (the label: 1 when any is present), or the ``label``
    column's, or ``((), 0)`` for a reader that needs no labels."""
    if findings:
        values = tuple(_finding_value(row[f], f, where) for f in findings)
        return values, int(any(v == 1 for v in values))
    if not need_labels:
        return (), 0
    if row["label"] not in ("0", "1"):
        raise DataError(where, f"label must be 0 or 1, got {row['label']!r}")
    return (), int(row["label"])


def _finding_value(text: str, finding: str, where) -> float:
    """A finding column's entry: 0 or 1, or ``nan`` for unknown (:data:`UNKNOWN_VALUES`)."""
    if text.lower() in UNKNOWN_VALUES:
        return math.nan
    if text in ("0", "1", "0.0", "1.0"):
        return float(text)
    raise DataError(where, f"{finding} must be 0 or 1 (blank, nan or -1: unknown), got {text!r}")


def _resolve(base: Path, entry: str) -> Path:
    """``entry`` relative to the CSV's folder, keeping a ``#SeriesInstanceUID`` suffix as it is; a DICOMweb URL as
    it is (a ``str``: a ``Path`` would fold its ``//``)."""
    if is_dicomweb_url(entry):
        return entry  # type: ignore[return-value]
    path, mark, uid = entry.partition("#")
    return Path(f"{(base / path).resolve()}{mark}{uid}")


def write_cases_csv(path: str | Path, cases: list[Case], findings: Sequence[str] | None = None) -> None:
    """``cases`` as a data set CSV (``case,label,image,mask``, absolute paths; ``image_0000``, … for cases of several
    images; with ``findings`` a column
    per finding, blank when unknown, and its ``mask_<finding>`` column when the cases have them; a ``group``
    column when any case has a group), written atomically. Reading it back with the same ``findings`` gives the
    same cases."""
    from ..base.atomic import write_text_atomic
    from .channels import channel_column

    names = list(findings or ())
    split_masks = bool(names) and any(c.finding_masks for c in cases)
    grouped = any(c.group is not None for c in cases)
    images = max(len(c.channels) for c in cases) if cases else 0
    if any(len(c.channels) != images for c in cases):
        raise ValueError("every case of a data set needs the same number of images")
    head = ["case", "label", *([channel_column(k) for k in range(images)] if images else ["image"]), "mask", *names,
            *(f"mask_{f}" for f in names if split_masks), *((GROUP,) if grouped else ())]
    lines = [",".join(head)]
    for c in cases:
        cells = [c.case, str(c.label), *(str(p) for p in c.images), str(c.mask or "")]
        cells += ["" if math.isnan(v) else str(int(v)) for v in (c.findings if names else ())]
        cells += [str(m or "") for m in (c.finding_masks or (None,) * len(names))] if split_masks else []
        cells += [group_of(c)] if grouped else []
        lines.append(",".join(cells))
    write_text_atomic(path, "\n".join(lines) + "\n")


def check_both_classes(cases: list[Case], where, findings: Sequence[str] | None = None) -> None:
    """:class:`DataError` unless every finding (or the one label) is known present in some case and known
    absent in another."""
    for k, name in enumerate(findings or (None,)):
        known = {c.targets[k] for c in cases if not math.isnan(c.targets[k])}
        if known != {0.0, 1.0}:
            what = f"finding {name!r}" if name else "label"
            seen = f"only {what} {int(known.pop())} present" if known else f"{what} is unknown in every case"
            raise DataError(where, f"training needs both classes, {seen}")


def read_dataset_meta(source: str | Path) -> dict:
    """``dataset.json`` beside the CSV (``{}`` if absent)."""
    meta = resolve_csv(source).parent / "dataset.json"
    return json.loads(meta.read_text()) if meta.exists() else {}


def dataset_intensity(source: str | Path) -> str | None:
    """The intensity mode ``dataset.json`` recommends (its key was ``preset`` before 0.2), or ``None``."""
    meta = read_dataset_meta(source)
    return meta.get("intensity", meta.get("preset"))


def data_hash(cases: list[Case]) -> str:
    """SHA-256 over every case's name, label and image bytes (every image of a case of several): identifies the
    training data."""
    return hash_cases(cases)[0]


def hash_cases(cases: list[Case]) -> tuple[str, dict[str, str]]:
    """``(data_hash, {case name: image hash})``, reading every image once. A case's image hash (SHA-256 of its
    image bytes alone, the first 16 hex digits) finds an image again under another name or in another data set."""
    digest, images = hashlib.sha256(), {}
    for case in sorted(cases, key=lambda c: c.case):
        digest.update(f"{case.case}\0{case.label}\0".encode())
        if case.findings:  # (one-label data sets keep the digest they always had)
            digest.update(f"{case.findings}\0".encode())
        if case.group is not None:  # the groups decide the split: a run resumes only on the groups it began with
            digest.update(f"{GROUP}\0{case.group}\0".encode())
        image = hashlib.sha256()
        for file in (f for source in case.images for f in input_files(source)):
            update_hashes((digest, image), file)
        images[case.case] = image.hexdigest()[:16]
    return digest.hexdigest(), images


def group_of(case: Case) -> str:
    """The group that every split keeps on one side: the case's ``group`` entry, else the case itself."""
    return case.case if case.group is None else case.group


def groups_on_both_sides(*sides: Sequence[Case]) -> list[str]:
    """The groups (:func:`group_of`) that have cases in more than one of ``sides``, sorted: ``[]`` for a split
    that keeps every group together."""
    owner: dict[str, int] = {}
    crossed = set()
    for k, side in enumerate(sides):
        for case in side:
            if owner.setdefault(group_of(case), k) != k:
                crossed.add(group_of(case))
    return sorted(crossed)


def split_cases(cases: list[Case], val_fraction: float, seed: int) -> tuple[list[Case], list[Case]]:
    """Stratified split by group (:func:`group_of`; without a ``group`` column every case is its own group, and the
    split is the one tonno always made): a group's cases are all on one side. Groups are stratified by their class
    (1 when any of their cases is positive), each class's groups shuffled and drawn until its validation share is
    as near ``val_fraction`` of its cases as whole groups allow, at least one group of each class that has two.
    With several findings, the split is stratified by the volume's class (any finding), then each finding that has
    no known positive (or negative) in validation gets one from training (with its group), when training keeps
    another.

    Hand-written rather than scikit-learn's ``StratifiedGroupKFold``/``GroupShuffleSplit`` (not a dependency): with
    one case per group this draws exactly what tonno drew before groups, so a seed still gives the same split."""
    import random

    rng = random.Random(seed)
    train, val, groups = [], [], _groups(cases)
    for label in (0, 1):
        stratum = [g for g in groups if max(c.label for c in g) == label]
        rng.shuffle(stratum)
        chosen = _draw(stratum, val_fraction)
        for k, group in enumerate(stratum):
            (val if k in chosen else train).extend(group)
    if val_fraction > 0 and cases and cases[0].findings:
        for k in range(len(cases[0].findings)):
            for value in (1.0, 0.0):
                if any(c.findings[k] == value for c in val):
                    continue
                movable = [c for c in train if c.findings[k] == value]
                if movable and any(group_of(c) != group_of(movable[0]) for c in movable):
                    moved = group_of(movable[0])
                    val += [c for c in train if group_of(c) == moved]
                    train = [c for c in train if group_of(c) != moved]
    return train, val


def _groups(cases: list[Case]) -> list[list[Case]]:
    """``cases`` gathered by group, the groups in the order of their first case."""
    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(group_of(case), []).append(case)
    return list(groups.values())


def _draw(stratum: list[list[Case]], fraction: float) -> set[int]:
    """The indices of the (shuffled) groups of one class that go to validation: walking them in order, each group
    that brings the validation cases nearer to ``fraction`` of the class's cases (at least one) is taken; none when
    the class has fewer than two groups. With one case per group: the first ``round(n × fraction)`` (at least 1)."""
    if fraction <= 0 or len(stratum) < 2:
        return set()
    target = max(1, round(sum(len(g) for g in stratum) * fraction))
    chosen, taken = set(), 0
    for k, group in enumerate(stratum):
        if abs(taken + len(group) - target) < abs(taken - target):
            chosen.add(k)
            taken += len(group)
    if not chosen:  # every group holds more than twice the target: the smallest, so that the class is validated
        chosen.add(min(range(len(stratum)), key=lambda k: len(stratum[k])))
    return chosen


def dataset_channel_specs(source: str | Path) -> tuple:
    """The :class:`~tonno_engine.data.channels.ChannelSpec` of each channel ``dataset.json`` names (``()``: none)."""
    from .channels import dataset_channels

    return dataset_channels(read_dataset_meta(source), resolve_csv(source).parent / "dataset.json")
