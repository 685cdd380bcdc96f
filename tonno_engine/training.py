"""Weak-label training of a slice classifier (paper §3.1, §4.2; DESIGN.md §6).

:func:`train_iter` is a generator: it writes the run folder (``metrics.csv``, ``curves.png``,
``checkpoint_last.pt``, ``checkpoint_best.pt``, ``run.json``) and yields :class:`Progress`
events; it never prints. Each step draws ``batch_volumes`` training volumes with replacement,
``slices_per_volume`` random slices from each (cut on the training device), labels every slice
with its volume's label and minimises BCE with AdamW and a warm-up + cosine schedule (bf16
autocast on CUDA). Resuming restores weights, optimiser, schedule and RNG state, so a resumed run
takes exactly the steps an uninterrupted one would.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from .atomic import remove_stale_parts, write_text_atomic
from .augment import Augmentation, augment_intensity, random_planes
from .checkpoint import load_weights, read_checkpoint, save_checkpoint, versions
from .dataset import Case, check_both_classes, data_hash, read_cases, read_dataset_meta, resolve_csv, split_cases
from .devices import resolve_device
from .errors import DataError
from .events import Progress
from .io import load_nifti
from .metrics_auc import roc_auc
from .models import create_encoder
from .preprocessing import Preprocessing
from .slicing import extract_slices

METRIC_COLUMNS = ("step", "loss", "lr", "slices_per_s", "val_loss", "val_slice_auc", "val_volume_auc")


@dataclass
class TrainConfig:
    """Training arguments; stored in every checkpoint and in ``run.json``."""

    model: str = "resnet10t"
    norm: str = "frozen_bn"
    weights: str | None = None
    slice_size: int = 224
    steps: int = 2000
    batch_volumes: int = 8
    slices_per_volume: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int | None = None
    val_fraction: float = 0.2
    val_every: int = 50
    val_slices: int = 32
    checkpoint_every: int = 25
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    preset: str | None = None
    spacing: float | None = None
    augment: bool = True
    channels_last: bool = True

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class LoadedCase:
    case: Case
    volume: torch.Tensor  # (D, H, W) float32, preprocessed


@dataclass
class RunState:
    step: int = 0
    best_step: int = 0
    best_score: list = field(default_factory=lambda: [-math.inf, -math.inf])


def load_cases(cases: list[Case], prep: Preprocessing, device: torch.device) -> Iterator[Progress | LoadedCase]:
    """Read, check and preprocess every case before training starts (errors name the file)."""
    for i, case in enumerate(cases):
        vol = load_nifti(case.image)
        yield LoadedCase(case, torch.from_numpy(prep(vol.array, vol.spacing)).to(device))
        yield Progress("load", i + 1, len(cases), "volumes", {"case": case.case})


def _schedule(cfg: TrainConfig):
    warm = cfg.warmup_steps if cfg.warmup_steps is not None else max(1, cfg.steps // 20)

    def factor(step: int) -> float:  # step counts from 0
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, cfg.steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _sample_batch(vols: list[LoadedCase], cfg: TrainConfig, gen: torch.Generator, aug: Augmentation,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``B × M_train`` slices ``(N, 1, h, w)`` and their labels ``(N,)``."""
    picks = torch.randint(len(vols), (cfg.batch_volumes,), generator=gen).tolist()
    size = (cfg.slice_size, cfg.slice_size)
    slices, labels = [], []
    for idx in picks:
        offsets, n, u, v = random_planes(cfg.slices_per_volume, gen, aug)
        slices.append(extract_slices(vols[idx].volume, offsets, n, u, v, size))
        labels += [float(vols[idx].case.label)] * cfg.slices_per_volume
    x = augment_intensity(torch.cat(slices), gen, aug)[:, None]
    return x, torch.tensor(labels, device=device)


def optimisation_step(model, x: torch.Tensor, y: torch.Tensor, loss_fn, optimizer, use_amp: bool) -> torch.Tensor:
    """One forward (bf16 autocast on CUDA when ``use_amp``), loss, backward and optimiser step on
    slices ``x`` ``(N, 1, h, w)`` with labels ``y`` ``(N,)``; returns the loss."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_amp):
        logits = model(x).float().reshape(-1)
    loss = loss_fn(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def _validation_set(vols: list[LoadedCase], cfg: TrainConfig):
    """Fixed validation planes per volume (seeded apart from training), no augmentation."""
    gen = torch.Generator().manual_seed(cfg.seed + 1_000_003)
    return [random_planes(cfg.val_slices, gen, Augmentation.off()) for _ in vols]


@torch.no_grad()
def validate(model, vols: list[LoadedCase], planes, cfg: TrainConfig, device) -> dict:
    """Slice AUC, volume AUC (max slice logit) and BCE on the validation cases."""
    model.eval()
    size = (cfg.slice_size, cfg.slice_size)
    logits, labels, vol_scores = [], [], []
    for lc, (offsets, n, u, v) in zip(vols, planes):
        x = extract_slices(lc.volume, offsets, n, u, v, size)[:, None]
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
            out = model(x).float().reshape(-1)
        logits.append(out.cpu())
        labels += [lc.case.label] * len(out)
        vol_scores.append(out.max().item())
    model.train()
    logit = torch.cat(logits)
    target = torch.tensor(labels, dtype=torch.float32)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, target).item()
    return {"val_loss": loss, "val_slice_auc": roc_auc(labels, logit.numpy()),
            "val_volume_auc": roc_auc([lc.case.label for lc in vols], vol_scores)}


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


def plot_curves(metrics_csv: Path, png: Path) -> None:
    """Loss and validation AUC curves from ``metrics.csv`` into a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .atomic import atomic_path

    with open(metrics_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return
    step = np.array([int(r["step"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(step, loss, lw=0.6, alpha=0.4, label="loss")
    k = max(1, len(loss) // 30)
    ax1.plot(step[k - 1:], np.convolve(loss, np.ones(k) / k, mode="valid"), label=f"loss (mean of {k})")
    val = [r for r in rows if r["val_loss"]]
    if val:
        ax1.plot([int(r["step"]) for r in val], [float(r["val_loss"]) for r in val], "o-", label="val loss")
        for key in ("val_slice_auc", "val_volume_auc"):
            ax2.plot([int(r["step"]) for r in val], [float(r[key]) for r in val], "o-", label=key)
    ax1.set_xlabel("step"), ax1.set_ylabel("BCE"), ax1.legend()
    ax2.set_xlabel("step"), ax2.set_ylabel("AUC"), ax2.set_ylim(0, 1.02), ax2.legend()
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def _prepare(data, cfg: TrainConfig):
    csv_path = resolve_csv(data)
    cases = read_cases(csv_path)
    check_both_classes(cases, csv_path)
    preset = cfg.preset or read_dataset_meta(csv_path).get("preset", "none")
    prep = Preprocessing(preset, spacing=cfg.spacing)
    train_cases, val_cases = split_cases(cases, cfg.val_fraction, cfg.seed)
    check_both_classes(train_cases, f"{csv_path} (training split)")
    return csv_path, cases, prep, train_cases, val_cases


def train_iter(data, out, config: TrainConfig | None = None, *, resume: bool = False) -> Iterator[Progress]:
    """Train on the data set ``data`` (CSV or folder) into the run folder ``out``.

    With ``resume``, continue from ``out/checkpoint_last.pt`` with its saved configuration
    (``config`` is then ignored except for ``steps``, which may extend the run). Raises
    :class:`DataError` (naming the file or row) before any training step for bad data.
    """
    out = Path(out)
    last_path = out / "checkpoint_last.pt"
    payload = None
    if resume:
        remove_stale_parts(out)  # a kill -9 mid-write leaves its temporary file behind
        payload = read_checkpoint(last_path)
        saved = TrainConfig.from_dict(payload["meta"]["train_args"])
        if config is not None and config.steps != saved.steps:
            saved.steps = config.steps
        cfg = saved
    else:
        cfg = config or TrainConfig()
        if last_path.exists():
            raise DataError(out, "run folder already holds a training (use --resume, or another --out)")
    device = resolve_device(cfg.device)
    csv_path, cases, prep, train_cases, val_cases = _prepare(data, cfg)
    digest = data_hash(cases)
    if payload is not None and payload["meta"]["data_hash"] != digest:
        raise DataError(csv_path, "data changed since the run started (hash differs); cannot resume")

    loaded: list[LoadedCase] = []
    for event in load_cases(train_cases + val_cases, prep, device):
        if isinstance(event, LoadedCase):
            loaded.append(event)
        else:
            yield event
    train_vols, val_vols = loaded[: len(train_cases)], loaded[len(train_cases):]

    torch.manual_seed(cfg.seed)
    model = create_encoder(cfg.model, cfg.norm, in_chans=1, weights=cfg.weights).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(cfg))
    gen = torch.Generator().manual_seed(cfg.seed)
    state = RunState()
    if payload is not None:
        load_weights(model, payload, last_path)
        ts = payload["train_state"]
        optimizer.load_state_dict(ts["optimizer"])
        scheduler.load_state_dict(ts["scheduler"])
        _restore_rng(gen, ts["rng"])
        state = RunState(**ts["run"])
    aug = Augmentation() if cfg.augment else Augmentation.off()
    val_planes = _validation_set(val_vols, cfg)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.csv"
    if payload is not None:
        _trim_metrics(metrics_path, state.step)
    else:
        metrics_path.unlink(missing_ok=True)
    meta = {
        "model": cfg.model, "norm": cfg.norm, "in_chans": 1, "slice_size": cfg.slice_size,
        "preprocessing": prep.as_dict(), "train_args": asdict(cfg), "versions": versions(),
        "data_hash": digest, "data": str(csv_path),
        "train_cases": [c.case for c in train_cases], "val_cases": [c.case for c in val_cases],
    }
    run_info = {"meta": meta, "device": str(device), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "resumed_at_step": state.step if payload is not None else None}
    old_run = out / "run.json"
    if payload is not None and old_run.exists():
        previous = json.loads(old_run.read_text())
        run_info["history"] = previous.pop("history", []) + [previous]

    def checkpoint(path: Path):
        ts = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_state(gen),
              "run": asdict(state)}
        save_checkpoint(path, model, {**meta, "step": state.step}, ts)

    def write_run_json():
        info = {**run_info, "step": state.step, "steps": cfg.steps, "best_step": state.best_step,
                "best_val_volume_auc": state.best_score[0] if state.best_step else None,
                "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_text_atomic(out / "run.json", json.dumps(info, indent=2, default=str) + "\n")

    write_run_json()
    model.train()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    use_amp = cfg.amp and device.type == "cuda"
    new_file = not metrics_path.exists()
    with open(metrics_path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, METRIC_COLUMNS)
        if new_file:
            writer.writeheader()
        while state.step < cfg.steps:
            t0 = time.perf_counter()
            x, y = _sample_batch(train_vols, cfg, gen, aug, device)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss = optimisation_step(model, x, y, loss_fn, optimizer, use_amp)
            scheduler.step()
            state.step += 1
            row = {"step": state.step, "loss": f"{loss.item():.6f}", "lr": f"{scheduler.get_last_lr()[0]:.3e}",
                   "slices_per_s": f"{len(x) / (time.perf_counter() - t0):.1f}"}
            if val_vols and (state.step % cfg.val_every == 0 or state.step == cfg.steps):
                scores = validate(model, val_vols, val_planes, cfg, device)
                row.update({k: f"{v:.6f}" for k, v in scores.items()})
                score = [scores["val_volume_auc"], -scores["val_loss"]]
                score = [-math.inf if math.isnan(s) else s for s in score]
                if score > state.best_score:
                    state.best_score, state.best_step = score, state.step
                    checkpoint(out / "checkpoint_best.pt")
            writer.writerow({k: row.get(k, "") for k in METRIC_COLUMNS})
            fh.flush()
            if state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps:
                checkpoint(last_path)
                write_run_json()
            if "val_loss" in row:
                plot_curves(metrics_path, out / "curves.png")
            yield Progress("train", state.step, cfg.steps, "steps", {k: float(v) for k, v in row.items()})
    if not val_vols:  # no validation split: the last checkpoint is the best one we can name
        checkpoint(out / "checkpoint_best.pt")
    plot_curves(metrics_path, out / "curves.png")
    write_run_json()
