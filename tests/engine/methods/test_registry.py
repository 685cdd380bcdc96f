"""The method registry: records holding their formula objects, registration where a method is defined,
and an installed third-party package reaching the CLI, the listing and the engine through the
``tonno.methods`` entry-point group without anything importing it first."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from tonno_engine.base.registry import CAMS, ENTRY_POINT_GROUP, METHODS, MethodRecord, MethodSpec, register_method
from tonno_engine.base.solver_settings import SolverSettings

#: tonno's own tomographic methods, in the order every listing shows them
TONNO_ORDER = ["tonno", "tonno-iterative", "averaged-cam", "tomographic-cam", "iterative-cam"]

TOY = textwrap.dedent('''
    """A toy method in one file: the plain (unfiltered) backprojection of the logits."""
    from tonno_engine.base.registry import MethodRecord, register_method
    from tonno_engine.tomography.backprojection import backproject_passes


    class Unfiltered:
        def accumulate(self, stack, directions, acc, *, memory_budget, compile):
            yield from backproject_passes(stack[:, 1:-1], directions[0], acc, memory_budget=memory_budget)

        def scale(self, directions):
            return 1.0 / directions


    register_method(MethodRecord(
        "toy-backprojection", title="Toy backprojection", label="toy", kind="tomographic", needs="logits",
        default_directions=50, description="toy: mean of the logits over the planes through each voxel",
        equation="mean over l of p_l(x·n_l)", formula=Unfiltered()))
''')


@pytest.fixture
def toy_site(tmp_path):
    """A distribution 'toy-tonno' installed into a temporary site folder: a module and its dist-info
    declaring the module in the entry-point group."""
    (tmp_path / "toy_tonno.py").write_text(TOY)
    info = tmp_path / "toy_tonno-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-tonno\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\ntoy = toy_tonno\n")
    return {**os.environ, "PYTHONPATH": str(tmp_path), "COLUMNS": "250"}  # help text unwrapped


def _python(code: str, env) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout


def test_an_installed_package_adds_a_method_to_the_cli_the_listing_and_the_engine(toy_site):
    cli = "import sys; from tonno_cli.app import main; sys.argv = ['tonno', *sys.argv[1:]]; main()"
    help_text = subprocess.run([sys.executable, "-c", cli, "reconstruct", "--help"], capture_output=True, text=True,
                               env=toy_site, check=True).stdout
    assert "toy-backprojection" in help_text
    listing = json.loads(subprocess.run([sys.executable, "-c", cli, "methods", "--json"], capture_output=True,
                                        text=True, env=toy_site, check=True).stdout)
    names = [m["name"] for m in listing["methods"]]
    assert names[:5] == TONNO_ORDER and "toy-backprojection" in names
    # tonno's own entries load first: the toy is the last tomographic method, before the slice-wise ones
    assert names.index("toy-backprojection") == names.index("gradcam") - 1
    out = _python(textwrap.dedent('''
        import sys, torch
        from tonno_engine.base.registry import MethodSpec
        from tonno_engine.methods.run import run_methods
        from tonno_engine.methods.settings import ReconstructionSettings
        from tonno_engine.models.encoders import create_encoder
        assert "toy_tonno" not in sys.modules  # nothing imported the package
        torch.manual_seed(0)
        model = create_encoder("resnet10t", norm="gn")
        maps = run_methods([MethodSpec("toy-backprojection"), MethodSpec("tonno")], torch.rand(12, 12, 12), model,
                           ReconstructionSettings(slices=6, directions=8, slice_size=32), device="cpu")
        print(sorted(maps), MethodSpec("toy-backprojection").title, float(maps["toy"].abs().max()) > 0)
    '''), toy_site)
    assert out.strip() == "['tonno', 'toy'] Toy backprojection True"


def test_without_the_package_the_method_is_unknown(toy_site):
    env = {k: v for k, v in toy_site.items() if k != "PYTHONPATH"}
    out = _python("from tonno_engine.base.registry import METHODS; print('toy-backprojection' in METHODS)", env)
    assert out.strip() == "False"


def test_records_hold_objects_and_tonno_leads_every_listing():
    assert list(METHODS)[:5] == TONNO_ORDER
    assert list(CAMS) == ["gradcam", "layercam", "gradcam++", "scorecam"]
    for record in METHODS.values():
        if record.kind == "tomographic":
            assert callable(record.formula.accumulate) and callable(record.formula.scale)
    assert all(callable(c.impl) for c in CAMS.values())
    assert "formula" not in METHODS["tonno"].as_dict()


def test_every_formula_adds_its_chunk_pass_by_pass():
    """``accumulate`` returns an iterator for every registered formula, and only running it adds the chunk:
    the caller can cancel between passes."""
    from collections.abc import Iterator

    from tonno_engine.tomography.reconstruction import make_directions

    lattice = make_directions(3)
    for record in METHODS.values():
        if record.kind != "tomographic":
            continue
        stack = torch.rand(3, 7) if record.needs == "logits" else torch.rand(3, 7, 2, 2)
        acc = torch.zeros(6, 6, 6)
        passes = record.formula.accumulate(stack, (lattice.normals, lattice.u, lattice.v), acc,
                                           memory_budget=6 * 6 * 48 * 3, compile=False)
        assert isinstance(passes, Iterator) and acc.abs().sum() == 0, record.name
        assert len(list(passes)) > 1 and acc.abs().sum() > 0, record.name  # several slabs: several passes


def test_registry_titles_labels_and_validation():
    assert MethodSpec("tomographic-cam", cam="gradcam++", layer=3).title == "Tomographic GradCAM++ (layer 3)"
    assert MethodSpec("layercam", layer=2, axes=3).label == "layercam-l2-axes3"
    assert MethodSpec("layercam", layer=2, axes=3).title == "LayerCAM (layer 2, 3 axes)"
    assert MethodSpec("averaged-cam", cam="gradcam++", layer=1).label == "averaged-gradcampp-l1"
    assert MethodSpec("scorecam", layer=4, axes=3).label == "scorecam-l4-axes3"
    with pytest.raises(ValueError, match="valid: tonno, tonno-iterative, averaged-cam"):
        MethodSpec("nope")
    for bad in (dict(name="gradcam3d"), dict(cam="eigencam"), dict(layer=0), dict(axes=2)):
        with pytest.raises(ValueError):
            MethodSpec(**{"name": "layercam", **bad})
    with pytest.raises(ValueError, match="already registered"):
        register_method(METHODS["tonno"])
    tv = SolverSettings(regulariser="tv", strength=0.1, nonnegative=True)
    spec = MethodSpec("tonno-iterative", solver=tv)
    assert spec.label == "tonno-iterative-tv0.1-nonneg" and spec.title == "Iterative ToNNO, TV 0.1, f ≥ 0"
    assert spec.formula.settings == tv and METHODS["tonno-iterative"].formula.settings == SolverSettings()
    assert MethodSpec("iterative-cam", solver=SolverSettings(iterations=5)).label == "iterative-layercam-l2-it5"
    assert MethodSpec("tonno-iterative").label == "tonno-iterative" and "solver" not in MethodSpec().as_dict()
    with pytest.raises(ValueError, match="not an iterative method"):
        MethodSpec("tonno", solver=tv)
    with pytest.raises(ValueError, match="needs a strength"):
        SolverSettings(regulariser="tv")
    for weight in (float("inf"), float("nan")):  # a weight under which the solver would do nothing
        with pytest.raises(ValueError, match="finite"):
            SolverSettings(regulariser="tv", strength=weight)
    with pytest.raises(ValueError, match="needs a formula"):
        MethodRecord("x", title="x", label="x", kind="tomographic", needs="logits", description="", equation="")


@pytest.mark.parametrize("name", list(METHODS))
def test_a_misspelt_option_names_the_public_function_the_caller_used(name, tiny_checkpoint):
    """For every method, at every public entry point: a TypeError naming that function, not an inner one."""
    from tonno_engine.methods.case import Scan, reconstruct_case_iter
    from tonno_engine.methods.run import run_method, run_methods
    from tonno_engine.methods.settings import ReconstructionSettings
    from tonno_engine.models.checkpoint import load_checkpoint
    from tonno_engine.tomography.plan import Plan

    spec, volume = MethodSpec(name, layer=3), torch.rand(8, 8, 8)
    loaded = load_checkpoint(tiny_checkpoint, "cpu")
    calls = {
        "run_methods": lambda: run_methods([spec], volume, loaded.model, hemisphre=True),
        "run_method": lambda: run_method(spec, volume, loaded.model, memory_budgt=1),
        "reconstruct_case_iter": lambda: reconstruct_case_iter(Scan(volume), loaded, [spec], hemisphre=True),
        "Plan": lambda: Plan(hemisphre=True),
        "ReconstructionSettings": lambda: ReconstructionSettings(hemisphre=True),
    }
    for public, call in calls.items():
        with pytest.raises(TypeError, match=rf"^{public}(\.__init__)?\(\) got an unexpected keyword argument"):
            call()
