"""One memory row -> a ``NodeRecord``, by the same rules for every backend (file line, array element, MCP row).

Row shapes:

- amygdala's node: ``{"key", "node_type", "timestamp", "content"}`` (``list_nodes`` rows have it too);
- the official memory server's entity: ``{"type": "entity", "name", "entityType", "observations"}`` in its
  storage file, without ``"type"`` in a ``read_graph`` answer; name = key, entityType = node type and the
  observations joined with newlines = content;
- ``{"type": "relation", ...}``: no node (``parse_row`` returns ``None``).

Every shape may carry the fields of a versioned log: ``uuid`` (the node's identity instead of its key),
``version`` (a non-negative integer) and ``deleted`` (a boolean); ``node_log`` resolves them. A timestamp may be an
ISO-8601 string or epoch seconds (see ``MemoryNode``). Any other field (weight, category, provenance, emotion...)
is ignored and reported by name. Problems raise ``ValueError`` naming the field (and the node, when known).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from amygdala.extraction.sources import MemoryNode

NODE_FIELDS = frozenset({"key", "node_type", "timestamp", "content"})
ENTITY_FIELDS = frozenset({"type", "name", "entityType", "observations", "timestamp"})
LOG_FIELDS = frozenset({"uuid", "version", "deleted"})

Identity = tuple[str, str]
_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
               type(None): "null"}


@dataclass(frozen=True)
class NodeRecord:
    """One row of a memory log: its node, its identity (``("uuid", u)`` or ``("key", k)``), its version (``None``
    when absent), whether it deletes the node, whether it carries any log field, and the fields it ignored."""

    node: MemoryNode
    identity: Identity
    version: int | None = None
    deleted: bool = False
    logged: bool = False
    unknown_fields: frozenset[str] = frozenset()


def _shown(value: object) -> str:
    return json.dumps(value)[:40]


def _problem(name: str, label: str | None, rule: str, value: object) -> ValueError:
    where = f"field {name!r}" if label is None else f"field {name!r} of node {label!r}"
    return ValueError(f"{where} {rule}, got {_shown(value)}")


def _text(value: str) -> str:
    """``value`` if it can be written as UTF-8 (a lone surrogate escape like ``\\ud800`` is valid JSON, no text)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"escape {exc.object[exc.start:exc.end]!r} is a lone surrogate, not a character") from None
    return value


def _string(row: Mapping[str, object], name: str, label: str | None, default: str | None = None) -> str:
    """A string field; absent or null gives ``default`` (``None``: the field is required)."""
    value = row.get(name)
    value = default if value is None else value
    if not isinstance(value, str):
        raise _problem(name, label, "must be a string", value)
    return _text(value)


def _moment(value: object, label: str | None) -> datetime:
    """A timestamp value -> an aware UTC datetime; raises ``ValueError`` naming the field for anything else."""
    if isinstance(value, str):
        try:  # no offset: taken as UTC
            parsed = datetime.fromisoformat(value)
            return parsed.astimezone(UTC) if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
        except (ValueError, OverflowError):
            raise _problem("timestamp", label, "must be an ISO-8601 date-time or epoch seconds", value) from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            if math.isfinite(value):
                return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            pass
        raise _problem("timestamp", label, "must be epoch seconds within years 1-9999", value)
    raise _problem("timestamp", label, "must be an ISO-8601 string or epoch seconds (a number)", value)


def normalize_timestamp(value: object, label: str | None = None) -> str:
    """A ``timestamp`` field -> ISO-8601 UTC text (``MemoryNode``'s representation); absent, null or "" -> ""."""
    if value is None or value == "":
        return ""
    return _moment(value, label).replace(tzinfo=None).isoformat() + "Z"


def _label(row: Mapping[str, object], name_field: str) -> str | None:
    """The node's name for messages: its key (or entity name), else its uuid, when they are strings."""
    for field in (name_field, "uuid"):
        if isinstance(row.get(field), str) and row[field]:
            return str(row[field])
    return None


def _log_fields(row: Mapping[str, object], label: str | None) -> tuple[str | None, int | None, bool]:
    """``uuid``, ``version`` and ``deleted`` (null counts as absent), each checked."""
    uuid, version, deleted = row.get("uuid"), row.get("version"), row.get("deleted")
    if uuid is not None and (not isinstance(uuid, str) or not uuid):
        raise _problem("uuid", label, "must be a non-empty string", uuid)
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 0):
        raise _problem("version", label, "must be a non-negative integer", version)
    if deleted is not None and not isinstance(deleted, bool):
        raise _problem("deleted", label, "must be true or false", deleted)
    return (None if uuid is None else _text(uuid)), version, bool(deleted)


def _unknown(row: Mapping[str, object], known: frozenset[str]) -> frozenset[str]:
    extra = row.keys() - known - LOG_FIELDS
    return frozenset(_text(name) for name in extra) if extra else frozenset()


def _record(row: Mapping[str, object], node: MemoryNode, uuid: str | None, version: int | None, deleted: bool,
            known: frozenset[str]) -> NodeRecord:
    identity: Identity = ("uuid", uuid) if uuid is not None else ("key", node.key)
    logged = any(row.get(name) is not None for name in LOG_FIELDS)
    return NodeRecord(node, identity, version, deleted, logged, _unknown(row, known))


def node_record(row: Mapping[str, object]) -> NodeRecord:
    """An amygdala node row. ``key`` is required unless ``uuid`` is given (then it defaults to the uuid);
    ``content`` is required unless the record deletes the node."""
    label = _label(row, "key")
    uuid, version, deleted = _log_fields(row, label)
    key = _string(row, "key", label, uuid)
    if not key:
        raise ValueError("field 'key' is empty")
    content = _string(row, "content", label, "" if deleted else None)
    node = MemoryNode(key, _string(row, "node_type", label, ""), normalize_timestamp(row.get("timestamp"), label),
                      content)
    return _record(row, node, uuid, version, deleted, NODE_FIELDS)


def entity_record(row: Mapping[str, object]) -> NodeRecord:
    """An official memory-server entity: name = key, entityType = node type, observations joined = content."""
    label = _label(row, "name")
    uuid, version, deleted = _log_fields(row, label)
    name = _string(row, "name", label, uuid)
    if not name:
        raise ValueError("entity field 'name' is empty")
    observations = row.get("observations", [] if deleted else None)
    if not isinstance(observations, list) or not all(isinstance(item, str) for item in observations):
        raise _problem("observations", label, "must be a list of strings", observations)
    node = MemoryNode(name, _string(row, "entityType", label, ""), normalize_timestamp(row.get("timestamp"), label),
                      _text("\n".join(observations)))
    return _record(row, node, uuid, version, deleted, ENTITY_FIELDS)


def parse_row(row: object) -> NodeRecord | None:
    """One row of either shape -> its record (``None`` for a relation); raises ``ValueError`` naming the problem."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {_JSON_KINDS.get(type(row), 'a value')}")
    if "type" in row and "key" not in row:
        if row["type"] == "entity":
            return entity_record(row)
        if row["type"] == "relation":
            return None
        raise ValueError(f"unknown line type {_shown(row['type'])}: expected 'entity' or 'relation'")
    return node_record(row)


__all__ = ["ENTITY_FIELDS", "LOG_FIELDS", "NODE_FIELDS", "NodeRecord", "entity_record", "node_record",
           "normalize_timestamp", "parse_row"]
