"""Least squares for the reconstruction: conjugate gradients on the normal equations (CGLS).

``min_f ||A f − y||² + λ R(f)`` with the exact operator of :mod:`tonno_engine.tomography.operators`,
warm-started from the filtered backprojection. ``R``: nothing, ``||∇f||²`` (``"gradient"``, linear: one
CGLS run) or total variation (``"tv"``: ``Σ |∇f|``, edge-preserving, by iteratively reweighted least
squares: a few CGLS runs, each with the weights ``1 / sqrt(|∇f|² + ε²)`` of the previous estimate).
``nonnegative`` projects each estimate onto ``f ≥ 0``. CGLS is written out (ten lines) because
torch has none, and scipy's ``lsqr`` would move every operator application to numpy and the CPU.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..base.solver_settings import REGULARISERS, SolverSettings

__all__ = ["REGULARISERS", "SolverSettings", "cgls_iter"]


def _gradient(x: torch.Tensor) -> list[torch.Tensor]:
    return [torch.diff(x, dim=d) for d in range(x.ndim)]


def _penalty_normal(x: torch.Tensor, weights) -> torch.Tensor:
    """``∇ᵀ W ∇ x`` (by autograd of ``½ Σ w |∇x|²``: the exact transpose of the forward differences)."""
    probe = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        energy = sum(0.5 * ((w * g * g).sum() if w is not None else (g * g).sum())
                     for g, w in zip(_gradient(probe), weights))
        (grad,) = torch.autograd.grad(energy, probe)
    return grad


def _tv_weights(x: torch.Tensor, epsilon: float) -> list[torch.Tensor]:
    return [1.0 / torch.sqrt(g * g + epsilon * epsilon) for g in _gradient(x)]


def cgls_iter(op, data: torch.Tensor, start: torch.Tensor, settings: SolverSettings = SolverSettings()
              ) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Solve ``min ||op.forward(f) − data||² + λ R(f)`` from ``start`` ``(D, H, W)``; yields
    ``(iteration, iterations, estimate)`` after every step and returns the last estimate.

    The penalty's weight is ``λ = strength · ||AᵀA f₀|| / ||∇ᵀ∇ f₀||`` for the start ``f₀``: with
    ``strength = 1`` both terms pull equally hard on the starting estimate, whatever the data's units.
    """
    x = start.detach().clone().float()
    if settings.nonnegative:
        x.clamp_(min=0)
    total = settings.iterations
    rounds = settings.reweightings if settings.regulariser == "tv" else 1
    per_round = max(1, total // rounds) if total else 0
    lam, weights = 0.0, [None] * x.ndim
    if settings.regulariser != "none" and settings.strength > 0:
        data_scale = op.adjoint(op.forward(x)).norm() + 1e-30
        lam = settings.strength * float(data_scale / (_penalty_normal(x, weights).norm() + 1e-30))
    done = 0
    for _ in range(rounds):
        if settings.regulariser == "tv" and lam:
            scale = float(torch.stack([g.abs().mean() for g in _gradient(x)]).mean()) + 1e-12
            weights = _tv_weights(x, 0.1 * scale)
        x, steps = yield from _cgls(op, data, x, (lam, weights), per_round, settings, (done, total))
        done += steps
        if settings.nonnegative:
            x.clamp_(min=0)
    return x


def _cgls(op, data, x, penalty: tuple, iterations, settings: SolverSettings, progress: tuple[int, int]):
    """One CGLS run regularised by ``lam ∇ᵀW∇`` (``penalty`` = ``(lam, W)``), yielding ``(done + step, total, x)``
    with ``progress`` = ``(done, total)``; returns ``(estimate, steps taken)``."""
    (lam, weights), (done, total) = penalty, progress
    r = data - op.forward(x)
    s = op.adjoint(r) - (lam * _penalty_normal(x, weights) if lam else 0.0)
    p, gamma = s.clone(), float((s * s).sum())
    start = gamma ** 0.5
    for step in range(1, iterations + 1):
        if gamma ** 0.5 <= settings.tolerance * start or gamma == 0.0:
            return x, step - 1
        q = op.forward(p)
        delta = float((q * q).sum()) + (lam * float((p * _penalty_normal(p, weights)).sum()) if lam else 0.0)
        alpha = gamma / delta
        x = x + alpha * p
        r = r - alpha * q
        s = op.adjoint(r) - (lam * _penalty_normal(x, weights) if lam else 0.0)
        new = float((s * s).sum())
        p, gamma = s + (new / gamma) * p, new
        yield done + step, total, x
    return x, iterations
