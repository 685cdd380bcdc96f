"""What every converter shares: the published totals, what a scan found, and the files it writes.

A converter walks RAW as its provider lays it out and fills a :class:`Findings`: the CSV's rows, counts of
what it found, and three lists — *missing* (what the published data set has and RAW lacks: a study, a mask,
a file of a study, a patient), *unexpected* (what RAW holds that the layout does not know) and *left out*
(what was found but could not become a case, with the reason). :func:`write_conversion` then writes, under the
output folder's lock and each file atomically, ``dataset.json``, ``report.md``, ``report.json`` and, last,
``labels.csv`` (a folder that has it is complete), and returns a :class:`ConvertResult`. Images are referenced
where they lie, by absolute path; nothing is copied.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ...base.atomic import make_output_folder, write_text_atomic
from ...base.errors import DataError
from ...base.folder_lock import folder_lock

#: what a conversion writes into its output folder (a folder holding only these may be written again)
OUTPUTS = ("labels.csv", "report.md", "report.json", "dataset.json", "images", "masks")
#: how many entries of each list the Markdown report shows (report.json holds them all)
REPORT_LIMIT = 500


@dataclass(frozen=True)
class Published:
    """A data set's published totals, ``((what, count), …)``, and where they are published."""

    name: str
    totals: tuple[tuple[str, int], ...]
    source: str


@dataclass
class Findings:
    """What a scan of RAW found (filled while walking it; see the module's docstring)."""

    rows: list[dict[str, str]] = field(default_factory=list)
    found: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def count(self, what: str, n: int = 1) -> None:
        self.found[what] = self.found.get(what, 0) + n


@dataclass(frozen=True)
class ConvertResult:
    """A finished conversion: ``cases`` rows in ``csv``, the report at ``report`` (and ``report.json`` beside it),
    the counts ``found`` beside the ``published`` totals, and what is ``missing``, ``unexpected`` or ``left_out``."""

    dataset: str
    csv: Path
    report: Path
    cases: int
    found: tuple[tuple[str, int], ...]
    published: Published
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    left_out: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def differences(self) -> tuple[tuple[str, int, int], ...]:
        """``(what, found, published)`` for every published total that the scan did not find."""
        found = dict(self.found)
        return tuple((what, found.get(what, 0), total) for what, total in self.published.totals
                     if found.get(what, 0) != total)

    @property
    def check_passed(self) -> bool:
        """Every published total found, nothing missing, nothing unexpected."""
        return not (self.differences or self.missing or self.unexpected)


@dataclass(frozen=True)
class OutputSpec:
    """How a converter's findings are written: the data set's key (``mosmed``), RAW, the CSV's columns in order,
    ``dataset.json``'s content and the published totals."""

    dataset: str
    raw: Path
    columns: tuple[str, ...]
    meta: dict
    published: Published


def check_folders(raw: Path, out: Path) -> None:
    """Check RAW and OUT before anything is read or written: RAW an existing folder, OUT outside it, and OUT new,
    empty or an earlier conversion (it holds ``report.json`` and nothing but :data:`OUTPUTS`)."""
    raw, out = Path(raw), Path(out)
    if not raw.is_dir():
        raise DataError(raw, "not a folder (give the data set's folder as its provider publishes it)")
    if out.resolve() == raw.resolve() or raw.resolve() in out.resolve().parents:
        raise DataError(out, f"the output folder lies inside RAW ({raw}); RAW is only read: give a folder outside it")
    if out.is_dir():
        names = {p.name for p in out.iterdir() if not p.name.startswith(".")}
        if names and ("report.json" not in names or names - set(OUTPUTS)):
            raise DataError(out, "folder is not empty and is not an earlier conversion (no report.json, or other "
                                 "files); give a new or empty folder")


@contextlib.contextmanager
def output_folder(out: Path) -> Iterator[Path]:
    """Create ``out`` (:class:`DataError` when impossible) and hold its lock while a conversion writes into it."""
    make_output_folder(out)
    with folder_lock(out):
        yield out


def find_root(raw: Path, fits: Callable[[Path], bool], expected: str, depth: int = 2) -> Path:
    """The folder at or below ``raw`` (up to ``depth`` levels, e.g. a download's ``manifest-…/Collection/``) that
    ``fits`` the layout; :class:`DataError` naming ``raw`` and the ``expected`` layout when none or several do."""
    level = [raw]
    for _ in range(depth + 1):
        hits = [p for p in level if fits(p)]
        if len(hits) > 1:
            raise DataError(raw, f"several folders fit the layout ({', '.join(str(h) for h in hits)}); give one")
        if hits:
            return hits[0]
        level = [c for p in level for c in sorted(p.iterdir()) if c.is_dir() and not c.name.startswith(".")]
    raise DataError(raw, f"does not hold the data set's layout; expected {expected}")


def relative(path: Path, raw: Path) -> str:
    """``path`` as written in the report: relative to RAW where it lies inside."""
    try:
        return path.relative_to(raw).as_posix()
    except ValueError:
        return str(path)


def visible(folder: Path) -> list[Path]:
    """The entries of ``folder``, sorted, hidden ones (``.DS_Store``, ``._*``) left out."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def safe_name(text: str) -> str:
    """``text`` as a case name: runs of characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def csv_text(columns: Iterable[str], rows: Iterable[dict[str, str]]) -> str:
    """The rows as CSV (quoted where needed), the columns in order; a row's absent column is blank."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="raise", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_conversion(out: Path, findings: Findings, spec: OutputSpec) -> ConvertResult:
    """Write ``dataset.json``, ``report.md``, ``report.json`` and, last, ``labels.csv`` into ``out``, each
    atomically; :class:`DataError` (nothing written) when no case was found."""
    if not findings.rows:
        raise DataError(spec.raw, f"no {spec.published.name} case found (left out: {len(findings.left_out)}); "
                                  "nothing written")
    result = ConvertResult(spec.dataset, out / "labels.csv", out / "report.md", len(findings.rows),
                           tuple(sorted(findings.found.items())), spec.published, tuple(findings.missing),
                           tuple(findings.unexpected), tuple(findings.left_out), tuple(findings.notes))
    write_text_atomic(out / "dataset.json", json.dumps(spec.meta, indent=2) + "\n")
    write_text_atomic(out / "report.json", json.dumps(report_dict(result, spec), indent=2) + "\n")
    write_text_atomic(out / "report.md", report_markdown(result, spec))
    write_text_atomic(out / "labels.csv", csv_text(spec.columns, findings.rows))
    return result


def report_dict(result: ConvertResult, spec: OutputSpec) -> dict:
    """``report.json``: everything the Markdown report says, every list in full."""
    return {"dataset": result.dataset, "raw": str(spec.raw.resolve()), "cases": result.cases,
            "columns": list(spec.columns), "found": dict(result.found),
            "published": {"name": spec.published.name, "totals": dict(spec.published.totals),
                          "source": spec.published.source},
            "differences": [{"what": w, "found": f, "published": p} for w, f, p in result.differences],
            "check_passed": result.check_passed, "missing": list(result.missing),
            "unexpected": list(result.unexpected), "left_out": list(result.left_out), "notes": list(result.notes)}


def _listed(title: str, items: tuple[str, ...]) -> list[str]:
    if not items:
        return [f"## {title}: none", ""]
    more = [f"- … and {len(items) - REPORT_LIMIT} more (report.json lists them all)"] if len(items) > REPORT_LIMIT else []
    return [f"## {title} ({len(items)})", "", *(f"- {item}" for item in items[:REPORT_LIMIT]), *more, ""]


def report_markdown(result: ConvertResult, spec: OutputSpec) -> str:
    """``report.md``: the counts beside the published totals, then what is missing, unexpected or left out."""
    found = dict(result.found)
    published = dict(spec.published.totals)
    lines = [f"# tonno convert {result.dataset}: {spec.published.name}", "",
             f"RAW: `{spec.raw.resolve()}`", "",
             f"{result.cases} cases in labels.csv (columns: {', '.join(spec.columns)}).", "",
             "| what | found | published |", "|---|---:|---:|"]
    for what in dict.fromkeys([*published, *found]):
        mark = " **≠**" if what in published and found.get(what, 0) != published[what] else ""
        lines.append(f"| {what} | {found.get(what, 0)}{mark} | {published.get(what, '')} |")
    verdict = "matches the published totals" if result.check_passed else "differs from the published totals"
    lines += ["", f"Published totals: {spec.published.source}", "", f"Check: {verdict}.", ""]
    lines += _listed("Missing", result.missing) + _listed("Unexpected", result.unexpected)
    lines += _listed("Left out", result.left_out) + _listed("Notes", result.notes)
    return "\n".join(lines).rstrip() + "\n"
