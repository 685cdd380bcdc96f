"""The run folder a training writes: ``metrics.csv``, ``run.json``, ``checkpoint_last.pt``,
``checkpoint_best.pt``. Every file but the appended CSV is written atomically; after a ``kill -9``
the CSV is trimmed back to the last checkpoint's step on resume."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from ..base.atomic import remove_stale_parts, write_text_atomic
from ..models.checkpoint import save_checkpoint

METRIC_COLUMNS = ("step", "loss", "lr", "slices_per_s", "val_loss", "val_slice_auc", "val_volume_auc")


class RunFolder:
    """Writer of one run folder ``out``. ``meta`` goes into every checkpoint and ``run.json``."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.last = self.out / "checkpoint_last.pt"
        self.best = self.out / "checkpoint_best.pt"
        self.metrics = self.out / "metrics.csv"
        self.run_json = self.out / "run.json"
        self.info: dict = {}
        self._fh = self._writer = None

    def clean_after_kill(self) -> None:
        """Delete the temporary files a ``kill -9`` mid-write leaves behind."""
        if self.out.exists():
            remove_stale_parts(self.out)

    def open(self, meta: dict, device, resumed_at: int | None) -> None:
        """Create the folder, start ``run.json``'s record (keeping earlier ones as ``history``) and
        open ``metrics.csv``: trimmed to ``resumed_at`` when resuming, new otherwise."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.meta = meta
        self.info = {"meta": meta, "device": str(device), "started": _now(), "resumed_at_step": resumed_at}
        if resumed_at is not None:
            _trim_metrics(self.metrics, resumed_at)
            if self.run_json.exists():
                previous = json.loads(self.run_json.read_text())
                self.info["history"] = previous.pop("history", []) + [previous]
        else:
            self.metrics.unlink(missing_ok=True)
        new_file = not self.metrics.exists()
        self._fh = open(self.metrics, "a", newline="")
        self._writer = csv.DictWriter(self._fh, METRIC_COLUMNS)
        if new_file:
            self._writer.writeheader()

    def append_metrics(self, row: dict) -> None:
        self._writer.writerow({k: row.get(k, "") for k in METRIC_COLUMNS})
        self._fh.flush()

    def checkpoint(self, path: Path, model, step: int, train_state: dict) -> None:
        save_checkpoint(path, model, {**self.meta, "step": step}, train_state)

    def write_run_json(self, *, step: int, steps: int, best_step: int, best_auc: float | None) -> None:
        info = {**self.info, "step": step, "steps": steps, "best_step": best_step, "best_val_volume_auc": best_auc,
                "updated": _now()}
        write_text_atomic(self.run_json, json.dumps(info, indent=2, default=str) + "\n")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _trim_metrics(path: Path, last_step: int) -> None:
    """Keep the complete rows up to ``last_step`` (a kill may have left later or partial rows)."""
    if not path.exists():
        return
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("step", "").isdigit() and int(r["step"]) <= last_step
                and None not in r.values()]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
