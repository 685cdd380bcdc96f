"""The second stage against the heatmap it learnt from: Table 2 with ``tonno benchmark --stage2``, the paired
interval of the difference, and the time of one stage-2 prediction beside one ToNNO reconstruction.

    .venv/bin/python bench/bench_stage2.py DATA OUT [--demo] [--recipe small-lesions] [--methods tonno,layercam]
        [--quality demo] [--source tonno] [--bands 0.5] [--margins 2] [--steps 1000] [--patch 48] [--rounds 1]
        [--repeats 3]

``--demo``: the settings of ``tonno demo`` (give its folder as OUT and its ``data/`` as DATA to reuse the
model and heatmaps it made). Otherwise a benchmark with ``--recipe``, ``--methods`` and ``--quality``. For
each (band, margin) the stage is run again (the export and segmenter are redone when the rule changes) and
its table, ``stage2.json`` and the export's record are kept in
``OUT/stage2-{source}-b{band}-m{margin}-s{steps}-r{rounds}/``. The timing takes the first positive test
case: ToNNO at the ``demo`` preset with the benchmark's checkpoint and the segmenter's sliding-window
prediction, in alternating pairs (``bench/timing.py``); the ratio is the geometric mean of the pairs' ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from timing import alternating_pairs, timed

from tonno_engine.apps.benchmark import BenchmarkConfig, BenchmarkResult, benchmark_iter, default_methods
from tonno_engine.apps.benchmark_stage2 import Stage2Config
from tonno_engine.apps.demo import demo_config
from tonno_engine.base.registry import MethodSpec
from tonno_engine.data.dataset import read_cases
from tonno_engine.data.images import load_image
from tonno_engine.evaluation.pseudo_labels import PseudoLabelRule
from tonno_engine.methods.case import case_spacing, reconstruct_case_iter
from tonno_engine.methods.settings import PRESETS
from tonno_engine.models.checkpoint import load_checkpoint
from tonno_engine.models.segmenter import load_segmenter
from tonno_engine.training.config import recipe_config
from tonno_engine.training.segmenter import SegmenterConfig


def _config(args, rule: PseudoLabelRule) -> BenchmarkConfig:
    stage2 = Stage2Config(source=args.source, rule=rule, rounds=args.rounds,
                          segmenter=SegmenterConfig(steps=args.steps, patch=args.patch, seed=0, device="cpu"))
    if args.demo:
        cfg = demo_config("cpu")
    else:
        methods = [MethodSpec(m) for m in args.methods.split(",")] if args.methods else default_methods(2)
        cfg = BenchmarkConfig(train=recipe_config(args.recipe, dict(device="cpu", seed=0)), methods=methods,
                              settings=PRESETS[args.quality], device="cpu", seed=0)
    cfg.stage2 = stage2
    return cfg


def _span(ci) -> str:
    return f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def run_rule(args, rule: PseudoLabelRule) -> dict:
    start = time.perf_counter()
    result = None
    for event in benchmark_iter(args.data, args.out, _config(args, rule)):
        if isinstance(event, BenchmarkResult):
            result = event
    keep = args.out / f"stage2-{args.source}-b{rule.band:g}-m{rule.margin_mm:g}-s{args.steps}-r{args.rounds}"
    keep.mkdir(exist_ok=True)
    for name in ("table.md", "table.csv", "stage2/stage2.json", "stage2/Dataset999_Benchmark/tonno_export.json"):
        shutil.copy2(args.out / name, keep / Path(name).name)
    record = json.loads((args.out / "stage2" / "stage2.json").read_text())
    rows = {r["label"]: r for r in result.rows}
    source, second = rows[record["source"]], rows["stage2"]
    line = {"band": rule.band, "margin_mm": rule.margin_mm, "steps": args.steps, "rounds": args.rounds,
            "source": record["source"],
            "probability_level": record["probability_level"],
            "minutes": (time.perf_counter() - start) / 60}
    for key in ("f1", "dice"):
        line[f"source_{key}"], line[f"stage2_{key}"] = source[key], second[key]
        line[f"diff_{key}"] = record["difference_to_source"][key]
    print(f"band {rule.band:g}, margin {rule.margin_mm:g} mm, {args.steps} steps, {args.rounds} round(s), "
          f"source {record['source']} ({line['minutes']:.1f} min), probability level {record['probability_level']:.3g}: "
          f"F1 {source['f1']:.3f} -> {second['f1']:.3f} (diff {_span(line['diff_f1'])}), "
          f"Dice {source['dice']:.3f} -> {second['dice']:.3f} (diff {_span(line['diff_dice'])})", flush=True)
    return line


def timing(args) -> dict:
    """Seconds of one ToNNO reconstruction (``demo`` preset) and one stage-2 prediction of the same volume."""
    tested = {line.split(",")[0] for line in (args.out / "stage2" / "test.csv").read_text().splitlines()[1:]}
    case = next(c for c in read_cases(args.data) if c.case in tested and c.label)
    volume = load_image(case.image)
    loaded = load_checkpoint(args.out / "model" / "checkpoint_best.pt", "cpu")
    spacing = case_spacing(volume, loaded, PRESETS["demo"])
    segmenter, meta = load_segmenter(args.out / "stage2" / "model" / "segmenter.pt", "cpu")

    def tonno():
        return timed(torch.device("cpu"), lambda: [None for _ in reconstruct_case_iter(volume.array, spacing, loaded,
                                                                          [MethodSpec("tonno")], PRESETS["demo"])])

    def predict():
        from tonno_engine.apps.stage2 import predict_volume

        return timed(torch.device("cpu"), predict_volume, segmenter, volume.array, meta, "cpu")

    tonno(), predict()  # warm-up
    pairs = alternating_pairs(tonno, predict, args.repeats)
    ratios = [b.wall / a.wall for a, b in pairs]
    ratio = float(np.exp(np.mean(np.log(ratios))))
    print(f"{case.case} {volume.array.shape}: ToNNO (demo preset) and stage-2 prediction, seconds: "
          + ", ".join(f"({a.wall:.2f}, {b.wall:.2f})" for a, b in pairs)
          + f"; prediction ÷ reconstruction {ratio:.3f}", flush=True)
    return {"case": case.case, "shape": list(volume.array.shape), "pairs": [[a.wall, b.wall] for a, b in pairs],
            "ratio": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--demo", action="store_true")
    parser.add_argument("--recipe", default="small-lesions")
    parser.add_argument("--methods", default="")
    parser.add_argument("--quality", default="demo")
    parser.add_argument("--source", default="best")
    parser.add_argument("--bands", default="0.5")
    parser.add_argument("--margins", default="2")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    lines = [run_rule(args, PseudoLabelRule(band=float(b), margin_mm=float(m)))
             for b in args.bands.split(",") for m in args.margins.split(",")]
    summary = {"rules": lines, "timing": timing(args) if args.repeats else None}
    with open(args.out / "bench_stage2.jsonl", "a") as fh:  # one line per run of this script
        fh.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
