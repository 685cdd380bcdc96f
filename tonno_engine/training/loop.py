"""Weak-label training of a slice classifier (paper §3.1, §4.2; docs/training.md).

:func:`train_iter` sets up (or restores) a run with :func:`setup`, then only trains and yields
:class:`TrainStep` events; the run folder's files are written by
:class:`~tonno_engine.training.run_folder.RunFolder`, and figures are drawn by the application
layer (:mod:`tonno_engine.apps.training_run`). Each step minimises BCE with AdamW and a warm-up
+ cosine schedule (bf16 autocast on CUDA). Resuming restores weights, optimiser, schedule and RNG
state, so a resumed run takes exactly the steps an uninterrupted one would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..base.devices import resolve_device
from ..base.errors import DataError
from ..base.events import Progress
from ..base.versions import versions
from ..data.augment import Augmentation
from ..data.dataset import check_both_classes, data_hash, dataset_intensity, read_cases, resolve_csv, split_cases
from ..data.preprocessing import Preprocessing
from ..models.checkpoint import load_weights, read_checkpoint
from ..models.encoders import create_encoder
from ..models.weights import check_reachable, resolve_weights
from .config import TrainConfig
from .run_folder import RunFolder
from .sampling import (
    LoadedCase,
    ValidationScores,
    load_cases,
    mil_loss,
    optimisation_step,
    sample_batch,
    validate,
    validation_planes,
)


@dataclass(frozen=True, kw_only=True)
class TrainStep(Progress):
    """One optimisation step done: its loss, learning rate, speed, and validation scores when it validated."""

    loss: float
    lr: float
    slices_per_s: float
    validation: ValidationScores | None = None


@dataclass
class RunState:
    step: int = 0
    best_step: int = 0
    best_score: list = field(default_factory=lambda: [-math.inf, -math.inf])


@dataclass
class Run:
    """Everything a training loop needs, fresh or restored (see :func:`setup`)."""

    cfg: TrainConfig
    device: torch.device
    folder: RunFolder
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    gen: torch.Generator
    state: RunState
    train_vols: list[LoadedCase]
    val_vols: list[LoadedCase]
    meta: dict

    def train_state(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "rng": _rng_state(self.gen), "run": asdict(self.state)}

    def checkpoint(self, path) -> None:
        self.folder.checkpoint(path, self.model, self.state.step, self.train_state())

    def write_run_json(self) -> None:
        self.folder.write_run_json(step=self.state.step, steps=self.cfg.steps, best_step=self.state.best_step,
                                   best_auc=self.state.best_score[0] if self.state.best_step else None)


def _schedule(cfg: TrainConfig):
    warm = cfg.warmup_steps if cfg.warmup_steps is not None else max(1, cfg.steps // 20)

    def factor(step: int) -> float:  # step counts from 0
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, cfg.steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _rng_state(gen: torch.Generator) -> dict:
    state = {"sampler": gen.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(gen: torch.Generator, state: dict) -> None:
    gen.set_state(state["sampler"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def setup(data, out, config: TrainConfig | None = None, *, resume: bool = False) -> Iterator[Progress]:
    """Check the data, load the volumes (yielding progress), build or restore model, optimiser,
    schedule and RNG, open the run folder; returns the :class:`Run` (``yield from`` it)."""
    folder = RunFolder(out)
    payload = None
    if resume:
        folder.clean_after_kill()
        payload = read_checkpoint(folder.last)
        cfg = TrainConfig.from_dict(payload["meta"]["train_args"])
        if config is not None:
            cfg.steps = config.steps  # the one setting a resumed run may change: it may be extended
    else:
        cfg = config or TrainConfig()
        if folder.last.exists():
            raise DataError(folder.out, "run folder already holds a training (use --resume, or another --out)")
    device = resolve_device(cfg.device)
    csv_path = resolve_csv(data)
    # starting weights are checked (and their source probed) before any volume loads; a resumed run
    # takes its weights from the checkpoint and records the source the run started from
    weights = resolve_weights(cfg.model, cfg.weights) if payload is None else None
    if weights is not None:
        check_reachable(weights)
    cases = read_cases(csv_path)
    check_both_classes(cases, csv_path)
    prep = Preprocessing(cfg.intensity or dataset_intensity(csv_path) or "none", spacing=cfg.spacing)
    train_cases, val_cases = split_cases(cases, cfg.val_fraction, cfg.seed)
    check_both_classes(train_cases, f"{csv_path} (training split)")
    digest = data_hash(cases)
    if payload is not None and payload["meta"]["data_hash"] != digest:
        raise DataError(csv_path, "data changed since the run started (hash differs); cannot resume")

    loaded: list[LoadedCase] = []
    for event in load_cases(train_cases + val_cases, prep, device, geometry=cfg.geometry,
                            field_of_view=cfg.field_of_view):
        if isinstance(event, LoadedCase):
            loaded.append(event)
        else:
            yield event

    torch.manual_seed(cfg.seed)
    model = create_encoder(cfg.model, cfg.norm, in_chans=1, weights=weights).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(cfg))
    gen = torch.Generator().manual_seed(cfg.seed)
    state = RunState()
    if payload is not None:
        load_weights(model, payload, folder.last)
        ts = payload["train_state"]
        optimizer.load_state_dict(ts["optimizer"])
        scheduler.load_state_dict(ts["scheduler"])
        _restore_rng(gen, ts["rng"])
        state = RunState(**ts["run"])
    mm_per_pixel = [lc.frame.mm_per_pixel(cfg.slice_size) for lc in loaded[: len(train_cases)]]
    meta = {
        "model": cfg.model, "norm": cfg.norm, "in_chans": 1, "slice_size": cfg.slice_size,
        "geometry": cfg.geometry, "field_of_view": cfg.field_of_view,
        # physical geometry: the millimetres per slice pixel the model saw (median over training volumes)
        "mm_per_pixel": float(np.median(mm_per_pixel)) if cfg.geometry == "physical" else None,
        "preprocessing": prep.as_dict(), "train_args": asdict(cfg), "versions": versions(),
        "weights": weights.as_meta() if weights is not None else payload["meta"].get("weights"),
        "data_hash": digest, "data": str(csv_path),
        "train_cases": [c.case for c in train_cases], "val_cases": [c.case for c in val_cases],
    }
    folder.open(meta, device, state.step if payload is not None else None)
    return Run(cfg, device, folder, model, optimizer, scheduler, gen, state, loaded[: len(train_cases)],
               loaded[len(train_cases):], meta)


def train_iter(data, out, config: TrainConfig | None = None, *, resume: bool = False) -> Iterator[Progress]:
    """Train on the data set ``data`` (CSV or folder) into the run folder ``out``.

    With ``resume``, continue from ``out/checkpoint_last.pt`` with its saved configuration
    (``config`` is then ignored except for ``steps``, which may extend the run). Raises
    :class:`DataError` (naming the file or row) before any training step for bad data. Yields
    ``Progress("load")`` while volumes load, then a :class:`TrainStep` per step.
    """
    run = yield from setup(data, out, config, resume=resume)
    try:
        yield from _loop(run)
    finally:
        run.folder.close()


def _loop(run: Run) -> Iterator[TrainStep]:
    cfg, state, device = run.cfg, run.state, run.device
    aug = Augmentation() if cfg.augment else Augmentation.off()
    val_planes = validation_planes(run.val_vols, cfg)
    run.write_run_json()
    run.model.train()
    loss_fn = mil_loss(cfg.slices_per_volume) if cfg.objective == "mil" else torch.nn.BCEWithLogitsLoss()
    use_amp = cfg.amp and device.type == "cuda"
    while state.step < cfg.steps:
        t0 = time.perf_counter()
        x, y = sample_batch(run.train_vols, cfg, run.gen, aug, device)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = optimisation_step(run.model, x, y, loss_fn, run.optimizer, use_amp).item()
        run.scheduler.step()
        state.step += 1
        lr, speed = run.scheduler.get_last_lr()[0], len(x) / (time.perf_counter() - t0)
        row = {"step": state.step, "loss": f"{loss:.6f}", "lr": f"{lr:.3e}", "slices_per_s": f"{speed:.1f}"}
        scores = None
        if run.val_vols and (state.step % cfg.val_every == 0 or state.step == cfg.steps):
            scores = validate(run.model, run.val_vols, val_planes, cfg, device)
            row.update({k: f"{v:.6f}" for k, v in asdict(scores).items()})
            score = [-math.inf if math.isnan(s) else s for s in (scores.val_volume_auc, -scores.val_loss)]
            if score > state.best_score:
                state.best_score, state.best_step = score, state.step
                run.checkpoint(run.folder.best)
        run.folder.append_metrics(row)
        if state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps:
            run.checkpoint(run.folder.last)
            run.write_run_json()
        yield TrainStep("train", state.step, cfg.steps, "steps", loss=float(row["loss"]), lr=float(row["lr"]),
                        slices_per_s=float(row["slices_per_s"]), validation=scores)
    if not run.val_vols:  # no validation split: the last checkpoint is the best one we can name
        run.checkpoint(run.folder.best)
    run.write_run_json()
