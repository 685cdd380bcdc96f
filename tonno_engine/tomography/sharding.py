"""One reconstruction split over the processes of a ``torchrun`` world, above the core.

Each rank accumulates every ``N``-th direction of the spread order (a well-spread subset) with
:func:`~tonno_engine.tomography.reconstruction.reconstruct_iter`'s ``subset``; a failure on one rank
is raised on every rank before they pair up, then the sums are reduced onto rank 0 in slabs. The
process group is the caller's, passed as ``world`` (joined at the entry point, never looked up here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from ..base.distributed import World, agree_on_failure, reduce_in_slabs
from ..base.events import Partial, Progress


def sharded_iter(events_of: Callable[[torch.Tensor | None], Iterator], directions: int,
                 world: World | None) -> Iterator[Progress | Partial]:
    """The events of ``events_of(subset)`` for this rank's share of ``directions`` (all of them, ``None``,
    in a world of one or without ``world``). Under several ranks: no intermediate partials (run
    ``events_of`` with ``partials=False``), and the final value (a tuple of heatmaps) is the
    whole heatmap on rank 0 only (other ranks hold partial sums). Every rank must call it alike."""
    if world is None or not world.distributed:
        yield from events_of(None)
        return
    final = None
    try:
        for event in events_of(torch.arange(world.rank, directions, world.size)):
            if isinstance(event, Partial) and event.final:
                final = event
            elif isinstance(event, Progress):
                yield event
    except Exception as exc:  # the ranks agree on a failure before the reduce pairs their sums
        agree_on_failure(exc, world)
    agree_on_failure(None, world)
    for heatmap in final.value:
        reduce_in_slabs(heatmap, world)
    yield final
