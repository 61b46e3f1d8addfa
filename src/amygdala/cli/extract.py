"""``amygdala extract``, ``emotions`` and ``memory-serve``: memory graph -> training examples."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from amygdala.cli.app import app
from amygdala.extraction.scoring import ExtractOptions as _ExtractOptions
from amygdala.extraction.scoring import Untagged

if TYPE_CHECKING:
    from amygdala.extraction.scoring import TagSurvey
    from amygdala.extraction.stage import ExtractResult

_EXTRACT = _ExtractOptions()
_MEMORY_FILE = typer.Option(None, "--memory-file", help="Memory graph file: JSONL or a JSON array of amygdala "
                            "nodes (versioned logs too) or the official memory server's storage file. Default: the "
                            "bundled sample graph.")
_MEMORY_URL = typer.Option(None, "--memory-mcp-url", help="MCP memory server, streamable HTTP "
                           "(e.g. http://127.0.0.1:7777/mcp).")
_MEMORY_KEY = typer.Option(None, "--memory-mcp-api-key", envvar="AMYGDALA_MEMORY_API_KEY", help="Bearer key for "
                           "--memory-mcp-url (e.g. an `amygdala memory-serve --api-key`; env AMYGDALA_MEMORY_API_KEY).")
_MEMORY_COMMAND = typer.Option(None, "--memory-mcp-command", help="Command starting an MCP memory server on stdio "
                               "(e.g. \"npx -y @modelcontextprotocol/server-memory\").")


def _print_tag_table(survey: TagSurvey, options: _ExtractOptions) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from amygdala.outputs.sanitise import terminal_line

    graph = survey.graph
    table = Table(title=f"{len(survey.tags)} tags in {survey.source} ({len(graph.nodes)} usable of {graph.n_nodes} "
                        f"nodes, {graph.n_untagged} of them untagged)",
                  caption=f"positives: score >= {options.min_positive_score:g}; picked by default with >= "
                          f"{options.min_positives} positives; 171 list: the reference concept's cluster")
    for column in ("tag", "nodes", "positives", "mean", "picked", "171 list"):
        table.add_column(column, justify="left" if column in ("tag", "171 list") else "right", no_wrap=True)
    for row in survey.tags:
        table.add_row(Text(terminal_line(row.name)), str(row.tagged), str(row.positives), f"{row.mean_score:.2f}",
                      "yes" if row.positives >= options.min_positives else "", Text(terminal_line(row.cluster or "-")))
    Console().print(table)


def _print_extract_summary(result: ExtractResult) -> None:
    from amygdala.outputs.sanitise import terminal_line

    selection = result.selection
    counts = selection.counts()
    for emotion in selection.emotions:
        pos, neg = counts[emotion]["positive"], counts[emotion]["negative"]
        print(f"  {terminal_line(emotion):<16} positive {pos['train']:>4} train {pos['heldout']:>4} heldout   "
              f"negative {neg['train']:>4} train {neg['heldout']:>4} heldout")
    graph, log = selection.graph, selection.log
    if log is not None and (log.superseded or log.deleted):
        print(f"log: {log.records} records -> {log.kept} nodes ({log.superseded} superseded records, "
              f"{log.deleted} deleted nodes)")
    print(f"wrote {len(selection.emotions)} emotions to {result.output_dir} from {result.source} "
          f"({len(graph.nodes)} usable of {graph.n_nodes} nodes, {selection.untagged_used()} untagged used; skipped "
          f"{len(graph.skipped_nodes)} nodes and {len(graph.skipped_tags)} tags, listed in extract.json)")


@app.command()
def extract(
    memory_file: Path | None = _MEMORY_FILE,
    memory_mcp_url: str | None = _MEMORY_URL,
    memory_mcp_command: str | None = _MEMORY_COMMAND,
    memory_mcp_api_key: str | None = _MEMORY_KEY,
    output_dir: Path = typer.Option(Path("amygdala-out/examples"), "--output-dir", help="Where <emotion>.jsonl "
                                    "files and extract.json go (a new or empty dir)."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty dir: replaces amygdala's files "
                               "there, keeps every other file."),
    min_positive_score: float = typer.Option(_EXTRACT.min_positive_score, help="Positive for E: E's score >= this."),
    max_negative_mentions: int = typer.Option(_EXTRACT.max_negative_mentions, help="Negative for E: the text "
                                              "names E at most this many times."),
    min_content_chars: int = typer.Option(_EXTRACT.min_content_chars, help="Skip texts shorter than this."),
    max_examples_per_emotion: int = typer.Option(_EXTRACT.max_examples_per_emotion, help="Cap per emotion "
                                                 "(positives + negatives), sampled deterministically."),
    emotions: str | None = typer.Option(None, help="Comma-separated emotions (default: every tag with at least "
                                        "--min-positives positives)."),
    min_positives: int = typer.Option(_EXTRACT.min_positives, help="Positives an emotion needs."),
    max_negative_score: float = typer.Option(_EXTRACT.max_negative_score, help="Negative for E: E's score <= "
                                             "this (absent = 0)."),
    heldout_fraction: float = typer.Option(_EXTRACT.heldout_fraction, help="Share of nodes held out (by node)."),
    seed: int = typer.Option(_EXTRACT.seed, help="Seed of the held-out split and of the sampling."),
    stats: bool = typer.Option(False, "--stats", help="Only print the tag frequency table; write nothing."),
    untagged: Untagged = typer.Option(_EXTRACT.untagged, "--untagged", help="Nodes without a tag line: 'negative' "
                                      "(a neutral baseline: negative for every emotion it does not name) or 'skip'."),
) -> None:
    """Turn a memory graph into training examples: one <emotion>.jsonl per emotion plus extract.json."""
    from amygdala.extraction.scoring import survey_tags
    from amygdala.extraction.sources import MemorySource
    from amygdala.extraction.stage import extract_from

    names = None if emotions is None else tuple(part.strip() for part in emotions.split(",") if part.strip())
    options = _ExtractOptions(min_positive_score, max_negative_mentions, min_content_chars, max_examples_per_emotion,
                              names, min_positives, max_negative_score, heldout_fraction, seed, untagged)
    source = MemorySource(memory_file, memory_mcp_url, memory_mcp_command, memory_mcp_api_key)
    if stats:
        _print_tag_table(survey_tags(source, options), options)
        return
    _print_extract_summary(extract_from(source, options, output_dir, force))


@app.command("emotions")
def emotions_table(
    memory_file: Path | None = _MEMORY_FILE,
    memory_mcp_url: str | None = _MEMORY_URL,
    memory_mcp_command: str | None = _MEMORY_COMMAND,
    memory_mcp_api_key: str | None = _MEMORY_KEY,
    min_positive_score: float = typer.Option(_EXTRACT.min_positive_score, help="Count a score >= this as positive."),
    min_positives: int = typer.Option(_EXTRACT.min_positives, help="Positives an emotion needs to be extracted."),
    min_content_chars: int = typer.Option(_EXTRACT.min_content_chars, help="Skip texts shorter than this."),
) -> None:
    """Print the tag frequency table of a memory graph, marking tags of the 171-concept list."""
    from amygdala.extraction.scoring import survey_tags
    from amygdala.extraction.sources import MemorySource

    options = _ExtractOptions(min_positive_score=min_positive_score, min_positives=min_positives,
                              min_content_chars=min_content_chars)
    source = MemorySource(memory_file, memory_mcp_url, memory_mcp_command, memory_mcp_api_key)
    _print_tag_table(survey_tags(source, options), options)


@app.command("memory-serve")
def memory_serve(
    file: Path | None = typer.Option(None, "--file", help="Graph file to serve (default: the bundled sample)."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (another than loopback needs --api-key)."),
    port: int = typer.Option(7777, help="TCP port; the MCP endpoint is http://HOST:PORT/mcp."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="AMYGDALA_API_KEY", help="Require "
                                       "'Authorization: Bearer <key>' on every request (env AMYGDALA_API_KEY)."),
    allowed_host: list[str] | None = typer.Option(None, "--allowed-host", help="Also accept this Host header "
                                                  "(name or name:port; repeatable), e.g. the public name clients "
                                                  "use. Loopback names and the bound address are always accepted."),
    allowed_origin: list[str] | None = typer.Option(None, "--allowed-origin", help="Also accept this browser "
                                                    "Origin (e.g. https://app.example; repeatable)."),
) -> None:
    """Serve a graph file as an MCP memory server (read_graph, list_nodes) over streamable HTTP: its current nodes
    (a versioned log is resolved first)."""
    from amygdala.extraction.memory_server import MCP_PATH, check_serving, serve_memory
    from amygdala.extraction.sources import MemorySource, read_memory
    from amygdala.web.auth import requested_key

    api_key = requested_key(api_key)
    check_serving(host, port, api_key)
    memory = read_memory(MemorySource(file))
    log = memory.counts
    print(f"amygdala memory-serve: {len(memory.nodes)} nodes ({log.records} records, {log.superseded} superseded, "
          f"{log.deleted} deleted) from {memory.source} at http://{host}:{port}{MCP_PATH} "
          f"({'bearer key required' if api_key else 'no key'}; Ctrl-C stops)", flush=True)
    serve_memory(list(memory.nodes), host, port, api_key=api_key, allowed_hosts=allowed_host or (),
                 allowed_origins=allowed_origin or ())
