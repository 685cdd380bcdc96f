"""The intensity baseline of whole data sets: how well a threshold on the brightest (or darkest) robust
intensity separates the classes, before any network.

    .venv/bin/python bench/bench_intensity_baseline.py DATA [DATA ...] [--intensity robust,none]

Per data set and intensity mode: the bright and dark AUC with their 95 % intervals over all cases
(:mod:`tonno_engine.evaluation.intensity`). Training and ``tonno benchmark`` compute it on the images as
stored (``none``); ``robust`` shows why not on the network's normalised input: its background, set to 0,
sits inside the tissue's range, and the foreground is lost.
"""

from __future__ import annotations

import argparse

from tonno_engine.data.dataset import read_cases
from tonno_engine.data.images import load_image
from tonno_engine.data.preprocessing import Preprocessing
from tonno_engine.evaluation.intensity import intensity_baseline, robust_extremes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="+")
    ap.add_argument("--intensity", default="robust,none")
    args = ap.parse_args()
    print("| data | cases | intensity | bright AUC [95 %] | dark AUC [95 %] |\n|---|---|---|---|---|")
    for data in args.data:
        cases = read_cases(data)
        for mode in args.intensity.split(","):
            prep = Preprocessing(mode)
            b = intensity_baseline([c.label for c in cases], [robust_extremes(prep.apply(load_image(c.image))[0])
                                                               for c in cases])
            print(f"| {data} | {len(cases)} | {mode} | {b.bright:.2f} [{b.bright_interval[0]:.2f}, "
                  f"{b.bright_interval[1]:.2f}] | {b.dark:.2f} [{b.dark_interval[0]:.2f}, {b.dark_interval[1]:.2f}] |",
                  flush=True)


if __name__ == "__main__":
    main()
