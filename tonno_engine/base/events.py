"""Events yielded by the engine's long-running generators. The engine never prints.

Every kind of event is a small frozen dataclass; renderers (the CLI, the widgets) dispatch on the
class with ``isinstance``. Counting events derive from :class:`Progress`, so one progress bar
per ``stage`` draws any of them; the others carry results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` units (``unit``: e.g. "slices", "steps") finished in ``stage``.

    ``detail`` marks an inner loop (the slices of one case): worth a live bar, not a log line.
    """

    stage: str
    done: int
    total: int
    unit: str = ""
    detail: bool = False


@dataclass(frozen=True)
class Partial:
    """An intermediate (or, with ``final``, the finished) result after ``done`` of ``total``.

    For reconstructions ``value`` is a ``(D, H, W)`` tensor normalised for the ``done``
    directions seen so far, so every partial is a valid, coarser heatmap.
    """

    value: Any
    done: int
    total: int
    final: bool = False


@dataclass(frozen=True)
class Notice:
    """Something the user should know that does not stop the work (a setting that is probably a mistake)."""

    message: str


@dataclass(frozen=True)
class Note:
    """Something the work decided that the user should see (a choice made for them), not a warning."""

    message: str
