"""Events yielded by the engine's long-running generators. The engine never prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` units (``unit``: e.g. "slices", "steps") finished in ``stage``."""

    stage: str
    done: int
    total: int
    unit: str = ""
    info: dict[str, Any] = field(default_factory=dict)


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
