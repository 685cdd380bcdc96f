"""``--events``: the engine's typed events as JSON lines on stdout, for programs that drive ``tonno``
(the napari Train widget runs ``tonno train --events`` in a child process and reads them back)."""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass


def event_line(event) -> str:
    """One event as one line of JSON: ``{"event": <class name>, <its fields>}``."""
    fields = asdict(event) if is_dataclass(event) else {"value": repr(event)}
    return json.dumps({"event": type(event).__name__, **fields}, default=str)
