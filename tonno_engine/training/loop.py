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
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..base.devices import resolve_device
from ..base.distributed import (
    World,
    any_rank,
    barrier,
    gather_objects,
    init_world,
    launch_rank,
    launched_by_torchrun,
    local_device,
)
from ..base.errors import DataError, ResourceError
from ..base.events import Progress
from ..base.versions import versions
from ..data.augment import Augmentation
from ..data.dataset import Case, check_both_classes, data_hash, dataset_intensity, read_cases, resolve_csv, split_cases
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
    validation_logits,
    validation_planes,
    validation_scores,
)
from .streaming import PreprocessedVolumes, VolumePool, check_fits, pool_layout, stream_index, streamed_cases


@dataclass(frozen=True, kw_only=True)
class TrainStep(Progress):
    """One optimisation step done: its loss, learning rate, speed, and validation scores when it validated."""

    loss: float
    lr: float
    slices_per_s: float
    validation: ValidationScores | None = None


@dataclass(frozen=True, kw_only=True)
class TrainStopped(Progress):
    """Training stopped early by ``signal`` (SIGTERM, SIGUSR1: e.g. SLURM pre-emption); every rank stopped
    after the same step and ``checkpoint_last.pt`` holds it, so ``--resume`` continues exactly."""

    signal: str


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
    pool: VolumePool | None  # streaming; None: every training volume is in ``train_vols``
    train_vols: list[LoadedCase]
    val: ValidationSet
    meta: dict
    world: World

    @property
    def volumes(self) -> list[LoadedCase]:
        """The volumes a step draws from: the pool, or all of this rank's training volumes."""
        return self.pool.volumes if self.pool is not None else self.train_vols

    def train_state(self) -> dict:
        """Optimiser, schedule, run state, and every rank's random and pool state (a collective call)."""
        ranks = gather_objects({"rng": _rng_state(self.gen), "pool": self.pool.state_dict() if self.pool else None},
                               self.world)
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "rng": ranks[0]["rng"], "pool": ranks[0]["pool"], "ranks": ranks, "world_size": self.world.size,
                "run": asdict(self.state)}

    def checkpoint(self, path) -> None:
        """Write a checkpoint (rank 0; every rank must call it, at the same step)."""
        train_state = self.train_state()
        if self.world.is_main:
            self.folder.checkpoint(path, _bare(self.model), self.state.step, train_state)

    def write_run_json(self) -> None:
        if self.world.is_main:
            self.folder.write_run_json(step=self.state.step, steps=self.cfg.steps, best_step=self.state.best_step,
                                       best_auc=self.state.best_score[0] if self.state.best_step else None)


@dataclass
class ValidationSet:
    """This rank's validation volumes: loaded (``vols``) or streamed from ``source`` each time."""

    indices: list[int]  # into all validation cases (their fixed planes)
    planes: list
    vols: list[LoadedCase] | None
    source: PreprocessedVolumes | None = None
    stream_args: dict | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def pairs(self) -> Iterator[tuple[LoadedCase, tuple]]:
        vols = self.vols if self.vols is not None else streamed_cases(self.source, self.indices, **self.stream_args)
        return zip(vols, (self.planes[i] for i in self.indices))


def _bare(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


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
    """Lock the run folder (rank 0, which alone writes it), then :func:`_setup`; the lock is released
    again when setting up fails. Returns the :class:`Run` (``yield from`` it)."""
    folder = RunFolder(out)
    if launch_rank() == 0:
        folder.lock()
    try:
        return (yield from _setup(folder, data, config, resume=resume))
    except BaseException:
        folder.abandon()
        raise


def _setup(folder: RunFolder, data, config: TrainConfig | None, *, resume: bool) -> Iterator[Progress]:
    """Check the data, load the volumes (yielding progress), build or restore model, optimiser,
    schedule and RNG, open the run folder; returns the :class:`Run` (``yield from`` it)."""
    payload = None
    if resume:
        folder.clean_after_kill()
        payload = read_checkpoint(folder.last)
        folder.last_good = (folder.last, payload["meta"].get("step", 0))
        cfg = TrainConfig.from_dict(payload["meta"]["train_args"])
        if config is not None:
            cfg.steps = config.steps  # the one setting a resumed run may change: it may be extended
    else:
        cfg = config or TrainConfig()
        folder.check_fresh()
    device = resolve_device(cfg.device)
    world = init_world(device) if launched_by_torchrun() else World()
    device = local_device(device, world)
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

    barrier(world)  # every rank has checked the run folder before rank 0 writes into it
    # each rank trains on its own share of the training volumes (all of them in a world of one)
    mine = train_cases[world.rank::world.size]
    ts = payload["train_state"] if payload is not None else None
    same_world = ts is not None and ts.get("world_size", 1) == world.size
    rank_state = ts.get("ranks", [ts])[world.rank] if same_world else None
    val_index = list(range(len(val_cases)))[world.rank::world.size]
    pool, train_vols, val = yield from _volumes_of_rank(mine, val_cases, val_index, prep, cfg, device, world,
                                                        rank_state, ts, csv_path)

    torch.manual_seed(cfg.seed)
    model = create_encoder(cfg.model, cfg.norm, in_chans=1, weights=weights).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    # rank 0 draws the seed's numbers; the others their own (and their own dropout/noise)
    gen = torch.Generator().manual_seed(cfg.seed + 1_000_033 * world.rank)
    state = RunState()
    if payload is not None:
        load_weights(model, payload, folder.last)
    if world.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(cfg))
    if ts is not None:
        optimizer.load_state_dict(ts["optimizer"])
        scheduler.load_state_dict(ts["scheduler"])
        state = RunState(**ts["run"])
        if rank_state is not None:
            _restore_rng(gen, rank_state["rng"])
        else:  # another world size: fresh, rank- and step-seeded draws
            gen.manual_seed(cfg.seed + 1_000_033 * world.rank + 7_919 * state.step)
    measured = pool.volumes if pool is not None else train_vols
    mm_per_pixel = [lc.frame.mm_per_pixel(cfg.slice_size) for lc in measured]
    meta = {
        "model": cfg.model, "norm": cfg.norm, "in_chans": 1, "slice_size": cfg.slice_size,
        "geometry": cfg.geometry, "field_of_view": cfg.field_of_view,
        # physical geometry: the millimetres per slice pixel the model saw (median over training volumes)
        "mm_per_pixel": float(np.median(mm_per_pixel)) if cfg.geometry == "physical" else None,
        "preprocessing": prep.as_dict(), "train_args": asdict(cfg), "versions": versions(),
        "weights": weights.as_meta() if weights is not None else payload["meta"].get("weights"),
        "data_hash": digest, "data": str(csv_path),
        "train_cases": [c.case for c in train_cases], "val_cases": [c.case for c in val_cases],
        "world_size": world.size,
    }
    if world.is_main:
        folder.open(meta, device, state.step if payload is not None else None)
    return Run(cfg, device, folder, model, optimizer, scheduler, gen, state, pool, train_vols, val, meta, world)


def _volumes_of_rank(mine, val_cases, val_index, prep, cfg: TrainConfig, device, world: World, rank_state, ts,
                     csv_path):
    """This rank's training volumes (all loaded, or a streaming pool) and validation set; yields load
    progress; returns ``(pool or None, loaded training volumes, ValidationSet)``."""
    planes = validation_planes(len(val_cases), cfg)
    my_val = [val_cases[i] for i in val_index]
    if cfg.cache_gb is not None:
        pool = yield from _fill_pool(mine, prep, cfg, device, world, rank_state, ts)
        stream_args = dict(device=device, geometry=cfg.geometry, field_of_view=cfg.field_of_view)
        return pool, [], ValidationSet(val_index, planes, None, _volumes(val_cases, prep, cfg), stream_args)
    check_fits(mine + my_val, device, csv_path)
    loaded: list[LoadedCase] = []
    for event in load_cases(mine + my_val, prep, device, geometry=cfg.geometry, field_of_view=cfg.field_of_view):
        if isinstance(event, LoadedCase):
            loaded.append(event)
        else:
            yield event
    return None, loaded[: len(mine)], ValidationSet(val_index, planes, loaded[len(mine):])


def _volumes(cases: list[Case], prep: Preprocessing, cfg: TrainConfig) -> PreprocessedVolumes:
    return PreprocessedVolumes(cases, prep, physical=cfg.geometry == "physical", disk_cache=cfg.disk_cache)


def _fill_pool(cases, prep, cfg: TrainConfig, device, world: World, rank_state: dict | None, ts: dict | None):
    """The streaming pool of this rank's training ``cases``, restored from a checkpoint of the same world
    size or new; yields ``Progress("load")`` while it fills; returns it."""
    source = _volumes(cases, prep, cfg)
    state = rank_state.get("pool") if rank_state is not None else None
    # a resumed run in another world size starts new streams, seeded by the step it resumes at
    seed = cfg.seed if ts is None or rank_state is not None else cfg.seed + 7_919 * ts["run"]["step"]
    # the pool's first volume (whatever its size) sizes the pool, and is not read again
    first = source.read(state["slots"][0] if state else stream_index(len(cases), seed, world.rank, 0))
    size, ahead = pool_layout(first[1].nbytes, cfg.cache_gb, len(cases), cfg.batch_volumes, cfg.pool_volumes)
    if state is not None and len(state["slots"]) != size:
        state = None  # the budget changed: start a new stream (whose first volume is the same one)
    pool = VolumePool(source, device=device, geometry=cfg.geometry, field_of_view=cfg.field_of_view, size=size,
                      ahead=ahead, workers=cfg.loader_workers, seed=seed, rank=world.rank, state=state)
    for done in pool.fill(first):
        yield Progress("load", done, size, "volumes")
    return pool


def train_iter(data, out, config: TrainConfig | None = None, *, resume: bool = False) -> Iterator[Progress]:
    """Train on the data set ``data`` (CSV or folder) into the run folder ``out``.

    With ``resume``, continue from ``out/checkpoint_last.pt`` with its saved configuration
    (``config`` is then ignored except for ``steps``, which may extend the run). Raises
    :class:`DataError` (naming the file or row) before any training step for bad data. Yields
    ``Progress("load")`` while volumes load, then a :class:`TrainStep` per step, and
    :class:`TrainStopped` last if SIGTERM/SIGUSR1 stopped it (checkpointed; resume continues).
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


class _StopSignals:
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


def _loop(run: Run) -> Iterator[TrainStep | TrainStopped]:
    cfg, state, device, world = run.cfg, run.state, run.device, run.world
    aug = Augmentation() if cfg.augment else Augmentation.off()
    run.write_run_json()
    run.model.train()
    loss_fn = mil_loss(cfg.slices_per_volume) if cfg.objective == "mil" else torch.nn.BCEWithLogitsLoss()
    use_amp = cfg.amp and device.type == "cuda"
    with _StopSignals() as signals:
        while state.step < cfg.steps:
            t0 = time.perf_counter()
            x, y = sample_batch(run.volumes, cfg, run.gen, aug, device)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss = optimisation_step(run.model, x, y, loss_fn, run.optimizer, use_amp)
            run.scheduler.step()
            if run.pool is not None:
                run.pool.refresh()
            state.step += 1
            loss = _mean_over_ranks(loss.detach(), world)
            lr, speed = run.scheduler.get_last_lr()[0], len(x) * world.size / (time.perf_counter() - t0)
            row = {"step": state.step, "loss": f"{loss:.6f}", "lr": f"{lr:.3e}", "slices_per_s": f"{speed:.1f}"}
            scores = None
            if len(run.val) or world.distributed:
                if state.step % cfg.val_every == 0 or state.step == cfg.steps:
                    scores = _validate(run)
            if scores is not None:
                row.update({k: f"{v:.6f}" for k, v in asdict(scores).items()})
                score = [-math.inf if math.isnan(s) else s for s in (scores.val_volume_auc, -scores.val_loss)]
                if score > state.best_score:
                    state.best_score, state.best_step = score, state.step
                    run.checkpoint(run.folder.best)
            if world.is_main:
                run.folder.append_metrics(row)
            stop = any_rank(signals.received is not None, world, device)
            if stop or state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps:
                run.checkpoint(run.folder.last)
                run.write_run_json()
            yield TrainStep("train", state.step, cfg.steps, "steps", loss=float(row["loss"]), lr=float(row["lr"]),
                            slices_per_s=float(row["slices_per_s"]), validation=scores)
            if stop:
                names = gather_objects(signals.received, world)
                rank = next(r for r, name in enumerate(names) if name)
                where = f" (on rank {rank})" if world.distributed else ""
                yield TrainStopped("train", state.step, cfg.steps, "steps", signal=f"{names[rank]}{where}")
                return
    if not run.meta["val_cases"]:  # no validation split: the last checkpoint is the best one we can name
        run.checkpoint(run.folder.best)
    run.write_run_json()


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
    mine = validation_logits(_bare(run.model), run.val.pairs(), run.cfg, run.device)
    every = [x for part in gather_objects(mine, run.world) for x in part]
    return validation_scores(every, run.cfg.objective) if every else None
