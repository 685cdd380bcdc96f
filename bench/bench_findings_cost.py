"""What several findings cost: a K-finding reconstruction against a 1-finding one, side by side in one run.

    .venv/bin/python bench/bench_findings_cost.py [--findings 4] [--repeats 3] [--device cpu] [--quality demo]

The same volume (a 64×76×64 phantom, the demo brains' grid), the same settings and the same network trunk
(resnet10t, batch norm, 64² slices as the CPU recipe trains); the K-logit model differs only in its last
layer. Each method is timed alternately with one finding and with K (``--repeats`` times, the median
kept), so that the machine's noise falls on both. ToNNO reads K logits from the one forward pass; the CAM
methods back-propagate each finding's logit from the head down to the layer (one forward, K backward).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tonno_engine.base.registry import MethodSpec
from tonno_engine.methods.run import for_findings, run_methods
from tonno_engine.methods.settings import PRESETS
from tonno_engine.models.encoders import create_encoder
from tonno_engine.tomography.phantoms import balls_phantom

METHODS = {"ToNNO": MethodSpec("tonno"),
           "Tomographic LayerCAM (layer 2)": MethodSpec("tomographic-cam", cam="layercam", layer=2),
           "slice-wise LayerCAM (layer 2)": MethodSpec("layercam", layer=2)}


def models(findings: int):
    """A 1-logit and a ``findings``-logit resnet10t with the same trunk (eval mode)."""
    torch.manual_seed(0)
    several = create_encoder("resnet10t", norm="bn", outputs=findings).eval()
    one = create_encoder("resnet10t", norm="bn", outputs=1).eval()
    state = several.state_dict()
    state["fc.weight"], state["fc.bias"] = state["fc.weight"][:1], state["fc.bias"][:1]
    one.load_state_dict(state)
    return one, several


def seconds(spec_list, volume, model, settings, device) -> float:
    start = time.perf_counter()
    run_methods(spec_list, volume, model, settings, device=device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--findings", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quality", default="demo", choices=list(PRESETS))
    parser.add_argument("--slice-size", type=int, default=64)
    args = parser.parse_args()
    settings = PRESETS[args.quality].override({"slice_size": args.slice_size})
    volume = balls_phantom((64, 76, 64))
    one, several = models(args.findings)
    names = [f"f{k}" for k in range(args.findings)]
    print(f"{args.findings} findings vs 1, {settings.describe()}, {args.slice_size}² slices, device {args.device}, "
          f"torch threads {torch.get_num_threads()}, median of {args.repeats}")
    print(f"| method | 1 finding (s) | {args.findings} findings (s) | ratio |")
    print("|---|---|---|---|")
    for title, spec in METHODS.items():
        seconds([spec], volume, one, settings, args.device)  # warm-up
        single, multi = [], []
        for _ in range(args.repeats):
            single.append(seconds([spec], volume, one, settings, args.device))
            multi.append(seconds(for_findings([spec], names), volume, several, settings, args.device))
        a, b = statistics.median(single), statistics.median(multi)
        print(f"| {title} | {a:.1f} | {b:.1f} | {b / a:.2f} |", flush=True)


if __name__ == "__main__":
    main()
