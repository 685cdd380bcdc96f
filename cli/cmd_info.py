"""``tonno info``: versions, the devices torch sees, and what ``auto`` picks."""

from __future__ import annotations

import platform

from .app import app


@app.command()
def info() -> None:
    """Print versions, the devices torch sees, and which one `--device auto` picks."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from tonno_engine.devices import auto_device, describe_devices

    rows = [("python", platform.python_version())]
    for dist in ("napari-tonno", "torch", "torchvision", "timm", "numpy", "nibabel", "napari"):
        try:
            rows.append((dist, version(dist)))
        except PackageNotFoundError:
            rows.append((dist, "not installed"))
    rows.append(("torch CUDA build", str(torch.version.cuda)))
    rows.append(("threads", str(torch.get_num_threads())))
    rows.append(("devices", ", ".join(describe_devices())))
    rows.append(("auto picks", str(auto_device())))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
