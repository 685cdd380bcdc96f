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
