"""Starting weights: a local file, timm's published weights through its hub loading, clear offline errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import timm
import torch
from safetensors.torch import save_file

from tonno_engine.base.errors import DataError
from tonno_engine.models import weights as weights_mod
from tonno_engine.models.encoders import create_encoder
from tonno_engine.models.weights import resolve_weights


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory):
    """A resnet10t state dict with 3 input channels and the 1000-class head, as published weights are."""
    torch.manual_seed(3)
    state = {k: v.contiguous() for k, v in timm.create_model("resnet10t", pretrained=False).state_dict().items()}
    path = tmp_path_factory.mktemp("w") / "resnet10t.safetensors"
    save_file(state, str(path))
    return path, state


def _stem_matches(model, state) -> bool:
    # timm adapts the 3-channel stem to one channel by summing over RGB and drops the 1000-class head
    return torch.allclose(model.state_dict()["conv1.0.weight"], state["conv1.0.weight"].sum(1, keepdim=True))


def test_local_file_loads_and_is_recorded(imagenet_like):
    path, state = imagenet_like
    source = resolve_weights("resnet10t", path)
    assert source.kind == "file" and source.location == str(path.resolve()) and len(source.sha256) == 64
    model = create_encoder("resnet10t", norm="bn", weights=source)
    assert _stem_matches(model, state) and model.get_classifier().out_features == 1


def test_hub_weights_load_through_timm_from_the_hub_cache(imagenet_like, tiny_cases, tmp_path):
    """`--weights imagenet` goes through timm's own hub loading; a Hugging Face cache stands in for the download."""
    path, _ = imagenet_like
    repo = timm.models.get_pretrained_cfg("resnet10t").hf_hub_id  # timm/resnet10t.<default tag>
    snapshot = tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(path.read_bytes())
    (tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "refs").mkdir()
    (tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "refs" / "main").write_text("0" * 40)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    run = tmp_path / "run"
    cmd = [sys.executable, "-c", "from tonno_cli.app import main; main()", "train", str(tiny_cases), "--out", str(run),
           "--weights", "imagenet", "--slice-size", "32", "--steps", "1", "--batch-volumes", "2",
           "--slices-per-volume", "2", "--norm", "frozen_bn", "--device", "cpu", "-q"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    recorded = json.loads((run / "run.json").read_text())["meta"]["weights"]
    assert recorded["kind"] == "hub" and recorded["spec"] == "imagenet" and recorded["location"] == repo
    assert recorded["name"] == repo.split("/")[1]
    check = ("import torch, safetensors.torch as st; from tonno_engine.models.encoders import create_encoder;"
             f"s = st.load_file({str(path)!r}); m = create_encoder('resnet10t', weights='imagenet');"
             "print(torch.allclose(m.state_dict()['conv1.0.weight'], s['conv1.0.weight'].sum(1, keepdim=True)))")
    out = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr


def test_offline_without_cache_names_weights_file(monkeypatch):
    monkeypatch.setattr(weights_mod, "_in_hub_cache", lambda source: False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="HF_HUB_OFFLINE is set.*--weights FILE"):
        create_encoder("resnet10t", weights="imagenet")
    # no offline flag, hosts that refuse: a short check, not a hang
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(weights_mod, "HUB_HOSTS", (("127.0.0.1", 9),))
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"cannot download the published weights resnet10t\.\w+ .*--weights FILE"):
        create_encoder("resnet10t", weights="resnet10t.c3_in1k")
    assert time.perf_counter() - start < 2 * weights_mod.PROBE_TIMEOUT_S


@pytest.mark.parametrize("spec, error, message", [
    ("resnet18.a1_in1k", ValueError, "are for resnet18, but the model is resnet10t"),
    ("resnet10t.no_such_tag", ValueError, "published: resnet10t"),
    ("missing.safetensors", FileNotFoundError, "weights file not found"),
])
def test_bad_weights_specs(spec, error, message):
    with pytest.raises(error, match=message):
        resolve_weights("resnet10t", spec)
    assert resolve_weights("resnet10t", None).kind == "none"
