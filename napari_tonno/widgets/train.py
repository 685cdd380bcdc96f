"""Train: runs ``tonno train --events`` as a child process, shows its steps (read back as typed events
from its stdout) in the status line and napari's activity dock, and can stop it.

A child process rather than a thread worker: SIGTERM makes training checkpoint and stop cleanly (the
engine's stop signals work only in a main thread); a run that the kernel kills for memory, or that
crashes in a native extension, takes napari's window and the user's layers with it when it shares the
process; and the training's Python work (sampling, augmentation) would hold the GIL for stretches that
stall the GUI. The engine's events cross the process boundary as JSON lines (``cli/events.py``)."""

from __future__ import annotations

import json
import sys

from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton, SpinBox, TextEdit

from tonno_engine.base.defaults import DEVICE
from tonno_engine.training.config import RECIPES, recipe_config

from ._common import device_choices

#: the command line of the child process (the console script may not be on PATH inside napari)
CLI = [sys.executable, "-c", "from tonno_cli.app import main; main()"]
#: the recipe the widget starts with: the one that learns on a CPU (docs/training.md)
RECIPE = "small-lesions"


def parse_event(line: str):
    """A ``tonno train --events`` line as the engine's event (``TrainStep``, ``TrainStopped``, ``Progress``, ``Notice``),
    or ``None`` for any other output line."""
    from tonno_engine.base.events import Note, Notice, Progress
    from tonno_engine.training.loop import NotLearnt, TrainStep, TrainStopped
    from tonno_engine.training.sampling import ValidationScores

    if not line.startswith("{"):
        return None
    try:
        fields = json.loads(line)
    except json.JSONDecodeError:
        return None
    name = fields.pop("event", None)
    if name == "RecipeChosen":  # the widget shows its line; the settings are in the run's run.json
        return Note(fields["message"])
    kind = {"TrainStep": TrainStep, "TrainStopped": TrainStopped, "Progress": Progress,
            "Notice": Notice, "NotLearnt": NotLearnt}.get(name)
    if kind is TrainStep and fields.get("validation"):
        fields["validation"] = ValidationScores(**fields["validation"])
    if kind is NotLearnt:
        fields["reasons"] = tuple(fields.get("reasons", ()))
    return kind(**fields) if kind is not None else None


class TrainWidget(Container):
    """``start()`` launches training; ``stop()`` terminates it; ``log`` shows its output; ``last_step`` is the
    newest ``TrainStep`` the child reported, ``not_learnt`` its ``NotLearnt`` warning (the training's "has not
    learnt" verdict, shown in the log and in the status line when it ends), if any."""

    def __init__(self, napari_viewer=None):
        from tonno_engine.models.encoders import NORMS

        super().__init__(labels=True)
        self.viewer = napari_viewer
        start = recipe_config(RECIPE)
        self.data = FileEdit(label="data (labels.csv or folder)", mode="r")
        self.out = FileEdit(label="run folder", mode="d")
        # the recipe fills steps, slice size and norm (docs/training.md)
        self.recipe = ComboBox(label="recipe", choices=list(RECIPES), value=RECIPE)
        self.steps = SpinBox(label="steps", min=1, max=1_000_000, value=start.steps)
        self.slice_size = SpinBox(label="slice size", min=16, max=1024, value=start.slice_size)
        self.norm = ComboBox(label="norm", choices=list(NORMS), value=start.norm)
        self.device = ComboBox(label="device", choices=device_choices(), value=DEVICE)
        self.start_button = PushButton(text="Start training")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.status = Label(label="status", value="")
        self.log = TextEdit(label="log", value="")
        self.log.read_only = True
        self.extend([self.data, self.out, self.recipe, self.steps, self.slice_size, self.norm, self.device,
                     self.start_button, self.stop_button, self.status, self.log])
        self.recipe.changed.connect(self._take_recipe)
        self.start_button.changed.connect(self.start)
        self.stop_button.changed.connect(self.stop)
        self.process = None
        self.dock = None  # the activity-dock progress bar of the running training
        self.last_step = None
        self.not_learnt = None
        self._pending = ""

    def _take_recipe(self, *_) -> None:
        cfg = recipe_config(self.recipe.value)
        self.steps.value, self.slice_size.value, self.norm.value = cfg.steps, cfg.slice_size, cfg.norm
        self.slice_size.enabled = self.recipe.value != "auto"  # auto chooses it from the data (the log says why)

    def arguments(self) -> list[str]:
        size = [] if self.recipe.value == "auto" else ["--slice-size", str(self.slice_size.value)]
        return ["train", str(self.data.value), "--out", str(self.out.value), "--recipe", self.recipe.value,
                "--steps", str(self.steps.value), *size, "--norm", self.norm.value,
                "--device", self.device.value, "--val-every", str(max(1, self.steps.value // 8)), "--events"]

    def start(self, *_):
        from napari.utils import progress
        from qtpy.QtCore import QProcess

        if self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning:
            return
        self.process = QProcess(self.native)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        self.process.readyReadStandardOutput.connect(self._read)
        self.process.finished.connect(self._finished)
        self.log.value, self._pending, self.last_step, self.not_learnt = "", "", None, None
        self.process.start(CLI[0], CLI[1:] + self.arguments())
        self.dock = progress(total=int(self.steps.value), desc="Train")
        self.start_button.enabled, self.stop_button.enabled = False, True
        self.status.value = "running"

    def _read(self):
        from qtpy.QtGui import QTextCursor

        text = self._pending + bytes(self.process.readAllStandardOutput()).decode(errors="replace")
        *lines, self._pending = text.split("\n")
        shown = []
        for line in lines:
            event = parse_event(line)
            if event is None:
                shown.append(line)
            else:
                self._show(event)
        if shown:
            self.log.value = (self.log.value + "\n".join(shown) + "\n")[-20000:]
            self.log.native.moveCursor(QTextCursor.MoveOperation.End)  # follow the log

    def _show(self, event) -> None:
        from tonno_engine.base.events import Note, Notice
        from tonno_engine.training.loop import NotLearnt, TrainStep, TrainStopped

        if isinstance(event, NotLearnt):
            self.not_learnt = event
        if isinstance(event, TrainStep):
            self.last_step = event
            auc = f", val AUC {event.validation.describe()}" if event.validation else ""
            self.status.value = f"step {event.done}/{event.total}, loss {event.loss:.4f}{auc}"
            if self.dock is not None:
                self.dock.n = event.done
                self.dock.refresh()
        elif isinstance(event, TrainStopped):
            self.status.value = f"stopped by {event.signal} after step {event.done}"
        elif isinstance(event, Notice):
            self.log.value = (self.log.value + f"warning: {event.message}\n")[-20000:]
        elif isinstance(event, Note):
            self.log.value = (self.log.value + f"{event.message}\n")[-20000:]
        else:
            self.status.value = f"{event.stage}: {event.done}/{event.total} {event.unit}"

    def _finished(self, code, _status=None):
        self.start_button.enabled, self.stop_button.enabled = True, False
        if self.dock is not None:
            self.dock.close()
            self.dock = None
        if not self.status.value.startswith("stopped"):
            self.status.value = f"finished with exit code {code}" + (
                f"; has not learnt ({', '.join(self.not_learnt.reasons)}): see the warning in the log"
                if self.not_learnt is not None else "")

    def stop(self, *_):
        """Terminate the child (it checkpoints its step first; ``tonno train --resume`` goes on)."""
        if self.process is not None:
            self.status.value = "stopped"
            self.process.terminate()
            if not self.process.waitForFinished(10000):
                self.process.kill()
