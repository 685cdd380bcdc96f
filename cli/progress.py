"""Render the engine's events in a terminal: rich progress bars, silent when not a TTY."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tonno_engine.base.events import Progress as ProgressEvent

console = Console(stderr=True)


def show_progress(events: Iterable, description: str, *, quiet: bool = False) -> Iterator:
    """Pass every event through, drawing ``Progress`` events as bars on stderr, one per stage.

    The bars are off with ``quiet``; when stderr is not a terminal (a log, a pipe, napari's Train
    widget) a plain line ``<description> (<stage>): done/total unit`` is printed every 5 % of each
    stage but the inner ones (events marked ``detail``).
    """
    enabled = not quiet and sys.stderr.isatty()
    plain = not quiet and not enabled
    printed: dict[str, int] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    tasks: dict[str, int] = {}
    with Progress(*columns, console=console, disable=not enabled, transient=False) as bar:
        for event in events:
            if isinstance(event, ProgressEvent) and event.total:
                if event.stage not in tasks:
                    tasks[event.stage] = bar.add_task(f"{description} ({event.stage})", total=event.total)
                elif event.done < bar.tasks[tasks[event.stage]].completed:
                    bar.reset(tasks[event.stage], total=event.total)  # a new job restarts this stage
                bar.update(tasks[event.stage], completed=event.done, total=event.total)
                tick = event.done * 20 // event.total
                if plain and not event.detail and tick != printed.get(event.stage):
                    printed[event.stage] = tick
                    print(f"{description} ({event.stage}): {event.done}/{event.total} {event.unit}".rstrip(),
                          file=sys.stderr, flush=True)
            yield event
