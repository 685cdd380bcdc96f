import pytest
import torch

# GPU tests show warnings instead of raising them: they run on GPU machines whose torch/triton
# versions this suite's "error" filter was never tuned for (e.g. Inductor's TF32 advice).
_GPU_WARNINGS = pytest.mark.filterwarnings("default")


@pytest.fixture(scope="session", autouse=True)
def _threads():
    torch.manual_seed(0)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    """The device an engine test runs on: every such test runs on the CPU, and again on CUDA where
    there is one (the ``cuda`` variant is marked ``gpu`` and skipped without a GPU)."""
    return torch.device(request.param)


@pytest.fixture
def accelerator():
    """CUDA, for tests of what exists only there (bf16 autocast); mark such tests ``gpu``."""
    return torch.device("cuda")


#: fixtures that open a napari viewer or drive Qt: their tests are ``gui`` tests
GUI_FIXTURES = {"make_napari_viewer", "qtbot", "viewer_with_volume"}


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if GUI_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.gui)
        if "gpu" in item.keywords:
            item.add_marker(_GPU_WARNINGS)
            if not torch.cuda.is_available():
                item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A randomly initialised resnet10t (GroupNorm) checkpoint for 32² slices, no preprocessing."""
    from tonno_engine.models.checkpoint import CheckpointDescription, save_checkpoint
    from tonno_engine.models.encoders import create_encoder

    torch.manual_seed(0)
    model = create_encoder("resnet10t", norm="gn")
    description = CheckpointDescription(model="resnet10t", norm="gn", slice_size=32,
                                        preprocessing={"intensity": "none", "params": {}, "spacing": None})
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model, description)


@pytest.fixture(scope="session")
def tiny_cases(tmp_path_factory):
    """A folder of four small synthetic phantoms (24³) with labels.csv, images/ and masks/."""
    from tonno_engine.data.synth import SynthRequest, synthesize

    root = tmp_path_factory.mktemp("cases")
    list(synthesize(root, SynthRequest(kind="phantom", n=4, seed=1, shape=(24, 24, 24))))
    return root


@pytest.fixture
def masked_phantoms(tmp_path):
    """Factory: ``n`` phantoms of ``shape`` in ``tmp_path/data`` with their masks written as ``tonno`` heatmaps in
    ``tmp_path/heat`` (perfect heatmaps: a pseudo-label test then knows where every lesion is); returns
    ``(cases, heatmap folder)``."""
    import numpy as np

    from tonno_engine.data.dataset import read_cases
    from tonno_engine.data.nifti import load_nifti, save_nifti
    from tonno_engine.data.synth import SynthRequest, synthesize

    def make(n: int = 6, shape=(16, 18, 20)):
        list(synthesize(tmp_path / "data", SynthRequest(kind="phantom", n=n, seed=1, shape=shape)))
        cases = read_cases(tmp_path / "data")
        heat = tmp_path / "heat"
        heat.mkdir()
        for c in cases:
            v = load_nifti(c.image)
            save_nifti(heat / f"{c.case}_tonno.nii.gz", load_nifti(c.mask).array.astype(np.float32), v.affine, v.header)
        return cases, heat

    return make
