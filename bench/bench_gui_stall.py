"""Longest main-thread stall while the Reconstruct widget works on a 256³ volume (run under Xvfb).

A 5 ms Qt timer records the gaps between its ticks from the click on "Reconstruct" until the job
has finished: loading the checkpoint, preprocessing (MR intensity mode) and the reconstruction all
run in a thread worker, so the GUI thread should never wait for them.

    xvfb-run -a .venv/bin/python bench/bench_gui_stall.py [--size 256]
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
    args = parser.parse_args()

    import napari
    from qtpy.QtCore import QElapsedTimer, QTimer
    from qtpy.QtWidgets import QApplication

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
    widget.slices.value, widget.angles.value, widget.device.value = 4, 8, "cpu"
    clock, gaps = QElapsedTimer(), []
    timer = QTimer()
    timer.timeout.connect(lambda: gaps.append(clock.restart()))
    clock.start()
    timer.start(5)
    start = time.perf_counter()
    widget.run()
    done = []
    widget.worker.finished.connect(lambda: done.append(True))
    app = QApplication.instance()
    while not done:
        app.processEvents()
        time.sleep(0.001)
    timer.stop()
    print(f"{args.size}³ volume, Reconstruct widget (random resnet10t, MR intensity, M=4, L=8, 32² slices): "
          f"job {time.perf_counter() - start:.1f} s, longest main-thread stall {max(gaps[1:])} ms "
          f"over {len(gaps)} timer ticks; status: {widget.status.value}")
    viewer.close()


if __name__ == "__main__":
    main()
