"""Render the engine's events in a terminal: a rich progress bar, silent when not a TTY."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tonno_engine.events import Progress as ProgressEvent

console = Console(stderr=True)


def show_progress(events: Iterable, description: str, *, quiet: bool = False) -> Iterator:
    """Pass every event through, drawing ``Progress`` events as a bar on stderr.

    The bar is off with ``quiet`` or when stderr is not a terminal (logs stay clean).
    """
    enabled = not quiet and sys.stderr.isatty()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not enabled, transient=False) as bar:
        task = bar.add_task(description, total=None)
        for event in events:
            if isinstance(event, ProgressEvent):
                bar.update(task, completed=event.done, total=event.total,
                           description=f"{description} ({event.stage})")
            yield event
