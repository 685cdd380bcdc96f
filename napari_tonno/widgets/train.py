"""Train: runs ``tonno train`` as a child process, streams its log, shows its step in napari's activity
dock (read from the run folder's ``metrics.csv`` once a second), and can stop it."""

from __future__ import annotations

import sys

from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton, SpinBox, TextEdit

from tonno_engine.training.config import RECIPES, recipe_config

#: the command line of the child process (the console script may not be on PATH inside napari)
CLI = [sys.executable, "-c", "from tonno_cli.app import main; main()"]


class TrainWidget(Container):
    """``start()`` launches training; ``stop()`` terminates it; ``log`` shows its output."""

    def __init__(self, napari_viewer=None):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.data = FileEdit(label="data (labels.csv or folder)", mode="r")
        self.out = FileEdit(label="run folder", mode="d")
        # the recipe fills steps, slice size and norm (docs/training.md); small-lesions is the CPU one
        self.recipe = ComboBox(label="recipe", choices=list(RECIPES), value="small-lesions")
        self.steps = SpinBox(label="steps", min=1, max=1_000_000, value=400)
        self.slice_size = SpinBox(label="slice size", min=16, max=1024, value=64)
        self.norm = ComboBox(label="norm", choices=["bn", "frozen_bn", "gn"], value="bn")
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda"], value="auto")
        self.start_button = PushButton(text="Start training")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.status = Label(label="status", value="")
        self.log = TextEdit(label="log", value="")
        self.log.read_only = True
        self.extend([self.data, self.out, self.recipe, self.steps, self.slice_size, self.norm, self.device,
                     self.start_button, self.stop_button, self.status, self.log])
        self.recipe.changed.connect(self._take_recipe)
        self._take_recipe()
        self.start_button.changed.connect(self.start)
        self.stop_button.changed.connect(self.stop)
        self.process = None
        self.dock = None  # the activity-dock progress bar of the running training
        self.timer = None

    def _take_recipe(self, *_) -> None:
        cfg = recipe_config(self.recipe.value)
        self.steps.value, self.slice_size.value, self.norm.value = cfg.steps, cfg.slice_size, cfg.norm

    def arguments(self) -> list[str]:
        return ["train", str(self.data.value), "--out", str(self.out.value), "--recipe", self.recipe.value,
                "--steps", str(self.steps.value),
                "--slice-size", str(self.slice_size.value), "--norm", self.norm.value, "--device",
                self.device.value, "--val-every", str(max(1, self.steps.value // 8))]

    def start(self, *_):
        from qtpy.QtCore import QProcess

        if self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning:
            return
        self.process = QProcess(self.native)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        self.process.readyReadStandardOutput.connect(self._read)
        self.process.finished.connect(self._finished)
        self.log.value = ""
        self.process.start(CLI[0], CLI[1:] + self.arguments())
        self._watch(int(self.steps.value))
        self.start_button.enabled, self.stop_button.enabled = False, True
        self.status.value = "running"

    def _read(self):
        from qtpy.QtGui import QTextCursor

        text = bytes(self.process.readAllStandardOutput()).decode(errors="replace")
        self.log.value = (self.log.value + text)[-20000:]
        self.log.native.moveCursor(QTextCursor.MoveOperation.End)  # follow the log

    def _watch(self, steps: int) -> None:
        from napari.utils import progress
        from qtpy.QtCore import QTimer

        self.dock = progress(total=steps, desc="Train")
        self.timer = QTimer(self.native)
        self.timer.timeout.connect(self._poll)
        self.timer.start(1000)

    def _poll(self) -> None:
        """The last step ``metrics.csv`` records (a small file; one short read a second)."""
        from pathlib import Path

        try:
            lines = (Path(str(self.out.value)) / "metrics.csv").read_text().strip().splitlines()
            step = int(lines[-1].split(",")[0]) if len(lines) > 1 else 0
        except (OSError, ValueError):
            return
        if self.dock is not None:
            self.dock.n = step
            self.dock.refresh()

    def _finished(self, code, _status=None):
        self.start_button.enabled, self.stop_button.enabled = True, False
        if self.timer is not None:
            self.timer.stop()
        if self.dock is not None:
            self._poll()
            self.dock.close()
            self.dock = None
        if self.status.value != "stopped":
            self.status.value = f"finished with exit code {code}"

    def stop(self, *_):
        """Terminate the child (it keeps its last checkpoint; ``tonno train --resume`` goes on)."""
        if self.process is not None:
            self.status.value = "stopped"
            self.process.terminate()
            if not self.process.waitForFinished(3000):
                self.process.kill()
