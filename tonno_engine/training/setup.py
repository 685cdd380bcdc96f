"""Setting up a training run, fresh or resumed, in parts: the configuration, the data, the volumes of
this rank, the model with its optimiser and schedule, and the checkpoint description. :func:`setup`
puts them together into a :class:`Run`; :mod:`tonno_engine.training.loop` trains it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..base.defaults import CONTRASTIVE
from ..base.devices import resolve_device
from ..base.distributed import World, barrier, gather_objects, init_world, launch_rank, launched_by_torchrun, local_device
from ..base.errors import DataError
from ..base.events import Progress
from ..base.versions import versions
from ..data.channels import CHANNEL_INTENSITY, parse_names, resolve_channels
from ..data.dataset import (
    Case,
    check_both_classes,
    dataset_channel_specs,
    dataset_intensity,
    hash_cases,
    read_cases,
    resolve_csv,
    split_cases,
)
from ..data.preprocessing import Channel, Preprocessing
from ..evaluation.intensity import IntensityBaseline
from ..models.checkpoint import CheckpointDescription, finding_name_problem, load_weights, read_checkpoint
from ..models.encoders import create_encoder
from ..models.weights import WeightsSource, check_reachable, resolve_weights
from ..tomography.slicing import input_channels
from .config import TrainConfig
from .contrastive import ContrastiveModel
from .fingerprint import resolve_auto
from .run_folder import RunFolder
from .sampling import LoadedCase, load_cases, positive_weights, validation_planes
from .streaming import PoolSpec, PreprocessedVolumes, VolumePool, check_fits, pool_layout, stream_index, streamed_cases


@dataclass
class RunState:
    step: int = 0
    best_step: int = 0
    best_score: list = field(default_factory=lambda: [-math.inf, -math.inf])
    #: the ValidationScores (as a dict) of the chosen step and of the latest validation, for the verdict at the end
    best_validation: dict | None = None
    last_validation: dict | None = None


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
    description: CheckpointDescription
    world: World
    ema: AveragedModel | None = None  # the average of the weights, when ``cfg.ema``
    pos_weight: torch.Tensor | None = None  # ``(K,)`` on the device, when ``cfg.pos_weight``

    @property
    def scored(self) -> torch.nn.Module:
        """The weights validation scores and checkpoints hold: the average when there is one."""
        return self.ema.module if self.ema is not None else _bare(self.model)

    @property
    def volumes(self) -> list[LoadedCase]:
        """The volumes a step draws from: the pool, or all of this rank's training volumes."""
        return self.pool.volumes if self.pool is not None else self.train_vols

    def train_state(self) -> dict:
        """Optimiser, schedule, run state, and every rank's random and pool state (a collective call)."""
        ranks = gather_objects({"rng": _rng_state(self.gen), "pool": self.pool.state_dict() if self.pool else None},
                               self.world)
        averaged = {"ema": self.ema.state_dict(), "model": _bare(self.model).state_dict()} if self.ema is not None else {}
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "rng": ranks[0]["rng"], "pool": ranks[0]["pool"], "ranks": ranks, "world_size": self.world.size,
                "run": asdict(self.state), **averaged}

    def checkpoint(self, path) -> None:
        """Write a checkpoint (rank 0; every rank must call it, at the same step): the :attr:`scored` weights,
        and the training state (with the average, the trained weights too)."""
        train_state = self.train_state()
        if self.world.is_main:
            self.folder.checkpoint(path, self.scored, self.state.step, train_state)

    def keep(self) -> None:
        """With ``cfg.keep_checkpoints``: this step's :attr:`scored` weights as ``checkpoints/step_NNNNNN.pt``."""
        if self.cfg.keep_checkpoints and self.world.is_main:
            self.folder.checkpoint(self.folder.kept(self.state.step), self.scored, self.state.step, None)

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
    #: the intensity baseline on these volumes (all ranks'), once the first validation computed it
    baseline: IntensityBaseline | None = None
    baseline_known: bool = False

    def __len__(self) -> int:
        return len(self.indices)

    def cases(self) -> list[Case]:
        """This rank's validation cases."""
        if self.vols is not None:
            return [lc.case for lc in self.vols]
        return [self.source.cases[i] for i in self.indices]

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
    """Lock the run folder (rank 0, which alone writes it), then set the run up; the lock is released
    again when setting up fails. Returns the :class:`Run` (``yield from`` it)."""
    folder = RunFolder(out)
    if launch_rank() == 0:
        folder.lock()
    try:
        return (yield from _setup(folder, data, config, resume=resume))
    except BaseException:
        folder.abandon()
        raise


@dataclass(frozen=True)
class TrainingData:
    """The data set of a run: its CSV, cases, preprocessing, split and hash."""

    csv_path: Path
    cases: list[Case]
    preprocessing: Preprocessing
    train: list[Case]
    val: list[Case]
    digest: str
    image_hashes: dict[str, str]  # case name → image hash


def _config(folder: RunFolder, config: TrainConfig | None,
            resume: bool) -> tuple[TrainConfig, dict | None, CheckpointDescription | None]:
    """The run's configuration and, when resuming, the last checkpoint's payload and description. A resumed
    run keeps its own configuration; ``config`` may only extend its ``steps`` (the CLI refuses other
    differences)."""
    if not resume:
        folder.check_fresh()
        return config or TrainConfig(), None, None
    folder.clean_after_kill()
    payload = read_checkpoint(folder.last)
    description = CheckpointDescription.from_meta(payload.get("meta"), folder.last)
    folder.last_good = (folder.last, description.step)
    cfg = TrainConfig.from_dict(description.train_args)
    if config is not None:
        cfg.steps = config.steps  # the one setting a resumed run may change: it may be extended
    return cfg, payload, description


def _data(data, cfg: TrainConfig, previous: CheckpointDescription | None) -> TrainingData:
    """Read and check the data set; a resumed run must see the data it started with."""
    csv_path = resolve_csv(data)
    for name in cfg.finding_names:
        if (problem := finding_name_problem(name)) is not None:
            raise DataError(csv_path, problem)
    labelled = cfg.objective != CONTRASTIVE  # pretraining reads no labels, so it needs no label column
    cases = read_cases(csv_path, findings=cfg.findings if labelled else None, id_column=cfg.id_column,
                       need_labels=labelled)
    prep = _preprocessing(cfg, csv_path, previous, cases)
    if cfg.objective == CONTRASTIVE:  # pretraining reads no labels: every case trains
        train_cases, val_cases = cases, []
    else:
        check_both_classes(cases, csv_path, cfg.findings)
        train_cases, val_cases = split_cases(cases, cfg.val_fraction, cfg.seed)
        check_both_classes(train_cases, f"{csv_path} (training split)", cfg.findings)
    digest, image_hashes = hash_cases(cases)
    if previous is not None and previous.data_hash != digest:
        raise DataError(csv_path, "data changed since the run started (hash differs); cannot resume")
    return TrainingData(csv_path, cases, prep, train_cases, val_cases, digest, image_hashes)


def _preprocessing(cfg: TrainConfig, csv_path: Path, previous: CheckpointDescription | None,
                   cases: list[Case]) -> Preprocessing:
    """The run's preprocessing: a resumed run keeps the one it started with. Cases of several images get a mode
    per image (:func:`~tonno_engine.data.channels.resolve_channels`: ``cfg.channels`` and ``cfg.intensity``, else
    ``dataset.json``'s, else :data:`~tonno_engine.data.channels.CHANNEL_INTENSITY`)."""
    if previous is not None:
        return Preprocessing.from_dict(previous.preprocessing)
    modes = parse_names(cfg.intensity, "--intensity", distinct=False)
    specs = resolve_channels(len(cases[0].channels), dataset_channel_specs(csv_path), cfg.channels, modes, csv_path)
    if not specs:
        return Preprocessing(cfg.intensity or dataset_intensity(csv_path) or "none", spacing=cfg.spacing, crop=cfg.crop)
    channels = tuple(Channel(s.name, s.intensity or CHANNEL_INTENSITY) for s in specs)
    return Preprocessing(spacing=cfg.spacing, crop=cfg.crop, channels=channels)


@dataclass
class Optimisation:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    gen: torch.Generator
    state: RunState
    ema: AveragedModel | None = None


def _optimisation(cfg: TrainConfig, device, world: World, weights: WeightsSource | None, payload: dict | None,
                  rank_state: dict | None, where: Path, images: int = 1) -> Optimisation:
    """The model (with the starting or the checkpoint's weights; its first convolution takes ``images`` images per
    case, timm adapting pretrained weights to the channel count; DDP under several ranks), AdamW, the
    warm-up + cosine schedule, and this rank's random generator, restored when resuming."""
    torch.manual_seed(cfg.seed)
    outputs = 1 if cfg.objective == CONTRASTIVE else cfg.outputs
    model = create_encoder(cfg.model, cfg.norm, in_chans=input_channels(cfg.context, images), weights=weights,
                           outputs=outputs)
    model = (ContrastiveModel(model) if cfg.objective == CONTRASTIVE else model).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    # rank 0 draws the seed's numbers; the others their own (and their own dropout/noise)
    gen = torch.Generator().manual_seed(cfg.seed + 1_000_033 * world.rank)
    state = RunState()
    ts = payload["train_state"] if payload is not None else None
    if payload is not None:
        load_weights(model, payload, where)
        if ts is not None and "ema" in ts:  # the checkpoint holds the average; the trained weights are apart
            model.load_state_dict(ts["model"])
    ema = None
    if cfg.ema:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
        if ts is not None and "ema" in ts:
            ema.load_state_dict(ts["ema"])
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
    return Optimisation(model, optimizer, scheduler, gen, state, ema)


def _description(cfg: TrainConfig, data: TrainingData, weights: WeightsSource | None,
                 previous: CheckpointDescription | None, measured: list[LoadedCase], world: World) -> CheckpointDescription:
    """What every checkpoint of this run says of its weights."""
    # physical geometry: the millimetres per slice pixel the model saw (median over training volumes)
    mm_per_pixel = (float(np.median([lc.frame.mm_per_pixel(cfg.slice_size) for lc in measured]))
                    if cfg.geometry == "physical" else None)
    return CheckpointDescription(
        model=cfg.model, norm=cfg.norm, in_chans=input_channels(cfg.context, data.preprocessing.images),
        slice_size=cfg.slice_size,
        context=cfg.context, geometry=cfg.geometry,
        field_of_view=cfg.field_of_view, mm_per_pixel=mm_per_pixel, preprocessing=data.preprocessing.as_dict(),
        train_args=asdict(cfg), versions=versions(),
        weights=weights.as_meta() if weights is not None else previous.weights,
        data_hash=data.digest, data=str(data.csv_path), train_cases=tuple(c.case for c in data.train),
        val_cases=tuple(c.case for c in data.val), image_hashes=data.image_hashes, world_size=world.size,
        findings=() if cfg.objective == CONTRASTIVE else cfg.finding_names)


def _setup(folder: RunFolder, data, config: TrainConfig | None, *, resume: bool) -> Iterator[Progress]:
    """Check the data, load the volumes (yielding progress), build or restore model, optimiser,
    schedule and RNG, open the run folder; returns the :class:`Run` (``yield from`` it)."""
    cfg, payload, previous = _config(folder, config, resume)
    device = resolve_device(cfg.device)
    world = init_world(device) if launched_by_torchrun() else World()
    device = local_device(device, world)
    # starting weights are checked (and their source probed) before any volume loads; a resumed run
    # takes its weights from the checkpoint and records the source the run started from
    weights = resolve_weights(cfg.model, cfg.weights) if payload is None else None
    if weights is not None:
        check_reachable(weights)
    found = _data(data, cfg, previous)
    chosen = yield from resolve_auto(cfg, found.train)  # --recipe auto: from the training cases' fingerprint
    if chosen is not cfg:
        cfg, found = chosen, replace(found, preprocessing=_preprocessing(chosen, found.csv_path, previous, found.cases))
    barrier(world)  # every rank has checked the run folder before rank 0 writes into it
    ts = payload["train_state"] if payload is not None else None
    same_world = ts is not None and ts.get("world_size", 1) == world.size
    rank_state = ts.get("ranks", [ts])[world.rank] if same_world else None
    pool, train_vols, val = yield from _volumes_of_rank(found, cfg, device, world, rank_state, ts)
    opt = _optimisation(cfg, device, world, weights, payload, rank_state, folder.last, found.preprocessing.images)
    description = _description(cfg, found, weights, previous, pool.volumes if pool is not None else train_vols, world)
    if world.is_main:
        folder.open(description, device, opt.state.step if payload is not None else None)
    pos_weight = positive_weights(found.train, cfg.outputs).to(device) if cfg.pos_weight else None
    return Run(cfg, device, folder, opt.model, opt.optimizer, opt.scheduler, opt.gen, opt.state, pool, train_vols, val,
               description, world, opt.ema, pos_weight)


def _volumes_of_rank(found: TrainingData, cfg: TrainConfig, device, world: World, rank_state: dict | None,
                     ts: dict | None):
    """This rank's training volumes of ``found`` (all loaded, or a streaming pool restored from ``rank_state``
    and ``ts``, the checkpoint's) and validation set; yields load progress; returns ``(pool or None, loaded
    training volumes, ValidationSet)``."""
    prep, val_cases = found.preprocessing, found.val
    # each rank trains on its own share of the training volumes (all of them in a world of one)
    mine = found.train[world.rank::world.size]
    val_index = list(range(len(val_cases)))[world.rank::world.size]
    planes = validation_planes(len(val_cases), cfg)
    my_val = [val_cases[i] for i in val_index]
    if cfg.cache_gb is not None:
        pool = yield from _fill_pool(mine, prep, cfg, device, world, rank_state, ts)
        stream_args = dict(device=device, geometry=cfg.geometry, field_of_view=cfg.field_of_view)
        return pool, [], ValidationSet(val_index, planes, None, _volumes(val_cases, prep, cfg), stream_args)
    check_fits(mine + my_val, device, found.csv_path)
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
    spec = PoolSpec(size=size, ahead=ahead, workers=cfg.loader_workers, seed=seed, rank=world.rank)
    pool = VolumePool(source, spec, device=device, geometry=cfg.geometry, field_of_view=cfg.field_of_view, state=state)
    for done in pool.fill(first):
        yield Progress("load", done, size, "volumes")
    return pool


