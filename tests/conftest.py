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


@pytest.fixture
def two_channel_phantoms(masked_phantoms, tmp_path):
    """Factory: ``masked_phantoms`` whose cases bring two images (``image_0000``, ``image_0001`` columns; dataset.json
    names them ``T1`` (robust) and ``CT`` (ct)): the second ``1000 - 40·first`` on the first's grid, except the last
    case's, written on a grid twice as coarse. Returns ``(cases, heatmap folder, CSV)``."""
    import json

    import numpy as np

    from tonno_engine.data.dataset import read_cases
    from tonno_engine.data.nifti import load_nifti, save_nifti

    def make(n: int = 4, shape=(16, 16, 16)):
        cases, heat = masked_phantoms(n, shape)
        folder = tmp_path / "two"
        folder.mkdir()
        lines = ["case,label,image_0000,image_0001,mask"]
        for k, c in enumerate(cases):
            v = load_nifti(c.image)
            second, affine = 1000.0 - 40.0 * v.array, v.affine
            if k == len(cases) - 1:  # the coarser grid: every second voxel, twice the spacing
                second, affine = second[::2, ::2, ::2], v.affine @ np.diag([2.0, 2.0, 2.0, 1.0])
            save_nifti(folder / f"{c.case}_0000.nii.gz", v.array, v.affine, v.header)
            save_nifti(folder / f"{c.case}_0001.nii.gz", second, affine)
            lines.append(f"{c.case},{c.label},{folder / f'{c.case}_0000.nii.gz'},{folder / f'{c.case}_0001.nii.gz'},"
                         f"{c.mask}")
        (folder / "labels.csv").write_text("\n".join(lines) + "\n")
        (folder / "dataset.json").write_text(json.dumps({"channels": [
            {"column": "image_0000", "name": "T1", "intensity": "robust"},
            {"column": "image_0001", "name": "CT", "intensity": "ct"}]}))
        return read_cases(folder / "labels.csv"), heat, folder / "labels.csv"

    return make
