"""A batch split into parts: ranks under ``torchrun`` or the tasks of a job array (docs/distributed.md).

Every part computes the same assignment of cases to parts from the input list alone (greedy
longest-first by voxel count, so parts take about equal work), writes its own record
``parts/part-I-of-K.json`` after every case, and on finishing merges every record present into
``summary.csv`` and ``run.json`` under a file lock: whichever part ends last writes the complete
summary. A rerun with ``--continue`` skips outputs that exist, so a part that died is finished
without computing anything twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import json
from collections.abc import Iterator
from pathlib import Path

from ..base.atomic import write_text_atomic

PARTS_DIR = "parts"


def assign_parts(weights: list[int], parts: int) -> list[int]:
    """The part (0 … ``parts``-1) of each item: the heaviest item first goes to the least loaded part
    (ties: the lower index), so loads differ by at most one item's weight. Deterministic."""
    heap = [(0, p) for p in range(parts)]
    owner = [0] * len(weights)
    for i in sorted(range(len(weights)), key=lambda k: (-weights[k], k)):
        load, p = heapq.heappop(heap)
        owner[i] = p
        heapq.heappush(heap, (load + max(1, weights[i]), p))
    return owner


def part_record_path(out: Path, part: int, parts: int) -> Path:
    return Path(out) / PARTS_DIR / f"part-{part}-of-{parts}.json"


def write_part_record(out: Path, part: int, parts: int, record: dict) -> None:
    write_text_atomic(part_record_path(out, part, parts), json.dumps(record, indent=2))


@contextlib.contextmanager
def merge_lock(out: Path) -> Iterator[None]:
    """An exclusive lock on ``out/parts/.lock`` (``fcntl.flock``; parts on one file system)."""
    path = Path(out) / PARTS_DIR / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_part_records(out: Path) -> list[dict]:
    """Every part record in ``out/parts``, oldest first (a later run's rows win over an earlier one's)."""
    paths = sorted((Path(out) / PARTS_DIR).glob("part-*-of-*.json"), key=lambda p: p.stat().st_mtime_ns)
    return [json.loads(p.read_text()) for p in paths]


def merged_rows(records: list[dict], case_order: list[str], method_order: list[str]) -> list[dict]:
    """One row per (case, method) from the records (the latest record's row wins), in input order."""
    rows: dict[tuple[str, str], dict] = {}
    for record in records:
        for row in record["rows"]:
            rows[(row["case"], row["method"])] = row
    case_rank = {c: k for k, c in enumerate(case_order)}
    method_rank = {m: k for k, m in enumerate(method_order)}
    return sorted(rows.values(), key=lambda r: (case_rank.get(r["case"], len(case_rank)),
                                                method_rank.get(r["method"], len(method_rank))))
