"""The call path from ``tonno reconstruct`` (and from the engine's case entry point, which the napari
Reconstruct widget runs) down to ToNNO's backprojection, as the interpreter sees it: every frame
between the command and ``backproject_passes``, recorded at its first call.

    python bench/call_path.py

Runs one tiny case (a 16³ phantom, a random resnet10t, M=4, L=4) on the CPU; prints both paths and
their frame counts (docs/architecture.md quotes them).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from tonno_cli.app import app
from tonno_engine.base.registry import MethodSpec
from tonno_engine.data.nifti import save_nifti
from tonno_engine.methods.case import Scan, reconstruct_case_iter
from tonno_engine.methods.settings import ReconstructionSettings
from tonno_engine.models.checkpoint import CheckpointDescription, load_checkpoint, save_checkpoint
from tonno_engine.models.encoders import create_encoder
from tonno_engine.tomography import backprojection
from tonno_engine.tomography.phantoms import balls_phantom

ROOT = Path(__file__).resolve().parents[1]


def recorded_path(run, top: str) -> list[str]:
    """The frames from the first one named ``top`` to ``backproject_passes`` when ``run()`` first backprojects."""
    real, seen = backprojection.backproject_passes, []

    def spy(*args, **kwargs):
        if not seen:
            seen.append(traceback.extract_stack()[:-1])
        return real(*args, **kwargs)

    backprojection.backproject_passes = spy
    try:
        # the formula module imported the name: patch it there too
        from tonno_engine.tomography import reconstruction

        reconstruction.backproject_passes = spy
        run()
    finally:
        backprojection.backproject_passes = real
        reconstruction.backproject_passes = real
    frames = [f for f in seen[0] if str(ROOT) in f.filename]
    start = next(k for k, f in enumerate(frames) if f.name == top)
    return [f"{Path(f.filename).relative_to(ROOT)}:{f.name}" for f in frames[start:]] + [
        "tonno_engine/tomography/backprojection.py:backproject_passes"]


def main() -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        checkpoint = save_checkpoint(tmp / "c.pt", create_encoder("resnet10t", norm="gn"),
                                     CheckpointDescription(model="resnet10t", norm="gn", slice_size=32))
        save_nifti(tmp / "case.nii.gz", balls_phantom((16, 16, 16)).numpy(), np.eye(4))
        args = ["reconstruct", "-i", str(tmp / "case.nii.gz"), "-o", str(tmp / "out"), "-c", str(checkpoint),
                "--slices", "4", "--directions", "4", "--device", "cpu", "-q"]
        cli = recorded_path(lambda: CliRunner().invoke(app, args, catch_exceptions=False), "reconstruct")
        loaded = load_checkpoint(checkpoint, "cpu")
        settings = ReconstructionSettings(slices=4, directions=4)
        volume = balls_phantom((16, 16, 16)).numpy()
        engine = recorded_path(lambda: list(reconstruct_case_iter(Scan(volume), loaded, [MethodSpec("tonno")],
                                                                  settings)), "<lambda>")[1:]
    for title, path in (("tonno reconstruct", cli), ("reconstruct_case_iter (the Reconstruct widget's job)", engine)):
        print(f"{title}: {len(path)} frames")
        for k, frame in enumerate(path, 1):
            print(f"  {k:2d}. {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
