"""The launcher's environment, read in one place: ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` as torchrun and
``accelerate launch`` set them, into a ``World``. Stdlib only, so the CLI's start (its error lines name the rank,
ranks > 0 draw no progress bars) stays torch-free; ``distributed`` does the collectives with it.

An unset or empty variable takes its single-process value (rank 0 of 1, local rank 0); anything else must be an
integer, and the three must fit together, or ``world_from_env`` raises ``DistributedError`` naming them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from amygdala.errors import AmygdalaError

T = TypeVar("T")
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class DistributedError(AmygdalaError):
    """The ranks of a data-parallel run disagree, or the launch environment is unusable."""


@dataclass(frozen=True)
class World:
    """This process's place in a data-parallel run; the default is a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_parallel(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes artifacts and reports."""
        return self.rank == 0

    def describe(self) -> str:
        return f"rank {self.rank} of {self.world_size}" if self.is_parallel else "single process"

    def shard(self, batches: Sequence[T]) -> list[T]:
        """This rank's share of the planned forward batches: every ``world_size``-th, from ``rank``."""
        return list(batches[self.rank::self.world_size])


SINGLE = World()


def world_from_env(environ: Mapping[str, str] = os.environ) -> World:
    """The ``World`` a launcher (torchrun, accelerate launch) describes in the environment; single otherwise."""
    values = {name: environ.get(name, "").strip() for name in LAUNCHER_VARIABLES}
    try:
        rank, size, local = (int(values[name] or default) for name, default in zip(LAUNCHER_VARIABLES, "010"))
    except ValueError:
        raise DistributedError(f"launcher variables {', '.join(f'{n}={environ.get(n)!r}' for n in LAUNCHER_VARIABLES)}"
                               " must be integers: launch with torchrun or accelerate launch") from None
    if size < 1 or not 0 <= rank < size or local < 0:
        raise DistributedError(f"launcher variables RANK={rank}, WORLD_SIZE={size}, LOCAL_RANK={local} are "
                               "inconsistent: launch with torchrun or accelerate launch")
    return World(rank, size, local)


def world_or_single(environ: Mapping[str, str] = os.environ) -> World:
    """``world_from_env``, or ``SINGLE`` when the variables are unusable: for what only decorates output (the
    error line's rank, progress bars), which must not fail itself; the command's own read still refuses them."""
    try:
        return world_from_env(environ)
    except DistributedError:
        return SINGLE


__all__ = ["LAUNCHER_VARIABLES", "SINGLE", "DistributedError", "World", "world_from_env", "world_or_single"]
