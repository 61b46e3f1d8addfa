"""The versioned-log rules against a brute-force reference that holds the whole log (``NodeLog`` holds only the
winners), on generated logs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amygdala.extraction.sources import LogCounts, MemoryNode
from amygdala.extraction.sources.node_log import DuplicateKeyError, NodeLog
from amygdala.extraction.sources.records import NodeRecord, node_record

rows = st.lists(st.fixed_dictionaries(
    {"key": st.sampled_from(["a", "b", "c"]), "content": st.sampled_from(["one", "two", "three"])},
    optional={"uuid": st.sampled_from(["u1", "u2"]), "version": st.integers(0, 3), "deleted": st.booleans()}),
    max_size=14)


def reference(records: list[NodeRecord]) -> tuple[list[MemoryNode], int, int]:
    """(current nodes in the order of their winning records, superseded records, deleted nodes) from the whole log."""
    groups: dict[tuple[str, str], list[tuple[int, NodeRecord]]] = {}
    for position, record in enumerate(records):
        groups.setdefault(record.identity, []).append((position, record))
    kept: list[tuple[int, MemoryNode]] = []
    deleted = 0
    for group in groups.values():
        if not any(record.logged for _, record in group):
            kept += [(position, record.node) for position, record in group]  # every unversioned copy is kept
            continue
        position, winner = max(group, key=lambda entry: (entry[1].version or 0, entry[0]))
        if winner.deleted:
            deleted += 1
        else:
            kept.append((position, winner.node))
    nodes = [node for _, node in sorted(kept, key=lambda entry: entry[0])]
    return nodes, len(records) - len(nodes) - deleted, deleted


def first_conflict(records: list[NodeRecord]) -> int | None:
    """The position of the first record that repeats an unversioned key (no log field seen for it yet) with other
    content than that key's first record, if any."""
    first: dict[tuple[str, str], MemoryNode] = {}
    logged: set[tuple[str, str]] = set()
    for position, record in enumerate(records):
        if record.identity in first and record.identity not in logged and not record.logged \
                and record.node != first[record.identity]:
            return position
        first.setdefault(record.identity, record.node)
        if record.logged:
            logged.add(record.identity)
    return None


@settings(max_examples=300, deadline=None)
@given(rows)
def test_node_log_equals_the_whole_log_reference(log: list[dict[str, object]]) -> None:
    records = [node_record(row) for row in log]
    resolver = NodeLog()
    conflict = first_conflict(records)
    if conflict is not None:
        for position, record in enumerate(records[:conflict]):
            resolver.add(record, f"line {position + 1}")
        with pytest.raises(DuplicateKeyError, match=f"line {conflict + 1}"):
            resolver.add(records[conflict], f"line {conflict + 1}")
        return
    for position, record in enumerate(records):
        resolver.add(record, f"line {position + 1}")
    graph = resolver.graph("generated")
    nodes, superseded, deleted = reference(records)
    assert list(graph.nodes) == nodes
    assert graph.counts == LogCounts(len(records), superseded, deleted, len(nodes))


def test_a_revision_after_a_deletion_brings_the_node_back() -> None:
    resolver = NodeLog()
    for row in ({"uuid": "u", "version": 1, "content": "v1"}, {"uuid": "u", "version": 2, "deleted": True},
                {"uuid": "u", "version": 3, "content": "v3"}):
        resolver.add(node_record(row), "row")
    graph = resolver.graph("log")
    assert [node.content for node in graph.nodes] == ["v3"] and graph.counts == LogCounts(3, 2, 0, 1)
