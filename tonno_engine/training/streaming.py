"""Training volumes streamed through a bounded pool, for data sets larger than memory (docs/distributed.md).

``torch.utils.data`` workers read and preprocess volumes in a seeded order; a bounded number of them
wait, read ahead, in host memory; a pool of ``size`` volumes lives on the training device, and after
every step the oldest one is swapped for the next in the order. Slices are cut from the pool on the
device as before. The order is a function of the seed, the rank and the position alone, and the
swap happens at fixed steps whatever the loader's speed, so a run is reproducible and a resumed one
(pool slots and position come from the checkpoint) takes exactly the same steps.

Optionally each preprocessed volume is kept on disk (``disk_cache``: float16 ``.npy``, memory-mapped
when read), so that later epochs do not decode gzip NIfTI or DICOM again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..base.atomic import atomic_path
from ..base.errors import DataError
from ..data.channels import load_scan
from ..data.dataset import Case
from ..data.declared_size import available_memory
from ..data.images import size_estimate
from ..data.preprocessing import Preprocessing
from ..tomography.frames import make_frame
from .sampling import LoadedCase


class PreprocessedVolumes(Dataset):
    """Index → ``(index, array (D, H, W) float32, spacing (mm per axis))``: a case read and preprocessed."""

    def __init__(self, cases: list[Case], prep: Preprocessing, *, physical: bool, disk_cache: str | Path | None = None):
        self.cases, self.prep, self.physical = cases, prep, physical
        self.disk_cache = Path(disk_cache) if disk_cache else None

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int):
        """For loader processes: a bad file comes back as ``(index, None, (where, cause))`` and is raised as a
        :class:`DataError` in the training process (a worker's exception would lose its file and cause)."""
        try:
            return self.read(index)
        except DataError as exc:
            return index, None, (exc.where, exc.cause)

    def read(self, index: int):
        """``(index, array, spacing)``; :class:`DataError` naming the file for a bad one."""
        cached = self._cache_path(index)
        if cached is not None and cached.exists():
            stored = np.load(cached, mmap_mode="r", allow_pickle=False)
            spacing = tuple(float(s) for s in json.loads(cached.with_suffix(".json").read_text())["spacing"])
            return index, np.asarray(stored, dtype=np.float32), spacing
        array, spacing, _ = self.prep.apply(load_scan(self.cases[index].images)[0], physical=self.physical)
        if cached is not None:
            # the values a later read returns, so a cold and a warm cache give the same run
            array = array.astype(np.float16).astype(np.float32)
            with atomic_path(cached.with_suffix(".json")) as tmp:
                tmp.write_text(json.dumps({"spacing": list(spacing), "image": str(self.cases[index].image)}))
            with atomic_path(cached) as tmp, open(tmp, "wb") as fh:
                np.save(fh, array.astype(np.float16))
        return index, array, tuple(float(s) for s in spacing)

    def _cache_path(self, index: int) -> Path | None:
        """``disk_cache/<key>.npy``, the key a hash of the image file (path, size, mtime) and the
        preprocessing, so that a changed file or setting never reads a stale entry."""
        if self.disk_cache is None:
            return None
        # each image's (path, size, mtime), then the settings: for one image the key it always had
        files = [(str(p.resolve()), (s := os.stat(p)).st_size, s.st_mtime_ns) for p in map(Path, self.cases[index].images)]
        key = json.dumps([*(v for f in files for v in f), self.prep.as_dict(), self.physical])
        return self.disk_cache / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npy"


def epoch_order(n: int, seed: int, rank: int, epoch: int) -> np.ndarray:
    """The order of the ``n`` cases in ``epoch``: a permutation seeded by ``(seed, rank, epoch)``."""
    return np.random.default_rng([seed, rank, epoch]).permutation(n)


def stream_index(n: int, seed: int, rank: int, position: int) -> int:
    """The case at ``position`` of the endless order (epoch after epoch)."""
    epoch, k = divmod(position, n)
    return int(epoch_order(n, seed, rank, epoch)[k])


class StreamOrder(Sampler[int]):
    """The endless order of case indices from ``start`` (see :func:`stream_index`)."""

    def __init__(self, n: int, seed: int, rank: int, start: int):
        self.n, self.seed, self.rank, self.start = n, seed, rank, start

    def __iter__(self) -> Iterator[int]:
        position = self.start
        while True:
            epoch, k = divmod(position, self.n)
            for index in epoch_order(self.n, self.seed, self.rank, epoch)[k:]:
                yield int(index)
            position = (epoch + 1) * self.n


def pool_layout(volume_bytes: int, cache_gb: float, count: int, batch_volumes: int,
                pool_volumes: int | None) -> tuple[int, int]:
    """``(pool size, volumes read ahead)`` for volumes of ``volume_bytes``: three quarters of ``cache_gb``
    for the pool (at least one step's volumes, at most all ``count``) unless ``pool_volumes`` is
    given, a quarter (at least one volume) for reading ahead."""
    budget = cache_gb * 2**30
    size = pool_volumes or max(batch_volumes, int(0.75 * budget // max(1, volume_bytes)))
    ahead = max(1, int(0.25 * budget // max(1, volume_bytes)))
    return min(size, count), ahead


@dataclass(frozen=True)
class PoolSpec:
    """How a :class:`VolumePool` streams: ``size`` volumes on the device, ``ahead`` read ahead by ``workers``
    loader processes (0: in the training process), from the stream of ``seed`` and ``rank``
    (:func:`stream_index`)."""

    size: int
    ahead: int
    workers: int
    seed: int
    rank: int = 0


class VolumePool:
    """``spec.size`` training volumes on ``device``, refreshed one at a time from the seeded stream
    (:class:`PoolSpec`), each sliced in the frame of ``geometry`` and ``field_of_view``.

    ``state`` (from :meth:`state_dict`) restores the pool a checkpoint recorded: the same slots,
    position and next slot to replace.
    """

    def __init__(self, source: PreprocessedVolumes, spec: PoolSpec, *, device: torch.device, geometry: str,
                 field_of_view: str, state: dict | None = None):
        self.source, self.device = source, device
        self.geometry, self.field_of_view = geometry, field_of_view
        self.seed, self.rank = spec.seed, spec.rank
        n = len(source)
        if state is None:
            state = {"position": spec.size, "slots": [stream_index(n, spec.seed, spec.rank, p) for p in range(spec.size)],
                     "next_slot": 0}
        self.position, self.next_slot = state["position"], state["next_slot"]
        self.slots: list[int] = list(state["slots"])
        self.volumes: list[LoadedCase] = []
        self.workers, self.ahead = spec.workers, spec.ahead
        self._loader = None

    def fill(self, first: tuple | None = None) -> Iterator[int]:
        """Load the pool's slots (yielding how many are loaded), then start reading ahead. ``first``: the first
        slot's ``(index, array, spacing)`` when the caller has read it already."""
        for k, index in enumerate(self.slots):
            item = first if k == 0 and first is not None and first[0] == index else self.source.read(index)
            self.volumes.append(self._on_device(*item))
            yield k + 1
        self._start()

    def _start(self) -> None:
        order = StreamOrder(len(self.source), self.seed, self.rank, self.position)
        workers = self.workers
        extra = dict(prefetch_factor=max(1, self.ahead // workers), persistent_workers=False) if workers else {}
        self._loader = iter(DataLoader(self.source, sampler=order, batch_size=None, num_workers=workers,
                                       collate_fn=_as_is, **extra))

    def refresh(self) -> None:
        """Swap the oldest slot for the next volume of the stream (waits for it if it is not read yet)."""
        index, array, spacing = next(self._loader)
        self.volumes[self.next_slot] = self._on_device(index, array, spacing)
        self.slots[self.next_slot] = index
        self.next_slot = (self.next_slot + 1) % len(self.slots)
        self.position += 1

    def state_dict(self) -> dict:
        return {"position": self.position, "slots": list(self.slots), "next_slot": self.next_slot}

    def close(self) -> None:
        self._loader = None  # the last reference: the iterator shuts its worker processes down

    def _on_device(self, index: int, array, spacing) -> LoadedCase:
        return loaded_case(self.source.cases[index], array, spacing, self.device, self.geometry, self.field_of_view)


def loaded_case(case: Case, array, spacing, device, geometry: str, field_of_view: str) -> LoadedCase:
    """A preprocessed ``array`` (D, H, W) on ``device`` with the frame it is sliced in (``array`` None:
    a loader process could not read the case; ``spacing`` is then ``(where, cause)``)."""
    if array is None:
        raise DataError(*spacing)
    array = np.asarray(array, dtype=np.float32)
    frame = make_frame(array.shape[-3:], geometry=geometry, spacing=spacing, field_of_view=field_of_view)
    return LoadedCase(case, torch.from_numpy(array).to(device), frame)


def _as_is(item):
    """DataLoader collate that leaves ``(index, ndarray, spacing)`` alone (no copy into a tensor)."""
    return item


def streamed_cases(source: PreprocessedVolumes, indices: list[int], *, device, geometry: str,
                   field_of_view: str) -> Iterator[LoadedCase]:
    """The cases ``indices`` of ``source`` one after the other on ``device`` (validation without keeping
    every volume). One thread reads the next volume while the caller scores this one: a thread, not
    loader processes, because each such process costs ~200 MB of its own and validation is occasional."""
    if not indices:
        return
    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(source.read, indices[0])
        for k in range(len(indices)):
            index, array, spacing = pending.result()
            if k + 1 < len(indices):
                pending = reader.submit(source.read, indices[k + 1])
            yield loaded_case(source.cases[index], array, spacing, device, geometry, field_of_view)


def check_fits(cases: list[Case], device: torch.device, where) -> None:
    """:class:`DataError` (naming ``where``, the data set) when loading every case would take more than 80 %
    of the memory free on ``device``, estimated from the headers (float32; for non-NIfTI inputs twice their
    bytes on disk), so that a data set too large is told to stream before any volume loads."""
    need = sum(size_estimate(p) * (4 if str(p).endswith((".nii", ".nii.gz")) else 2) for c in cases for p in c.images)
    free = free_memory(device)
    if free and need > 0.8 * free:
        raise DataError(where, f"{len(cases)} volumes need about {need / 2**30:.1f} GB as float32 and "
                               f"{device} has {free / 2**30:.1f} GB free: stream them with --cache-gb "
                               "(docs/distributed.md)")


def free_memory(device: torch.device) -> int:
    """Bytes free on ``device``: CUDA's own count, else the host's ``MemAvailable`` (0 if unknown)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return available_memory()
