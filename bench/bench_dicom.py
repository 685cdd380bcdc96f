"""Reading a 512×512×300 CT as a DICOM series vs as NIfTI (.nii.gz and .nii), side by side in one run.

The same int16 volume (HU via RescaleSlope/Intercept) is written once in each form; each repeat reads
all three in rotating order (``load_image``: SimpleITK/GDCM for the series with its header checks,
nibabel for NIfTI). Prints the fastest wall time of each and the ratios to the NIfTI reads.

    .venv/bin/python bench/bench_dicom.py [--shape 512,512,300] [--repeats 3] [--workdir /tmp/tonno-bench-dicom]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from tonno_engine.data.dicom_write import SeriesTags, write_dicom_series
from tonno_engine.data.images import load_image
from tonno_engine.data.nifti import save_nifti


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="512,512,300")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", default="/tmp/tonno-bench-dicom")
    args = ap.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    rng = np.random.default_rng(0)
    # CT-like: smooth body plus noise, integer HU
    hu = np.rint(rng.normal(0, 30, size=shape) - 1000 * (rng.random(shape[:2]) > 0.9)[..., None]).astype(np.float32)
    affine = np.diag([0.7, 0.7, 1.25, 1.0])
    affine[:3, 3] = (-180.0, -180.0, -200.0)
    start = time.perf_counter()
    write_dicom_series(work / "series", hu, affine, SeriesTags(slope=1.0, intercept=-1024.0))
    written = time.perf_counter() - start
    save_nifti(work / "ct.nii.gz", hu, affine, dtype=np.int16)
    save_nifti(work / "ct.nii", hu, affine, dtype=np.int16)
    inputs = {"DICOM series": work / "series", "NIfTI .nii.gz": work / "ct.nii.gz", "NIfTI .nii": work / "ct.nii"}
    sizes = {k: sum(f.stat().st_size for f in (p.iterdir() if p.is_dir() else [p])) / 2**20 for k, p in inputs.items()}
    best = {k: float("inf") for k in inputs}
    names = list(inputs)
    reference = None
    for r in range(args.repeats):
        for name in names[r % 3:] + names[: r % 3]:  # rotate who reads first (file cache, CPU state)
            t = time.perf_counter()
            volume = load_image(inputs[name])
            best[name] = min(best[name], time.perf_counter() - t)
            if reference is None:
                reference = volume
            else:
                assert np.array_equal(volume.array, reference.array) and np.allclose(volume.affine, reference.affine)
    print(f"volume {shape}, int16; series written in {written:.1f} s ({shape[2]} files)")
    print(f"{'input':<16}{'MiB on disk':>12}{'read s (fastest)':>18}{'vs .nii.gz':>12}{'vs .nii':>10}")
    for name in names:
        print(f"{name:<16}{sizes[name]:>12.0f}{best[name]:>18.3f}{best[name] / best['NIfTI .nii.gz']:>12.2f}"
              f"{best[name] / best['NIfTI .nii']:>10.2f}")
    print("all three reads gave the same array and affine")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
