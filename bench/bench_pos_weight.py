"""Rare findings: training with and without ``--pos-weight``, side by side on the same split.

    .venv/bin/python bench/bench_pos_weight.py OUT [--n 100] [--prevalence 0.15] [--steps 800] [--seed 0]

Makes ``tonno synth --kind brain --difficulty large --findings all --prevalence P`` (each finding in a
fraction ``P`` of the brains, drawn apart), holds out ``tonno benchmark``'s test split (30 %), trains the
``small-lesions`` recipe with ``--findings bright,ring,elongated`` once without and once with
``--pos-weight`` (the same seed, data and steps), and scores each finding's volume AUC on the held-out cases
(largest logit over 64 planes, with its 95 % bootstrap interval; :mod:`tonno_engine.apps.classification`).
Prints one markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tonno_engine.apps.classification import classify_findings_iter
from tonno_engine.apps.training_run import train_run_iter
from tonno_engine.data.dataset import read_cases, split_cases, write_cases_csv
from tonno_engine.data.synth import FINDING_TYPES, SynthRequest, synthesize
from tonno_engine.methods.settings import ReconstructionSettings
from tonno_engine.models.checkpoint import load_checkpoint
from tonno_engine.training.config import recipe_config


def finish(events):
    """Run an engine generator to its end; its return value."""
    while True:
        try:
            next(events)
        except StopIteration as done:
            return done.value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--prevalence", type=float, default=0.15)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    findings = list(FINDING_TYPES)
    data = args.out / "data"
    if not (data / "labels.csv").exists():
        request = SynthRequest(kind="brain", n=args.n, seed=args.seed, difficulty="large", findings=findings,
                               prevalence=args.prevalence)
        finish(synthesize(data, request))
    cases = read_cases(data, findings=findings)
    rest, test = split_cases(cases, 0.3, args.seed)
    write_cases_csv(args.out / "train.csv", rest, findings)
    print(f"{len(rest)} training+validation, {len(test)} held-out brains; each finding in {args.prevalence:.0%}; "
          f"held-out positives: " + ", ".join(f"{f} {sum(c.targets[k] == 1 for c in test)}"
                                              for k, f in enumerate(findings)))
    print("| --pos-weight | " + " | ".join(f"{f} AUC [95 %]" for f in findings) + " | mean | training min |")
    print("|---|" + "---|" * (len(findings) + 2))
    for weighted in (False, True):
        run = args.out / ("weighted" if weighted else "plain")
        cfg = recipe_config("small-lesions", dict(steps=args.steps, device="cpu", seed=args.seed, findings=findings,
                                                  pos_weight=weighted))
        start = time.perf_counter()
        if not (run / "run.json").exists():
            for _ in train_run_iter(args.out / "train.csv", run, cfg):
                pass
        minutes = (time.perf_counter() - start) / 60
        loaded = load_checkpoint(run / "checkpoint_best.pt", "cpu")
        scored = finish(classify_findings_iter(test, loaded, ReconstructionSettings(), seed=args.seed))
        cells = [f"{c.auc:.2f} [{c.interval[0]:.2f}, {c.interval[1]:.2f}]" for c in scored]
        mean = sum(c.auc for c in scored) / len(scored)
        print(f"| {'on' if weighted else 'off'} | " + " | ".join(cells) + f" | {mean:.2f} | {minutes:.1f} |", flush=True)


if __name__ == "__main__":
    main()
