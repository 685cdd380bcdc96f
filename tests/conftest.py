import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _threads():
    torch.manual_seed(0)


@pytest.fixture
def device():
    """The device engine tests run on: CPU (GPU tests are marked ``gpu`` and pick CUDA)."""
    return torch.device("cpu")


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A randomly initialised resnet10t (GroupNorm) checkpoint for 32² slices, no preprocessing."""
    from tonno_engine.checkpoint import save_checkpoint
    from tonno_engine.models import create_encoder

    torch.manual_seed(0)
    model = create_encoder("resnet10t", norm="gn")
    meta = {"model": "resnet10t", "norm": "gn", "in_chans": 1, "slice_size": 32,
            "preprocessing": {"preset": "none", "params": {}, "spacing": None}}
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model, meta)


@pytest.fixture(scope="session")
def tiny_cases(tmp_path_factory):
    """A folder of four small synthetic phantoms (24³) with labels.csv, images/ and masks/."""
    from tonno_engine.synth import synthesize

    root = tmp_path_factory.mktemp("cases")
    list(synthesize(root, kind="phantom", n=4, seed=1, shape=(24, 24, 24)))
    return root
