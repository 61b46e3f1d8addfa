"""Offline readout files and views: input texts (JSONL or plain lines), output records (JSONL, written atomically),
a terminal view colouring each token by its top concept, and the same view as a standalone HTML page.

The view reads one layer (the deepest hooked one unless told) and colours each token by the concept with the
largest readout there, at the colour strength of ``readout.scale`` (against ``Z_FULL`` for z-scores, else a
quantile of the text's top readouts, so the first token's outlier norm does not wash out the rest).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text

from amygdala.artifact import ReadoutArtifact
from amygdala.errors import AmygdalaError, listed
from amygdala.forward.pooling import PoolingSpec, pool_readout
from amygdala.outputs.atomic import atomic_write_bytes
from amygdala.outputs.sanitise import html_text, terminal_line, terminal_text
from amygdala.readout.projection import LayerCombine, TextReadout, combine_layers
from amygdala.readout.scale import colour_strength, concept_colour, strength_reference, token_span, token_style

_TOP_CONCEPTS = 5


class ReadoutInputError(AmygdalaError):
    """An input file for ``amygdala readout`` has unusable lines: names the file and line numbers."""


@dataclass(frozen=True)
class InputText:
    """One text to read out; ``id`` is the JSON line's ``id``, else the 1-based line number."""

    id: str | int
    text: str


def _decoded(lines: Iterable[str], source: str) -> Iterator[str]:
    """``lines`` as they come; a file that is not UTF-8 becomes one ``ReadoutInputError`` naming it."""
    try:
        yield from lines
    except UnicodeDecodeError:
        raise ReadoutInputError(f"{source} is not UTF-8 text: save it as UTF-8") from None


def parse_input_lines(lines: Iterable[str], source: str) -> list[InputText]:
    """Each non-blank line is a JSON object ``{"id"?, "text"}`` or, if it is not one, plain text."""
    items, problems = [], []
    for number, raw in enumerate(_decoded(lines, source), start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        row: object = None
        if line.lstrip().startswith("{"):
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                row = None
        if not isinstance(row, dict):
            items.append(InputText(number, line))
        elif not isinstance(row.get("text"), str) or not row["text"].strip():
            problems.append(f"{source}:{number}")
        else:
            items.append(InputText(row.get("id", number), row["text"]))
    if problems:
        raise ReadoutInputError(f"{listed(problems, separator=', ')}: JSON line(s) without a non-empty string 'text': "
                                f"write {{\"id\", \"text\"}}")
    if not items:
        raise ReadoutInputError(f"{source} holds no texts: give one text per line (plain or {{\"text\": ...}})")
    return items


def readout_record(item: InputText, readout: TextReadout, artifact: ReadoutArtifact, *, per_token: bool,
                   spec: PoolingSpec, zscore: bool, combine: LayerCombine | None = None) -> dict[str, Any]:
    """``{"id", "layers", "concepts", "readout": [layer][concept]}`` pooled, or per token with ``tokens``,
    ``token_ids`` and ``readout[token][layer][concept]``. With ``combine`` (z-scores only), the layer axis is
    combined (``readout.combine_layers``): ``readout[concept]`` / ``readout[token][concept]`` and
    ``"combine_layers": combine``."""
    record: dict[str, Any] = {"id": item.id, "layers": list(artifact.layers), "concepts": list(artifact.concepts),
                              "zscore": zscore} | ({"combine_layers": combine} if combine is not None else {})
    if per_token:
        values = readout.values if combine is None else combine_layers(readout.values, combine)
        return record | {"tokens": list(readout.tokens), "token_ids": list(readout.token_ids),
                         "readout": values.tolist()}
    pooled = pool_readout(readout.values, spec)
    pooled = pooled if combine is None else combine_layers(pooled, combine)
    return record | {"pooling": spec.pooling, "skip_tokens": spec.skip, "readout": pooled.tolist()}


def write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode())


def _tops(readout: TextReadout, layers: Sequence[int], layer: int | None, zscore: bool
          ) -> tuple[list[int], list[float]]:
    """Per token: the top concept's index at ``layer`` and its strength in 0..1."""
    position = len(layers) - 1 if layer is None else list(layers).index(layer)
    values, index = readout.values[:, position].max(dim=-1)
    tops = values.tolist()
    reference = strength_reference(tops, zscore)
    return index.tolist(), [colour_strength(value, reference) for value in tops]


def terminal_view(item: InputText, readout: TextReadout, artifact: ReadoutArtifact, *, layer: int | None = None,
                  zscore: bool = False) -> Text:
    """``id: tokens`` with each token coloured by its top concept (bold when strong, dim when not positive); ids,
    tokens and concept names pass ``outputs.sanitise`` (a model, an input file or a manifest may hold any text)."""
    index, strength = _tops(readout, artifact.layers, layer, zscore)
    view = Text(f"{terminal_line(item.id)}: ", style="bold")
    for token, concept, level in zip(readout.tokens, index, strength):
        view.append(terminal_text(token), style=token_style(concept, level))
    view.append("\n  ")
    for concept in sorted(set(index))[:12]:
        view.append(terminal_line(artifact.concepts[concept]), style=concept_colour(concept))
        view.append("  ")
    return view


def html_page(entries: Sequence[tuple[InputText, TextReadout]], artifact: ReadoutArtifact, *,
              layer: int | None = None, zscore: bool = False) -> str:
    """A standalone page: each text's tokens on the top concept's colour; hover shows the top five concepts."""
    position = len(artifact.layers) - 1 if layer is None else artifact.layers.index(layer)
    shown = artifact.layers[position]
    blocks = []
    for item, readout in entries:
        index, strength = _tops(readout, artifact.layers, layer, zscore)
        spans = []
        for t, token in enumerate(readout.tokens):
            values = readout.values[t, position]
            top = values.topk(min(_TOP_CONCEPTS, values.numel()))
            pairs = zip(top.values.tolist(), top.indices.tolist())
            tip = ", ".join(f"{artifact.concepts[c]} {v:.2f}" for v, c in pairs)
            spans.append(token_span(token, concept_colour(index[t]), strength[t], tip))
        blocks.append(f"<h3>{html_text(item.id)}</h3><p class=t>{''.join(spans)}</p>")
    legend = " ".join(f'<span style="background:{concept_colour(c)}aa">{html_text(name)}</span>'
                      for c, name in enumerate(artifact.concepts[:64]))
    return ("<!doctype html><meta charset=utf-8><title>amygdala readout</title><style>body{font-family:sans-serif;"
            "max-width:60em;margin:2em auto}.t{white-space:pre-wrap;font-family:monospace;line-height:1.8}"
            f"</style><h1>amygdala readout</h1><p>layer {shown}, {'z-scored' if zscore else 'raw'} readout; colour = "
            f"top concept.</p><p>{legend}</p>{''.join(blocks)}\n")


def write_html(path: Path, entries: Sequence[tuple[InputText, TextReadout]], artifact: ReadoutArtifact, *,
               layer: int | None = None, zscore: bool = False) -> None:
    atomic_write_bytes(path, html_page(entries, artifact, layer=layer, zscore=zscore).encode())
