"""Check the array size an image header declares before anything is allocated.

A header can declare any shape: a 68-byte ``.nii.gz`` that claims 4096³ voxels would otherwise
raise ``MemoryError`` (or take gigabytes) inside the reader. Two bounds, both from the file alone:
an uncompressed file must hold every declared byte, and deflate (gzip, zlib) cannot compress by
more than 1032:1 (its longest match is 258 bytes coded in at least 2 bits), so a compressed file
cannot expand to more than that. The float32 copy tonno makes must also fit the memory available.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..base.errors import DataError

#: deflate's largest possible compression ratio (see module doc), with a little header slack
MAX_DEFLATE_RATIO = 1032
HEADER_SLACK = 4096


def available_memory() -> int:
    """Bytes of memory this machine can still give (``MemAvailable``; the free pages elsewhere)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_declared_size(path: str | Path, shape, itemsize: int, *, compressed: bool, offset: int = 0,
                        kind: str = "image") -> None:
    """:class:`DataError` naming ``path`` when ``shape`` × ``itemsize`` bytes cannot be in the file
    (``offset``: where the data start) or its float32 copy exceeds the available memory."""
    path = Path(path)
    voxels = math.prod(int(n) for n in shape)
    declared = voxels * int(itemsize)
    size = path.stat().st_size
    shape_text = "×".join(str(int(n)) for n in shape)
    if compressed and declared > (size + HEADER_SLACK) * MAX_DEFLATE_RATIO:
        raise DataError(path, f"header declares a {shape_text} {kind} ({declared / 2**20:.0f} MB), more than a "
                              f"{size}-byte compressed file can hold: corrupt or truncated")
    if not compressed and offset + declared > size:
        raise DataError(path, f"header declares a {shape_text} {kind} ({declared} bytes of data from byte {offset}), "
                              f"but the file has {size} bytes: truncated")
    check_memory(path, shape, kind=kind)


def check_nifti(path: str | Path, img, *, kind: str = "image") -> None:
    """:func:`check_declared_size` for a nibabel image loaded from ``path`` (header only, nothing read yet)."""
    check_declared_size(path, img.shape, img.get_data_dtype().itemsize, compressed=str(path).lower().endswith(".gz"),
                        offset=int(img.dataobj.offset), kind=kind)


def check_memory(path, shape, *, kind: str = "image") -> None:
    """:class:`DataError` naming ``path`` when reading a ``shape`` image (its array and the float32 copy)
    needs more memory than is available."""
    voxels = math.prod(int(n) for n in shape)
    shape_text = "×".join(str(int(n)) for n in shape)
    need, have = voxels * 4 * 2, available_memory()
    if need > have:
        raise DataError(path, f"a {shape_text} {kind} needs about {need / 2**30:.1f} GB of memory to read, "
                              f"{have / 2**30:.1f} GB are available")
