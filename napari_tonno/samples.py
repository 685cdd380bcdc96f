"""Sample data: a synthetic brain with lesions, its ground truth, and a demo checkpoint.

The volume and labels are generated offline from nilearn's MNI152 template in about a second, so
they are made on demand. The checkpoint is made by the project's own training (resnet10t, the
demo's recipe) the first time it is asked for, about 3 minutes on 2 CPU cores, and cached under
``$TONNO_CACHE`` (default ``~/.cache/tonno``): at ~20 MB of weights it is too big to ship in the
repository, and making it is a real demonstration of the weak-label training.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tonno_engine.base.defaults import DEMO_CASES, DEMO_LESION_RADIUS, DEMO_STEPS

from ._torch_import import ensure_torch
from .io import layer_kwargs

SAMPLE_SEED = 3


def cache_dir() -> Path:
    return Path(os.environ.get("TONNO_CACHE", Path.home() / ".cache" / "tonno"))


def demo_checkpoint_path() -> Path:
    return cache_dir() / "demo-model" / "checkpoint_best.pt"


def brain_sample() -> list[tuple]:
    """npe2 sample: ``[(image, kwargs, "image"), (lesions, kwargs, "labels")]`` of one positive brain."""
    ensure_torch()  # load torch safely now, as the widgets opened next need it
    from tonno_engine.data.synth import BrainSpec, brain_case, load_mni_brain

    spec = BrainSpec(max_lesions=3, lesion_radius=DEMO_LESION_RADIUS)
    case = brain_case(np.random.default_rng(SAMPLE_SEED), load_mni_brain((64, 76, 64)), 1, spec)
    extra = {"tonno_checkpoint": str(demo_checkpoint_path())} if demo_checkpoint_path().exists() else {}
    image = {"name": "brain (tonno sample)", "colormap": "gray", **layer_kwargs(case.affine, None, **extra)}
    labels = {"name": "lesions (ground truth)", "opacity": 0.5, **layer_kwargs(case.affine)}
    return [(case.image, image, "image"), (case.mask.astype(np.uint8), labels, "labels")]


def make_demo_checkpoint(steps: int = DEMO_STEPS, cases: int = DEMO_CASES) -> Iterator:
    """Generate the demo data and train the demo model into the cache; yields synth and training
    events. Resumes a run that was stopped."""
    from tonno_engine.apps.demo import demo_config
    from tonno_engine.data.synth import SynthRequest, synthesize

    data = cache_dir() / "demo-data"
    if not (data / "labels.csv").exists():
        yield from synthesize(data, SynthRequest(kind="brain", n=cases, seed=0, lesion_radius=DEMO_LESION_RADIUS))
    from tonno_engine.training.loop import train_iter

    run = demo_checkpoint_path().parent
    cfg = demo_config("cpu", steps=steps).train
    yield from train_iter(data, run, cfg, resume=(run / "checkpoint_last.pt").exists())
