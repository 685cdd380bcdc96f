"""Run an engine generator off the GUI thread, with progress in the widget and in napari's activity dock.

The engine yields ``Progress(stage, done, total, …)`` events and other results; napari's thread worker
runs the generator and delivers each event on the GUI thread, where progress moves the widget's bar
and a ``napari.utils.progress`` bar (the activity dock, bottom right), and everything else goes to
``on_event``. ``worker.quit()`` (the widgets' Cancel) stops it at its next event.
"""

from __future__ import annotations


def start_job(job, *, desc: str, on_event, on_error, on_finished=None, on_returned=None, bar=None):
    """Start generator ``job`` in a thread worker and return the worker.

    ``bar``: the widget's magicgui ``ProgressBar`` (optional). The activity-dock bar closes when the job
    ends, however it ends.
    """
    from napari.qt.threading import create_worker
    from napari.utils import progress

    from tonno_engine.base.events import Progress

    dock = progress(total=0, desc=desc)

    def route(event):
        if isinstance(event, Progress):
            if event.total:
                if bar is not None:
                    bar.max, bar.value = event.total, event.done
                if dock.total != event.total:
                    dock.total = event.total
                dock.n = event.done
                # set_description redraws the activity-dock bar with the new count
                dock.set_description(f"{desc}: {event.stage}" + (f" ({event.detail})" if event.detail else ""))
        else:
            on_event(event)

    worker = create_worker(lambda: (yield from job), _start_thread=False)
    worker.yielded.connect(route)
    worker.errored.connect(on_error)
    worker.finished.connect(dock.close)
    if on_finished is not None:
        worker.finished.connect(on_finished)
    if on_returned is not None:
        worker.returned.connect(on_returned)
    worker.start()
    return worker
