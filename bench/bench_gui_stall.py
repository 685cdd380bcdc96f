"""Longest main-thread stall while a widget works on a 256³ volume (run under Xvfb).

A 5 ms Qt timer records the gaps between its ticks from the click until the job has finished and its
result is shown. ``--widget reconstruct``: loading the checkpoint, preprocessing (MR intensity mode)
and the reconstruction run in a thread worker. ``--widget candidates``: the Lesion candidates of a
256³ heatmap (smoothed noise, its 99.5th percentile: hundreds of components) are labelled and measured
in a worker; the GUI thread fills the table and adds the annotation layer.

    xvfb-run -a .venv/bin/python bench/bench_gui_stall.py [--size 256] [--widget reconstruct|candidates]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--widget", choices=("reconstruct", "candidates"), default="reconstruct")
    args = parser.parse_args()
    if args.widget == "candidates":
        return candidates(args.size)

    import napari

    from napari_tonno._torch_import import ensure_torch

    viewer = napari.Viewer(show=False)
    ensure_torch()
    import torch

    from napari_tonno.widgets.reconstruct import ReconstructWidget
    from tonno_engine.models.checkpoint import save_checkpoint
    from tonno_engine.models.encoders import create_encoder

    torch.manual_seed(0)
    ckpt = Path(tempfile.mkdtemp()) / "random.pt"
    save_checkpoint(ckpt, create_encoder("resnet10t", norm="gn"), {
        "model": "resnet10t", "norm": "gn", "in_chans": 1, "slice_size": 32,
        "preprocessing": {"intensity": "mr", "params": {}, "spacing": None}})
    volume = np.random.default_rng(0).normal(100, 20, (args.size,) * 3).astype(np.float32)
    viewer.add_image(volume, name="volume", metadata={"tonno_checkpoint": str(ckpt)})
    widget = ReconstructWidget(viewer)
    widget.slices.value, widget.directions.value, widget.device.value = 4, 8, "cpu"
    seconds, stall, ticks = _stalls(widget.run, lambda: widget.status.value.startswith(("done", "error")))
    print(f"{args.size}³ volume, Reconstruct widget (random resnet10t, MR intensity, M=4, L=8, 32² slices): "
          f"job {seconds:.1f} s, longest main-thread stall {stall} ms over {ticks} timer ticks; "
          f"status: {widget.status.value}")
    viewer.close()


def _stalls(run, finished):
    """Run ``run()`` with a 5 ms timer ticking; returns ``(seconds, longest gap ms, ticks)`` once ``finished()``."""
    from qtpy.QtCore import QElapsedTimer, QTimer
    from qtpy.QtWidgets import QApplication

    clock, gaps = QElapsedTimer(), []
    timer = QTimer()
    timer.timeout.connect(lambda: gaps.append(clock.restart()))
    clock.start()
    timer.start(5)
    start = time.perf_counter()
    run()
    app = QApplication.instance()
    while not finished():
        app.processEvents()
        time.sleep(0.001)
    for _ in range(20):  # let the timer see the GUI thread once the result is shown
        app.processEvents()
        time.sleep(0.005)
    timer.stop()
    return time.perf_counter() - start, max(gaps[1:]), len(gaps)


def candidates(size: int) -> None:
    import napari
    from scipy import ndimage

    from napari_tonno.widgets.candidates import LesionCandidatesWidget

    viewer = napari.Viewer(show=False)
    heat = ndimage.gaussian_filter(np.random.default_rng(0).normal(size=(size,) * 3).astype(np.float32), 2.0)
    layer = viewer.add_image(heat, name="heatmap")
    widget = LesionCandidatesWidget(viewer)
    widget.heatmap.value, widget.rule.value, widget.value.value = layer, "percentile", 99.5
    seconds, stall, ticks = _stalls(widget.find, lambda: widget.found is not None and not widget.worker.is_running)
    print(f"{size}³ heatmap, Lesion candidates at the 99.5th percentile: {len(widget.found.candidates)} candidates, "
          f"job {seconds:.1f} s, longest main-thread stall {stall} ms over {ticks} timer ticks")
    viewer.close()


if __name__ == "__main__":
    main()
