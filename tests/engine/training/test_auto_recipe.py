"""``--recipe auto``: settings chosen from the data set's fingerprint, said in one line and recorded (issue 42)."""

import json

import pytest

from tonno_engine.training.config import recipe_config
from tonno_engine.training.fingerprint import SLICE_MAX, SLICE_MIN, Fingerprint, choose


def test_auto_crops_a_body_in_a_large_box_and_sizes_slices_to_the_finest_voxel():
    foreign = Fingerprint(cases=48, finest_mm=1.4, coarsest_mm=3.2, foreground_share=0.21, extent_mm=183.0,
                          baseline=0.85)
    settings, why = choose(foreign)
    # pixels of the coarsest spacing (3.2 mm) over the cropped brain: 57 wanted, 64 (the smallest) taken
    assert settings["crop"] and settings["slice_size"] == 64 and settings["intensity"] == "robust"
    assert "cropped" in why and "64² slices (2.90 mm per pixel)" in why and "baseline AUC 0.85" in why
    thick_ct = Fingerprint(cases=200, finest_mm=0.7, coarsest_mm=2.5, foreground_share=0.3, extent_mm=350.0,
                           baseline=0.6)
    assert choose(thick_ct)[0]["slice_size"] == 144  # 350 mm at the 2.5 mm of the slice axis: 140, rounded up
    filled = Fingerprint(cases=40, finest_mm=2.3, coarsest_mm=2.4, foreground_share=0.8, extent_mm=150.0, baseline=0.7)
    settings, why = choose(filled)
    assert not settings["crop"] and "cropped" not in why
    assert SLICE_MIN <= settings["slice_size"] <= SLICE_MAX and settings["slice_size"] % 16 == 0
    assert choose(Fingerprint(10, 0.5, 0.5, 0.3, 400.0, 0.5))[0]["slice_size"] == SLICE_MAX  # 400 pixels wanted
    assert recipe_config("auto", {"slice_size": 96, "steps": None}).recipe_fixed == ("slice_size",)
    assert recipe_config("small-lesions").recipe == "small-lesions" and recipe_config("small-lesions").recipe_fixed == ()


@pytest.mark.parametrize("given", [[], ["--slice-size", "32"]])
def test_train_with_the_auto_recipe_says_what_it_chose_and_records_it(tiny_cases, tmp_path, given):
    from typer.testing import CliRunner

    from tonno_cli.app import app
    from tonno_engine.models.checkpoint import load_checkpoint

    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", str(tiny_cases), "--out", str(run), "--recipe", "auto", "--steps", "1",
                                   "--batch-volumes", "1", "--slices-per-volume", "2", "--val-slices", "2",
                                   "--norm", "gn", "--device", "cpu", "-q", *given])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.startswith("recipe auto: "))
    info = json.loads((run / "run.json").read_text())
    assert info["recipe"] == {"name": "auto", "reason": line.removeprefix("recipe auto: ")}
    args = load_checkpoint(run / "checkpoint_last.pt", "cpu").description.train_args
    assert args["recipe"] == "auto" and args["recipe_reason"] == info["recipe"]["reason"]
    chosen = 32 if given else SLICE_MIN  # what the user set stays; 24-voxel phantoms want the smallest slice
    assert args["slice_size"] == chosen and f"→ {SLICE_MIN}² slices" in line
    assert ("as given: slice_size=32" in line) == bool(given)
