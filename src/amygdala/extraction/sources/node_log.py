"""A memory log -> its current nodes, one record at a time (so a large log is never held whole).

Real memory stores are append-only logs: an update appends a record with the same ``uuid`` and a higher
``version``, a deletion appends one with ``deleted: true``. For the records of one identity (``uuid``, else ``key``)
that carry any of these fields:

- the record with the highest ``version`` wins (absent counts as 0); on a tie, the later record wins;
- a winning record with ``deleted: true`` removes the node;
- every other record is *superseded*: only the current winner per identity is held.

Records without any log field behave as they always did: an identical copy of a repeated key is kept, and
example selection uses one of them (``examples.score_graph``, which reports the others as duplicate keys). A
repeated key without log fields whose record differs is ambiguous (which one is current?): ``add`` raises
``DuplicateKeyError`` naming both records, and the fix is to add ``version`` (or ``uuid``) fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from amygdala.errors import AmygdalaError
from amygdala.extraction.sources import LogCounts, MemoryGraph, MemoryNode
from amygdala.extraction.sources.records import Identity, NodeRecord


class DuplicateKeyError(AmygdalaError):
    """Two records without log fields share a key but differ: neither can be taken as the current one."""


@dataclass(frozen=True)
class _Held:
    """What is held for one identity: the node(s) of its current record(s) (``None`` for a deletion), each with its
    position in the log (several only for the repeated copies of a key without log fields)."""

    logged: bool
    version: int
    entries: tuple[tuple[int, MemoryNode | None], ...]
    where: str


class NodeLog:
    """Feed records in log order with ``add``; ``graph`` gives the current nodes and the counts."""

    def __init__(self) -> None:
        self._held: dict[Identity, _Held] = {}
        self._records = 0
        self._superseded = 0
        self._unknown: set[str] = set()

    def add(self, record: NodeRecord, where: str) -> None:
        """Take the next record of the log (``where`` names it, e.g. ``line 12``): it wins over the held one(s) or
        is superseded. A differing repeat of a key without log fields raises ``DuplicateKeyError``."""
        held = self._held.get(record.identity)
        if held is not None and not record.logged and not held.logged and held.entries[0][1] != record.node:
            raise DuplicateKeyError(f"key {record.identity[1]!r} is repeated with other content at {held.where} and "
                                    f"{where}, without version fields: add \"version\" (and \"uuid\") fields so the "
                                    f"later record supersedes the earlier, or remove one")
        position, self._records = self._records, self._records + 1
        self._unknown |= record.unknown_fields
        version = record.version or 0
        entry = (position, None if record.deleted else record.node)
        if held is None:
            self._held[record.identity] = _Held(record.logged, version, (entry,), where)
        elif not record.logged and not held.logged:  # an identical repeat without log fields: kept, as always
            self._held[record.identity] = _Held(False, 0, (*held.entries, entry), held.where)
        elif version >= held.version:  # later in the log, so a tie goes to this record
            self._superseded += len(held.entries)
            self._held[record.identity] = _Held(True, version, (entry,), where)
        else:
            self._superseded += 1

    def graph(self, source: str) -> MemoryGraph:
        """The current nodes, in the log order of their winning records, with the counts and ignored fields."""
        winners = sorted((entry for held in self._held.values() for entry in held.entries), key=lambda e: e[0])
        nodes = tuple(node for _, node in winners if node is not None)
        deleted = len(winners) - len(nodes)
        counts = LogCounts(self._records, self._superseded, deleted, len(nodes))
        return MemoryGraph(nodes, counts, tuple(sorted(self._unknown)), source)


__all__ = ["DuplicateKeyError", "NodeLog"]
