"""The paper's Table 2 on a data set: train (or take a checkpoint), reconstruct with every method,
calibrate each method's threshold on validation cases, evaluate on held-out test cases.

Writes into ``out/`` (holding its lock: one benchmark per folder): ``model/`` (the training run, unless a
checkpoint is given), ``heatmaps/`` (a restartable batch, see :mod:`tonno_engine.apps.batch`), ``table.md`` and
``table.csv`` (rows laid out like Table 2, differences to slice-wise LayerCAM in parentheses), ``thresholds.json`` and
``figure.png`` (like Fig. 6: input slice, ground truth, each method's heatmap and binarisation) and
``lesions.csv`` (every test lesion per method: mm³, position, detected), and ``classification.json``
(the classifier's volume AUC on the test cases beside the intensity baseline's, also under the table).
When the classifier's training ended with the "has not learnt" verdict (its run folder's ``run.json``,
:mod:`tonno_engine.evaluation.verdict`), ``table.md`` opens with a line saying Table 2 is not trustworthy and
``benchmark.json`` holds ``trustworthy: false`` and the verdict.
With a classifier of several findings (docs/findings.md), every method runs once per finding (one pass
over the slices for all of them), and ``table.md`` holds one Table 2 per finding, each calibrated,
scored and compared with that finding's slice-wise LayerCAM on its own ground truth.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..base.atomic import write_text_atomic
from ..base.defaults import BOOTSTRAP_RESAMPLES, CAM_LAYER, CONNECTIVITY, DEVICE, QUALITY, TEST_FRACTION
from ..base.errors import DataError, Stopped
from ..base.events import Notice, Progress
from ..base.registry import MethodSpec
from ..data.dataset import (
    Case,
    data_hash,
    dataset_intensity,
    group_of,
    hash_cases,
    read_cases,
    read_dataset_meta,
    split_cases,
    write_cases_csv,
)
from ..data.heatmap_folder import output_pairs
from ..evaluation.bootstrap import METRICS, bootstrap_intervals, case_arrays, intervals_shortfall
from ..evaluation.evaluate import (
    calibrated_scores,
    case_rows_csv,
    lesions_csv,
)
from ..evaluation.metrics import CALIBRATION_RULE, Threshold
from ..evaluation.thresholds_file import write_thresholds
from ..methods.run import for_findings
from ..methods.settings import PRESETS, ReconstructionSettings
from ..models.checkpoint import load_checkpoint, read_description
from ..training.config import TrainConfig
from ..training.loop import StopSignals, TrainStopped
from .batch import BatchConfig, reconstruct_batch_iter, run_or_raise, writing_into
from .benchmark_stage2 import Stage2Config, stage2_iter
from .classification import Classification, classify_findings_iter
from .provenance import tonno_version
from .scored import BenchmarkRun, ScoredMethod
from .scored import MethodScored as MethodScored  # the event `tonno benchmark` prints
from .training_run import train_run_iter

COLUMNS = (("precision", "Precision"), ("recall", "Recall"), ("f1", "F1-score"), ("dice", "Dice"),
           ("balanced_accuracy", "Balanced accuracy"))

def default_methods(layer: int = CAM_LAYER, layers: tuple[int, ...] | None = None) -> list[MethodSpec]:
    """Table 2's rows: slice-wise GradCAM and LayerCAM, ToNNO, Averaged and Tomographic LayerCAM; with
    ``layers``, each CAM row once per layer (the paper's appendix), ToNNO once."""
    layers = tuple(layers or (layer,))
    return ([MethodSpec("gradcam", layer=k) for k in layers] + [MethodSpec("layercam", layer=k) for k in layers]
            + [MethodSpec("tonno")] + [MethodSpec("averaged-cam", cam="layercam", layer=k) for k in layers]
            + [MethodSpec("tomographic-cam", cam="layercam", layer=k) for k in layers])


@dataclass
class BenchmarkConfig:
    """Everything ``tonno benchmark`` needs besides the data and the output folder."""

    checkpoint: Path | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    methods: list[MethodSpec] = field(default_factory=default_methods)
    settings: ReconstructionSettings = field(default_factory=lambda: PRESETS[QUALITY])
    test_fraction: float = TEST_FRACTION
    connectivity: int = CONNECTIVITY
    device: str = DEVICE
    seed: int = 0
    resamples: int = BOOTSTRAP_RESAMPLES  # bootstrap resamples of the test cases for the 95 % intervals
    stage2: Stage2Config | None = None  # a second-stage U-Net on pseudo-labels, and its row


@dataclass
class BenchmarkResult:
    rows: list[dict]  # one per method: name, label, threshold, val_f1, and the summary metrics
    table_md: Path
    table_csv: Path
    figure: Path | None
    checkpoint: Path
    test_cases: list[str]
    methods: list[MethodSpec]
    classification: Classification | None = None  # the first finding's (the one logit's)
    classifications: list[Classification] = field(default_factory=list)  # one per finding


@dataclass(frozen=True)
class _Split:
    """The checkpoint a benchmark scores, the cases that calibrate it (``val``) and those that test it."""

    checkpoint: Path
    val: list[Case]
    test: list[Case]


def _splits(data, cases: list[Case], out: Path, cfg: BenchmarkConfig) -> Iterator:
    """Yield training events; return the :class:`_Split`."""
    if cfg.checkpoint is None:
        rest, test = split_cases(cases, cfg.test_fraction, cfg.seed)
        write_cases_csv(out / "train.csv", rest, cfg.train.findings)
        run = out / "model"
        # train.csv lives in out/, away from the data's dataset.json: carry its intensity mode over (its
        # case column is `case`, whatever the data's)
        train_cfg = replace(cfg.train, intensity=cfg.train.intensity or dataset_intensity(data), id_column=None)
        for event in train_run_iter(out / "train.csv", run, train_cfg, resume=(run / "checkpoint_last.pt").exists()):
            if isinstance(event, TrainStopped):  # a half-trained model must not make Table 2
                raise Stopped(run, event.signal, f"training stopped by {event.signal} at step {event.done} of "
                                                 f"{event.total}; run the benchmark again to continue it")
            yield event
        checkpoint = run / "checkpoint_best.pt"
        if not checkpoint.exists():
            checkpoint = run / "checkpoint_last.pt"
        val_names = set(read_description(checkpoint).val_cases)
        return _Split(checkpoint, [c for c in rest if c.case in val_names], test)
    description = read_description(cfg.checkpoint)
    if description.image_hashes:
        val, test = yield from _split_by_images(data, cases, description, cfg.seed)
        return _Split(Path(cfg.checkpoint), val, test)
    # a checkpoint from before image hashes: only the whole training data set is recognised
    names = set(description.train_cases) | set(description.val_cases)
    # (such a checkpoint predates groups too: its data hash holds none)
    if names and data_hash([replace(c, group=None) for c in cases if c.case in names]) == description.data_hash:
        # the very data the checkpoint was trained on: its validation cases calibrate, unseen ones test
        trained = [c for c in cases if c.case in set(description.train_cases)]
        kept = _apart_from_training(trained, [c for c in cases if c.case in set(description.val_cases)],
                                    [c for c in cases if c.case not in names])
        val, test, dropped = kept.val, kept.test, kept.dropped
        if dropped:
            yield _trained_groups_notice(data, dropped)
    else:  # other data (names may coincide): split it into calibration and test halves
        test, val = split_cases(cases, 0.5, cfg.seed)
        if shared := [c.case for c in cases if c.case in names]:
            yield Notice(f"{data}: {len(shared)} of its cases share names with the cases {cfg.checkpoint} was trained "
                         f"on (e.g. {shared[0]}), but its data differs and the checkpoint predates image hashes: tonno "
                         "cannot tell whether it saw them, and they are calibrated and tested like the rest")
    return _Split(Path(cfg.checkpoint), val, test)


def _finding_indices(findings) -> Sequence[int | None]:
    """The indices that :meth:`Case.truth` takes for a classifier of ``findings``: each finding's, or ``None`` alone
    for one logit read from the label column."""
    return range(len(findings)) if findings else (None,)


def _split_by_images(data, cases: list[Case], description, seed: int) -> Iterator[Notice]:
    """``(validation, test)`` cases by image content, whatever the cases are called: the checkpoint's own validation
    images calibrate, images it never saw test, and its training images are left out (a :class:`Notice` says how
    many). Where DATA lacks a validation image positive for each finding, the unseen cases split in halves instead.
    Groups (DATA's ``group`` column) stay whole (:func:`_apart_from_training`): a group the run trained on is
    neither calibrated nor tested (a :class:`Notice` names it).
    """
    _, found = hash_cases(cases)
    seen = set(description.image_hashes.values())
    validated = {description.image_hashes[name] for name in description.val_cases if name in description.image_hashes}
    trained = [c for c in cases if found[c.case] in seen - validated]
    unseen = [c for c in cases if found[c.case] not in seen]
    kept = _apart_from_training(trained, [c for c in cases if found[c.case] in validated], unseen)
    val, test, dropped = kept.val, kept.test, kept.dropped
    truths = _finding_indices(description.findings)
    if not all(any(c.truth(k)[2] == 1 for c in val) for k in truths):
        gone = {c.case for c in dropped}
        test, val = split_cases([c for c in unseen if c.case not in gone], 0.5, seed)
    if left := len(cases) - len(val) - len(test) - len(dropped):
        yield Notice(f"{data}: {left} of its {len(cases)} cases are images its training run saw (by content): "
                     "left out of calibration and test")
    if dropped:
        yield _trained_groups_notice(data, dropped)
    return val, test


@dataclass(frozen=True)
class _KeptApart:
    """A checkpoint's cases split so that no group is on two sides (:func:`_apart_from_training`)."""

    val: list[Case]
    test: list[Case]
    dropped: list[Case]


def _apart_from_training(trained: list[Case], val: list[Case], unseen: list[Case]) -> _KeptApart:
    """Validation, test and dropped cases of a checkpoint's run: ``dropped`` holds the cases of ``val`` and ``unseen``
    whose group (:func:`~tonno_engine.data.dataset.group_of`) has a case in ``trained`` (the cases the run trained
    on); the rest of ``unseen`` tests, except those of a group that calibrates, which join ``val``. So no group is
    on two sides (without a ``group`` column every case is its own group, and nothing is dropped or moved)."""
    gone = {group_of(c) for c in trained}
    dropped = [c for c in val + unseen if group_of(c) in gone]
    val = [c for c in val if group_of(c) not in gone]
    calibrating = {group_of(c) for c in val}
    val += [c for c in unseen if group_of(c) in calibrating]
    return _KeptApart(val, [c for c in unseen if group_of(c) not in gone | calibrating], dropped)


def _trained_groups_notice(data, dropped: list[Case]) -> Notice:
    """That the cases ``dropped`` by :func:`_apart_from_training` are left out, named group by group."""
    groups: dict[str, list[str]] = {}
    for case in dropped:
        groups.setdefault(group_of(case), []).append(case.case)
    named = "; ".join(f"{group}: {', '.join(names)}" for group, names in list(groups.items())[:10])
    more = f"; and {len(groups) - 10} more groups" if len(groups) > 10 else ""
    return Notice(f"{data}: {len(dropped)} of its cases belong to groups (its group column) that its training run "
                  f"trained on: left out of calibration and test ({named}{more})")


def benchmark_iter(data, out, cfg: BenchmarkConfig) -> Iterator[Progress | BenchmarkResult]:
    """Run the whole benchmark; yields training/reconstruction/evaluation progress, then the result."""
    out = Path(out)
    findings = read_description(cfg.checkpoint).findings if cfg.checkpoint is not None else cfg.train.finding_names
    if cfg.train.findings and tuple(cfg.train.findings) != findings:
        raise DataError(cfg.checkpoint, f"holds the findings {', '.join(findings) or 'none (one logit)'}, not "
                                        f"{', '.join(cfg.train.findings)}: leave --findings out to use the checkpoint's")
    if findings and cfg.stage2 is not None:
        raise DataError(data, "--stage2 takes a classifier of one finding (train one with --findings NAME)")
    cases = read_cases(data, findings=findings or None, id_column=cfg.train.id_column)
    truths = _finding_indices(findings)
    unmasked = [c.case for c in cases if any(c.truth(k)[0] is None for k in truths)]
    if unmasked:
        raise DataError(data, f"the benchmark needs ground-truth masks; none for {', '.join(unmasked[:5])}")
    with writing_into(out), StopSignals() as signals:
        yield from _until_stopped(_benchmark_in(data, cases, findings, out, cfg), signals, out)


def _until_stopped(events: Iterator, signals: StopSignals, out: Path) -> Iterator:
    """Relay the benchmark's ``events`` until SIGTERM or SIGUSR1 arrives (noted by ``signals``; a training notes its own
    and stops at a checkpoint): then close them, which releases their folders, and raise :class:`Stopped`."""
    with contextlib.closing(events):
        for event in events:
            if signals.received and not isinstance(event, BenchmarkResult):
                raise Stopped(out, signals.received, f"stopped by {signals.received}; what it finished is kept (a "
                                                     "trained model, every heatmap written so far): run the benchmark "
                                                     "again to continue")
            yield event


def _carry_channels(data, out: Path) -> None:
    """``out/dataset.json`` with the data's ``channels`` (their names and modes), when it names them: train.csv and
    eval.csv live in ``out``, away from the data's dataset.json, and are read with them."""
    meta = read_dataset_meta(data)
    if "channels" in meta:
        write_text_atomic(out / "dataset.json", json.dumps({"channels": meta["channels"]}, indent=2) + "\n")


def _benchmark_in(data, cases: list[Case], findings, out: Path, cfg: BenchmarkConfig) -> Iterator:
    """The benchmark's steps once its inputs are checked, with ``out``'s lock held (one benchmark per folder)."""
    truths = _finding_indices(findings)
    _carry_channels(data, out)
    split = yield from _splits(data, cases, out, cfg)
    checkpoint, val, test = split.checkpoint, split.val, split.test
    for k in truths:
        positive = sum(c.truth(k)[2] == 1 for c in val)
        if not test or not positive:
            of = f" with {findings[k]}" if findings else ""
            raise DataError(data, f"too few cases to calibrate and test ({len(val)} validation cases, "
                                  f"{positive} positive{of}; {len(test)} test cases)")
    write_cases_csv(out / "eval.csv", val + test, findings)
    batch_cfg = BatchConfig(methods=cfg.methods, settings=cfg.settings, device=cfg.device, resume=True)
    heat_dir = out / "heatmaps"
    yield from run_or_raise(reconstruct_batch_iter(out / "eval.csv", heat_dir, checkpoint, batch_cfg))

    classifications = yield from classify_findings_iter(test, load_checkpoint(checkpoint, cfg.device), cfg.settings,
                                                        seed=cfg.seed)
    tested = {c.case for c in test}
    run = BenchmarkRun(Path(data), out, heat_dir, checkpoint, [c for c in cases if c.case not in tested], val, test,
                       (cfg.train.intensity or dataset_intensity(data)) if cfg.stage2 is not None else None)
    scores = yield from _score_methods(cfg, for_findings(cfg.methods, findings), run)
    if cfg.stage2 is not None:
        scores.append((yield from stage2_iter(cfg, run, scores)))
    verdict = training_verdict_of(checkpoint)
    result = _write_results(cfg, run, scores, classifications, verdict)
    if verdict is not None and not verdict.get("learnt", True):
        yield Notice(untrusted_line(verdict, checkpoint))
    for c in classifications:
        if c.below_baseline:
            of = f" of {c.finding}" if c.finding else ""
            yield Notice(f"the classifier's volume AUC{of} on the test cases ({c.auc:.2f}) is below the "
                         f"intensity baseline's, {c.baseline.describe()} ({result.table_md})")
    yield result


def _score_methods(cfg: BenchmarkConfig, methods: list[MethodSpec], run: BenchmarkRun) -> Iterator:
    """Calibrate each method's threshold on the validation cases, evaluate it on the test cases (each finding's on
    its own ground truth); yields a :class:`MethodScored` per method; returns a :class:`ScoredMethod` per method."""
    scores = []
    for k, spec in enumerate(methods):
        threshold, val_f1, result = calibrated_scores(output_pairs(run.heat_dir, run.val, spec),
                                                      output_pairs(run.heat_dir, run.test, spec),
                                                      connectivity=cfg.connectivity)
        row = {"method": spec.method_title, "label": spec.label, "finding": spec.finding,
               "threshold": threshold.value, "relative": threshold.relative, "val_f1": val_f1, **result.summary}
        scores.append(ScoredMethod(spec, row, result, case_arrays(result.rows)))
        yield scores[-1].event(k + 1, len(methods))
    return scores


def training_verdict_of(checkpoint: Path) -> dict | None:
    """The "has not learnt" verdict (``Verdict.as_dict()``) that the training of ``checkpoint`` ended with, read from
    ``run.json`` beside it; ``None`` when not known (no ``run.json`` there, one of another run, or a run from before
    the verdict)."""
    run_json = Path(checkpoint).parent / "run.json"
    try:
        info = json.loads(run_json.read_text())
    except (OSError, ValueError):
        return None
    meta, description = info.get("meta") or {}, read_description(checkpoint)
    if meta.get("data_hash") != description.data_hash or tuple(meta.get("val_cases") or ()) != description.val_cases:
        return None  # a run.json of another training
    return info.get("learning_verdict")


def untrusted_line(verdict: dict | None, checkpoint: Path) -> str:
    """Why Table 2 is not trustworthy when the classifier's training ``verdict`` says it has not learnt (``""``
    otherwise); ``table.md`` opens with it, and ``tonno benchmark`` warns with it."""
    if verdict is None or verdict.get("learnt", True):
        return ""
    codes = [r["code"] for r in verdict.get("reasons", ())]
    where = f"{', '.join(codes)}; `learning_verdict` in {Path(checkpoint).parent / 'run.json'}"
    if codes == ["too-few-cases"]:  # it may have learnt: its validation cannot tell, and set the thresholds
        return (f"Table 2 is not trustworthy: the classifier's validation held too few volumes to show that it learnt "
                f"the labels ({where}), and its thresholds were calibrated on them (docs/training.md, 'When a "
                "training has not learnt')")
    return (f"Table 2 is not trustworthy: the classifier's training ended with the warning that it has not learnt "
            f"({where}), so the heatmaps show what a network that did not learn the labels looks at (docs/training.md, "
            "'When a training has not learnt')")


def _write_results(cfg: BenchmarkConfig, run: BenchmarkRun, scores: list[ScoredMethod],
                   classifications: list[Classification], verdict: dict | None = None) -> BenchmarkResult:
    """Bootstrap intervals, then ``table.md`` (one table per finding, with the volume classification under
    it; first the :func:`untrusted_line` of the training's ``verdict``)/``table.csv``, ``classification.json``,
    ``thresholds.json``, ``benchmark.json``, ``lesions.csv``, the heatmaps' ``metrics.csv`` and ``figure.png``
    (``figure_<finding>.png`` per finding)."""
    data, out, heat_dir, val, test = run.data, run.out, run.heat_dir, run.val, run.test
    rows, methods = [s.row for s in scores], [s.method for s in scores]
    binaries = {s.label: s.threshold for s in scores}
    per_case = {s.label: s.per_case for s in scores}
    lesions = [lesion for s in scores for lesion in s.evaluation.lesions]
    lesion_methods = [s.label for s in scores for _ in s.evaluation.lesions]
    case_rows = [r for s in scores for r in s.evaluation.rows]
    parts, figures = [], []
    by_finding: dict[str, list[dict]] = {}
    for row in rows:
        by_finding.setdefault(row.get("finding", ""), []).append(row)
    for (finding, group), classification in zip(by_finding.items(), classifications):
        base = _baseline(group)
        shortfall = intervals_shortfall(per_case[group[0]["label"]]["positive"] > 0)
        if not shortfall:
            intervals = bootstrap_intervals({r["label"]: per_case[r["label"]] for r in group},
                                            base["label"] if base else None, resamples=cfg.resamples, seed=cfg.seed)
            for row in group:
                row["intervals"] = intervals[row["label"]]
        head = f"## Finding: {finding}\n\n" if finding else ""
        parts.append(head + markdown_table(group, data_name=Path(data).name, test=len(test), val=len(val),
                                           shortfall=shortfall) + "\n" + classification.markdown())
        figures.append(_figure(out, finding, _cases_of(test, finding, methods), heat_dir,
                               [s for s in methods if s.finding == finding], binaries))
    table_md, table_csv = out / "table.md", out / "table.csv"
    untrusted = untrusted_line(verdict, run.checkpoint)
    write_text_atomic(table_md, (f"**{untrusted}.**\n\n" if untrusted else "") + "\n".join(parts))
    info = [c.as_dict() for c in classifications]
    write_text_atomic(out / "classification.json", json.dumps(info if len(info) > 1 else info[0], indent=2) + "\n")
    write_text_atomic(table_csv, csv_table(rows))
    made_by = _made_by(data, cfg, heat_dir, val, test, methods)
    write_thresholds(out / "thresholds.json", binaries, checkpoint=made_by["checkpoint"],
                     checkpoint_sha256=made_by["checkpoint_sha256"])
    # whether the classifier's training said it has not learnt (None: not known, e.g. a checkpoint without its run.json)
    made_by.update(trustworthy=None if verdict is None else bool(verdict.get("learnt", True)), training_verdict=verdict)
    write_text_atomic(out / "benchmark.json", json.dumps(made_by, indent=2))
    # every test lesion of every method: size in mm³, position, detected (results by lesion size)
    write_text_atomic(out / "lesions.csv", lesions_csv(lesions, lesion_methods))
    # each test case and method at its calibrated threshold, where the Results browser looks for it
    write_text_atomic(heat_dir / "metrics.csv", case_rows_csv(case_rows))
    return BenchmarkResult(rows, table_md, table_csv, figures[0], run.checkpoint, [c.case for c in test], methods,
                           classifications[0], classifications)


def _made_by(data, cfg: BenchmarkConfig, heat_dir: Path, val, test, methods) -> dict:
    """What made a benchmark's tables and thresholds: the code, the checkpoint (path and SHA-256) and the resolved
    reconstruction settings as the heatmap batch recorded them (``heat_dir/run.json``; not hashed again), the data
    and its split, the methods and the calibration rule."""
    batch = json.loads((heat_dir / "run.json").read_text())
    keys = cfg.settings.as_dict().keys()
    return {"tonno": tonno_version(), "calibration": CALIBRATION_RULE, "connectivity": cfg.connectivity,
            "checkpoint": batch["checkpoint"], "checkpoint_sha256": batch["checkpoint_sha256"],
            "data": str(Path(data).resolve()), "validation_cases": [c.case for c in val],
            "test_cases": [c.case for c in test], "methods": [m.label for m in methods],
            "settings": {k: v for k, v in batch["arguments"].items() if k in keys}, "seed": cfg.seed,
            "resamples": cfg.resamples}


def _cases_of(cases: list[Case], finding: str, methods) -> list[Case]:
    """``cases`` as one finding sees them (its label and mask), for the figure; as they are without findings."""
    if not finding:
        return cases
    k = next(s.output for s in methods if s.finding == finding)
    return [replace(c, label=int(label or 0), mask=mask) for c in cases for mask, _, label in (c.truth(k),)]


def _figure(out: Path, finding: str, cases, heat_dir: Path, methods, binaries) -> Path | None:
    """Fig. 6 of one finding (``figure.png`` without findings), or ``None`` without a positive test case."""
    from .figures import comparison_figure

    try:
        return comparison_figure(out / (f"figure_{finding}.png" if finding else "figure.png"), cases, heat_dir,
                                 methods, binaries)
    except ValueError:  # no positive test case to show
        return None


def _baseline(rows: list[dict]) -> dict | None:
    return next((r for r in rows if r["label"].startswith("layercam-") and "axes3" not in r["label"]), None)


def markdown_table(rows: list[dict], *, data_name: str, test: int, val: int, shortfall: str = "") -> str:
    """Rows like the paper's Table 2; differences to slice-wise LayerCAM in parentheses; the rows' bootstrap
    intervals, or the note ``shortfall`` (:func:`~tonno_engine.evaluation.bootstrap.intervals_shortfall`) saying
    why there are none."""
    base = _baseline(rows)
    head = "| Method | " + " | ".join(name for _, name in COLUMNS) + " |"
    lines = [f"Test cases: {test} (thresholds calibrated on {val} validation cases) — data: {data_name}", "",
             head, "|" + "---|" * (len(COLUMNS) + 1)]
    for row in rows:
        cells = []
        for key, _ in COLUMNS:
            value = row[key]
            cell = f"{value:.2f}"
            if base is not None and row is not base:
                diff = value - base[key]
                cell += " (=)" if abs(diff) < 0.005 else f" ({diff:+.2f})"
            cells.append(cell)
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    levels = [f"{row['method']} {Threshold('calibrated', row['threshold'], row.get('relative', 0.0)).describe()}"
              for row in rows if "source_diff" not in row]
    lines += ["", "Calibrated thresholds: " + "; ".join(levels) + "."]
    if shortfall:
        lines += ["", f"Note: 95 % bootstrap {shortfall}."]
    elif all("intervals" in row for row in rows):
        lines += ["", "95 % bootstrap intervals over the test cases (the method; its difference to slice-wise "
                  "LayerCAM, paired: the same resampled cases):", "", head, "|" + "---|" * (len(COLUMNS) + 1)]
        for row in rows:
            ci = row["intervals"]
            cells = [_span(ci[key]) + (f" ({_span(ci['diff'][key], signed=True)})" if "diff" in ci else "")
                     for key, _ in COLUMNS]
            lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    for row in (r for r in rows if "source_diff" in r):
        spans = "not computed (see the note above)" if shortfall else ", ".join(
            f"{name} {_span(row['source_diff'][key], signed=True)}" for key, name in COLUMNS)
        lines += ["", f"{row['method']} (probability > {row['threshold']:g}, components of at least "
                      f"{row['min_mm3']:g} mm³, the size calibrated on the validation cases) minus {row['source']}, "
                      f"paired 95 % bootstrap intervals over the test cases: {spans}"]
    return "\n".join(lines) + "\n"


def _span(interval, *, signed: bool = False) -> str:
    lo, hi = interval
    fmt = "+.2f" if signed else ".2f"
    return f"[{lo:{fmt}}, {hi:{fmt}}]"


def csv_table(rows: list[dict]) -> str:
    """One row per method; with intervals, ``<metric>_lo/_hi`` and ``<metric>_diff_lo/_hi`` (to LayerCAM)."""
    buf = io.StringIO()
    bounds = [f"{m}_{part}" for m in METRICS for part in ("lo", "hi", "diff_lo", "diff_hi")]
    finding = ("finding",) if any(r.get("finding") for r in rows) else ()
    keys = ["method", "label", *finding, "threshold", "relative", "val_f1", *(k for k, _ in COLUMNS), "max_iou", "cases",
            "lesions", "predicted_components", *bounds]
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        flat = dict(row)
        ci = row.get("intervals", {})
        for m in METRICS:
            if m in ci:
                flat[f"{m}_lo"], flat[f"{m}_hi"] = ci[m]
            if m in ci.get("diff", {}):
                flat[f"{m}_diff_lo"], flat[f"{m}_diff_hi"] = ci["diff"][m]
        writer.writerow({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in flat.items()})
    return buf.getvalue()
