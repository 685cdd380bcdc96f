"""``tonno benchmark --stage2``: pseudo-labels from the best heatmap method, a 3D U-Net trained on them, and its
row in Table 2 beside the heatmap it learnt from.

In ``out/stage2/``: ``heatmaps/`` (the source method on every labelled case),
``Dataset{id}_Benchmark/`` (the export: every non-test case labelled, the test cases in
``imagesTs``), ``model/`` (the segmenter run) and ``stage2.json`` (the source method, its level, the rule,
and the paired bootstrap interval of stage 2 minus its source). Predictions go into ``heatmaps/`` as
``{case}_stage2.nii.gz``. With ``rounds`` > 1 the stage trains again on its own predictions of the labelled
cases (``round{r}/``, exported at probability 0.5, components below the size calibrated on the validation
cases ignored; ``model-round{r}/``). The
row binarises at the segmenter's own level (probability 0.5) and drops components smaller than a size
calibrated on the validation cases (their ground truth; one free parameter, as each heatmap method's level).
A rerun reuses the segmenter only when it learnt from exactly the labels exported now (``labels_sha256``),
resumes it when it stopped, and retrains it (saying so) when the labels changed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from ..base.atomic import write_text_atomic
from ..base.errors import DataError, Stopped
from ..base.events import Notice
from ..base.registry import MethodSpec
from ..data.channels import parse_names, resolve_channels
from ..data.dataset import Case, dataset_channel_specs, write_cases_csv
from ..data.heatmap_folder import STAGE2, output_pairs, output_path
from ..evaluation.bootstrap import bootstrap_intervals, case_arrays
from ..evaluation.evaluate import calibrate_min_size, calibrated_scores
from ..evaluation.metrics import Threshold
from ..evaluation.pseudo_labels import PseudoLabelRule
from ..methods.settings import ReconstructionSettings
from ..models.segmenter import read_segmenter
from ..training.segmenter import FINAL, LAST, SegmenterConfig, SegmenterResult, SegmenterStopped, train_segmenter_iter
from .batch import BatchConfig, reconstruct_batch_iter, run_or_raise
from .export_nnunet import ExportConfig, ExportResult, export_nnunet_iter
from .scored import BenchmarkRun, ScoredMethod
from .stage2 import predict_iter

#: the probability above which a stage-2 voxel is lesion: the segmenter's own decision (its argmax)
PROBABILITY = 0.5


@dataclass
class Stage2Config:
    """``source``: the heatmap method label whose pseudo-labels are learnt, or ``best`` (highest validation F1)."""

    source: str = "best"
    rule: PseudoLabelRule = field(default_factory=PseudoLabelRule)
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    dataset_id: int = 999
    rounds: int = 1  # > 1: self-training, each round's segmenter learns from the last one's predictions

    def __post_init__(self):
        if self.rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {self.rounds}")


class BenchmarkSettings(Protocol):
    """What stage 2 reads of the benchmark's settings (a :class:`~tonno_engine.apps.benchmark.BenchmarkConfig`;
    a protocol, so that this module need not import the one that calls it)."""

    stage2: Stage2Config | None
    methods: list[MethodSpec]
    settings: ReconstructionSettings
    device: str
    connectivity: int
    resamples: int
    seed: int


@dataclass(frozen=True)
class Stage2Method:
    """What the table and figure need of a row: its label and title."""

    title: str
    label: str = STAGE2
    finding: str = ""  # (of a one-finding classifier, as every stage 2)


def pick_source(rows: list[dict], methods, source: str):
    """The method spec whose heatmaps become pseudo-labels: ``source`` by label, or the best validation F1."""
    if source != "best":
        spec = next((s for s in methods if s.label == source), None)
        if spec is None:
            raise DataError(source, f"not among the benchmark's methods ({', '.join(s.label for s in methods)})")
        return spec
    def score(k: int) -> tuple[float, int]:  # the highest validation F1; the first of equals
        f1 = rows[k]["val_f1"]
        return (-1.0 if math.isnan(f1) else f1, -k)

    return methods[max(range(len(rows)), key=score)]


def stage2_iter(bench: BenchmarkSettings, run: BenchmarkRun, scores: list[ScoredMethod]) -> Iterator:
    """Yield the stage's events; return its :class:`ScoredMethod` for Table 2. ``scores``: the heatmap methods'
    (the source's calibrated level and per-case arrays); the segmenters learn from ``run.labelled`` (every non-test
    case) and calibrate on ``run.val``."""
    cfg: Stage2Config = bench.stage2
    out, heat_dir, labelled, val, test = run.out, run.heat_dir, run.labelled, run.val, run.test
    spec = pick_source([s.row for s in scores], bench.methods, cfg.source)
    source = next(s for s in scores if s.label == spec.label)
    folder = out / "stage2"
    heatmaps = yield from _heatmaps_for(labelled, spec, folder, run, bench)
    label, level, level_from = spec.label, source.threshold, f"calibrated ({out / 'thresholds.json'})"  # a Threshold
    rounds, checkpoint_2, rule = [], None, cfg.rule
    for r in range(1, cfg.rounds + 1):
        if r > 1:  # self-training: the last segmenter's predictions of the labelled cases become the new labels
            heatmaps = folder / f"round{r - 1}"
            yield from _predictions(checkpoint_2, labelled, folder / f"round{r - 1}.csv", heatmaps, bench.device)
            min_mm3, _ = calibrate_min_size(output_pairs(heatmaps, val, Stage2Method("")), Threshold("fixed", PROBABILITY),
                                            connectivity=bench.connectivity)
            label, level, level_from = STAGE2, Threshold("fixed", PROBABILITY), "the segmenter's own level"
            rule = replace(cfg.rule, min_mm3=max(cfg.rule.min_mm3, min_mm3))  # its speckles become ignore, not lesion
        channels = _export_channels(run)
        export_cfg = ExportConfig(method=label, level=level.value, relative=level.relative, level_from=level_from, rule=rule,
                                  dataset_id=cfg.dataset_id, name="Benchmark", overwrite=True,
                                  intensity=None if channels else run.intensity, channels=channels)
        export = None
        for event in export_nnunet_iter(labelled, test, heatmaps, folder, export_cfg):
            if isinstance(event, ExportResult):
                export = event
            else:
                yield event
        checkpoint_2 = yield from _segmenter(export, folder / ("model" if r == 1 else f"model-round{r}"), cfg.segmenter)
        rounds.append({"round": r, "labels_from": label, "level": level.value, "relative": level.relative,
                       "min_mm3": rule.min_mm3,
                       "labels_sha256": export.labels_sha256,
                       "segmenter": str(checkpoint_2)})
    yield from _predictions(checkpoint_2, val + test, folder / "test.csv", heat_dir, bench.device)
    method = Stage2Method(f"Stage 2: U-Net on {spec.title} pseudo-labels" + (f", {cfg.rounds} rounds" if cfg.rounds > 1 else ""))
    threshold, val_f1, result = calibrated_scores(output_pairs(heat_dir, val, method), output_pairs(heat_dir, test, method),
                                                  connectivity=bench.connectivity, level=Threshold("fixed", PROBABILITY))
    row = {"method": method.title, "label": STAGE2, "threshold": threshold.value, "min_mm3": result.min_mm3,
           "val_f1": val_f1, **result.summary}
    per_case = case_arrays(result.rows)
    versus = bootstrap_intervals({spec.label: source.per_case, STAGE2: per_case}, spec.label,
                                 resamples=bench.resamples, seed=bench.seed)[STAGE2]
    row["source"], row["source_diff"] = spec.label, versus["diff"]
    record = {"source": spec.label, "level": source.threshold.value, "relative": source.threshold.relative,
              "probability_level": threshold.value,
              "min_mm3": result.min_mm3,
              "rule": cfg.rule.as_dict(),
              "segmenter": str(checkpoint_2), "export": str(export.folder), "nnunet_check": export.nnunet_check,
              "rounds": rounds,
              "difference_to_source": {k: list(v) for k, v in versus["diff"].items()},
              "metrics": {k: result.summary[k] for k in ("precision", "recall", "f1", "dice")}}
    write_text_atomic(folder / "stage2.json", json.dumps(record, indent=2) + "\n")
    return ScoredMethod(method, row, result, per_case)


def _export_channels(run: BenchmarkRun) -> tuple[tuple[str, str | None], ...]:
    """``(name, mode)`` of each image of the benchmark's cases of several (``dataset.json``'s channels, the run's
    ``--intensity`` over them, as its classifier's training resolved them); ``()`` for cases of one image."""
    found = len(run.labelled[0].channels) if run.labelled else 0
    if found < 2:
        return ()
    modes = parse_names(run.intensity, "--intensity", distinct=False)
    return tuple((s.name, s.intensity) for s in resolve_channels(found, dataset_channel_specs(run.data), (), modes,
                                                                 run.data))


def _heatmaps_for(cases: list[Case], spec, folder: Path, run: BenchmarkRun, bench: BenchmarkSettings) -> Iterator:
    """The source method's heatmaps of every labelled case in ``folder/heatmaps`` (a batch of its own, so the
    benchmark's ``heatmaps/`` keeps its summary); those the benchmark made already are linked, not redone."""
    target = folder / "heatmaps"
    target.mkdir(parents=True, exist_ok=True)
    for case in cases:
        made, link = output_path(run.heat_dir, case.case, spec), output_path(target, case.case, spec)
        if made.exists() and not link.exists():
            try:
                os.link(made, link)
            except OSError:  # another file system: a copy
                shutil.copy2(made, link)
    write_cases_csv(folder / "labelled.csv", cases)
    batch_cfg = BatchConfig(methods=[spec], settings=bench.settings, device=bench.device, resume=True)
    yield from run_or_raise(reconstruct_batch_iter(folder / "labelled.csv", target, run.checkpoint, batch_cfg))
    return target


def _segmenter(export: ExportResult, run: Path, cfg: SegmenterConfig) -> Iterator:
    """Train (or reuse, or resume) the segmenter on ``export``; returns its checkpoint."""
    sha = export.labels_sha256
    for name, resume in ((FINAL, None), (LAST, True)):
        path = run / name
        if path.exists():
            try:
                meta = read_segmenter(path)["meta"]
            except DataError as exc:  # the benchmark's own folder: what it cannot read it makes again
                yield Notice(f"{exc}; training the segmenter again")
                shutil.rmtree(run)
                break
            if meta["labels"]["labels_sha256"] == sha and meta["train_args"] == cfg.as_dict():
                if resume is None:
                    return path
                break
            yield Notice(f"{path}: made from other labels or settings; training the segmenter again")
            shutil.rmtree(run)
            break
    resume = (run / LAST).exists()
    for event in train_segmenter_iter(export.folder, run, cfg, resume=resume):
        if isinstance(event, SegmenterStopped):
            raise Stopped(run, event.signal, f"stopped by {event.signal}; run the benchmark again to continue")
        if isinstance(event, SegmenterResult):
            return event.checkpoint
        yield event
    raise DataError(run, "the segmenter's training ended without a result")  # pragma: no cover


def _predictions(checkpoint: Path, test: list[Case], csv_path: Path, heat_dir: Path, device: str) -> Iterator:
    """The predictions of ``checkpoint`` for ``test`` in ``heat_dir``, replacing those an earlier segmenter of the
    benchmark made there (a benchmark's own folder; it predicts the same cases each time)."""
    write_cases_csv(csv_path, test)
    yield from run_or_raise(predict_iter(checkpoint, csv_path, heat_dir, device=device, overwrite=True),
                            "stage-2 prediction")
