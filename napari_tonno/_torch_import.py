"""Import torch safely inside a running napari.

Once napari has an OpenGL context, Mesa's drivers (llvmpipe under Xvfb, radeonsi, …) have loaded
their own LLVM; loading triton's ``libtriton.so`` afterwards (torchvision → torch._dynamo →
triton) then crashes the process in ``dlopen``. Loading triton with ``RTLD_DEEPBIND`` makes it
resolve its own LLVM symbols first. Done once, before anything imports torch from a widget.
"""

from __future__ import annotations

import importlib.util
import os
import sys

_done = False


def ensure_torch() -> None:
    global _done
    if _done:
        return
    if "triton" not in sys.modules and importlib.util.find_spec("triton") is not None and hasattr(os, "RTLD_DEEPBIND"):
        flags = sys.getdlopenflags()
        sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
        try:
            import triton  # noqa: F401
        finally:
            sys.setdlopenflags(flags)
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    _done = True
