"""The second-stage segmenter's training: the masked loss and exact resumption."""

import torch


def test_ignored_voxels_do_not_enter_the_loss():
    from tonno_engine.training.segmenter import masked_loss

    torch.manual_seed(0)
    labels = torch.randint(0, 3, (2, 1, 8, 8, 8))
    logits = torch.randn(2, 2, 8, 8, 8, requires_grad=True)
    loss = masked_loss(logits, labels)
    loss.backward()
    ignored = (labels == 2).expand_as(logits)
    assert logits.grad[ignored].abs().max() == 0 and logits.grad[~ignored].abs().max() > 0
    changed = logits.detach().clone()
    changed[ignored] = 50.0
    assert torch.isclose(masked_loss(changed, labels), loss.detach())


def test_a_patch_the_unet_cannot_take_or_a_learning_rate_that_learns_nothing_is_refused():
    import pytest

    from tonno_engine.training.segmenter import SegmenterConfig

    with pytest.raises(ValueError, match="multiple of 8"):
        SegmenterConfig(patch=12)
    for lr in (0.0, -1e-3, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="lr must be"):
            SegmenterConfig(lr=lr)


def test_a_resumed_run_takes_exactly_the_steps_of_an_uninterrupted_one(tmp_path, masked_phantoms):
    from tonno_engine.apps.export_nnunet import ExportConfig, export_nnunet_iter
    from tonno_engine.models.segmenter import read_segmenter
    from tonno_engine.training.segmenter import SegmenterConfig, SegmenterResult, train_segmenter_iter

    cases, heat = masked_phantoms(4, (16, 16, 16))
    export = list(export_nnunet_iter(cases, [], heat, tmp_path / "raw", ExportConfig(method="tonno", level=0.5)))[-1]
    cfg = SegmenterConfig(steps=4, patch=16, checkpoint_every=2)
    whole = list(train_segmenter_iter(export.folder, tmp_path / "whole", cfg))[-1]
    events = train_segmenter_iter(export.folder, tmp_path / "parts", cfg)
    for _ in range(2):  # two steps (the checkpoint at step 2), then the process dies
        next(events)
    events.close()
    resumed = list(train_segmenter_iter(export.folder, tmp_path / "parts", cfg, resume=True))[-1]
    assert isinstance(whole, SegmenterResult) and isinstance(resumed, SegmenterResult) and resumed.steps == 4
    a, b = read_segmenter(whole.checkpoint)["state_dict"], read_segmenter(resumed.checkpoint)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "in_channels" not in read_segmenter(whole.checkpoint)["meta"]  # one image: the meta as it always was


def test_sigterm_checkpoints_and_stops_then_resume_finishes(tmp_path, masked_phantoms):
    import os
    import signal

    from tonno_engine.apps.export_nnunet import ExportConfig, export_nnunet_iter
    from tonno_engine.models.segmenter import read_segmenter
    from tonno_engine.training.segmenter import LAST, SegmenterConfig, SegmenterResult, SegmenterStopped, train_segmenter_iter

    cases, heat = masked_phantoms(4, (16, 16, 16))
    export = list(export_nnunet_iter(cases, [], heat, tmp_path / "raw", ExportConfig(method="tonno", level=0.5)))[-1]
    cfg = SegmenterConfig(steps=5, patch=16)
    events = train_segmenter_iter(export.folder, tmp_path / "run", cfg)
    next(events)
    os.kill(os.getpid(), signal.SIGTERM)  # what SLURM sends before it kills a job
    rest = list(events)
    assert isinstance(rest[-1], SegmenterStopped) and rest[-1].signal == "SIGTERM" and rest[-1].done == 1
    assert read_segmenter(tmp_path / "run" / LAST)["meta"]["step"] == 1  # the step it stopped at is saved
    done = list(train_segmenter_iter(export.folder, tmp_path / "run", cfg, resume=True))[-1]
    assert isinstance(done, SegmenterResult) and done.steps == 5


def test_a_two_image_export_trains_on_both_images_each_by_its_mode_else_robust(two_channel_phantoms, tmp_path):
    import numpy as np

    from tonno_engine.apps.export_nnunet import ExportConfig, export_nnunet_iter
    from tonno_engine.training.segmenter import PatchSource, SegmenterConfig, read_export, segmenter_preprocessing

    cases, heat, _ = two_channel_phantoms(4)
    export = list(export_nnunet_iter(cases, [], heat, tmp_path / "raw", ExportConfig(method="tonno", level=0.5)))[-1]
    entries, labels = read_export(export.folder)
    assert [tuple(p.name for p in images) for images, _ in entries] == [
        (f"{c.case}_0000.nii.gz", f"{c.case}_0001.nii.gz") for c in cases]
    # the export records no modes (no channels were given): each image robust, or the mode asked for
    assert labels["channels"] == [{"name": "image_0000", "intensity": None}, {"name": "image_0001", "intensity": None}]
    assert [c.intensity for c in segmenter_preprocessing(SegmenterConfig(), labels).channels] == ["robust"] * 2
    assert [c.intensity for c in segmenter_preprocessing(SegmenterConfig(intensity="mr"), labels).channels] == ["mr"] * 2
    source = PatchSource(entries, 4, segmenter_preprocessing(SegmenterConfig(), labels))
    x, y = source.sample(np.random.default_rng(0), 16, 1.0)
    assert x.shape == (2, 16, 16, 16) and y.shape == (16, 16, 16) and np.isfinite(x).all()
    image, _, _, lowest = source.case(0)
    assert image.shape == (2, 16, 16, 16) and len(lowest) == 2
    # an edge cube: each image padded with its own minimum, the labels with ignore
    far = source.sample(np.random.default_rng(3), 32, 0.0)[0]
    assert far.shape == (2, 32, 32, 32)
    assert all((far[k] == far[k].min()).sum() >= 32 ** 3 - 16 ** 3 for k in range(2))  # (the drawn case's minima)
