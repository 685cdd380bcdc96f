"""``thresholds.json``: the levels ``tonno benchmark`` calibrated, and the checkpoint whose heatmaps they suit.

Format (``"format": 2``)::

    {"format": 2, "checkpoint": "<path>", "checkpoint_sha256": "<hex>",
     "methods": {"<method label>": {"level": 1.25, "relative": 0.2}, ...}}

A level binarises a heatmap at ``max(level, relative × its maximum)`` (:class:`~.metrics.Threshold`). Files
written before tonno 0.4 are a bare ``{"<label>": level}`` and name no checkpoint. Every value is checked
when read (finite numbers, ``relative`` in [0, 1)): a wrong one is a :class:`DataError` naming the file and
the method, never a traceback.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..base.atomic import write_text_atomic
from ..base.errors import DataError
from ..data.heatmap_folder import label_of
from .metrics import Threshold

FORMAT = 2


@dataclass(frozen=True)
class CalibratedThresholds:
    """A read ``thresholds.json``: each method's :class:`Threshold` (``None``: none calibrated) and the
    checkpoint whose heatmaps they were calibrated on (``None`` in files from before tonno 0.4)."""

    path: Path
    methods: dict[str, Threshold | None]
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None

    def threshold_for(self, name: str) -> Threshold:
        """The threshold of the method ``name`` labels, or that a heatmap's name ends with
        (:func:`~tonno_engine.data.heatmap_folder.label_of`)."""
        label = label_of(name, self.methods) or name
        if self.methods.get(label) is None:
            raise DataError(self.path, f"no calibrated threshold for {name!r} (it has {', '.join(self.methods) or 'none'})")
        return self.methods[label]


def write_thresholds(path: str | Path, methods: dict[str, Threshold], *, checkpoint: str | Path,
                     checkpoint_sha256: str) -> Path:
    """Write ``methods`` (label → fixed or calibrated :class:`Threshold`) with the checkpoint they suit, atomically."""
    record = {"format": FORMAT, "checkpoint": str(checkpoint), "checkpoint_sha256": checkpoint_sha256,
              "methods": {label: t.record() for label, t in methods.items()}}
    write_text_atomic(Path(path), json.dumps(record, indent=2) + "\n")
    return Path(path)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number a threshold can hold")


def read_thresholds(path: str | Path) -> CalibratedThresholds:
    """Read and check a ``thresholds.json`` (either format; see the module doc)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(), parse_constant=_no_constant)
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot read calibrated thresholds ({exc})") from exc
    if not isinstance(data, dict):
        raise DataError(path, f"not a thresholds.json of tonno benchmark (a JSON {type(data).__name__}, not an object)")
    if "methods" in data:
        if data.get("format") != FORMAT or not isinstance(data["methods"], dict):
            raise DataError(path, f"thresholds format {data.get('format')!r} is not one this tonno reads ({FORMAT})")
        entries, sha = data["methods"], data.get("checkpoint_sha256")
        if not isinstance(sha, str):
            raise DataError(path, "names no checkpoint_sha256: it cannot be checked against the heatmaps")
    else:
        entries, sha = data, None
    return CalibratedThresholds(path, {label: _threshold(path, label, value) for label, value in entries.items()},
                                data.get("checkpoint") if sha else None, sha)


def _threshold(path: Path, label: str, value) -> Threshold | None:
    """One entry: ``null``, a bare level, or ``{"level": t, "relative": f}``; anything else a :class:`DataError`."""
    if value is None:
        return None
    numbers = [value] if not isinstance(value, dict) else [value.get("level"), value.get("relative", 0.0)]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers):
        raise DataError(path, f"the threshold of {label!r} is {json.dumps(value)}: it must be a finite level, or "
                              '{"level": <finite number>, "relative": <share of the maximum in [0, 1)>}')
    try:
        return Threshold.of_record(value)
    except ValueError as exc:
        raise DataError(path, f"the threshold of {label!r}: {exc}") from exc


def calibrated_threshold(thresholds_json: str | Path, name: str) -> Threshold:
    """The threshold ``tonno benchmark`` calibrated (its ``thresholds.json``) for the method ``name`` labels, or
    that a heatmap's name ends with; its ``level(heatmap)`` gives each heatmap's level (``Threshold.relative`` may
    raise it to a share of the heatmap's maximum)."""
    return read_thresholds(thresholds_json).threshold_for(name)
