"""The forward operators of the reconstruction as linear maps in torch, with their exact adjoints.

ToNNO reads a slice's logit as the integral of the volume over the slice's patch (``R_Σ``, paper
eq. 5; :func:`~tonno_engine.tomography.scorers.radon_sum` is the same 4 × mean); the CAM variants read
a CAM map as the slice average-pooled onto the map's cells. Both are
:func:`~tonno_engine.tomography.slicing.extract_slices` (trilinear, zero outside ``[-1, 1]³``) followed
by a reduction, so both are linear in the volume. The adjoint is autograd of the forward: the exact
transpose of the discrete operator (the trilinear weights scattered back), which the filtered
backprojection is not (it integrates the continuous transform), and no third backprojection to keep.

Written here rather than taken from a tomography library: ASTRA, TIGRE, tomosipo, LEAP, torch-radon
and ODL integrate along rays (X-ray and parallel-beam transforms), not over planes or patches of
planes, and their 3D solvers need CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from ..base.defaults import MEMORY_BUDGET
from .slicing import extract_slices

#: bytes of temporaries per slice pixel in one application (points, samples, their gradients)
_BYTES_PER_PIXEL = 64


@dataclass(frozen=True)
class Acquisition:
    """The slices behind a reconstruction's data: the heatmap's ``shape``, the directions' ``normals``/``u``/``v``
    ``(L, 3)`` in its ``t`` space (a frame's ``for_slicing``), the ``offsets`` ``(K,)``, the network's slice
    ``size`` and the ``memory_budget`` (bytes of temporaries) of one application of an operator on them."""

    shape: tuple[int, int, int]
    normals: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor
    offsets: torch.Tensor
    size: tuple[int, int]
    memory_budget: int = MEMORY_BUDGET

    def to(self, device) -> Acquisition:
        return replace(self, **{k: getattr(self, k).to(device) for k in ("normals", "u", "v", "offsets")})


@dataclass(frozen=True)
class SliceOperator:
    """``A``: a volume of ``acquisition.shape`` on ``[-1, 1]³`` → the reductions of its slices, each ``size``
    pixels ``(h, w)`` over the patch ``[-1, 1]²`` in ``(u, v)``.

    ``cells`` ``None``: each slice's patch integral, ``4 × mean`` (``(L, K)``); ``(a, b)``: the slice
    average-pooled onto ``a × b`` cells (``(L, K, a, b)``). ``centre``: remove each direction's mean over
    its ``K`` offsets (an orthogonal projection; the network's bias is then no part of the fit).
    Applied in chunks of directions, at most ``acquisition.memory_budget`` bytes of temporaries each.
    """

    acquisition: Acquisition
    size: tuple[int, int]
    cells: tuple[int, int] | None = None
    centre: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.acquisition.shape

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (len(self.acquisition.normals), len(self.acquisition.offsets), *(self.cells or ()))

    def _chunks(self):
        acq = self.acquisition
        per_direction = len(acq.offsets) * self.size[0] * self.size[1] * _BYTES_PER_PIXEL
        step = max(1, acq.memory_budget // per_direction)
        return [slice(start, min(len(acq.normals), start + step)) for start in range(0, len(acq.normals), step)]

    def _reduce(self, volume: torch.Tensor, chunk: slice) -> torch.Tensor:
        acq = self.acquisition
        count, k = chunk.stop - chunk.start, len(acq.offsets)
        flat = [t[chunk].repeat_interleave(k, dim=0) for t in (acq.normals, acq.u, acq.v)]
        slices = extract_slices(volume, acq.offsets.repeat(count), *flat, self.size)
        if self.cells is None:
            out = 4.0 * slices.mean(dim=(1, 2)).view(count, k)
        else:
            out = F.adaptive_avg_pool2d(slices[:, None], self.cells)[:, 0].view(count, k, *self.cells)
        return out - out.mean(dim=1, keepdim=True) if self.centre else out

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        """``A f``: ``data_shape`` float32 on the volume's device."""
        with torch.no_grad():
            return torch.cat([self._reduce(volume, chunk) for chunk in self._chunks()])

    def adjoint(self, data: torch.Tensor) -> torch.Tensor:
        """``Aᵀ y`` for ``data`` of ``data_shape``: ``(D, H, W)``, by autograd of the forward."""
        data = data.detach().clone()  # an inference-mode tensor cannot take part in autograd
        probe = torch.zeros(self.shape, dtype=data.dtype, device=data.device, requires_grad=True)
        out = torch.zeros(self.shape, dtype=data.dtype, device=data.device)
        with torch.enable_grad():
            for chunk in self._chunks():
                (grad,) = torch.autograd.grad((self._reduce(probe, chunk) * data[chunk]).sum(), probe)
                out += grad
        return out
