"""The study harness: the studies a user may want to rerun, one subcommand each, sharing the synth → split →
train → benchmark → table code. Their answers so far are in docs/studies/ and bench/RESULTS.md.

    .venv/bin/python bench/study.py STUDY [ARGS]      (``STUDY --help`` for each one's options)

- ``train``: training quality on CPU-sized synthetic data (seconds, best and final validation AUCs);
- ``recipes``: training candidates side by side on one data set (validation and held-out volume AUC, time);
- ``checkpoint-choice``: is the chosen checkpoint really the best (few validation volumes against many held out);
- ``robustness``: one recipe across generator settings nobody tuned for (Table 2 with intervals per cell);
- ``intensity-baseline``: how well a threshold on the brightest voxel separates the classes, before any network;
- ``planes``: how many random planes a volume score needs (held-out volume AUC per number of planes);
- ``budget``: quality per network evaluation (Table 2's ToNNO rows over a grid of L × M budgets);
- ``stage2``: the second stage against the heatmap it learnt from (Table 2 with ``--stage2``, and its time);
- ``foreign-input``: what training sees on a data set (slice pixels, lesion cuts, contrast), before any training;
- ``petct``: PET and CT against PET alone on ``synth --kind petct``, the same recipe (paired intervals).

Every study runs on the CPU and writes under its OUT folder; a study whose data, checkpoint or run is there
already reads it back (an interrupted training resumes). One-off studies whose answers are settled were
retired: docs/studies/README.md names the commit where each script last lived.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import shutil
import time
from pathlib import Path

from tonno_engine.apps.benchmark import BenchmarkConfig, BenchmarkResult, benchmark_iter, default_methods
from tonno_engine.base.registry import MethodSpec
from tonno_engine.data.dataset import read_cases, split_cases, write_cases_csv
from tonno_engine.data.synth import SynthRequest, synthesize
from tonno_engine.methods.settings import PRESETS, ReconstructionSettings
from tonno_engine.training.config import recipe_config

# ---------------------------------------------------------------------------------------------------- shared


def run(events):
    """Run an engine generator to its end; its return value."""
    try:
        while True:
            next(events)
    except StopIteration as done:
        return done.value


def synth_once(folder: Path, **kwargs) -> Path:
    """``tonno synth --kind brain`` into ``folder`` (``kind`` may be overridden) unless it is there already."""
    folder = Path(folder)
    if not (folder / "labels.csv").exists():
        list(synthesize(folder, SynthRequest(**{"kind": "brain", **kwargs})))
    return folder


def train_once(data, run_dir: Path, cfg) -> dict:
    """Train ``cfg`` into ``run_dir`` unless it finished there (an interrupted run resumes); its ``run.json``."""
    from tonno_engine.apps.training_run import train_run_iter

    run_dir = Path(run_dir)
    done = json.loads((run_dir / "run.json").read_text())["step"] if (run_dir / "run.json").exists() else 0
    if done < cfg.steps:
        run(train_run_iter(data, run_dir, cfg, resume=(run_dir / "checkpoint_last.pt").exists()))
    return json.loads((run_dir / "run.json").read_text())


def validations(run_dir: Path) -> dict[int, dict]:
    """The validated rows of a run's ``metrics.csv``, by step."""
    with open(Path(run_dir) / "metrics.csv", newline="") as fh:
        return {int(r["step"]): r for r in csv.DictReader(fh) if r["val_volume_auc"]}


def held_out(checkpoint: Path, cases):
    """The volume classification (:mod:`tonno_engine.apps.classification`) of ``cases`` by a checkpoint."""
    from tonno_engine.apps.classification import classify_iter
    from tonno_engine.models.checkpoint import load_checkpoint

    return run(classify_iter(cases, load_checkpoint(checkpoint, "cpu"), ReconstructionSettings(), seed=0))


def benchmark(data, out: Path, cfg: BenchmarkConfig) -> BenchmarkResult:
    """``tonno benchmark`` with ``cfg``: its result."""
    return next(e for e in benchmark_iter(data, out, cfg) if isinstance(e, BenchmarkResult))


def ci(value: float, interval, digits: int = 2) -> str:
    """``0.91 [0.85, 0.97]``."""
    return f"{value:.{digits}f} [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def table(header: list[str], rows: list[list]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def methods(names: str) -> list[MethodSpec]:
    return [MethodSpec(m) for m in names.split(",")] if names else default_methods(2)


# ---------------------------------------------------------------------------------------------------- train


def study_train(args) -> None:
    from tonno_engine.training.config import TrainConfig

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    shape = (args.size,) * 3 if args.size else None
    synth_once(out / "data", kind=args.kind, n=args.n, seed=args.seed, shape=shape)
    cfg = TrainConfig(slice_size=args.slice_size, steps=args.steps, norm=args.norm, lr=args.lr, device=args.device,
                      seed=args.seed, val_every=args.val_every)
    start = time.perf_counter()
    train_once(out / "data", out / "run", cfg)
    seconds = time.perf_counter() - start
    val = list(validations(out / "run").values())
    best = max(val, key=lambda r: (float(r["val_volume_auc"]), -float(r["val_loss"])))
    print(f"{args.kind} n={args.n}, {args.steps} steps of {cfg.batch_volumes}x{cfg.slices_per_volume} slices of "
          f"{args.slice_size}², resnet10t/{args.norm}, device {cfg.device}")
    print(f"training time: {seconds:.0f} s")
    print(f"final: val volume AUC {float(val[-1]['val_volume_auc']):.3f}, slice AUC {float(val[-1]['val_slice_auc']):.3f}")
    print(f"best (step {best['step']}): val volume AUC {float(best['val_volume_auc']):.3f}, "
          f"slice AUC {float(best['val_slice_auc']):.3f}")


def add_train(sub) -> None:
    p = sub.add_parser("train", help="training quality on CPU-sized synthetic data",
                       description="Synthesise a data set (tonno synth's generator), train (tonno train's engine), print "
                                   "the wall time and the best and final validation volume/slice AUC. Target: phantom "
                                   "data, at most 5 minutes on 2 CPU cores, validation volume AUC >= 0.9.")
    p.add_argument("--kind", default="phantom")
    p.add_argument("--n", type=int, default=60)
    p.add_argument("--size", type=int, default=0, help="cube side of the volumes (default: the generator's)")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--val-every", type=int, default=50)
    p.add_argument("--slice-size", type=int, default=64)
    p.add_argument("--norm", default="bn")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="/tmp/tonno_bench_train")
    p.set_defaults(func=study_train)


# ---------------------------------------------------------------------------------------------------- recipes

CANDIDATES = {
    "small-lesions": dict(train=dict()),
    "long-ema": dict(train=dict(steps=3000, ema=0.99)),
    "pretrained": dict(pretrain=dict(steps=150), train=dict(steps=2000, ema=0.99)),
    "pretrained-short": dict(pretrain=dict(steps=150), train=dict()),
    "large-slices": dict(train=dict(slice_size=128, steps=800, ema=0.99)),
    "top-k": dict(train=dict(candidates=64, batch_volumes=8, slices_per_volume=4, steps=1500, ema=0.99)),
    "look-alikes": dict(recipe="look-alikes", train=dict()),
    "look-alikes-long": dict(recipe="look-alikes", train=dict(steps=1500)),
    "pretrained-look-alikes": dict(recipe="look-alikes", pretrain=dict(steps=150), train=dict()),
    "look-alikes-96": dict(recipe="look-alikes", train=dict(slice_size=96)),
    "look-alikes-context": dict(recipe="look-alikes", train=dict(context=1.5)),
}


def run_candidate(name: str, data: Path, out: Path, holdout, seed: int = 0, steps: int | None = None) -> dict:
    from tonno_engine.apps.training_run import train_run_iter
    from tonno_engine.training.config import pretrain_config

    spec = CANDIDATES[name]
    wall, cpu = time.perf_counter(), cpu_seconds()
    weights = None
    if "pretrain" in spec:
        pre = out / f"{name}-pretrain"
        if not (pre / "encoder.pth").exists():
            run(train_run_iter(data, pre, pretrain_config({"device": "cpu", **spec["pretrain"]})))
        weights = str(pre / "encoder.pth")
    train = {**spec["train"], **({"steps": steps} if steps else {})}
    cfg = recipe_config(spec.get("recipe", "small-lesions"), dict(device="cpu", weights=weights, seed=seed, **train))
    info = train_once(data, out / name, cfg)
    row = {"candidate": name, "wall_min": (time.perf_counter() - wall) / 60, "cpu_min": (cpu_seconds() - cpu) / 60,
           "best_step": info["best_step"], "val_auc": info["best_val_volume_auc"],
           "baseline": info["intensity_baseline"]}
    rows = validations(out / name)
    chosen = rows[info["best_step"]]
    row["val_interval"] = [float(chosen["val_volume_auc_lo"]), float(chosen["val_volume_auc_hi"])]
    row["val_curve"] = " ".join(f"{float(r['val_volume_auc']):.2f}" for _, r in sorted(rows.items()))
    if holdout:
        result = held_out(out / name / "checkpoint_best.pt", holdout)
        row["holdout_auc"], row["holdout_interval"] = result.auc, list(result.interval)
        row["holdout_baseline"] = result.baseline.describe()
    return row


def study_recipes(args) -> None:
    holdout = read_cases(args.holdout) if args.holdout else None
    out, data = Path(args.out), Path(args.data)
    if args.test_fraction:
        rest, holdout = split_cases(read_cases(data), args.test_fraction, 0)
        out.mkdir(parents=True, exist_ok=True)
        write_cases_csv(out / "train.csv", rest)  # (with its group column, if DATA has one)
        data = out / "train.csv"
    rows = []
    for name in args.candidates.split(","):
        rows.append(run_candidate(name, data, out, holdout, args.seed, args.steps))
        print(json.dumps(rows[-1]), flush=True)
    print("\n" + table(["candidate", "validation volume AUC of the chosen checkpoint [95 %]", "step",
                        "held-out AUC [95 %]", "wall", "CPU"],
                       [[r["candidate"], ci(r["val_auc"], r["val_interval"]), r["best_step"],
                         ci(r["holdout_auc"], r["holdout_interval"]) if "holdout_auc" in r else "",
                         f"{r['wall_min']:.1f} min", f"{r['cpu_min']:.1f} min"] for r in rows]))


def add_recipes(sub) -> None:
    p = sub.add_parser("recipes", help="training candidates side by side on one data set",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description=(
                           "Training candidates side by side: validation volume AUC with its interval, the intensity "
                           "baseline, wall and CPU time, optional self-supervised pretraining first.\n\nCandidates "
                           "(all from small-lesions unless look-alikes): " + ", ".join(CANDIDATES) + ".\nWith "
                           "--holdout or --test-fraction, every chosen checkpoint's volume AUC on those cases too."))
    p.add_argument("data")
    p.add_argument("out")
    p.add_argument("--candidates", default="small-lesions,long-ema,pretrained")
    p.add_argument("--holdout", default="", help="a data set whose volumes score the chosen checkpoints")
    p.add_argument("--test-fraction", type=float, default=0.0, help="hold out this share of DATA (tonno benchmark's "
                                                                      "split) instead of --holdout")
    p.add_argument("--steps", type=int, default=0, help="override every candidate's training steps (0: its own)")
    p.add_argument("--seed", type=int, default=0, help="training seed, which also draws the validation split "
                                                       "(the held-out split stays seed 0's)")
    p.set_defaults(func=study_recipes)


# ---------------------------------------------------------------------------------------------------- checkpoint-choice


def one_choice(args, seed: int, ema: float, data: Path, holdout) -> dict:
    out = Path(args.out) / f"seed{seed}-ema{ema:g}"
    cfg = recipe_config("small-lesions", dict(steps=args.steps, seed=seed, device="cpu", ema=ema, keep_checkpoints=True))
    start = time.perf_counter()
    info = train_once(data, out, cfg)
    trained = time.perf_counter() - start
    val = {s: float(r["val_volume_auc"]) for s, r in validations(out).items()}
    kept = sorted((out / "checkpoints").glob("step_*.pt"))
    held = {int(p.stem.split("_")[1]): held_out(p, holdout).auc for p in kept}
    chosen, last = info["best_step"], max(held)
    best = max(held, key=lambda s: (held[s], s))
    rank = 1 + sum(v > held[chosen] for v in held.values())
    baseline = held_out(kept[-1], holdout).baseline
    return {"seed": seed, "ema": ema, "chosen": chosen, "val_chosen": val[chosen], "held_chosen": held[chosen],
            "last": last, "held_last": held[last], "best": best, "held_best": held[best], "rank": rank,
            "kept": len(held), "baseline": baseline.describe(), "train_s": trained,
            "val_aucs": " ".join(f"{val[s]:.2f}" for s in sorted(val)),
            "held_aucs": " ".join(f"{held[s]:.2f}" for s in sorted(held))}


def study_checkpoint_choice(args) -> None:
    spacing = tuple(float(v) for v in args.spacing.split(",")) if args.spacing else None
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        data = synth_once(Path(args.out) / f"data{seed}", n=args.n, seed=seed, difficulty=args.difficulty,
                          spacing=spacing)
        held_dir = synth_once(Path(args.out) / f"holdout{seed}", n=args.holdout, seed=1000 + seed,
                              difficulty=args.difficulty, spacing=spacing)
        holdout = read_cases(held_dir / "labels.csv")
        for ema in (float(e) for e in args.ema.split(",")):
            rows.append(one_choice(args, seed, ema, data, holdout))
            print(json.dumps(rows[-1]), flush=True)
    print("\n" + table(["seed", "EMA", "chosen step: val AUC / held-out AUC", "last step: held-out AUC",
                        "best on held-out: step, AUC", "chosen's rank of kept", "held-out intensity baseline",
                        "training"],
                       [[r["seed"], f"{r['ema']:g}", f"{r['chosen']}: {r['val_chosen']:.2f} / {r['held_chosen']:.2f}",
                         f"{r['held_last']:.2f}", f"{r['best']}, {r['held_best']:.2f}", f"{r['rank']} of {r['kept']}",
                         r["baseline"], f"{r['train_s']:.0f} s"] for r in rows]))
    for ema in dict.fromkeys(r["ema"] for r in rows):
        mine = [r for r in rows if r["ema"] == ema]
        near = sum(r["held_best"] - r["held_chosen"] <= 0.02 for r in mine)
        print(f"EMA {ema:g}: the chosen checkpoint within 0.02 of the held-out best in {near} of {len(mine)} runs; "
              f"mean held-out AUC chosen {sum(r['held_chosen'] for r in mine) / len(mine):.3f}, "
              f"last {sum(r['held_last'] for r in mine) / len(mine):.3f}")


def add_checkpoint_choice(sub) -> None:
    p = sub.add_parser("checkpoint-choice", help="is the chosen checkpoint really the best",
                       description="For each seed: --n synthetic brains (20 % of them the run's validation split) and "
                                   "--holdout others; for each --ema a small-lesions training that keeps every "
                                   "validated step's weights, each scored on the held-out volumes (volume AUC, largest "
                                   "logit over 64 planes). Prints the chosen, last and held-out-best checkpoints.")
    p.add_argument("out")
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--holdout", type=int, default=40)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--ema", default="0,0.99")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--difficulty", default="ms")
    p.add_argument("--spacing", default="", help="mm per axis, e.g. 2,2,3 (default: the generator's grid)")
    p.set_defaults(func=study_checkpoint_choice)


# ---------------------------------------------------------------------------------------------------- robustness

CELLS = {
    "default": dict(n=120),
    "faint": dict(n=120, contrast_scale=0.5),
    "thick": dict(n=120, spacing=(1.0, 1.0, 3.0)),
    "bias": dict(n=120, bias_field=0.3),
    "few": dict(n=40),
}


#: the ``foreign`` cell's brains, made by a generator tonno does not own: train on ``--n 48 --seed 100+s``, test on
#: ``--n 24 --seed 200+s`` (seeds nobody tuned on; docs/studies/foreign.md)
FOREIGN_SCRIPT = Path(__file__).resolve().parents[1].parent / "shared" / "foreign" / "foreign_brains.py"


def run_cell(args, cell: str, seed: int) -> dict:
    root = Path(args.out) / f"{cell}-{seed}"
    start = time.perf_counter()
    if cell == "foreign":
        result = foreign_benchmark(root, args.recipe, (100 + seed, 200 + seed), methods(args.methods), args.quality)
    else:
        data = synth_once(root / "data", seed=seed, **CELLS[cell])
        cfg = BenchmarkConfig(train=recipe_config(args.recipe, dict(device="cpu", seed=seed)),
                              methods=methods(args.methods), settings=PRESETS[args.quality], device="cpu", seed=seed)
        result = benchmark(data, root / "bench", cfg)
    c = result.classification
    row = {"cell": cell, "seed": seed, "minutes": (time.perf_counter() - start) / 60, "auc": c.auc,
           "auc_interval": list(c.interval), "baseline": c.baseline.describe(), "baseline_auc": c.baseline.auc,
           "chance": c.auc <= 0.6, "below_baseline": c.below_baseline}
    for r in result.rows:
        i = r["intervals"]
        row[r["label"]] = {"f1": r["f1"], "f1_interval": list(i["f1"]), "dice": r["dice"], "dice_interval": list(i["dice"])}
    return row


def study_robustness(args) -> None:
    rows = []
    for cell in args.cells.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            rows.append(run_cell(args, cell, seed))
            print(json.dumps(rows[-1]), flush=True)
    labels = [m.label for m in methods(args.methods)]
    header = ["cell", "seed", "test volume AUC [95 %]", "intensity baseline"]
    header += [h for label in labels for h in (f"{label} F1 [95 %]", f"{label} Dice [95 %]")] + ["note"]
    lines = []
    for r in rows:
        cells = [x for label in labels for x in (ci(r[label]["f1"], r[label]["f1_interval"]),
                                                 ci(r[label]["dice"], r[label]["dice_interval"]))]
        note = "; ".join(n for n, flag in (("at chance", r["chance"]), ("below the baseline", r["below_baseline"])) if flag)
        lines.append([r["cell"], r["seed"], ci(r["auc"], r["auc_interval"]), r["baseline"], *cells, note])
    print("\n" + table(header, lines))


def add_robustness(sub) -> None:
    p = sub.add_parser("robustness", help="one recipe across generator settings nobody tuned for",
                       description="Each cell is a tonno synth --kind brain data set (default: 120 MS-like brains; "
                                   "faint: lesion contrast x 0.5; thick: re-acquired at 1 x 1 x 3 mm; bias: a bias "
                                   "field of 0.3; few: 40 brains) and a tonno benchmark --recipe RECIPE on it; foreign: "
                                   "48 brains of ../shared/foreign/foreign_brains.py --seed 100+S to train, 24 of --seed "
                                   "200+S to test. Prints per cell and seed the test volume AUC, the intensity baseline "
                                   "and each method's F1 and Dice with their intervals.")
    p.add_argument("out")
    p.add_argument("--cells", default=",".join([*CELLS, "foreign"]))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--recipe", default="small-lesions")
    p.add_argument("--methods", default="tonno,layercam")
    p.add_argument("--quality", default="demo", choices=list(PRESETS))
    p.set_defaults(func=study_robustness)


# ---------------------------------------------------------------------------------------------------- foreign


def foreign_brains(folder: Path, n: int, seed: int) -> Path:
    """``foreign_brains.py FOLDER --n N --seed SEED`` unless ``folder`` holds them already."""
    import subprocess
    import sys

    if not (folder / "labels.csv").exists():
        subprocess.run([sys.executable, str(FOREIGN_SCRIPT), str(folder), "--n", str(n), "--seed", str(seed)], check=True)
    return folder


def calibrate_and_test(root: Path, train: Path, test: Path) -> Path:
    """``root/labels.csv``: every case of ``train`` and of ``test`` (absolute paths). ``tonno benchmark --checkpoint``
    recognises images by content: the checkpoint's validation images calibrate, its training images are left out,
    and every image of ``test`` is a test case. A ``group`` column is kept (a row without one reads as an error)."""
    rows = [{**r, "image": str((d / r["image"]).resolve()), "mask": str((d / r["mask"]).resolve())}
            for d in (train, test) for r in csv.DictReader(open(d / "labels.csv", newline=""))]
    root.mkdir(parents=True, exist_ok=True)
    grouped = any("group" in r for r in rows)
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["case", "label", "image", "mask", *(["group"] if grouped else [])],
                                extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return root / "labels.csv"


def foreign_benchmark(root: Path, recipe: str, seeds: tuple[int, int], specs, quality: str,
                      checkpoint: Path | None = None, sizes: tuple[int, int] = (48, 24)) -> BenchmarkResult:
    """Train ``recipe`` on ``sizes[0]`` foreign brains of ``seeds[0]`` (unless ``checkpoint`` is given), then
    ``tonno benchmark --checkpoint`` on all ``sizes[1]`` brains of ``seeds[1]`` (thresholds on the run's validation
    brains)."""
    train = foreign_brains(root / f"train-{seeds[0]}", sizes[0], seeds[0])
    test = foreign_brains(root / f"test-{seeds[1]}", sizes[1], seeds[1])
    if checkpoint is None:
        train_once(train, root / "run", recipe_config(recipe, dict(device="cpu", seed=0)))
        checkpoint = root / "run" / "checkpoint_best.pt"
    data = calibrate_and_test(root / "calibrate-and-test", train, test)
    cfg = BenchmarkConfig(train=recipe_config(recipe, dict(device="cpu")), checkpoint=str(checkpoint), methods=specs,
                          settings=PRESETS[quality], device="cpu", seed=0)
    return benchmark(data, root / "bench", cfg)


def study_foreign(args) -> None:
    start = time.perf_counter()
    result = foreign_benchmark(Path(args.out), args.recipe, (args.train_seed, args.test_seed), methods(args.methods),
                               args.quality, Path(args.checkpoint) if args.checkpoint else None)
    c = result.classification
    print(f"{(time.perf_counter() - start) / 60:.1f} min; test volume AUC {ci(c.auc, c.interval)}, "
          f"intensity baseline {c.baseline.describe()}")
    print(result.table_md.read_text())


def finished_benchmark(bench: Path):
    """``(benchmark.json as a dict, {case name: Case} of its data)`` of a finished ``tonno benchmark`` folder."""
    info = json.loads((bench / "benchmark.json").read_text())
    return info, {c.case: c for c in read_cases(info["data"])}


def benchmark_heatmap(bench: Path, case: str, label: str):
    """The heatmap ``(D, H, W)`` float32 that a finished benchmark wrote for ``case`` and method ``label``."""
    import nibabel as nib
    import numpy as np

    from tonno_engine.data.heatmap_folder import heatmap_path

    return np.asarray(nib.load(heatmap_path(bench / "heatmaps", case, label)).dataobj, np.float32)


def study_localisation(args) -> None:
    """Where each method's heat is on the positive test cases of a finished benchmark, threshold-free."""
    import nibabel as nib
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from tonno_engine.data.foreground import foreground_mask

    bench = Path(args.bench)
    info, cases = finished_benchmark(bench)
    lines = []
    for label in info["methods"]:
        hit, auc, top = [], [], []
        for name in info["test_cases"]:
            case = cases[name]
            if case.label != 1 or case.mask is None:
                continue
            heat = benchmark_heatmap(bench, name, label)
            truth = np.asarray(nib.load(case.mask).dataobj) > 0
            inside = foreground_mask(np.asarray(nib.load(case.image).dataobj, np.float32)) | truth
            ranked = np.where(inside, heat, -np.inf).ravel()
            hit.append(bool(truth.flat[int(np.argmax(ranked))]))
            auc.append(roc_auc_score(truth[inside], heat[inside]))
            top.append(float(truth.ravel()[np.argsort(ranked)[-max(1, int(truth.sum())):]].mean()))
        lines.append([label, f"{sum(hit)} of {len(hit)}", f"{np.mean(auc):.3f}", f"{np.mean(top):.2f}"])
    print(table(["method", "hottest voxel in a lesion", "voxel AUC, lesion vs the rest of the foreground (mean)",
                 "lesion share of as many hottest voxels as lesion voxels (mean)"], lines))


def add_localisation(sub) -> None:
    p = sub.add_parser("localisation", help="threshold-free: where the heat is on a benchmark's positive test cases",
                       description="For a finished tonno benchmark folder: per method, over its positive test cases, "
                                   "whether the hottest foreground voxel lies in a lesion, the voxel AUC of lesion "
                                   "against the rest of the foreground, and the lesion share of the hottest voxels.")
    p.add_argument("bench")
    p.set_defaults(func=study_localisation)


def add_foreign(sub) -> None:
    p = sub.add_parser("foreign", help="train on foreign brains of one seed, test on another's",
                       description="Issue 42's must-show: RECIPE trained on 48 brains of ../shared/foreign/"
                                   "foreign_brains.py --seed TRAIN_SEED, then tonno benchmark --checkpoint on all 24 of "
                                   "--seed TEST_SEED (thresholds calibrated on the run's own validation brains).")
    p.add_argument("out")
    p.add_argument("--recipe", default="auto")
    p.add_argument("--train-seed", type=int, default=1)
    p.add_argument("--test-seed", type=int, default=2)
    p.add_argument("--checkpoint", default="", help="a trained checkpoint (skips training)")
    p.add_argument("--methods", default="tonno,layercam")
    p.add_argument("--quality", default="demo", choices=list(PRESETS))
    p.set_defaults(func=study_foreign)


# ---------------------------------------------------------------------------------------------------- intensity-baseline


def study_intensity_baseline(args) -> None:
    from tonno_engine.data.images import load_image
    from tonno_engine.data.preprocessing import Preprocessing
    from tonno_engine.evaluation.intensity import intensity_baseline, robust_extremes

    lines = []
    for data in args.data:
        cases = read_cases(data)
        for mode in args.intensity.split(","):
            prep = Preprocessing(mode)
            b = intensity_baseline([c.label for c in cases],
                                   [robust_extremes(prep.apply(load_image(c.image))[0]) for c in cases])
            lines.append([data, len(cases), mode, ci(b.bright, b.bright_interval), ci(b.dark, b.dark_interval)])
    print(table(["data", "cases", "intensity", "bright AUC [95 %]", "dark AUC [95 %]"], lines))


def add_intensity_baseline(sub) -> None:
    p = sub.add_parser("intensity-baseline", help="the intensity baseline of whole data sets",
                       description="Per data set and intensity mode: the AUC of a threshold on the brightest (and the "
                                   "darkest) robust intensity, with 95 % intervals over all cases. Training and tonno "
                                   "benchmark compute it on the images as stored (none).")
    p.add_argument("data", nargs="+")
    p.add_argument("--intensity", default="robust,none")
    p.set_defaults(func=study_intensity_baseline)


# ---------------------------------------------------------------------------------------------------- planes


def study_planes(args) -> None:
    from tonno_engine.apps.classification import volume_score
    from tonno_engine.evaluation.auc import auc_interval, roc_auc
    from tonno_engine.models.checkpoint import load_checkpoint

    _, test = split_cases(read_cases(args.data), 0.3, 0)
    labels = [c.label for c in test]
    print(table(["checkpoint", "planes", "held-out volume AUC [95 %]"], []))
    for path in args.checkpoints:
        loaded = load_checkpoint(path, "cpu")
        for planes in (int(p) for p in args.planes.split(",")):
            scores = [volume_score(c, loaded, ReconstructionSettings(), planes=planes, seed=i)[0][0]
                      for i, c in enumerate(test)]
            print(f"| {path} | {planes} | {ci(roc_auc(labels, scores), auc_interval(labels, scores))} |", flush=True)


def add_planes(sub) -> None:
    p = sub.add_parser("planes", help="how many random planes a volume score needs",
                       description="The held-out volume AUC of each checkpoint (tonno benchmark's test split of DATA, "
                                   "30 %, seed 0) when a case scores its largest logit over P uniform random planes.")
    p.add_argument("data")
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--planes", default="64,256,1024")
    p.set_defaults(func=study_planes)


# ---------------------------------------------------------------------------------------------------- budget


def budget_spec(name: str) -> MethodSpec:
    from tonno_engine.base.solver_settings import SolverSettings

    if name == "tonno-iterative-tv":  # total variation (strength 0.1) and non-negativity
        return MethodSpec("tonno-iterative", solver=SolverSettings(regulariser="tv", strength=0.1, nonnegative=True))
    return MethodSpec(name)


def run_budget(args, directions: int, slices: int) -> list[dict]:
    cfg = BenchmarkConfig(checkpoint=Path(args.checkpoint), methods=[budget_spec(m) for m in args.methods.split(",")],
                          settings=PRESETS["demo"].override(dict(directions=directions, slices=slices)), device="cpu", seed=0)
    start = time.perf_counter()
    result = benchmark(args.data, Path(args.out) / f"{directions}x{slices}", cfg)
    seconds = time.perf_counter() - start
    with open(result.table_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    evaluations = directions * (slices + 2)
    print(f"L={directions} M={slices}: {evaluations} evaluations per case, {seconds:.0f} s", flush=True)
    return [{**r, "L": directions, "M": slices, "evaluations": evaluations, "seconds": seconds} for r in rows]


def budget_table(rows: list[dict]) -> str:
    return table(["method", "L", "M", "evaluations per case", "F1 [95 % interval]", "Dice [95 % interval]"],
                 [[r["method"], r["L"], r["M"], r["evaluations"],
                   ci(float(r["f1"]), (float(r["f1_lo"]), float(r["f1_hi"]))),
                   ci(float(r["dice"]), (float(r["dice_lo"]), float(r["dice_hi"])))]
                  for r in sorted(rows, key=lambda r: (r["method"], r["evaluations"]))]) + "\n"


def budget_plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for offset, method in enumerate(dict.fromkeys(r["method"] for r in rows)):
        for m, marker in zip(sorted({r["M"] for r in rows}), "os^D"):
            pts = sorted((r for r in rows if r["method"] == method and r["M"] == m), key=lambda r: r["evaluations"])
            x = [r["evaluations"] * (1 + 0.03 * offset) for r in pts]  # a small shift keeps the bars apart
            y = [float(r["dice"]) for r in pts]
            err = [[v - float(r["dice_lo"]) for v, r in zip(y, pts)], [float(r["dice_hi"]) - v for v, r in zip(y, pts)]]
            ax.errorbar(x, y, yerr=err, marker=marker, capsize=3, color=f"C{offset}", label=f"{method}, M = {m}")
    ax.set_xscale("log")
    ax.set_xlabel("network evaluations per case, L × (M + 2)")
    ax.set_ylabel("Dice (95 % bootstrap interval)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def reference_rows(spec: str) -> list[dict]:
    """``DIR@LxM``: ToNNO's rows of an earlier benchmark's ``DIR/table.csv``, with that budget."""
    folder, budget = spec.rsplit("@", 1)
    directions, slices = (int(v) for v in budget.split("x"))
    with open(Path(folder) / "table.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["label"] == "tonno"]
    return [{**r, "method": f"{r['method']} (reference)", "L": directions, "M": slices,
             "evaluations": directions * (slices + 2), "seconds": float("nan")} for r in rows]


def study_budget(args) -> None:
    budgets = [tuple(int(v) for v in b.split("x")) for b in args.budgets.split(",")]
    rows = [row for directions, slices in budgets for row in run_budget(args, directions, slices)]
    rows += reference_rows(args.reference) if args.reference else []
    out = Path(args.out)
    (out / "budgets.md").write_text(budget_table(rows))
    budget_plot(rows, out / "budgets.png")
    print(budget_table(rows))
    print(f"table and plot: {out / 'budgets.md'}, {out / 'budgets.png'}")


def add_budget(sub) -> None:
    p = sub.add_parser("budget", help="quality per network evaluation over a grid of L x M budgets",
                       description="Each budget LxM is one tonno benchmark --checkpoint run (the demo preset with L "
                                   "directions on the hemisphere and M slices each: L x (M + 2) network evaluations "
                                   "per case) under OUT/LxM; OUT/budgets.md gathers F1 and Dice with their intervals, "
                                   "OUT/budgets.png plots Dice against evaluations. tonno-iterative-tv is "
                                   "tonno-iterative with total variation (0.1) and non-negativity.")
    p.add_argument("data")
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--budgets", default="19x12,38x12,96x12,19x24,38x24,96x24", help="LxM, comma-separated")
    p.add_argument("--methods", default="tonno,tonno-iterative,tonno-iterative-tv")
    p.add_argument("--reference", default="", help="DIR@LxM: ToNNO's row of an earlier benchmark at its budget")
    p.set_defaults(func=study_budget)


# ---------------------------------------------------------------------------------------------------- stage2


def stage2_config(args, rule) -> BenchmarkConfig:
    from tonno_engine.apps.benchmark_stage2 import Stage2Config
    from tonno_engine.apps.demo import demo_config
    from tonno_engine.training.segmenter import SegmenterConfig

    stage2 = Stage2Config(source=args.source, rule=rule, rounds=args.rounds,
                          segmenter=SegmenterConfig(steps=args.steps, patch=args.patch, seed=0, device="cpu"))
    if args.demo:
        cfg = demo_config("cpu")
    else:
        cfg = BenchmarkConfig(train=recipe_config(args.recipe, dict(device="cpu", seed=0)), methods=methods(args.methods),
                              settings=PRESETS[args.quality], device="cpu", seed=0)
    cfg.stage2 = stage2
    return cfg


def run_rule(args, rule) -> dict:
    def span(i):
        return f"[{i[0]:+.3f}, {i[1]:+.3f}]"

    start = time.perf_counter()
    result = benchmark(args.data, args.out, stage2_config(args, rule))
    keep = args.out / f"stage2-{args.source}-b{rule.band:g}-m{rule.margin_mm:g}-s{args.steps}-r{args.rounds}"
    keep.mkdir(exist_ok=True)
    for name in ("table.md", "table.csv", "stage2/stage2.json", "stage2/Dataset999_Benchmark/tonno_export.json"):
        shutil.copy2(args.out / name, keep / Path(name).name)
    record = json.loads((args.out / "stage2" / "stage2.json").read_text())
    rows = {r["label"]: r for r in result.rows}
    source, second = rows[record["source"]], rows["stage2"]
    line = {"band": rule.band, "margin_mm": rule.margin_mm, "steps": args.steps, "rounds": args.rounds,
            "source": record["source"], "probability_level": record["probability_level"],
            "minutes": (time.perf_counter() - start) / 60}
    for key in ("f1", "dice"):
        line[f"source_{key}"], line[f"stage2_{key}"] = source[key], second[key]
        line[f"diff_{key}"] = record["difference_to_source"][key]
    print(f"band {rule.band:g}, margin {rule.margin_mm:g} mm, {args.steps} steps, {args.rounds} round(s), "
          f"source {record['source']} ({line['minutes']:.1f} min), probability level {record['probability_level']:.3g}: "
          f"F1 {source['f1']:.3f} -> {second['f1']:.3f} (diff {span(line['diff_f1'])}), "
          f"Dice {source['dice']:.3f} -> {second['dice']:.3f} (diff {span(line['diff_dice'])})", flush=True)
    return line


def stage2_timing(args) -> dict:
    """Seconds of one ToNNO reconstruction (``demo`` preset) and one stage-2 prediction of the same volume."""
    import numpy as np
    import torch
    from timing import alternating_pairs, timed

    from tonno_engine.apps.stage2 import predict_volume
    from tonno_engine.data.images import load_image
    from tonno_engine.methods.case import Scan, reconstruct_case_iter
    from tonno_engine.models.checkpoint import load_checkpoint
    from tonno_engine.models.segmenter import load_segmenter

    tested = {line.split(",")[0] for line in (args.out / "stage2" / "test.csv").read_text().splitlines()[1:]}
    case = next(c for c in read_cases(args.data) if c.case in tested and c.label)
    volume = load_image(case.image)
    loaded = load_checkpoint(args.out / "model" / "checkpoint_best.pt", "cpu")
    segmenter, meta = load_segmenter(args.out / "stage2" / "model" / "segmenter.pt", "cpu")

    def tonno():
        return timed(torch.device("cpu"), lambda: [None for _ in reconstruct_case_iter(
            Scan.of(volume), loaded, [MethodSpec("tonno")], PRESETS["demo"])])

    def predict():
        return timed(torch.device("cpu"), predict_volume, segmenter, volume.array, meta, "cpu")

    tonno(), predict()  # warm-up
    pairs = alternating_pairs(tonno, predict, args.repeats)
    ratio = float(np.exp(np.mean(np.log([b.wall / a.wall for a, b in pairs]))))
    print(f"{case.case} {volume.array.shape}: ToNNO (demo preset) and stage-2 prediction, seconds: "
          + ", ".join(f"({a.wall:.2f}, {b.wall:.2f})" for a, b in pairs)
          + f"; prediction ÷ reconstruction {ratio:.3f}", flush=True)
    return {"case": case.case, "shape": list(volume.array.shape), "pairs": [[a.wall, b.wall] for a, b in pairs],
            "ratio": ratio}


def study_stage2(args) -> None:
    from tonno_engine.evaluation.pseudo_labels import PseudoLabelRule

    lines = [run_rule(args, PseudoLabelRule(band=float(b), margin_mm=float(m)))
             for b in args.bands.split(",") for m in args.margins.split(",")]
    summary = {"rules": lines, "timing": stage2_timing(args) if args.repeats else None}
    with open(args.out / "bench_stage2.jsonl", "a") as fh:  # one line per run of this study
        fh.write(json.dumps(summary) + "\n")


def add_stage2(sub) -> None:
    p = sub.add_parser("stage2", help="the second stage against the heatmap it learnt from",
                       description="Table 2 with tonno benchmark --stage2, the paired interval of the difference to the "
                                   "source heatmap, and the time of one stage-2 prediction beside one ToNNO "
                                   "reconstruction (alternating pairs). --demo: the settings of tonno demo (give its "
                                   "folder as OUT and its data/ as DATA to reuse its model and heatmaps). Each (band, "
                                   "margin) is kept in OUT/stage2-SOURCE-bBAND-mMARGIN-sSTEPS-rROUNDS/.")
    p.add_argument("data", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--demo", action="store_true")
    p.add_argument("--recipe", default="small-lesions")
    p.add_argument("--methods", default="")
    p.add_argument("--quality", default="demo")
    p.add_argument("--source", default="best")
    p.add_argument("--bands", default="0.5")
    p.add_argument("--margins", default="2")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--patch", type=int, default=48)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="timing pairs (0: no timing)")
    p.set_defaults(func=study_stage2)


# ---------------------------------------------------------------------------------------------------- foreign-input


def spread(values, digits: int = 1) -> str:
    """``median [p10, p90]`` of ``values`` (``–`` when empty)."""
    import numpy as np

    if not len(values):
        return "–"
    q = np.percentile(values, [50, 10, 90])
    return f"{q[0]:.{digits}f} [{q[1]:.{digits}f}, {q[2]:.{digits}f}]"


def lesion_components(mask):
    """The 26-connected lesion components of ``mask``: (labelled array, count)."""
    import numpy as np
    from scipy import ndimage

    return ndimage.label(mask > 0, structure=np.ones((3, 3, 3)))


def load_foreign(data) -> list[dict]:
    """Every case of ``data``: raw array, spacing, mask and its lesion components, their diameters (mm)."""
    import numpy as np

    from tonno_engine.data.images import load_image

    cases = []
    for c in read_cases(data):
        vol = load_image(c.image)
        mask = load_image(c.mask, kind="mask").array > 0.5 if c.mask else np.zeros(vol.array.shape, bool)
        labels, count = lesion_components(mask)
        voxel = float(np.prod(vol.spacing))
        sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        cases.append({"case": c, "volume": vol, "mask": mask, "components": labels, "count": count,
                      "diameters": [float((6 * n * voxel / np.pi) ** (1 / 3)) for n in sizes]})
    return cases


def brain_mask(array):
    """The foreground :func:`~tonno_engine.evaluation.intensity.robust_extremes` reads (above Otsu's threshold, holes
    filled), or, where one value fills over 30 % of the volume (a background set to a constant, as after
    :func:`robust_brain`), every other voxel, holes filled."""
    import numpy as np
    from scipy.ndimage import binary_fill_holes
    from skimage.filters import threshold_otsu

    values, counts = np.unique(array[::7], return_counts=True)
    if counts.max() > 0.3 * counts.sum():
        return binary_fill_holes(array != values[counts.argmax()])
    return binary_fill_holes(array > threshold_otsu(array[::7]))


def robust_brain(array):
    """The what-if intensity mode ``robust-brain``: the robust z-score of ``Preprocessing("robust")`` with the median
    and IQR of :func:`brain_mask` (not of every voxel above the minimum), clipped at ±20, 0 outside the mask."""
    import numpy as np

    brain = brain_mask(array)
    q1, median, q3 = np.percentile(array[brain], [25, 50, 75])
    out = np.clip((array - median) / max((q3 - q1) / 1.349, 1e-6), -20, 20)
    out[~brain] = 0.0
    return out.astype(np.float32)


def prepare(volume, mode: str):
    """``Preprocessing(mode)`` of a loaded volume, or the what-if :func:`robust_brain`."""
    from tonno_engine.data.preprocessing import Preprocessing

    return robust_brain(volume.array) if mode == "robust-brain" else Preprocessing(mode).apply(volume)[0]


def intensity_rows(cases, mode: str, anchors: int) -> dict:
    """After ``Preprocessing(mode)``: lesion voxels against the 2-voxel ring around each lesion and the brightest
    non-lesion voxels; where a volume's ``anchors`` brightest blob-like spots (the anchors' candidates) fall."""
    import numpy as np
    from scipy import ndimage

    from tonno_engine.data.spots import bright_spots

    out = {k: [] for k in ("lesion", "ring", "raw_ratio", "diff", "top_pos", "top_neg", "above", "ring_spread",
                           "spot_hits", "spot_any", "saturated")}
    for c in cases:
        raw = c["volume"].array
        z = prepare(c["volume"], mode)
        c.setdefault("prepared", {})[mode] = z
        fg = raw > raw.min()
        brain = c.setdefault("brain", brain_mask(raw))
        out["saturated"].append(float((z[brain] >= z.max() - 1e-4).mean()))
        lesion = c["mask"]
        near = ndimage.binary_dilation(lesion, iterations=2) if lesion.any() else lesion
        other = fg & ~near
        top = float(np.percentile(z[other], 99.9))
        out["top_pos" if c["case"].label else "top_neg"].append(top)
        spots = bright_spots(z, anchors)
        if not c["case"].label or not lesion.any():
            continue
        idx = np.rint((spots + 1) / 2 * (np.array(z.shape) - 1)).astype(int)
        hit = ndimage.binary_dilation(lesion, iterations=1)[tuple(idx.T)]
        out["spot_hits"].append(float(hit.mean()))
        out["spot_any"].append(bool(hit.any()))
        out["above"].append(float((z[lesion] > top).mean()))
        rings = []
        for k, box in enumerate(ndimage.find_objects(c["components"]), 1):  # each lesion in its box + 3 voxels
            box = tuple(slice(max(b.start - 3, 0), b.stop + 3) for b in box)
            one = c["components"][box] == k
            ring = ndimage.binary_dilation(one, iterations=2) & ~lesion[box] & fg[box]
            if not ring.any():
                continue
            zb, rb = z[box], raw[box]
            lz, rz = float(np.median(zb[one])), float(np.median(zb[ring]))
            out["lesion"].append(lz)
            out["ring"].append(rz)
            out["diff"].append(lz - rz)
            out["raw_ratio"].append(float(np.median(rb[one]) / max(float(np.median(rb[ring])), 1e-6)))
            rings.append(rz)
        if len(rings) > 1:
            out["ring_spread"].append(max(rings) - min(rings))
    return out


def sampled_rows(cases, recipe: str, geometry: str, slice_size: int, bags: int, seed: int, mode: str | None = None) -> dict:
    """The recipe's training planes (its sampler: :func:`random_planes` with training augmentation, anchored
    offsets when the recipe anchors) on every volume, ``bags`` bags of ``slices_per_volume`` each: millimetres per
    slice pixel, lesions in slice pixels, slices that cut a lesion (the mask cut by the same planes, trilinear
    > 0.5), their lesion pixels, and whether the lesion is the slice's brightest pixel."""
    import numpy as np
    import torch

    from tonno_engine.data.augment import Augmentation, random_planes
    from tonno_engine.evaluation.auc import roc_auc
    from tonno_engine.tomography.frames import make_frame
    from tonno_engine.tomography.slicing import slice_stacks
    from tonno_engine.training.sampling import LoadedCase, anchored_offsets

    cfg = recipe_config(recipe, dict(geometry=geometry, slice_size=slice_size or None, seed=seed, intensity=mode))
    mode = cfg.intensity or "none"
    size, step = (cfg.slice_size, cfg.slice_size), 2.0 / (cfg.slice_size - 1)
    gen, aug = torch.Generator().manual_seed(seed), Augmentation()
    out = {k: [] for k in ("mm", "lesion_px", "cuts", "bag_cuts", "pixels", "brightest", "pos_max", "neg_max",
                           "in_brain")}
    for c in cases:
        vol = c["volume"]
        array = c["prepared"][mode]
        frame = make_frame(array.shape, geometry=geometry, spacing=vol.spacing, field_of_view=cfg.field_of_view)
        lc = LoadedCase(c["case"], torch.from_numpy(array), frame)
        lc.spots = c.setdefault("spots", {}).get(mode)  # the anchors' spots, found once per intensity mode
        mask = torch.from_numpy(c["mask"].astype(np.float32))
        brain = torch.from_numpy(c.setdefault("brain", brain_mask(vol.array)).astype(np.float32))
        half = torch.tensor([(n - 1) * s / 2 for n, s in zip(array.shape, vol.spacing)], dtype=torch.float64)
        mm = []
        for _ in range(bags):
            offsets, n, u, v = random_planes(cfg.slices_per_volume, gen, aug)
            if cfg.anchors:
                offsets = anchored_offsets(lc, n, cfg.anchors, gen, offsets)
            basis = tuple(frame.for_slicing(w) for w in (n, u, v))
            pu, pv = ((frame.for_slicing(w) * step * half).norm(dim=1) for w in (u, v))
            mm += (pu * pv).sqrt().tolist()
            image = slice_stacks(lc.volume, offsets, basis, size, cfg.context)[:, cfg.context and 1 or 0]
            peak = image.flatten(1).amax(1)
            out["in_brain"] += (slice_stacks(brain, offsets, basis, size)[:, 0] > 0.5).flatten(1).float().mean(1).tolist()
            if not c["case"].label:
                out["neg_max"] += peak.tolist()
                continue
            cut = slice_stacks(mask, offsets, basis, size)[:, 0] > 0.5
            hits = cut.flatten(1).any(1)
            out["cuts"] += hits.tolist()
            out["bag_cuts"].append(bool(hits.any()))
            for i in torch.nonzero(hits).flatten().tolist():
                out["pixels"].append(int(cut[i].sum()))
                out["brightest"].append(bool(image[i][cut[i]].max() >= peak[i]))
                out["pos_max"].append(float(peak[i]))
        c["spots"][mode] = lc.spots
        out["mm"] += mm
        out["lesion_px"] += [d / float(np.median(mm)) for d in c["diameters"]]
    labels = [1] * len(out["pos_max"]) + [0] * len(out["neg_max"])
    out["slice_auc"] = roc_auc(labels, out["pos_max"] + out["neg_max"]) if out["pos_max"] and out["neg_max"] else float("nan")
    out["cfg"] = cfg
    return out


def checkpoint_logits(cases, path) -> list:
    """A checkpoint's logits on its own validation volumes of ``cases`` at its validation planes
    (:func:`validation_planes`): lesion-cutting slices of positive volumes against their lesion-free slices and the
    negative volumes' slices, the slice AUC (cutting against negative), the volume AUC, the spread of all logits, and
    the slices that miss the brain (:func:`brain_mask`): their logits, and how often one is its volume's maximum."""
    import numpy as np
    import torch

    from tonno_engine.data.preprocessing import Preprocessing
    from tonno_engine.evaluation.auc import roc_auc
    from tonno_engine.models.checkpoint import load_checkpoint
    from tonno_engine.tomography.frames import make_frame
    from tonno_engine.tomography.slicing import slice_stacks
    from tonno_engine.training.config import TrainConfig
    from tonno_engine.training.sampling import inference_logits, validation_planes

    loaded = load_checkpoint(path, "cpu")
    d, cfg = loaded.description, TrainConfig.from_dict(loaded.description.train_args)
    cfg.amp = False
    prep = Preprocessing.from_dict(d.preprocessing)
    named = {c["case"].case: c for c in cases}
    val = [named[name] for name in d.val_cases if name in named]  # in the run's order: its planes follow it
    size = (cfg.slice_size, cfg.slice_size)
    cutting, free, negative, volumes, empty, empty_max = [], [], [], [], [], []
    with torch.no_grad():
        for c, (offsets, n, u, v) in zip(val, validation_planes(len(val), cfg)):
            array, spacing = prep.apply(c["volume"])
            frame = make_frame(array.shape, geometry=d.geometry, spacing=spacing, field_of_view=d.field_of_view)
            basis = tuple(frame.for_slicing(w) for w in (n, u, v))
            logits = inference_logits(loaded.model, slice_stacks(torch.from_numpy(array), offsets, basis, size, cfg.context),
                                      cfg)[:, 0].numpy()
            volumes.append((c["case"].label, float(logits.max())))
            brain = torch.from_numpy(c.setdefault("brain", brain_mask(c["volume"].array)).astype(np.float32))
            outside = ~(slice_stacks(brain, offsets, basis, size)[:, 0] > 0.5).flatten(1).any(1).numpy()
            empty += logits[outside].tolist()
            empty_max.append(bool(outside[logits.argmax()]))
            if not c["case"].label:
                negative += logits.tolist()
                continue
            hit = (slice_stacks(torch.from_numpy(c["mask"].astype(np.float32)), offsets, basis, size)[:, 0] > 0.5)
            hit = hit.flatten(1).any(1).numpy()
            cutting += logits[hit].tolist()
            free += logits[~hit].tolist()
    every = cutting + free + negative
    return [str(path), len(val), spread(cutting, 2), spread(free, 2), spread(negative, 2),
            f"{roc_auc([1] * len(cutting) + [0] * len(negative), cutting + negative):.2f}" if cutting else "–",
            f"{roc_auc(*zip(*volumes)):.2f}", f"{np.std(every):.3g}",
            f"{spread(empty, 2)} ({len(empty) / len(every):.2f} of slices)", f"{np.mean(empty_max):.2f}"]


def write_what_if(data, folder, crop: bool = False) -> None:
    """``data``'s images through :func:`robust_brain` as NIfTI with their own affines in ``folder``, and a
    ``labels.csv`` whose masks are the originals: train on it with ``--intensity none`` to try the what-if. ``crop``:
    image and mask cut to the brain's bounding box (:func:`brain_mask` of the raw image, 2 voxels of margin), the
    masks written beside the images, so that planes stay near the brain and a slice pixel is smaller."""
    import nibabel as nib
    import numpy as np
    from scipy import ndimage

    folder = Path(folder)
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    lines = ["case,label,image,mask"]
    for c in read_cases(data):
        image = nib.load(str(c.image))
        array = np.asarray(image.dataobj, np.float32)
        mask_path = str(Path(c.mask).resolve()) if c.mask else ""
        box = (slice(None),) * 3
        if crop:
            box = tuple(slice(max(b.start - 2, 0), b.stop + 2) for b in ndimage.find_objects(brain_mask(array).astype(int))[0])
            affine = image.affine.copy()
            affine[:3, 3] += affine[:3, :3] @ np.array([b.start for b in box])
            if c.mask:
                mask = np.asarray(nib.load(str(c.mask)).dataobj)[box]
                mask_path = f"masks/{c.case}.nii.gz"
                nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), str(folder / mask_path))
        out = robust_brain(array)[box]
        nib.save(nib.Nifti1Image(out, affine if crop else image.affine), str(folder / "images" / f"{c.case}.nii.gz"))
        lines.append(f"{c.case},{c.label},images/{c.case}.nii.gz,{mask_path}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")


SAMPLED_HEADER = ["data", "recipe", "geometry", "intensity", "slice px", "mm per slice pixel", "lesion diameter in pixels",
                  "share of a slice in the brain; slices with none", "slices cutting a lesion",
                  "bags cutting one (slices per bag)", "lesion pixels per cutting slice", "lesion = slice's brightest pixel",
                  "slice-max AUC (cutting vs negative)"]
INTENSITY_HEADER = ["data", "intensity", "brain voxels at the volume's maximum", "lesion median", "ring median",
                    "lesion − ring", "raw lesion/ring ratio", "ring spread in a volume", "non-lesion 99.9th pct (pos)",
                    "(neg)", "lesion voxels above it", "top spots on a lesion / volumes with one"]
LOGITS_HEADER = ["checkpoint", "validation volumes", "logit: lesion-cutting slices", "lesion-free slices of positive "
                 "volumes", "slices of negative volumes", "slice AUC (cutting vs negative)", "volume AUC (max logit)",
                 "std of all logits", "slices without brain: logit (share)", "volumes whose max is such a slice"]


def describe_cases(data, cases) -> None:
    import numpy as np

    diameters = [d for c in cases for d in c["diameters"]]
    shapes = np.array([c["volume"].array.shape for c in cases])
    spacings = np.array([c["volume"].spacing for c in cases])
    print(f"{data}: {len(cases)} cases, {sum(c['case'].label for c in cases)} positive, {len(diameters)} lesions; "
          f"shape median {np.median(shapes, 0).astype(int).tolist()}, spacing min/max per case "
          f"{spread(spacings.min(1), 2)} / {spread(spacings.max(1), 2)} mm; lesion equivalent diameter "
          f"{spread(diameters)} mm", flush=True)


def intensity_line(data, mode: str, s: dict) -> list:
    import numpy as np

    spots = f"{np.mean(s['spot_hits']):.2f} / {np.mean(s['spot_any']):.2f}" if s["spot_hits"] else "–"
    return [data, mode, *(spread(s[k], 2) for k in ("saturated", "lesion", "ring", "diff", "raw_ratio", "ring_spread",
                                                     "top_pos", "top_neg", "above")), spots]


def sampled_line(data, recipe: str, geometry: str, cfg, s: dict) -> list:
    import numpy as np

    def share(key, digits=2):
        return f"{np.mean(s[key]):.{digits}f}" if s[key] else "–"

    empty = np.mean(np.array(s["in_brain"]) == 0)
    bags = f"{share('bag_cuts')} ({cfg.slices_per_volume})" if s["bag_cuts"] else "–"
    return [data, recipe, geometry, cfg.intensity, cfg.slice_size, spread(s["mm"], 2), spread(s["lesion_px"]),
            f"{spread(s['in_brain'], 2)}; {empty:.2f}", share("cuts", 3), bags, spread(s["pixels"], 0),
            share("brightest"), f"{s['slice_auc']:.2f}"]


def study_foreign_input(args) -> None:
    if args.write:
        return write_what_if(args.data[0], args.write, args.crop)
    what_if = [m for m in args.what_if.split(",") if m]
    rows, intensity, results = [], [], {}
    for data in args.data:
        cases = load_foreign(data)
        describe_cases(data, cases)
        for mode in sorted({recipe_config(r).intensity or "none" for r in args.recipes.split(",")} | set(what_if)):
            results[f"{data}|{mode}"] = s = intensity_rows(cases, mode, args.anchors)
            intensity.append(intensity_line(data, mode, s))
        for recipe in args.recipes.split(","):
            for geometry in args.geometries.split(","):
                for mode in [None, *what_if]:
                    start = time.perf_counter()
                    s = sampled_rows(cases, recipe, geometry, args.slice_size, args.bags, args.seed, mode)
                    cfg = s.pop("cfg")
                    results[f"{data}|{recipe}|{geometry}|{cfg.intensity}"] = s
                    rows.append(sampled_line(data, recipe, geometry, cfg, s))
                    print(f"{recipe} / {geometry} / {cfg.intensity}: {time.perf_counter() - start:.0f} s", flush=True)
    print("\n" + table(SAMPLED_HEADER, rows))
    print("\n" + table(INTENSITY_HEADER, intensity))
    if args.checkpoints:
        print("\n" + table(LOGITS_HEADER, [checkpoint_logits(cases, path) for path in args.checkpoints]))
    if args.out:
        Path(args.out).write_text(json.dumps(results))


def add_foreign_input(sub) -> None:
    p = sub.add_parser("foreign-input", help="what the network sees on a data set: slice pixels, lesion cuts, contrast",
                       description="What training sees on each DATA (labels.csv with lesion masks), through tonno's own "
                                   "code paths (the recipe's config, Preprocessing, frames, the training sampler with "
                                   "its augmentation and anchors): per recipe x geometry the millimetres per slice "
                                   "pixel, each lesion's equivalent diameter in slice pixels (median [p10, p90]), the "
                                   "share of training slices of positive volumes that cut a lesion (the mask cut by the "
                                   "same planes, trilinear > 0.5) and of bags with one, the lesion pixels of such a "
                                   "slice, how often the lesion is its brightest pixel, and the AUC of a slice's "
                                   "maximum (cutting slices against negative volumes' slices); per intensity mode the "
                                   "lesion and its 2-voxel ring, the brightest non-lesion voxels, and where the "
                                   "brightest blob-like spots (the anchors' candidates) fall. Nothing is trained.")
    p.add_argument("data", nargs="+")
    p.add_argument("--recipes", default="small-lesions,look-alikes")
    p.add_argument("--geometries", default="paper,physical")
    p.add_argument("--slice-size", type=int, default=0, help="override the recipes' slice side (0: theirs)")
    p.add_argument("--bags", type=int, default=8, help="bags of the recipe's slices_per_volume planes per volume")
    p.add_argument("--anchors", type=int, default=12, help="bright spots counted per volume (look-alikes' anchors)")
    p.add_argument("--what-if", default="robust-brain", help="intensity modes measured beside the recipes' (comma-"
                   "separated; robust-brain: the robust z-score over an Otsu brain mask, a study-only what-if; '': none)")
    p.add_argument("--checkpoints", nargs="*", default=[], help="checkpoints of a run on the (last) DATA: their "
                   "logits on its validation volumes, lesion-cutting slices against lesion-free ones")
    p.add_argument("--write", default="", help="measure nothing: write DATA's images as robust-brain makes them to "
                   "this folder (a data set to train with --intensity none)")
    p.add_argument("--crop", action="store_true", help="with --write: cut each image and mask to the brain's "
                   "bounding box")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="", help="a JSON file for every measured value")
    p.set_defaults(func=study_foreign_input)


# ---------------------------------------------------------------------------------------------------- petct


def combined_csv(root: Path, parts: list[Path], columns: list[str], meta: dict) -> Path:
    """``root/labels.csv``: every row of the ``parts`` folders' labels.csv, ``columns`` kept (paths absolute; the
    cases of part k > 0 named ``part<k>-<case>``: synthetic sets reuse names), and
    ``root/dataset.json`` = ``meta``. ``tonno benchmark --checkpoint`` knows the checkpoint's cases by content."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, d in enumerate(parts):
        for r in csv.DictReader(open(d / "labels.csv", newline="")):
            row = {c: str((d / r[c]).resolve()) if c.startswith(("image", "mask")) and r[c] else r[c] for c in columns}
            rows.append({**row, "case": f"part{k}-{row['case']}" if k else row["case"]})
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))
    return root / "labels.csv"


def pet_alone(data: Path, root: Path) -> Path:
    """``data`` (a petct folder) as a data set of its PET images alone: ``image`` = ``image_0000``, mode ``pet``."""
    root.mkdir(parents=True, exist_ok=True)
    rows = [{"case": r["case"], "label": r["label"], "image": str((data / r["image_0000"]).resolve()),
             "mask": str((data / r["mask"]).resolve()) if r["mask"] else ""}
            for r in csv.DictReader(open(data / "labels.csv", newline=""))]
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["case", "label", "image", "mask"])
        writer.writeheader()
        writer.writerows(rows)
    (root / "dataset.json").write_text(json.dumps({"intensity": "pet"}))
    return root


def paired_auc_difference(labels, a, b, resamples: int = 10_000) -> tuple[float, float]:
    """The 95 % percentile interval of AUC(a) − AUC(b) over the same cases, positives and negatives resampled apart
    (as :func:`~tonno_engine.evaluation.auc.auc_interval`), each resample drawing the same cases for both."""
    import numpy as np
    from scipy.stats import bootstrap

    from tonno_engine.evaluation.auc import _auc_of_samples

    labels, a, b = np.asarray(labels, bool), np.asarray(a, float), np.asarray(b, float)
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)

    def diff(p, n, axis=-1):
        p, n = p.astype(int), n.astype(int)
        return _auc_of_samples(a[p], a[n]) - _auc_of_samples(b[p], b[n])

    res = bootstrap((pos, neg), diff, n_resamples=resamples, vectorized=True, method="percentile",
                    random_state=np.random.default_rng(0), batch=max(1, 10**7 // (len(pos) * len(neg))))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def petct_arm(root: Path, name: str, train: Path, test: Path, args, intensity: str | None = None) -> dict:
    """Train ``recipe`` on ``train`` (``intensity``: over the data's modes), then ``tonno benchmark --checkpoint`` on
    ``train`` + ``test`` (thresholds on the run's validation cases, every ``test`` case tested); its result, per-case
    ToNNO arrays and volume scores."""
    from tonno_engine.apps.classification import volume_score
    from tonno_engine.evaluation.bootstrap import case_arrays
    from tonno_engine.models.checkpoint import load_checkpoint

    arm, recipe, quality = root / name, args.recipe, args.quality
    given = dict(device="cpu", seed=0, **(dict(steps=args.steps) if args.steps else {}),
                 **(dict(intensity=intensity) if intensity else {}))
    train_once(train, arm / "run", recipe_config(recipe, given))
    checkpoint = arm / "run" / "checkpoint_best.pt"
    header = next(csv.reader(open(train / "labels.csv", newline="")))
    data = combined_csv(arm / "calibrate-and-test", [train, test], header, json.loads((train / "dataset.json").read_text()))
    cfg = BenchmarkConfig(train=recipe_config(recipe, dict(device="cpu")), checkpoint=str(checkpoint),
                          methods=[MethodSpec("tonno")], settings=PRESETS[quality], device="cpu", seed=0)
    result = benchmark(data, arm / "bench", cfg)
    tested = json.loads((arm / "bench" / "benchmark.json").read_text())["test_cases"]
    with open(arm / "bench" / "heatmaps" / "metrics.csv", newline="") as fh:
        rows = {r["case"]: r for r in csv.DictReader(fh) if r["heatmap"].endswith("_tonno.nii.gz")}
    loaded = load_checkpoint(checkpoint, "cpu")
    cases = {c.case: c for c in read_cases(data)}
    scores = [volume_score(cases[n], loaded, ReconstructionSettings(), seed=k)[0][0] for k, n in enumerate(tested)]
    return {"result": result, "cases": tested, "arrays": case_arrays([rows[n] for n in tested]), "scores": scores,
            "labels": [cases[n].label for n in tested]}


def study_petct(args) -> None:
    """Issue 44's must-show: the same recipe given PET and CT against PET alone, on the same test cases."""
    from tonno_engine.evaluation.auc import auc_interval, roc_auc
    from tonno_engine.evaluation.bootstrap import bootstrap_intervals, metric_values

    root, start = Path(args.out), time.perf_counter()
    train = synth_once(root / "data-train", kind="petct", n=args.n_train, seed=args.train_seed)
    test = synth_once(root / "data-test", kind="petct", n=args.n_test, seed=args.test_seed)
    arms = {"PET + CT": petct_arm(root, "petct", train, test, args, f"pet,{args.ct_intensity}"),
            "PET alone": petct_arm(root, "pet", pet_alone(train, root / "pet-train"), pet_alone(test, root / "pet-test"),
                                   args)}
    both, alone = arms["PET + CT"], arms["PET alone"]
    assert both["cases"] == alone["cases"], "the arms must test the same cases"
    import numpy as np

    intervals = bootstrap_intervals({k: a["arrays"] for k, a in arms.items()}, baseline="PET alone")
    rows = []
    for name, arm in arms.items():
        f1 = float(metric_values(arm["arrays"], np.arange(len(arm["cases"])))["f1"])
        auc = roc_auc(arm["labels"], arm["scores"])
        rows.append([name, ci(auc, auc_interval(arm["labels"], arm["scores"])), ci(f1, intervals[name]["f1"])])
    auc_diff = roc_auc(both["labels"], both["scores"]) - roc_auc(alone["labels"], alone["scores"])
    f1_diff = float(metric_values(both["arrays"], np.arange(len(both["cases"])))["f1"]
                    - metric_values(alone["arrays"], np.arange(len(alone["cases"])))["f1"])
    rows.append(["difference (paired 95 %)", ci(auc_diff, paired_auc_difference(both["labels"], both["scores"],
                                                                             alone["scores"])),
                 ci(f1_diff, intervals["PET + CT"]["diff"]["f1"])])
    print(f"{(time.perf_counter() - start) / 60:.1f} min; {len(both['cases'])} test cases "
          f"({sum(both['labels'])} with lesions), recipe {args.recipe}, quality {args.quality}")
    print(table(["input", "test volume AUC", "ToNNO lesion F1"], rows))


def add_petct(sub) -> None:
    p = sub.add_parser("petct", help="PET and CT against PET alone (synth --kind petct), the same recipe",
                       description="Issue 44's must-show: RECIPE trained on N_TRAIN petct cases of TRAIN_SEED given both "
                                   "channels, and again given PET alone; each benchmarked with --checkpoint on the same "
                                   "N_TEST cases of TEST_SEED. Prints each arm's test volume AUC and ToNNO lesion F1 "
                                   "and the paired 95 % interval of their differences.")
    p.add_argument("out")
    p.add_argument("--recipe", default="auto")
    p.add_argument("--n-train", type=int, default=96)
    p.add_argument("--n-test", type=int, default=40)
    p.add_argument("--train-seed", type=int, default=1)
    p.add_argument("--test-seed", type=int, default=2)
    p.add_argument("--quality", default="demo", choices=list(PRESETS))
    p.add_argument("--steps", type=int, default=0, help="training steps (default: the recipe's)")
    p.add_argument("--ct-intensity", default="robust",
                   help="the CT image's mode (the data set's `ct` window, -1000…1000 HU, leaves soft-tissue organs "
                        "0.03–0.17 apart: a first run at it learnt nothing, validation AUC 0.68 [0.20, 1.00])")
    p.set_defaults(func=study_petct)


STUDIES = (add_train, add_recipes, add_checkpoint_choice, add_robustness, add_intensity_baseline, add_planes,
           add_budget, add_stage2, add_foreign_input, add_foreign, add_localisation, add_petct)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="study", required=True, metavar="STUDY")
    for add in STUDIES:
        add(sub)
    args = ap.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
