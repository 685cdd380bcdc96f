"""The iterative methods' solver settings (torch-free, so a :class:`~tonno_engine.base.registry.MethodSpec`
can carry them; the solver is :mod:`tonno_engine.tomography.solvers`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .defaults import SOLVER_ITERATIONS, SOLVER_TOLERANCE

REGULARISERS = ("none", "gradient", "tv")


@dataclass(frozen=True)
class SolverSettings:
    """``iterations``: the most CGLS steps (over all reweightings); ``tolerance``: stop when the normal
    equations' residual ``||Aᵀ(y − Af) − λ∇ᵀW∇f||`` falls below this share of its start; ``regulariser`` and
    its weight ``strength`` (relative to the data term, see :func:`~tonno_engine.tomography.solvers.cgls_iter`),
    ``reweightings`` (TV); ``nonnegative``: project each estimate onto ``f ≥ 0``."""

    iterations: int = SOLVER_ITERATIONS
    tolerance: float = SOLVER_TOLERANCE
    regulariser: str = "none"
    strength: float = 0.0
    nonnegative: bool = False
    reweightings: int = 3

    def __post_init__(self):
        if self.regulariser not in REGULARISERS:
            raise ValueError(f"unknown regulariser {self.regulariser!r}; valid: {', '.join(REGULARISERS)}")
        if not (math.isfinite(self.strength) and math.isfinite(self.tolerance)):
            raise ValueError(f"strength and tolerance must be finite numbers, got {self.strength} and {self.tolerance}")
        if self.iterations < 0 or self.tolerance < 0 or self.strength < 0 or self.reweightings < 1:
            raise ValueError("iterations, tolerance and strength must be >= 0, reweightings >= 1")
        if self.regulariser != "none" and self.strength == 0:
            raise ValueError(f"the {self.regulariser} regulariser needs a strength > 0")

    @property
    def tag(self) -> str:
        """What sets these apart from the defaults, filename-safe: ``""``, ``-tv0.1-nonneg``, ``-it40``."""
        default = SolverSettings()
        parts = [f"{self.regulariser}{self.strength:g}" if self.regulariser != "none" else "",
                 "nonneg" if self.nonnegative else "",
                 f"it{self.iterations}" if self.iterations != default.iterations else "",
                 f"tol{self.tolerance:g}" if self.tolerance != default.tolerance else "",
                 f"rw{self.reweightings}" if self.reweightings != default.reweightings else ""]
        return "".join(f"-{p}" for p in parts if p)

    @property
    def title(self) -> str:
        """The same for tables: ``""``, ``, TV 0.1, f ≥ 0``."""
        names = {"tv": "TV", "gradient": "gradient penalty"}
        parts = [f"{names[self.regulariser]} {self.strength:g}" if self.regulariser != "none" else "",
                 "f ≥ 0" if self.nonnegative else "",
                 f"{self.iterations} iterations" if self.iterations != SolverSettings().iterations else ""]
        return "".join(f", {p}" for p in parts if p)
