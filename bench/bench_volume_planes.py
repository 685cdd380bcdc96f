"""How many planes a volume score needs: the held-out volume AUC of a checkpoint when a case scores its largest
logit over P uniform random planes (``tonno benchmark`` and validation use 64), for several P.

    .venv/bin/python bench/bench_volume_planes.py DATA CHECKPOINT [CHECKPOINT ...] [--planes 64,256,1024]

Cases: ``tonno benchmark``'s test split of DATA (30 %, seed 0). A lesion a few voxels across lies within a
voxel of a random plane about 3 % of the time, so with few planes the score of a positive case depends on
whether any plane happened to cut its lesion.
"""

from __future__ import annotations

import argparse

from tonno_engine.apps.classification import volume_score
from tonno_engine.data.dataset import read_cases, split_cases
from tonno_engine.evaluation.auc import auc_interval, roc_auc
from tonno_engine.methods.settings import ReconstructionSettings
from tonno_engine.models.checkpoint import load_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--planes", default="64,256,1024")
    args = ap.parse_args()
    _, test = split_cases(read_cases(args.data), 0.3, 0)
    labels = [c.label for c in test]
    print("| checkpoint | planes | held-out volume AUC [95 %] |\n|---|---|---|")
    for path in args.checkpoints:
        loaded = load_checkpoint(path, "cpu")
        for planes in (int(p) for p in args.planes.split(",")):
            scores = [volume_score(c, loaded, ReconstructionSettings(), planes=planes, seed=i)[0][0]
                      for i, c in enumerate(test)]
            lo, hi = auc_interval(labels, scores)
            print(f"| {path} | {planes} | {roc_auc(labels, scores):.2f} [{lo:.2f}, {hi:.2f}] |", flush=True)


if __name__ == "__main__":
    main()
