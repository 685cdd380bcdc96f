"""``tonno info``: versions, the devices torch sees, and what ``auto`` picks."""

from __future__ import annotations


def info() -> None:
    """Print versions, the devices torch sees, and which one `--device auto` picks."""
    import torch

    from tonno_engine.base.devices import auto_device, describe_devices
    from tonno_engine.base.versions import versions

    dists = ("napari-tonno", "torch", "torchvision", "timm", "numpy", "nibabel", "napari")
    rows = [(k, v or "not installed") for k, v in versions(dists).items()]
    rows.append(("torch CUDA build", str(torch.version.cuda)))
    rows.append(("threads", str(torch.get_num_threads())))
    rows.append(("devices", ", ".join(describe_devices())))
    rows.append(("auto picks", str(auto_device())))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
