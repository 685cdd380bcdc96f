"""One case from a scan and a checkpoint: preprocessing, settings resolved against the checkpoint, the
spacing of the array that is sliced (after resampling), the heatmap on the scan's own grid."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from tonno_engine.base.events import Partial
from tonno_engine.base.registry import MethodSpec
from tonno_engine.methods.case import CasePrepared, Scan, prepare_case, reconstruct_case_iter
from tonno_engine.methods.run import run_methods
from tonno_engine.methods.settings import ReconstructionSettings
from tonno_engine.models.checkpoint import CheckpointDescription, load_checkpoint, save_checkpoint
from tonno_engine.models.encoders import create_encoder
from tonno_engine.tomography.phantoms import balls_phantom

SETTINGS = ReconstructionSettings(slices=6, directions=16, hemisphere=True)


@pytest.fixture
def resampling(tmp_path):
    """A checkpoint trained in physical geometry on volumes resampled to 2 mm."""
    torch.manual_seed(0)
    description = CheckpointDescription(model="resnet10t", norm="gn", slice_size=32, geometry="physical",
                                        mm_per_pixel=1.5,
                                        preprocessing={"intensity": "none", "params": {}, "spacing": 2.0})
    path = save_checkpoint(tmp_path / "c.pt", create_encoder("resnet10t", norm="gn"), description)
    return load_checkpoint(path, "cpu")


def test_prepare_case_resamples_and_resolves_against_the_checkpoint(resampling):
    scan = balls_phantom((24, 20, 8)).numpy()
    case = prepare_case(Scan(scan, (1.0, 1.0, 4.0)), resampling, SETTINGS)
    assert case.spacing == (2.0, 2.0, 2.0) and case.volume.shape == (12, 10, 16) and case.shape == (24, 20, 8)
    assert case.settings.geometry == "physical" and case.settings.field_of_view == "full"
    # no slice size set: the side that keeps the checkpoint's 1.5 mm per pixel over this field of view
    diagonal = np.linalg.norm([(12 - 1) * 2.0, (10 - 1) * 2.0, (16 - 1) * 2.0])
    assert case.settings.slice_size == round(diagonal / 1.5) + 1  # pixels at the ends of the 2R mm patch
    assert prepare_case(Scan(scan, (1.0, 1.0, 4.0)), resampling, SETTINGS.override({"slice_size": 40})).settings.slice_size == 40


def test_the_case_heatmap_is_the_methods_on_the_prepared_volume_with_its_own_spacing(resampling):
    scan = balls_phantom((24, 20, 8)).numpy()
    events = list(reconstruct_case_iter(Scan(scan, (1.0, 1.0, 4.0)), resampling, [MethodSpec("tonno")], SETTINGS))
    assert isinstance(events[0], CasePrepared) and isinstance(events[-1], Partial) and events[-1].final
    heatmap = events[-1].value["tonno"]
    case = events[0].case
    assert heatmap.shape == (24, 20, 8)
    same = run_methods([MethodSpec("tonno")], case.volume, resampling.model, case.settings, device="cpu",
                       output_shape=case.shape, spacing=case.spacing)["tonno"]
    torch.testing.assert_close(heatmap, same)
    # the scan's own spacing would slice the resampled array in another frame: a different heatmap
    other = run_methods([MethodSpec("tonno")], case.volume, resampling.model, case.settings, device="cpu",
                        output_shape=case.shape, spacing=(1.0, 1.0, 4.0))["tonno"]
    assert not torch.allclose(heatmap, other, rtol=1e-3, atol=1e-3 * heatmap.abs().max().item())


def test_one_offset_per_voxel_is_resolved_from_the_volume_and_its_frame(resampling):
    """``slices=None``: neighbouring offsets at most one voxel apart along every axis, in either geometry."""
    from tonno_engine.tomography.frames import make_frame
    from tonno_engine.tomography.geometry import slice_offsets

    paper = CheckpointDescription(model="resnet10t", norm="gn", slice_size=32)
    per_voxel = ReconstructionSettings(slices=None, directions=16, hemisphere=True)
    assert per_voxel.resolved(paper, (12, 30, 20)).slices == 30  # paper geometry: the longest side
    assert per_voxel.resolved(paper).slices is None  # no volume yet: left to each case
    assert "one per voxel" in per_voxel.describe()
    scan = balls_phantom((24, 20, 8)).numpy()
    case = prepare_case(Scan(scan, (1.0, 1.0, 4.0)), resampling, per_voxel)  # physical: resampled to 12 × 10 × 16 at 2 mm
    frame = make_frame(case.volume.shape, geometry="physical", spacing=case.spacing)
    step_mm = float(slice_offsets(case.settings.slices)[1] - slice_offsets(case.settings.slices)[0]) * frame.mm_per_unit
    coarser_mm = 2.0 * frame.mm_per_unit / (case.settings.slices - 2)  # one offset fewer
    assert step_mm <= 2.0 < coarser_mm
    # the case's resolved M and the unresolved settings give the same heatmap (run_methods resolves it too)
    args = dict(device="cpu", output_shape=case.shape, spacing=case.spacing)
    resolved = run_methods([MethodSpec("tonno")], case.volume, resampling.model, case.settings, **args)["tonno"]
    unresolved = run_methods([MethodSpec("tonno")], case.volume, resampling.model,
                             replace(case.settings, slices=None), **args)["tonno"]
    torch.testing.assert_close(resolved, unresolved)


def test_a_cropped_checkpoint_makes_heatmaps_on_the_foreground_box_and_pastes_them_onto_the_scan(tmp_path):
    """``crop``: the heatmaps are made on the foreground's box (as training saw it) and lie on the scan's own grid,
    each at its own minimum outside the box; tomographic and slice-wise methods alike."""
    torch.manual_seed(0)
    description = CheckpointDescription(model="resnet10t", norm="gn", slice_size=32,
                                        preprocessing={"intensity": "robust", "params": {}, "crop": True})
    loaded = load_checkpoint(save_checkpoint(tmp_path / "c.pt", create_encoder("resnet10t", norm="gn"), description), "cpu")
    scan = np.zeros((30, 28, 26), np.float32)
    scan[6:20, 5:25, 9:21] = balls_phantom((14, 20, 12)).numpy() + 1.0  # tissue in a box of air
    specs = [MethodSpec("tonno"), MethodSpec("layercam", layer=2)]
    events = list(reconstruct_case_iter(Scan(scan), loaded, specs, SETTINGS))
    case = events[0].case
    assert case.box == (slice(4, 22), slice(3, 27), slice(7, 23)) and case.volume.shape == (18, 24, 16)
    for spec in specs:
        heatmap = events[-1].value[spec.label]
        assert heatmap.shape == (30, 28, 26)
        inside = run_methods([spec], case.volume, loaded.model, case.settings, device="cpu")[spec.label]
        torch.testing.assert_close(heatmap[case.box], inside)
        outside = torch.ones_like(heatmap, dtype=torch.bool)
        outside[case.box] = False
        assert (heatmap[outside] == inside.min()).all()
