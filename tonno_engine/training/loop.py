"""Weak-label training of a slice classifier (paper §3.1, §4.2; docs/training.md).

:func:`train_iter` sets up (or restores) a run with :func:`~tonno_engine.training.setup.setup`, then
only trains and yields :class:`TrainStep` events; the run folder's files are written by
:class:`~tonno_engine.training.run_folder.RunFolder`, and figures are drawn by the application
layer (:mod:`tonno_engine.apps.training_run`). Each step minimises BCE with AdamW and a warm-up
+ cosine schedule (bf16 autocast on CUDA). Resuming restores weights, optimiser, schedule and RNG
state, so a resumed run takes exactly the steps an uninterrupted one would.
"""

from __future__ import annotations

import functools
import math
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch

from ..base.defaults import CONTRASTIVE
from ..base.distributed import World, any_rank, gather_objects
from ..base.errors import ResourceError
from ..base.events import Notice, Progress
from ..data.augment import Augmentation
from ..evaluation.intensity import IntensityBaseline, findings_baseline
from ..evaluation.verdict import Verdict, VolumeScores, learning_verdict
from .config import TrainConfig
from .contrastive import export_encoder, nt_xent, sample_view_pairs
from .sampling import (
    ValidationScores,
    mil_loss,
    optimisation_step,
    sample_batch,
    slice_loss,
    validation_extremes,
    validation_logits,
    validation_scores,
)
from .setup import Run, _bare, setup


@dataclass(frozen=True, kw_only=True)
class TrainStep(Progress):
    """One optimisation step done: its loss, learning rate, speed (slices per second), and validation
    scores when it validated."""

    loss: float
    lr: float
    slices_per_s: float
    validation: ValidationScores | None = None


@dataclass(frozen=True, kw_only=True)
class TrainStopped(Progress):
    """Training stopped early by ``signal`` (SIGTERM, SIGUSR1: e.g. SLURM pre-emption); every rank stopped
    after the same step and ``checkpoint_last.pt`` holds it, so ``--resume`` continues exactly."""

    signal: str


def train_iter(data, out, config: TrainConfig | None = None, *, resume: bool = False) -> Iterator[Progress]:
    """Train on the data set ``data`` (CSV or folder) into the run folder ``out``.

    With ``resume``, continue from ``out/checkpoint_last.pt`` with its saved configuration
    (``config`` is then ignored except for ``steps``, which may extend the run). Raises
    :class:`DataError` (naming the file or row) before any training step for bad data. Yields
    ``Progress("load")`` while volumes load, then a :class:`TrainStep` per step, and
    :class:`TrainStopped` last if SIGTERM/SIGUSR1 stopped it (checkpointed; resume continues); a run that ends
    yields :class:`NotLearnt` last when its validation says it has not learnt (``run.json``: ``learning_verdict``).
    Under ``torchrun`` every rank runs it: each draws its own slices from its share of the volumes,
    gradients are averaged (DDP), validation is split across ranks, and rank 0 writes the run folder.
    """
    run = yield from setup(data, out, config, resume=resume)
    try:
        yield from _loop(run)
    except RuntimeError as exc:
        if "DataLoader worker" not in str(exc):
            raise
        good = run.folder.last_good
        where = f"{good[0]} holds step {good[1]}: --resume continues" if good else "no checkpoint yet"
        raise ResourceError(f"a data-loader process died ({str(exc).splitlines()[0]}); often the memory ran out: "
                            f"lower --loader-workers or --cache-gb. {where}") from exc
    finally:
        run.folder.close()
        if run.pool is not None:
            run.pool.close()  # its loader processes stop now, not when the run is collected


#: what a completed ``tonno pretrain`` leaves in its run folder
ENCODER_FILE = "encoder.pth"


class StopSignals:
    """Notes SIGTERM and SIGUSR1 (SLURM's pre-emption and time-limit warnings) instead of dying, so the
    loop can checkpoint first. Only in the main thread (napari trains in a worker thread)."""

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name))

    def __init__(self):
        self.received: str | None = None
        self._previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._note)
        return self

    def _note(self, signum, frame):
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _loop(run: Run) -> Iterator[TrainStep | TrainStopped | Notice]:
    cfg, state, device, world = run.cfg, run.state, run.device, run.world
    aug = Augmentation() if cfg.augment else Augmentation.off()
    run.write_run_json()
    run.model.train()
    loss_fn, sample = _objective(cfg, run.pos_weight, _bare(run.model))
    use_amp = cfg.amp and device.type == "cuda"
    steps = moved = 0  # this session's steps, and those whose loss was not exactly 0
    with StopSignals() as signals:
        while state.step < cfg.steps:
            t0 = time.perf_counter()
            x, y = sample(run.volumes, cfg, run.gen, aug, device)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss = optimisation_step(run.model, x, y, loss_fn, run.optimizer, use_amp)
            run.scheduler.step()
            if run.ema is not None:
                run.ema.update_parameters(_bare(run.model))
            if run.pool is not None:
                run.pool.refresh()
            state.step += 1
            loss = _mean_over_ranks(loss.detach(), world)
            steps, moved = steps + 1, moved + (loss != 0.0)
            lr, speed = run.scheduler.get_last_lr()[0], len(x) * world.size / (time.perf_counter() - t0)
            row = {"step": state.step, "loss": loss, "lr": lr, "slices_per_s": speed}
            scores = None
            if len(run.val) or world.distributed:
                if state.step % cfg.val_every == 0 or state.step == cfg.steps:
                    scores = _validate(run)
            if scores is not None:
                row.update(asdict(scores))
                state.last_validation = asdict(scores)
                score = [-math.inf if math.isnan(s) else s for s in (scores.val_volume_auc, -scores.val_loss)]
                if score > state.best_score:
                    state.best_score, state.best_step = score, state.step
                    state.best_validation = state.last_validation
                    run.checkpoint(run.folder.best)
                run.keep()
            if world.is_main:
                run.folder.append_metrics(row)
            stop = any_rank(signals.received is not None, world, device)
            if stop or state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps:
                run.checkpoint(run.folder.last)
                run.write_run_json()
            yield TrainStep("train", state.step, cfg.steps, "steps", loss=loss, lr=lr, slices_per_s=speed,
                            validation=scores)
            if stop:
                names = gather_objects(signals.received, world)
                rank = next(r for r, name in enumerate(names) if name)
                where = f" (on rank {rank})" if world.distributed else ""
                yield TrainStopped("train", state.step, cfg.steps, "steps", signal=f"{names[rank]}{where}")
                return
    yield from _finish(run, trained=moved > 0 or steps == 0)


def _objective(cfg: TrainConfig, pos_weight: torch.Tensor | None, model: torch.nn.Module):
    """``(loss, batch sampler)`` of the run's objective: BCE per slice, multiple-instance, or contrastive; with
    ``cfg.candidates`` the sampler keeps the slices ``model`` (the bare module: no collective step) scores highest."""
    if cfg.objective == CONTRASTIVE:
        return nt_xent(cfg.temperature), sample_view_pairs
    loss = mil_loss(cfg.slices_per_volume, pos_weight) if cfg.objective == "mil" else slice_loss(pos_weight)
    if cfg.candidates > cfg.slices_per_volume:
        return loss, functools.partial(sample_batch, scorer=model)
    return loss, sample_batch


def _finish(run: Run, trained: bool = True) -> Iterator[Notice]:
    """After the last step: the encoder file of a pretraining, or the best checkpoint of a run without
    validation; ``run.json`` with the "has not learnt" verdict, and a :class:`NotLearnt` warning when it applies.
    ``trained``: some step's loss was not exactly 0; a pretraining whose every step's was writes no encoder (its
    weights are where they started) and raises ``ValueError``."""
    if run.cfg.objective == CONTRASTIVE:  # pretraining: the encoder, as a weights file for `tonno train --weights`
        if not trained:
            raise ValueError(f"{run.folder.out}: the contrastive loss was 0 at every step, so nothing was learnt (a "
                             f"step without negatives?); {ENCODER_FILE} is not written")
        if run.world.is_main:
            export_encoder(_bare(run.model), run.folder.out / ENCODER_FILE)
    elif not run.description.val_cases:  # no validation split: the last checkpoint is the best one we can name
        run.checkpoint(run.folder.best)
    verdict = training_verdict(run)
    baseline, best = run.val.baseline, run.state.best_score[0] if run.state.best_step else math.nan
    run.folder.below_baseline = (bool(run.description.val_cases and baseline.beats(best))
                                 if baseline is not None else None)
    run.folder.verdict = verdict.as_dict() if verdict is not None else None
    run.write_run_json()
    if verdict is not None and not verdict.learnt:
        yield NotLearnt(verdict.message(), reasons=verdict.codes)


@dataclass(frozen=True)
class NotLearnt(Notice):
    """The warning a training ends with when its validation shows it has not learnt (a :class:`Notice`, so
    every renderer shows it); ``reasons``: the codes of :func:`~tonno_engine.evaluation.verdict.learning_verdict`
    (``too-few-cases``, ``below-baseline``, ``chance``, ``constant-output``), ``message`` names each with what to try."""

    reasons: tuple[str, ...] = ()


def training_verdict(run: Run) -> Verdict | None:
    """The "has not learnt" verdict on a run (``None`` for a pretraining, which has no labels to learn): its validation
    at the chosen step and at the end beside the intensity baseline; a run without validation cases has too few."""
    if run.cfg.objective == CONTRASTIVE:
        return None
    if not run.description.val_cases:
        return learning_verdict(VolumeScores(math.nan))
    best, last = run.state.best_validation, run.state.last_validation
    chosen = ValidationScores(**best).volume_scores(run.state.best_step) if best else None
    end = ValidationScores(**last).volume_scores(run.state.step) if last else None
    return learning_verdict(chosen, end, run.val.baseline)


def _mean_over_ranks(value: torch.Tensor, world: World) -> float:
    if world.distributed:
        value = value.clone()
        torch.distributed.all_reduce(value)
        value /= world.size
    return value.item()


def _validate(run: Run) -> ValidationScores | None:
    """Every rank scores its validation volumes; the scores of all of them, on every rank."""
    # the bare module: validation takes no collective step, whatever each rank's share of volumes (every
    # rank holds the same weights)
    mine = validation_logits(run.scored, run.val.pairs(), run.cfg, run.device)
    every = [x for part in gather_objects(mine, run.world) for x in part]
    return validation_scores(every, run.cfg.objective, _baseline(run)) if every else None


def _baseline(run: Run) -> IntensityBaseline | None:
    """The intensity baseline of every validation volume (computed at the first validation, then kept)."""
    if not run.val.baseline_known:
        every = [x for part in gather_objects(validation_extremes(run.val.cases()), run.world) for x in part]
        run.val.baseline = findings_baseline([t for t, _ in every], [e for _, e in every]) if every else None
        run.val.baseline_known = True
        run.folder.intensity_baseline = run.val.baseline
    return run.val.baseline
