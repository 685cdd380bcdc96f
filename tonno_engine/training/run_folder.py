"""The run folder a training writes: ``metrics.csv``, ``run.json``, ``checkpoint_last.pt``,
``checkpoint_best.pt``. Every file but the appended CSV is written atomically; after a ``kill -9``
the CSV is trimmed back to the last checkpoint's step on resume. The classifier's training and the
second-stage segmenter's (:mod:`~tonno_engine.training.segmenter`, its own checkpoint names and metric
columns) both write through :class:`RunFolder`; :func:`changed_settings` and :func:`random_state` are what
both check and save for an exact resume."""

from __future__ import annotations

import contextlib
import csv
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..base.atomic import remove_stale_parts, write_text_atomic
from ..base.errors import DataError, DiskFull
from ..base.folder_lock import LOCK_NAME, folder_lock
from ..models.checkpoint import read_description, save_checkpoint

#: what a resumed run may take from the command line (it may be extended); every other option must match the run
RESUMABLE_CHANGES = ("steps",)

METRIC_COLUMNS = ("step", "loss", "lr", "slices_per_s", "val_loss", "val_slice_auc", "val_volume_auc",
                  "val_volume_auc_lo", "val_volume_auc_hi", "val_intensity_auc")
#: how each number is written into ``metrics.csv`` (the events keep the numbers themselves)
METRIC_FORMATS = {"loss": "{:.6f}", "lr": "{:.3e}", "slices_per_s": "{:.1f}", "patches_per_s": "{:.2f}",
                  "val_loss": "{:.6f}",
                  **{k: "{:.6f}" for k in METRIC_COLUMNS if k.startswith("val_") and k != "val_loss"}}


def metric_columns(findings=()) -> tuple[str, ...]:
    """``metrics.csv``'s columns: with several findings, ``val_volume_auc_<finding>`` for each after
    :data:`METRIC_COLUMNS` (whose ``val_volume_auc`` is then their mean)."""
    return METRIC_COLUMNS + tuple(f"val_volume_auc_{f}" for f in findings if len(findings) > 1)


def metric_row(row: dict, findings=()) -> dict:
    """One step's ``{column: value}`` with each finding's AUC in its own column (see :func:`metric_columns`)."""
    aucs = row.get("finding_aucs") or ()
    return {**{k: v for k, v in row.items() if k != "finding_aucs"},
            **{f"val_volume_auc_{f}": a for f, a in zip(findings, aucs)}}


class RunFolder:
    """Writer of one run folder ``out``. Its ``description`` goes into every checkpoint and ``run.json``.
    ``last``/``best``: the names of its checkpoints (the segmenter's are ``segmenter_last.pt`` and
    ``segmenter.pt``)."""

    def __init__(self, out: str | Path, *, last: str = "checkpoint_last.pt", best: str = "checkpoint_best.pt"):
        self.out = Path(out)
        self.last = self.out / last
        self.best = self.out / best
        self.metrics = self.out / "metrics.csv"
        self.run_json = self.out / "run.json"
        self.info: dict = {}
        self.columns: tuple[str, ...] = METRIC_COLUMNS
        self.findings: tuple[str, ...] = ()
        self._fh = self._writer = None
        self._lock = None
        self._created = False  # whether :meth:`lock` made the folder
        self.last_good: tuple[Path, int] | None = None  # the newest checkpoint known complete, and its step
        #: the validation volumes' intensity baseline, and whether the chosen checkpoint is below it (run.json)
        self.intensity_baseline = None
        self.below_baseline: bool | None = None
        #: the "has not learnt" verdict at the end (:meth:`~tonno_engine.evaluation.verdict.Verdict.as_dict`: ``learnt``
        #: and each reason's code, what was seen and what to try); ``None`` until the run ends, and for a pretraining
        self.verdict: dict | None = None

    def lock(self) -> None:
        """Hold the folder's lock until :meth:`close`: a second training into it stops at once, naming this one."""
        self._created = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock = folder_lock(self.out)
        self._lock.__enter__()

    def abandon(self) -> None:
        """Set-up failed: release the lock, and remove the folder again if this run made it and it is empty."""
        self.close()
        if self._created:
            (self.out / LOCK_NAME).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.out.rmdir()

    def check_fresh(self) -> None:
        """:class:`DataError` when the folder holds any file of an earlier training (a plain rerun must not
        overwrite a surviving ``checkpoint_best.pt`` when ``checkpoint_last.pt`` is missing)."""
        found = [p.name for p in (self.last, self.best, self.metrics, self.run_json) if p.exists()]
        if found:
            raise DataError(self.out, f"run folder already holds a training ({', '.join(found)}); continue it with "
                                      "--resume, or use another --out")

    def clean_after_kill(self) -> None:
        """Delete the temporary files a ``kill -9`` mid-write leaves behind."""
        if self.out.exists():
            remove_stale_parts(self.out)

    def open(self, description, device, resumed_at: int | None) -> None:
        """Create the folder, start ``run.json``'s record (keeping earlier ones as ``history``) and
        open ``metrics.csv``: trimmed to ``resumed_at`` when resuming, new otherwise. ``description``: the
        run's :class:`~tonno_engine.models.checkpoint.CheckpointDescription`."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.description = description
        args = description.train_args or {}
        self.info = {"meta": description.as_meta(), "device": str(device), "started": _now(), "resumed_at_step": resumed_at,
                     "recipe": {"name": args.get("recipe"), "reason": args.get("recipe_reason") or None}}
        if resumed_at is not None and self.run_json.exists():
            previous = json.loads(self.run_json.read_text())
            self.info["history"] = previous.pop("history", []) + [previous]
        self.start_metrics(metric_columns(description.findings), resumed_at, description.findings)

    def start_metrics(self, columns, resumed_at: int | None, findings=()) -> None:
        """Open ``metrics.csv`` with ``columns``: trimmed to the complete rows up to ``resumed_at`` when resuming
        (a kill may have left later or partial ones), new otherwise."""
        self.columns, self.findings = tuple(columns), tuple(findings or ())
        if resumed_at is not None:
            _trim_metrics(self.metrics, resumed_at, self.columns)
        else:
            self.metrics.unlink(missing_ok=True)
        new_file = not self.metrics.exists()
        self._fh = open(self.metrics, "a", newline="")
        self._writer = csv.DictWriter(self._fh, self.columns)
        if new_file:
            self._writer.writeheader()

    def append_metrics(self, row: dict) -> None:
        """One step's numbers (``{column: value}``; validation columns only when it validated)."""
        row = metric_row(row, self.findings)
        self._writer.writerow({k: METRIC_FORMATS.get(k, "{:.6f}" if k.startswith("val_") else "{}").format(row[k])
                               if k in row else "" for k in self.columns})
        self._fh.flush()

    def kept(self, step: int) -> Path:
        """Where ``keep_checkpoints`` puts the weights of ``step``."""
        return self.out / "checkpoints" / f"step_{step:06d}.pt"

    def checkpoint(self, path: Path, model, step: int, train_state: dict | None) -> None:
        """Write a checkpoint atomically; a full disk stops the run naming the file and the last good one."""
        try:
            save_checkpoint(path, model, self.description.at_step(step), train_state)
        except DiskFull as exc:
            good = (f"{self.last_good[0].name} (step {self.last_good[1]}) is intact: free space, then --resume"
                    if self.last_good else "no checkpoint was written yet: free space and start again")
            raise DiskFull(path, f"{exc.detail}; {good}" if exc.detail else good) from exc
        if path == self.last:
            self.last_good = (path, step)

    def write_run_json(self, *, step: int, steps: int, best_step: int, best_auc: float | None) -> None:
        baseline = self.intensity_baseline
        info = {**self.info, "step": step, "steps": steps, "best_step": best_step, "best_val_volume_auc": best_auc,
                "intensity_baseline": asdict(baseline) if baseline is not None else None,
                "below_intensity_baseline": self.below_baseline, "learning_verdict": self.verdict,
                "updated": _now()}
        write_text_atomic(self.run_json, json.dumps(info, indent=2, default=str) + "\n")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None


def resume_conflicts(out: str | Path, given: dict) -> list[str]:
    """The options in ``given`` (``{field: value}``, only those the user set) that differ from the run's
    own settings in ``out/checkpoint_last.pt``, as ``"slice_size 128 (the run's: 64)"``; those in
    :data:`RESUMABLE_CHANGES` may change. ``[]`` when there is no checkpoint (resuming then fails, by name)."""
    last = Path(out) / "checkpoint_last.pt"
    if not last.is_file():
        return []
    args = read_description(last).train_args
    return [f"{k} {v!r} (the run's: {args.get(k)!r})" for k, v in given.items()
            if v is not None and k not in RESUMABLE_CHANGES and k in args and args[k] != v]


def changed_settings(recorded: dict, current: dict, resumable=RESUMABLE_CHANGES) -> list[str]:
    """The settings of ``current`` (``{field: value}``) that differ from the run's ``recorded`` ones, but for the
    ``resumable`` ones (a resumed run may change those)."""
    return [k for k, v in current.items() if k not in resumable and recorded.get(k) != v]


def random_state(rng: np.random.Generator) -> dict:
    """What a checkpoint keeps of the random generators (``rng`` and torch's) for an exact resume."""
    return {"rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}


def restore_random_state(rng: np.random.Generator, state: dict) -> None:
    """Set ``rng`` and torch's generator back to a checkpoint's :func:`random_state`."""
    rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])


def _trim_metrics(path: Path, last_step: int, columns=METRIC_COLUMNS) -> None:
    """Keep the complete rows up to ``last_step`` (a kill may have left later or partial rows)."""
    if not path.exists():
        return
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("step", "").isdigit() and int(r["step"]) <= last_step
                and None not in r.values()]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
