"""tonno engine: tomographic reconstruction of a neural network's output (ToNNO).

Pure Python + torch; never imports Qt, napari, magicgui or typer.
"""

from .backprojection import RECONSTRUCTION_CONSTANT, backproject, reconstruction_scale, second_difference
from .devices import auto_device, resolve_device
from .events import Partial, Progress
from .geometry import fibonacci_directions, orthonormal_basis, slice_offsets, spread_order
from .reconstruction import make_directions, profiles, reconstruct, reconstruct_iter
from .scorers import radon_sum
from .slicing import extract_slices

try:
    from importlib.metadata import version as _version

    __version__ = _version("napari-tonno")
except Exception:  # noqa: BLE001 - not installed (running from a source tree)
    __version__ = "0+unknown"

__all__ = [
    "RECONSTRUCTION_CONSTANT", "Partial", "Progress", "auto_device", "backproject", "extract_slices",
    "fibonacci_directions", "make_directions", "orthonormal_basis", "profiles", "radon_sum",
    "reconstruct", "reconstruct_iter", "reconstruction_scale", "resolve_device", "second_difference",
    "slice_offsets", "spread_order",
]
