"""Batch reconstruction of many volumes with several methods, restartable and fault tolerant.

Outputs in ``out/``: ``<case>_<method label>.nii.gz`` (float32, the input's affine and header;
``<case>_<method label>_<finding>.nii.gz`` for a classifier of several findings, one per finding, all
from one pass over the slices), each written atomically as soon as it is done; ``summary.csv`` (one row per case and method,
rewritten atomically after every case) and ``run.json`` (arguments, versions, checkpoint hash,
device). A failing case is recorded and the batch goes on. A CUDA out-of-memory error halves the
scorer batch and retries the case. The folder's layout (file names, inputs, ``summary.csv``'s fields) is
:mod:`tonno_engine.data.heatmap_folder`'s.

The batch runner's pieces serve second-stage prediction too (:mod:`~tonno_engine.apps.stage2`):
:func:`writing_into` (the folder's lock), :func:`stale_reason` (whether an existing output may be reused),
:func:`write_output` (atomic, with provenance), a :class:`Finished` result listing the failures at the end, and
:func:`run_or_raise` for a step that needs every output (the benchmark's heatmaps and predictions).
"""

from __future__ import annotations

import contextlib
import glob
import json
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from ..base.atomic import make_output_folder, remove_stale_parts, write_text_atomic
from ..base.defaults import DEVICE, QUALITY
from ..base.devices import device_name, resolve_device
from ..base.distributed import World, current_world, init_world, launched_by_torchrun, local_device
from ..base.errors import DataError, DiskFull
from ..base.events import Notice, Partial, Progress
from ..base.folder_lock import LOCK_NAME, folder_lock
from ..base.hashing import file_sha256
from ..base.registry import MethodSpec
from ..base.versions import versions
from ..data.channels import case_notes, load_scan
from ..data.dicomweb import fetch_series, is_dicomweb_url, public_url
from ..data.heatmap_folder import RUN_JSON, SUMMARY, BatchInput, batch_inputs, output_path, read_summary, summary_csv
from ..data.images import size_estimate
from ..data.nifti import read_provenance, save_nifti
from ..evaluation.thresholds_file import CalibratedThresholds
from ..methods.case import CasePrepared, Scan, reconstruct_case_iter
from ..methods.run import CaseRun, check_findings, for_findings
from ..methods.settings import PRESETS, ReconstructionSettings
from ..models.checkpoint import CheckpointDescription, LoadedCheckpoint, load_checkpoint
from ..tomography.reconstruction import default_batch_size
from .batch_parts import assign_parts, merge_lock, merged_rows, read_part_records, write_part_record
from .dicom_outputs import DicomOptions, check_options, made_of, remove, send, write_heatmap
from .provenance import Provenance, differences, heatmap_parts, input_path

#: fewer directions than this give mostly streak artefacts (the paper uses 2000): worth a warning
FEW_ANGLES = 50


@dataclass
class BatchConfig:
    """Options of a batch: the methods, the reconstruction settings (``slice_size=None`` takes the
    checkpoint's, ``angles=None`` each method's default), device, and what to do with outputs
    that exist (``resume``: skip them; ``overwrite``: redo them)."""

    methods: list[MethodSpec] = field(default_factory=lambda: [MethodSpec("tonno")])
    settings: ReconstructionSettings = field(default_factory=lambda: PRESETS[QUALITY])
    device: str = DEVICE
    resume: bool = False
    overwrite: bool = False
    #: this process's share of the cases (a job array's task); under ``torchrun`` the ranks are the parts
    num_parts: int = 1
    part_id: int = 0
    #: every rank reconstructs every case from its subset of the directions; rank 0 writes (torchrun)
    shard_directions: bool = False
    #: with a classifier of several findings: the findings to make heatmaps of (``None``: all of them)
    findings: list[str] | None = None
    #: a labels CSV's case column when it is not ``case`` (e.g. CT-RATE's ``VolumeName``); labels are not read
    id_column: str | None = None
    #: DICOM output beside the NIfTI heatmaps, and where to store it (:mod:`~tonno_engine.apps.dicom_outputs`)
    dicom: DicomOptions = field(default_factory=DicomOptions)


@dataclass(frozen=True)
class Failure:
    """A (case, method) job that failed, and why."""

    case: str
    method: str
    error: str


@dataclass(frozen=True, kw_only=True)
class CaseFinished(Progress):
    """A case is done (written, skipped or failed): its name and the failures among its methods."""

    case: str
    failures: tuple[Failure, ...] = ()


@dataclass(frozen=True)
class BatchSizeHalved:
    """Out of device memory on ``case``: retrying it with ``batch_size`` slices per network call."""

    case: str
    batch_size: int


class Finished:
    """The final event of a batch runner (:func:`reconstruct_batch_iter`, ``stage2.predict_iter``): the jobs that
    failed, reported at the end (the others went on)."""

    @property
    def failures(self) -> list[Failure]:  # pragma: no cover - every runner's result overrides it
        raise NotImplementedError


def run_or_raise(events: Iterator, what: str = "reconstruction") -> Iterator:
    """Relay a batch runner's events; return its :class:`Finished` result, or raise :class:`DataError` naming the
    first failed case (``"<what> failed: <error>"``). For a step that cannot go on without every output."""
    for event in events:
        if isinstance(event, Finished):
            if event.failures:
                first = event.failures[0]
                raise DataError(first.case, f"{what} failed: {first.error}")
            return event
        yield event
    raise DataError(what, "the batch ended without a result")  # pragma: no cover


@dataclass
class BatchResult(Finished):
    """The final event of :func:`reconstruct_batch_iter`: one summary row per (case, method)."""

    rows: list[dict]
    out: Path
    part: int = 0  # this process's part of ``parts`` (a rank or a job-array task)
    parts: int = 1
    writer: bool = True  # false on the ranks that only contributed directions
    stored: int = 0  # DICOM objects sent to ``--store`` by STOW-RS

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.rows)

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "failed"]

    @property
    def failures(self) -> list[Failure]:
        return _failures(self.rows)


def _failures(rows: list[dict]) -> list[Failure]:
    return [Failure(r["case"], r["method"], r["error"]) for r in rows if r["status"] == "failed"]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _parts(cfg: BatchConfig, world: World) -> tuple[int, int]:
    """``(part, parts)`` of this process: its rank under torchrun (unless directions are sharded), else
    ``--part-id``/``--num-parts``."""
    if cfg.num_parts < 1 or not 0 <= cfg.part_id < cfg.num_parts:
        raise ValueError(f"--part-id must be in 0..{cfg.num_parts - 1} and --num-parts >= 1, "
                         f"got {cfg.part_id} of {cfg.num_parts}")
    if world.distributed and not cfg.shard_directions:
        if cfg.num_parts > 1:
            raise ValueError("--num-parts/--part-id are for job arrays; under torchrun the ranks are the parts")
        return world.rank, world.size
    return cfg.part_id, cfg.num_parts


def expand_findings(methods: list[MethodSpec], findings, chosen, checkpoint) -> list[MethodSpec]:
    """``methods`` once per finding of the checkpoint (:func:`~tonno_engine.methods.run.for_findings`); methods
    that already name their findings are checked against the checkpoint's. :class:`DataError` naming the
    checkpoint for a finding it does not have."""
    try:
        if any(s.finding for s in methods):
            check_findings(findings, [s.finding for s in methods])
            if any(findings.index(s.finding) != s.output for s in methods):
                raise ValueError("a method's finding and logit index do not match the checkpoint's")
            return list(methods)
        return for_findings(methods, findings, chosen)
    except ValueError as exc:
        raise DataError(checkpoint, str(exc)) from exc


def _check_shardable(cfg: BatchConfig) -> None:
    if cfg.shard_directions:
        flat = [s.label for s in cfg.methods if not s.tomographic]
        if flat:
            raise ValueError(f"--shard-directions splits the directions of tomographic methods; {', '.join(flat)} "
                             "has none (run slice-wise methods without it)")


def check_resume_overwrite(cfg: BatchConfig) -> None:
    if cfg.resume and cfg.overwrite:
        raise ValueError("--continue and --overwrite exclude each other")


def _reusable(inputs, out: Path, cfg: BatchConfig, expected: dict) -> dict[tuple[str, str], str]:
    """The ``(case, method)`` outputs ``--continue`` may skip, each with the start of the run that made
    it: those that exist and whose provenance matches ``expected`` (``{(case, label): parts}``). Raises
    :class:`DataError` listing the outputs made differently (``--continue``) or, without
    ``--continue``/``--overwrite``, any existing output."""
    existing = [(i.case, s.label, output_path(out, i.case, s)) for i in inputs for s in cfg.methods
                if output_path(out, i.case, s).exists()]
    if existing and not (cfg.resume or cfg.overwrite):
        raise DataError(out, f"already holds {len(existing)} of this batch's outputs (e.g. {existing[0][2].name}); "
                             "pass --continue to skip them or --overwrite to redo them")
    if not cfg.resume:
        return {}
    recorded = {(case, label): read_provenance(path) for case, label, path in existing}
    stale = [f"{path.name} ({why})" for case, label, path in existing
             if (why := stale_reason(recorded[(case, label)], expected[(case, label)]))]
    if stale:
        raise DataError(out, f"--continue would mix results: {len(stale)} existing output(s) were made from other "
                             f"inputs or settings: {'; '.join(stale[:8])}{' …' if len(stale) > 8 else ''}. "
                             "Pass --overwrite to redo them, or use another --out")
    return {key: (made or {}).get("run_started", "") for key, made in recorded.items()}


def stale_reason(recorded: dict | None, parts: dict) -> str:
    """Why an existing output whose provenance is ``recorded`` (:func:`~tonno_engine.data.nifti.read_provenance`)
    is not the one ``parts`` would make; ``""`` when it is, and a rerun skips it."""
    return differences(recorded, parts)


def write_output(target: Path, array, volume, provenance: Provenance | None) -> None:
    """An output on its input ``volume``'s grid (float32, its affine and header), written atomically with its
    ``provenance`` in the header."""
    save_nifti(target, array, volume.affine, volume.header, provenance=provenance.as_dict() if provenance else None)


def _notices(cfg: BatchConfig, settings: ReconstructionSettings, description: CheckpointDescription) -> Iterator[Notice]:
    """Warnings about settings that are valid but probably a mistake."""
    trained = description.slice_size
    if cfg.settings.slice_size and cfg.settings.slice_size * 2 <= trained:
        yield Notice(f"--slice-size {cfg.settings.slice_size} is far below the {trained}² slices the model was trained "
                     "on: its scores (and heatmaps) are unlikely to mean anything")
    tomographic = [s for s in cfg.methods if s.tomographic]
    low = sorted({a for s in tomographic if (a := settings.directions_for(s.default_directions)) and a < FEW_ANGLES})
    if low:
        yield Notice(f"{low[0]} direction(s) give mostly streak artefacts; use at least {FEW_ANGLES} "
                     "(the paper uses 2000, --quality preview a few hundred)")


@contextlib.contextmanager
def writing_into(out: Path, *, shared: bool = False, writes: bool = True) -> Iterator[None]:
    """Create ``out`` and hold its lock (shared for a batch's parts) for the ``with`` block; when ``out`` was made
    here and the run fails before writing anything, it is removed again (nothing partial left on disk). The
    batch and second-stage prediction write through it."""
    created = not out.exists()
    make_output_folder(out)
    try:
        with folder_lock(out, shared=shared) if writes else contextlib.nullcontext():
            yield
    except BaseException:
        if created:
            (out / LOCK_NAME).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                out.rmdir()  # only when empty
        raise


def reconstruct_batch_iter(source, out, checkpoint, cfg: BatchConfig) -> Iterator[Progress | BatchResult]:
    """Reconstruct every case of ``source`` with every method of ``cfg`` into ``out``.

    Checks everything that can fail for the whole batch first (inputs, checkpoint, device,
    existing outputs, an output folder that cannot be made) and raises ``DataError``/``ValueError``
    with nothing written. Then yields a :class:`CaseFinished` after each case, the methods'
    ``Progress("slices")`` events during a case, :class:`BatchSizeHalved` on a retry after running
    out of device memory, and finally a :class:`BatchResult`. The methods of one case share passes over the slices where they can,
    so their rows carry the seconds and peak memory of the whole case. A full disk stops the batch (every later
    write would fail too) with :class:`DiskFull` naming the file.
    """
    run = _start_batch(source, Path(out), Path(checkpoint), cfg)
    yield from _notices(run.cfg, run.settings, run.loaded.description)
    with writing_into(run.out, shared=run.parts > 1, writes=run.writes):
        run = replace(run, reusable=_prepare_folder(run))
        previous = {(r["case"], r["method"]): r for r in read_summary(run.out)} if run.cfg.resume else {}
        rows: list[dict] = []
        for done, item in enumerate(run.inputs, start=1):
            todo, case_rows = _todo(item, run, previous)
            if todo:
                try:
                    case_rows += yield from _run_case(item, todo, run)
                except DiskFull as exc:
                    raise DiskFull(exc.filename, f"the batch stopped at case {done} of {len(run.inputs)}; free space "
                                                 "and rerun with --continue") from exc
            order = {s.label: k for k, s in enumerate(run.cfg.methods)}
            rows += sorted(case_rows, key=lambda r: order[r["method"]])
            _record_rows(run, rows)
            yield CaseFinished("cases", done, len(run.inputs), "cases", case=item.case,
                               failures=tuple(_failures(case_rows)))
        if run.parts > 1:
            _finish_part(run.out, run.part, run.parts, rows, run.info, run.all_inputs, run.cfg)
        elif run.writes:
            run.info.update(finished=_now(), counts=_counts(rows), cases=_case_records(rows))
            write_text_atomic(run.out / RUN_JSON, json.dumps(run.info, indent=2))
    stored = send(run.cfg.dicom.store, run.dicom_written) if run.writes else 0
    yield BatchResult(rows, run.out, run.part, run.parts, run.writes, stored)


@dataclass(frozen=True)
class _BatchRun:
    """What every case of one run of a batch shares: this process's ``inputs`` (of ``all_inputs``), the checkpoint
    ``loaded`` and the ``settings`` resolved against it, ``expected`` (``{(case, label): provenance parts}``),
    ``reusable`` (``{(case, label): start of the run that made it}``, skipped), ``info`` (``run.json``, whose
    ``started`` stamps each heatmap), the ``world`` to split each case's directions over (``None``: not sharded),
    whether this process ``writes``, and its ``part`` of ``parts``."""

    out: Path
    cfg: BatchConfig
    inputs: list[BatchInput]
    all_inputs: list[BatchInput]
    loaded: LoadedCheckpoint
    settings: ReconstructionSettings
    expected: dict
    reusable: dict
    info: dict
    world: World | None
    writes: bool
    part: int
    parts: int
    #: the calibrated thresholds of the DICOM SEGs (``None``: none) and the DICOM files this run wrote
    thresholds: CalibratedThresholds | None = None
    dicom_written: list = field(default_factory=list)


def _start_batch(source, out: Path, checkpoint: Path, cfg: BatchConfig) -> _BatchRun:
    """Everything that can fail for the whole batch, checked before anything is written: the inputs and this
    process's share, the device and ``torchrun`` world, the checkpoint, the methods over its findings."""
    all_inputs = batch_inputs(source, cfg.id_column)
    if is_dicomweb_url(source):  # one series: fetched now, so that a server's refusal writes nothing
        fetch_series(str(source))
    _check_shardable(cfg)
    device = resolve_device(cfg.device)
    world = init_world(device) if launched_by_torchrun() else current_world()
    device = local_device(device, world)
    part, parts = _parts(cfg, world)
    owner = assign_parts([size_estimate(i.image) for i in all_inputs], parts) if parts > 1 else [0] * len(all_inputs)
    inputs = [i for i, o in zip(all_inputs, owner) if o == part]
    check_resume_overwrite(cfg)
    loaded = load_checkpoint(checkpoint, device)
    # one heatmap per method and finding; all findings of a method come from one pass over the slices
    cfg = replace(cfg, methods=expand_findings(cfg.methods, loaded.description.findings, cfg.findings, checkpoint))
    # unset settings take the checkpoint's (each case's slice size may follow its field of view)
    settings = cfg.settings.resolved(loaded.description)
    checkpoint_sha256 = file_sha256(checkpoint)
    thresholds = check_options(cfg.dicom, all_inputs, [s.label for s in cfg.methods], checkpoint_sha256)
    expected = {(i.case, s.label): heatmap_parts(checkpoint_sha256=checkpoint_sha256, spec=s, settings=settings,
                                                 image=i.images) for i in inputs for s in cfg.methods}
    info = {
        "command": "reconstruct", "source": input_path(source) if is_dicomweb_url(source) else str(source),
        "id_column": cfg.id_column, "out": str(out), "format": cfg.dicom.output_format,
        "store": public_url(cfg.dicom.store) if cfg.dicom.store else None,
        "arguments": {"device": cfg.device, "resume": cfg.resume, "overwrite": cfg.overwrite, **settings.as_dict(),
                      "methods": [s.as_dict() for s in cfg.methods], "num_parts": parts,
                      "shard_directions": cfg.shard_directions, "world_size": world.size},
        "checkpoint": str(checkpoint.resolve()), "checkpoint_sha256": checkpoint_sha256,
        "checkpoint_meta": {k: getattr(loaded.description, k)
                            for k in ("model", "norm", "slice_size", "preprocessing", "data_hash")},
        "device": str(device), "device_name": device_name(device), "versions": versions(),
        "started": _now(), "finished": None,
    }
    writes = world.is_main or not cfg.shard_directions  # with sharded directions rank 0 alone writes
    return _BatchRun(out, cfg, inputs, all_inputs, loaded, settings, expected, {}, info,
                     world if cfg.shard_directions else None, writes, part, parts, thresholds)


def _prepare_folder(run: _BatchRun) -> dict:
    """Under the folder's lock: the outputs ``--continue`` may reuse (found on every rank: they must agree on the
    cases), this run's stale temporaries removed and its first ``run.json`` written."""
    reusable = _reusable(run.inputs, run.out, run.cfg, run.expected)
    if run.parts == 1:
        if run.writes:  # a rank that only shares directions writes nothing: cleaning would race rank 0's writes
            remove_stale_parts(run.out)
    else:  # other parts may be writing beside us: only this part's leftovers are ours to remove
        for item in run.inputs:
            remove_stale_parts(run.out, f"{glob.escape(item.case)}_*")
    if run.parts == 1 and run.writes:
        write_text_atomic(run.out / RUN_JSON, json.dumps(run.info, indent=2))
    return reusable


def _todo(item: BatchInput, run: _BatchRun, previous: dict) -> tuple[list[MethodSpec], list[dict]]:
    """The methods of ``item`` to run, and the rows of those whose outputs are reused (``--continue``); an output
    to redo goes first, so a failure now leaves no stale file."""
    todo, rows = [], []
    for spec in run.cfg.methods:
        target = output_path(run.out, item.case, spec)
        if (item.case, spec.label) in run.reusable:
            rows.append({**_row(item, spec, target, "skipped", made=run.reusable[(item.case, spec.label)]),
                         **_kept(previous.get((item.case, spec.label)))})
        else:
            if run.writes:
                target.unlink(missing_ok=True)
            todo.append(spec)
    return todo, rows


def _record_rows(run: _BatchRun, rows: list[dict]) -> None:
    """The rows so far, after every case: this part's record, or ``summary.csv``."""
    if run.parts > 1:
        write_part_record(run.out, run.part, run.parts, {"part": run.part, "parts": run.parts, "rows": rows,
                                                         "finished": None})
    elif run.writes:
        write_text_atomic(run.out / SUMMARY, summary_csv(rows))


def _case_records(rows: list[dict]) -> list[dict]:
    """What ``run.json`` says of each output: its status and when the run that made it started."""
    return [{k: r.get(k, "") for k in ("case", "method", "status", "output", "made")} for r in rows]


def _counts(rows: list[dict]) -> dict[str, int]:
    return {s: sum(r["status"] == s for r in rows) for s in ("ok", "skipped", "failed")}


def _finish_part(out: Path, part: int, parts: int, rows: list[dict], run_info: dict, inputs, cfg: BatchConfig) -> None:
    """Mark this part finished and merge every part's record into ``summary.csv`` and ``run.json``."""
    with merge_lock(out):
        write_part_record(out, part, parts, {"part": part, "parts": parts, "rows": rows, "finished": _now()})
        records = read_part_records(out)
        merged = merged_rows(records, [i.case for i in inputs], [s.label for s in cfg.methods])
        write_text_atomic(out / SUMMARY, summary_csv(merged))
        done = {(r["case"], r["method"]) for r in merged}
        missing = sorted({i.case for i in inputs for s in cfg.methods if (i.case, s.label) not in done})
        finished = {r["part"] for r in records if r["parts"] == parts and r["finished"]}
        run_info.update(finished=_now() if not missing else None, counts=_counts(merged),
                        parts_finished=sorted(finished), cases_missing=missing, cases=_case_records(merged))
        write_text_atomic(out / RUN_JSON, json.dumps(run_info, indent=2))


def _run_case(item: BatchInput, specs: list[MethodSpec], run: _BatchRun):
    """One case with the methods ``specs`` (sharing passes where they can); returns its summary rows.

    The batch's settings as given (the case entry resolves them against the checkpoint). Data errors
    and failures of the computation become ``failed`` rows (and leave no output); a full disk
    (:class:`DiskFull`) is raised. Each written heatmap carries its provenance.
    """
    loaded, settings, writes = run.loaded, run.cfg.settings, run.writes
    provenance = {s.label: Provenance(run.expected[(item.case, s.label)], run.info["started"],
                                      image=input_path(item.image)) for s in specs}
    start = time.perf_counter()
    device = loaded.device
    batch_size = settings.batch_size or default_batch_size(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    targets = {s.label: output_path(run.out, item.case, s) for s in specs}
    used, written = settings, []
    try:
        volume, notes = load_scan(item.images)
        yield from case_notes(notes)
        while True:
            try:
                scan = Scan.of(volume, item.channel_names)
                for event in reconstruct_case_iter(scan, loaded, specs, replace(settings, batch_size=batch_size),
                                                   run=CaseRun(world=run.world)):
                    if isinstance(event, CasePrepared):
                        used = event.case.settings  # resolved for this case: its slice size goes in the row
                    elif isinstance(event, Partial):
                        heatmaps = event.value  # the final one: no partials were asked for
                    else:
                        yield event
                break
            except torch.OutOfMemoryError:
                if batch_size == 1:
                    raise
                batch_size //= 2
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                yield BatchSizeHalved(item.case, batch_size)
        for spec in specs if writes else ():
            heatmap = heatmaps[spec.label].float().cpu().numpy()
            write_output(targets[spec.label], heatmap, volume, provenance[spec.label])
            if run.cfg.dicom.dicom:
                threshold = run.thresholds.threshold_for(spec.label) if run.thresholds else None
                written += write_heatmap(targets[spec.label], heatmap, volume.path,
                                         made_of(spec.label, provenance[spec.label].parts), threshold)
        run.dicom_written.extend(written)
        rows = [_row(item, s, targets[s.label], "ok", made=provenance[s.label].run_started)
                for s in specs]
    except DiskFull:
        raise
    except (DataError, ValueError, RuntimeError, OSError) as exc:
        for target in targets.values() if writes else ():  # methods written before another failed
            target.unlink(missing_ok=True)
        remove(written)
        rows = [_row(item, s, None, "failed", error=f"{type(exc).__name__}: {exc}") for s in specs]
    stats = dict(seconds=f"{time.perf_counter() - start:.3f}", peak_rss_mb=f"{peak_rss_mb():.0f}",
                 peak_gpu_mb=f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f}" if device.type == "cuda" else "",
                 batch_size=str(batch_size), slice_size=str(used.slice_size or ""))
    return [{**r, **stats} for r in rows]


def _row(item: BatchInput, spec: MethodSpec, target: Path | None, status: str, error: str = "", made: str = "") -> dict:
    """A summary row; ``target`` ``None`` for a failed job (it has no output)."""
    return {"case": item.case, "method": spec.label, "finding": spec.finding, "status": status, "seconds": "", "peak_rss_mb": "",
            "peak_gpu_mb": "", "batch_size": "", "slice_size": "", "output": target.name if target else "",
            "made": made, "error": error}


def _kept(previous: dict | None) -> dict:
    """What a skipped job keeps from the run that made its output: timing and memory."""
    if not previous or previous.get("status") not in ("ok", "skipped"):
        return {}
    return {k: previous[k] for k in ("seconds", "peak_rss_mb", "peak_gpu_mb", "batch_size", "slice_size") if k in previous}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
