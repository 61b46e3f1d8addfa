"""One row -> one record: both row shapes, the log fields, timestamps and ignored fields, by the same rules for a
file line, an array element and an MCP row."""

from __future__ import annotations

import pytest

from amygdala.extraction.sources import MemoryNode
from amygdala.extraction.sources.records import entity_record, node_record, normalize_timestamp, parse_row


def test_an_entity_row_carries_the_log_fields_too() -> None:
    record = entity_record({"name": "n", "entityType": "t", "observations": ["a", "b"], "uuid": "u", "version": 4,
                            "timestamp": 86400, "createdAt": "x"})
    assert record.node == MemoryNode("n", "t", "1970-01-02T00:00:00Z", "a\nb")
    assert (record.identity, record.version, record.deleted, record.logged) == (("uuid", "u"), 4, False, True)
    assert record.unknown_fields == {"createdAt"}


def test_a_deletion_needs_neither_content_nor_observations() -> None:
    assert node_record({"uuid": "u", "version": 2, "deleted": True}).node == MemoryNode("u", "", "", "")
    assert entity_record({"name": "n", "deleted": True}).deleted


def test_rows_without_log_fields_are_not_logged_and_null_log_fields_count_as_absent() -> None:
    record = node_record({"key": "k", "content": "c", "uuid": None, "version": None, "deleted": None})
    assert (record.identity, record.version, record.logged) == (("key", "k"), None, False)


def test_parse_row_tells_the_shapes_apart() -> None:
    assert parse_row({"type": "relation", "from": "a", "to": "b", "relationType": "r"}) is None
    assert parse_row({"type": "entity", "name": "n", "entityType": "t", "observations": []}).node.key == "n"
    assert parse_row({"type": "note", "key": "k", "content": "c"}).unknown_fields == {"type"}  # a key: a node row
    with pytest.raises(ValueError, match="unknown line type \"note\""):
        parse_row({"type": "note", "name": "n"})
    with pytest.raises(ValueError, match="expected a JSON object, got an array"):
        parse_row([1])


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-02-02T10:40:00Z", "2026-02-02T10:40:00Z"), ("2026-02-02T05:40:00-05:00", "2026-02-02T10:40:00Z"),
    (1770028800, "2026-02-02T10:40:00Z"), (1770028800.000001, "2026-02-02T10:40:00.000001Z"), (-86400, "1969-12-31T00:00:00Z"),
])
def test_normalize_timestamp_gives_one_representation(value: object, expected: str) -> None:
    assert normalize_timestamp(value) == expected


def test_a_lone_surrogate_is_refused_in_any_field_that_is_kept() -> None:
    for row in ({"key": "k", "content": "\ud800"}, {"key": "\ud800", "content": "c"},
                {"key": "k", "content": "c", "\ud800": 1}, {"name": "n", "observations": ["\udfff"]}):
        with pytest.raises(ValueError, match="lone surrogate"):
            parse_row(row) if "key" in row else entity_record(row)
