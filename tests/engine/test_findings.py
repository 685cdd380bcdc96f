"""Several findings per scan: labels with unknowns, K-logit training, one heatmap per finding from one pass,
per-finding evaluation and Table 2 (docs/findings.md)."""

import csv
import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tonno_cli.app import app
from tonno_engine.base.errors import DataError
from tonno_engine.base.registry import MethodSpec
from tonno_engine.data.dataset import check_both_classes, read_cases, write_cases_csv
from tonno_engine.methods.run import for_findings, plan_passes, run_methods
from tonno_engine.methods.settings import ReconstructionSettings
from tonno_engine.models.encoders import create_encoder
from tonno_engine.training.sampling import masked_bce, mil_loss, validation_scores

runner = CliRunner()
FINDINGS = ("bright", "ring", "elongated")


def _csv(tmp_path, text: str):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


def test_finding_columns_with_unknowns_and_an_id_column_without_image_column(tmp_path):
    (tmp_path / "a.nii.gz").write_bytes(b"x")
    (tmp_path / "b.nii.gz").write_bytes(b"x")
    path = _csv(tmp_path, "VolumeName,Effusion,Nodule\na.nii.gz,1,\nb.nii.gz,0,-1\n")
    cases = read_cases(path, findings=["Effusion", "Nodule"], id_column="VolumeName")
    assert [c.case for c in cases] == ["a", "b"]  # the file's stem names the case
    assert cases[0].image == (tmp_path / "a.nii.gz").resolve()
    assert cases[0].targets[0] == 1.0 and math.isnan(cases[0].targets[1])  # blank: unknown, not 0
    assert cases[1].targets[0] == 0.0 and math.isnan(cases[1].targets[1])  # -1: unknown
    assert [c.label for c in cases] == [1, 0]  # the volume's class: any finding known present
    with pytest.raises(DataError, match="finding 'Nodule' is unknown in every case"):
        check_both_classes(cases, path, ["Effusion", "Nodule"])
    with pytest.raises(DataError, match=r"row 2.*Effusion must be 0 or 1.*'yes'"):
        read_cases(_csv(tmp_path, "VolumeName,Effusion\na.nii.gz,yes\n"), findings=["Effusion"], id_column="VolumeName")
    with pytest.raises(DataError, match="missing column"):
        read_cases(_csv(tmp_path, "case,label,image\na,1,a.nii.gz\n"), findings=["Effusion"])


def test_written_cases_read_back_the_same_with_their_findings(tmp_path):
    for name in ("a", "b", "ma", "mb"):
        (tmp_path / f"{name}.nii.gz").write_bytes(b"x")
    path = _csv(tmp_path, "case,image,mask,x,y,mask_x,mask_y\na,a.nii.gz,ma.nii.gz,1,,ma.nii.gz,mb.nii.gz\n"
                          "b,b.nii.gz,mb.nii.gz,0,1,mb.nii.gz,\n")
    cases = read_cases(path, findings=["x", "y"])
    write_cases_csv(tmp_path / "copy.csv", cases, ["x", "y"])
    again = read_cases(tmp_path / "copy.csv", findings=["x", "y"])
    assert [(c.case, c.label, c.mask, c.finding_masks) for c in again] == \
        [(c.case, c.label, c.mask, c.finding_masks) for c in cases]
    assert all(np.array_equal(a.targets, b.targets, equal_nan=True) for a, b in zip(again, cases))
    assert cases[0].truth(1) == ((tmp_path / "mb.nii.gz").resolve(), None, None)  # its own mask; label unknown
    assert cases[1].truth(1)[1:] == (None, 1)


def test_unknown_labels_are_left_out_of_the_loss_never_read_as_zero():
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0], [-2.0, 0.0]], requires_grad=True)
    y = torch.tensor([[1.0, math.nan], [0.0, 1.0], [math.nan, 0.0]])
    loss = masked_bce(logits, y)
    known = ~torch.isnan(y)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[known], y[known])
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert logits.grad[0, 1] == 0 and logits.grad[2, 0] == 0 and (logits.grad[known] != 0).all()
    as_zero = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.nan_to_num(y))
    assert not torch.isclose(loss, as_zero)
    # the multiple-instance objective pools each finding of each volume apart
    pooled = mil_loss(2)(torch.tensor([[5.0, -5.0], [-5.0, -5.0]]), torch.tensor([[1.0, math.nan], [1.0, math.nan]]))
    smooth_max = torch.logsumexp(torch.tensor([5.0, -5.0]), 0) - math.log(2)  # finding 1 unknown: left out
    torch.testing.assert_close(pooled, torch.nn.functional.binary_cross_entropy_with_logits(smooth_max, torch.tensor(1.0)))


def test_validation_scores_each_finding_on_the_volumes_where_it_is_known():
    # three volumes, two findings: finding 0 ranked right, finding 1 ranked wrong where known
    per_volume = [((1.0, 0.0), [[3.0, 2.0], [0.0, 1.0]]), ((0.0, 1.0), [[-1.0, -2.0]]),
                  ((1.0, math.nan), [[2.0, 9.0]])]
    scores = validation_scores(per_volume)
    assert scores.finding_aucs == (1.0, 0.0)
    assert scores.val_volume_auc == 0.5 and "mean of 2 findings: 1.00, 0.00" in scores.describe()


@pytest.fixture(scope="module")
def three_logit_model():
    torch.manual_seed(0)
    return create_encoder("resnet10t", norm="bn", outputs=3).eval()


def _one_logit(model, k):
    one = create_encoder("resnet10t", norm="bn", outputs=1).eval()
    state = model.state_dict()
    state["fc.weight"], state["fc.bias"] = state["fc.weight"][k:k + 1], state["fc.bias"][k:k + 1]
    one.load_state_dict(state)
    return one


def test_one_pass_gives_each_findings_heatmap_as_its_own_classifier_would(three_logit_model):
    specs = [MethodSpec("tonno"), MethodSpec("layercam", layer=2), MethodSpec("tomographic-cam", cam="layercam", layer=2),
             MethodSpec("averaged-cam", cam="layercam", layer=2)]
    settings = ReconstructionSettings(slices=4, directions=6, hemisphere=True, slice_size=32)
    multi = for_findings(specs, FINDINGS)
    # every finding of every method shares one pass: the tomographic methods', and the slice-wise one's
    assert len(plan_passes(multi, settings)) == 2
    volume = torch.rand(16, 18, 14, generator=torch.Generator().manual_seed(1))
    together = run_methods(multi, volume, three_logit_model, settings, device="cpu")
    assert sorted(together) == sorted(f"{s.label}_{f}" for s in specs for f in FINDINGS)
    for k, finding in enumerate(FINDINGS):
        alone = run_methods(specs, volume, _one_logit(three_logit_model, k), settings, device="cpu")
        for spec in specs:
            ours, theirs = together[f"{spec.label}_{finding}"], alone[spec.label]
            assert theirs.abs().max() > 0
            # (the fc layer's rounding differs between a 3- and a 1-row matrix; ToNNO's second difference shows it)
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4 * float(theirs.abs().max()))


@pytest.mark.parametrize("cam", ["gradcam", "gradcam++", "scorecam"])
def test_every_cam_explains_each_finding_as_a_one_logit_classifier(three_logit_model, cam):
    from tonno_engine.cams.extractor import CamExtractor

    slices = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(2))
    logits, maps = CamExtractor(three_logit_model, cam, 3, with_logits=True, targets=(2, 0))(slices)
    assert logits.shape == (3, 3) and maps.shape[:2] == (3, 2)
    for j, k in enumerate((2, 0)):
        alone = CamExtractor(_one_logit(three_logit_model, k), cam, 3)(slices)
        torch.testing.assert_close(maps[:, j], alone, rtol=1e-4, atol=1e-5 * float(alone.abs().max()))


def test_findings_are_chosen_by_name_and_an_unknown_one_is_refused():
    specs = for_findings([MethodSpec("tonno")], FINDINGS, ["ring"])
    assert [(s.label, s.output, s.title) for s in specs] == [("tonno_ring", 1, "ToNNO [ring]")]
    assert MethodSpec("tonno").as_dict() == {k: v for k, v in specs[0].as_dict().items()
                                             if k not in ("finding", "output", "label")} | {"label": "tonno"}
    with pytest.raises(ValueError, match="unknown finding.*cyst.*bright, ring, elongated"):
        for_findings([MethodSpec("tonno")], FINDINGS, ["cyst"])


@pytest.fixture(scope="module")
def finding_brains(tmp_path_factory):
    from tonno_engine.data.synth import SynthRequest, synthesize

    root = tmp_path_factory.mktemp("findings")
    list(synthesize(root, SynthRequest(kind="brain", n=16, seed=2, shape=(24, 28, 24), difficulty="large", findings=FINDINGS,
                                       unknown=0.1)))
    return root


def test_synth_findings_are_present_apart_with_a_mask_each(finding_brains):
    from tonno_engine.data.images import load_image

    cases = read_cases(finding_brains, findings=list(FINDINGS))
    meta = json.loads((finding_brains / "dataset.json").read_text())
    assert meta["findings"] == list(FINDINGS)
    with open(finding_brains / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    blanks = sum(r[f] == "" for r in rows for f in FINDINGS)
    assert 0 < blanks < len(rows) * len(FINDINGS) / 2  # about a tenth unknown
    for case in cases:
        labels = load_image(case.mask).array
        for k in range(len(FINDINGS)):
            own = load_image(case.finding_masks[k]).array > 0
            assert np.array_equal(own, labels == k + 1)  # the label image and the finding's mask agree
            if not math.isnan(case.targets[k]):
                assert own.any() == bool(case.targets[k])
    present = np.array([[bool((load_image(c.mask).array == k + 1).any()) for k in range(3)] for c in cases])
    assert (present.sum(0) == 8).all()  # each in half the cases ...
    assert len({tuple(r) for r in present}) > 3  # ... drawn apart, not all together


def test_train_reconstruct_and_evaluate_several_findings_from_the_command_line(finding_brains, tmp_path):
    run = tmp_path / "run"
    res = runner.invoke(app, ["train", str(finding_brains), "-o", str(run), "--findings", ",".join(FINDINGS),
                              "--steps", "3", "--val-every", "3", "--slice-size", "32", "--norm", "gn",
                              "--pos-weight", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    checkpoint = run / "checkpoint_best.pt"
    from tonno_engine.models.checkpoint import load_checkpoint

    loaded = load_checkpoint(checkpoint, "cpu")
    assert loaded.description.findings == FINDINGS and loaded.model.fc.out_features == 3
    with open(run / "metrics.csv", newline="") as fh:
        last = list(csv.DictReader(fh))[-1]
    aucs = [float(last[f"val_volume_auc_{f}"]) for f in FINDINGS]
    assert float(last["val_volume_auc"]) == pytest.approx(np.nanmean(aucs), abs=1e-5)

    heat = tmp_path / "heat"
    res = runner.invoke(app, ["reconstruct", "-i", str(finding_brains), "-o", str(heat), "--checkpoint", str(checkpoint),
                              "--slices", "6", "--directions", "8", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    case = read_cases(finding_brains)[0].case
    assert sorted(p.name for p in heat.glob(f"{case}_*")) == sorted(f"{case}_tonno_{f}.nii.gz" for f in FINDINGS)
    from tonno_engine.apps.export_review import case_of_heatmap

    assert case_of_heatmap(heat / f"{case}_tonno_ring.nii.gz", "ring") == case
    with open(heat / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["method"], r["finding"]) for r in rows} == {(f"tonno_{f}", f) for f in FINDINGS}

    res = runner.invoke(app, ["evaluate", str(heat), str(finding_brains), "-o", str(tmp_path / "m.csv"),
                              "--findings", ",".join(FINDINGS)])
    assert res.exit_code == 0, res.output
    for k, finding in enumerate(FINDINGS):
        with open(tmp_path / f"m_{finding}.csv", newline="") as fh:
            scored = [r for r in csv.DictReader(fh) if r["case"] != "ALL"]
        assert {r["heatmap"] for r in scored} == {f"{c.case}_tonno_{finding}.nii.gz" for c in read_cases(finding_brains)}
        truth = {c.case: c.truth(k) for c in read_cases(finding_brains, findings=list(FINDINGS))}
        from tonno_engine.data.images import load_image
        from tonno_engine.evaluation.metrics import label_components

        for r in scored:  # each finding's lesions, and only those, are its ground truth
            mask, _, _ = truth[r["case"]]
            assert int(r["n_gt"]) == label_components(load_image(mask).array > 0)[1]

    one = tmp_path / "one"
    res = runner.invoke(app, ["reconstruct", "-i", str(finding_brains), "-o", str(one), "--checkpoint", str(checkpoint),
                              "--findings", "ring", "--slices", "6", "--directions", "8", "--device", "cpu", "-q"])
    assert res.exit_code == 0 and sorted(p.name for p in one.glob(f"{case}_*")) == [f"{case}_tonno_ring.nii.gz"]
    res = runner.invoke(app, ["reconstruct", "-i", str(finding_brains), "-o", str(tmp_path / "bad"), "--checkpoint",
                              str(checkpoint), "--findings", "cyst", "--device", "cpu", "-q"])
    assert res.exit_code == 1 and "unknown finding(s) cyst" in res.output and str(checkpoint) in res.output
    assert not (tmp_path / "bad").exists()


def test_benchmark_reports_table_2_per_finding(finding_brains, tmp_path):
    out = tmp_path / "bench"
    res = runner.invoke(app, ["benchmark", str(finding_brains), "-o", str(out), "--findings", "bright,ring",
                              "--steps", "2", "--slice-size", "32", "--norm", "gn", "--slices", "6",
                              "--directions", "8", "--layer", "3", "--test-fraction", "0.5", "--device", "cpu",
                              "--resamples", "100", "-q"])
    assert res.exit_code == 0, res.output
    table = (out / "table.md").read_text()
    assert table.count("## Finding: ") == 2 and table.index("## Finding: bright") < table.index("## Finding: ring")
    assert table.count("| ToNNO |") == 4  # its row and its interval row, per finding
    assert "Volume classification of ring" in table
    with open(out / "table.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["label"], r["finding"]) for r in rows if r["method"] == "ToNNO"] == [("tonno_bright", "bright"),
                                                                                  ("tonno_ring", "ring")]
    classified = json.loads((out / "classification.json").read_text())
    assert [c["finding"] for c in classified] == ["bright", "ring"]
    assert (out / "figure_bright.png").exists() or (out / "figure_ring.png").exists()


def test_several_profiles_backproject_together_as_each_alone():
    from tonno_engine.cams.tomographic import backproject_stack
    from tonno_engine.tomography.backprojection import backproject
    from tonno_engine.tomography.geometry import orthonormal_basis
    from tonno_engine.tomography.reconstruction import make_directions

    lattice = make_directions(7)
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(3, 7, 9, generator=gen)
    together = backproject(q, lattice.normals, torch.zeros(3, 10, 12, 11), memory_budget=200_000)  # several slabs
    for c in range(3):
        torch.testing.assert_close(together[c], backproject(q[c], lattice.normals, torch.zeros(10, 12, 11)))
    stacks = torch.randn(2, 7, 9, 4, 4, generator=gen)
    u, v = orthonormal_basis(lattice.normals)
    together = backproject_stack(stacks, (lattice.normals, u, v), -1.0, 0.25, torch.zeros(2, 10, 12, 11),
                                 memory_budget=200_000)
    for c in range(2):
        alone = backproject_stack(stacks[c], (lattice.normals, u, v), -1.0, 0.25, torch.zeros(10, 12, 11))
        torch.testing.assert_close(together[c], alone)


def test_benchmark_refuses_findings_its_checkpoint_does_not_have(finding_brains, tiny_checkpoint, tmp_path):
    res = runner.invoke(app, ["benchmark", str(finding_brains), "-o", str(tmp_path / "b"), "-c", str(tiny_checkpoint),
                              "--findings", "ring", "--device", "cpu", "-q"])
    assert res.exit_code == 1 and "holds the findings none (one logit), not ring" in res.output
    assert not (tmp_path / "b").exists()


def test_one_findings_pseudo_labels_are_exported_with_its_own_classes(finding_brains, tmp_path):
    from tonno_engine.data.images import load_image
    from tonno_engine.data.nifti import save_nifti

    cases = read_cases(finding_brains, findings=list(FINDINGS))
    heat = tmp_path / "heat"
    heat.mkdir()
    for c in cases:  # perfect heatmaps of the ring finding: its own mask
        truth = load_image(c.finding_masks[1])
        save_nifti(heat / f"{c.case}_tonno_ring.nii.gz", truth.array.astype(np.float32), truth.affine)
    res = runner.invoke(app, ["export", "nnunet", str(finding_brains), "--heatmaps", str(heat), "--finding", "ring",
                              "--level", "0.5", "--band", "1", "--margin-mm", "0", "-o", str(tmp_path / "raw")])
    assert res.exit_code == 0, res.output
    folder = next(p for p in (tmp_path / "raw").iterdir() if p.name.startswith("Dataset"))
    record = json.loads((folder / "tonno_export.json").read_text())
    assert record["method"] == "tonno_ring"
    unknown = [c.case for c in cases if math.isnan(c.targets[1])]
    exported = {p.name.removesuffix(".nii.gz") for p in (folder / "labelsTr").iterdir()}
    assert exported == {c.case for c in cases} - set(unknown) and unknown  # unknown rings are left out, and said
    assert all(name in res.output for name in unknown[:5])
    for c in cases:
        if c.case in exported:  # a case without rings is background everywhere, whatever its other findings
            label = np.asarray(load_image(folder / "labelsTr" / f"{c.case}.nii.gz").array)
            assert np.array_equal(label == 1, load_image(c.finding_masks[1]).array > 0)
            assert (label == 1).any() == bool(c.targets[1])
