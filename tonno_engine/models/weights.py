"""Where a classifier's starting weights come from: nothing, a local file, or timm's published weights.

``weights`` is ``None`` (random init), a local file (``.pth``, ``.pt``, ``.bin``, ``.safetensors``),
``"imagenet"`` (the model's default pretrained tag in timm) or a timm tag such as
``"resnet18.a1_in1k"`` (its architecture must be the model's). Published weights load through
timm's own hub loading (Hugging Face hub cache first); on a machine without internet the error
names ``--weights FILE`` after a short reachability check instead of a hang. The resolved
:class:`WeightsSource` goes into the checkpoint's meta.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

from ..base.errors import DataError
from ..base.hashing import file_sha256

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
#: hosts timm's published weights come from, and how long to wait for one to answer (seconds)
HUB_HOSTS = (("huggingface.co", 443), ("github.com", 443))
PROBE_TIMEOUT_S = 5.0
OFFLINE_HINT = ("on a machine without internet, copy the weights file from one that has it and pass "
                "--weights FILE (a .pth, .bin or .safetensors)")


@dataclass(frozen=True)
class WeightsSource:
    """``kind``: ``"none"``, ``"file"`` or ``"hub"``; ``name``: the timm ``model.tag``; ``location``:
    the file, or the hub id / URL; ``sha256`` of a file."""

    kind: str
    spec: str | None = None
    name: str | None = None
    location: str | None = None
    sha256: str | None = None

    def as_meta(self) -> dict:
        return asdict(self)


def resolve_weights(model: str, weights: str | os.PathLike | None) -> WeightsSource:
    """What ``weights`` names for the timm ``model`` (no download). Raises ``FileNotFoundError`` for a
    missing file and ``ValueError`` for an unknown tag or a tag of another architecture."""
    import timm
    from timm.models import get_pretrained_cfg, split_model_name_tag

    if weights is None or str(weights) == "":
        return WeightsSource("none")
    spec = str(weights)
    path = Path(spec).expanduser()
    if path.is_file():
        return WeightsSource("file", spec, model, str(path.resolve()), file_sha256(path))
    if spec.lower().endswith(WEIGHT_SUFFIXES) or os.sep in spec:
        raise FileNotFoundError(f"{spec}: pretrained weights file not found")
    name = model if spec.lower() == "imagenet" else spec
    arch, _ = split_model_name_tag(name)
    try:
        cfg = get_pretrained_cfg(name) if timm.is_model(arch) else None
    except RuntimeError:  # timm: an invalid tag for a known architecture
        cfg = None
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        tags = ", ".join(timm.list_pretrained(f"{model}.*")[:6]) or "none"
        raise ValueError(f"unknown weights {spec!r}: give a local file, 'imagenet', or a timm tag of {model} "
                         f"(published: {tags})")
    if arch != model:
        raise ValueError(f"weights {spec!r} are for {arch}, but the model is {model} (pass --model {arch})")
    return WeightsSource("hub", spec, f"{arch}.{cfg.tag}" if cfg.tag else arch, cfg.hf_hub_id or cfg.url)


def _in_hub_cache(source: WeightsSource) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    repo = (source.location or "").split("@")[0]
    return any(isinstance(try_to_load_from_cache(repo, f), str)
               for f in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"))


def check_reachable(source: WeightsSource) -> None:
    """Fail fast, naming ``--weights FILE``, when hub weights are neither cached nor downloadable."""
    if source.kind != "hub" or _in_hub_cache(source):
        return
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise DataError(source.spec, f"the published weights {source.name} are not in the local Hugging Face cache and "
                                     f"HF_HUB_OFFLINE is set; {OFFLINE_HINT}")
    errors = []
    for host, port in HUB_HOSTS:
        try:
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
            return
        except OSError as exc:
            errors.append(f"{host}: {exc}")
    raise DataError(source.spec, f"cannot download the published weights {source.name} ({'; '.join(errors)}); "
                                 f"{OFFLINE_HINT}")
