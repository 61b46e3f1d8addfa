"""``amygdala <stage>``: a thin shell over the library. Each command parses options, calls one library
function and prints a summary. Known errors become one line on stderr and exit code 2 (``--debug`` shows the
traceback)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Emotion readout vectors for language models.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (speed, memory) printing one JSON line.")
export_app = typer.Typer(no_args_is_help=True, help="Export an artifact to other runtimes.")
app.add_typer(bench_app, name="bench")
app.add_typer(export_app, name="export")

_state = {"debug": False}


def _known_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that are a caller's mistake: shown as one line, never a traceback (unless --debug)."""
    from amygdala.examples import ExamplesError
    from amygdala.models import ModelLoadError
    from amygdala.sources import SourceError

    errors: list[type[BaseException]] = [ExamplesError, ModelLoadError, SourceError, FileNotFoundError,
                                         PermissionError, IsADirectoryError, ValueError, OSError]
    return tuple(errors)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
          verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details.")) -> None:
    _state["debug"] = debug
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


# ---- stage commands are registered below, one section per stage ----

# [extract]

from typing import TYPE_CHECKING  # noqa: E402 - kept inside the [extract] section

from amygdala.examples import ExtractOptions as _ExtractOptions  # noqa: E402 - light: no model code

if TYPE_CHECKING:
    from amygdala.examples import ScoredGraph
    from amygdala.extraction import ExtractResult
    from amygdala.sources import MemoryNode

_EXTRACT = _ExtractOptions()
_MEMORY_FILE = typer.Option(None, "--memory-file", help="JSONL memory graph: amygdala nodes or the official "
                            "memory server's storage file. Default: the bundled sample graph.")
_MEMORY_URL = typer.Option(None, "--memory-mcp-url", help="MCP memory server, streamable HTTP "
                           "(e.g. http://127.0.0.1:7777/mcp).")
_MEMORY_COMMAND = typer.Option(None, "--memory-mcp-command", help="Command starting an MCP memory server on stdio "
                               "(e.g. \"npx -y @modelcontextprotocol/server-memory\").")


def _read_memory(memory_file: Path | None, url: str | None, command: str | None) -> tuple[list[MemoryNode], str]:
    """Read the one memory source given (default: the bundled sample) -> (nodes, description for extract.json)."""
    from amygdala.sources import SourceError
    from amygdala.sources.graph_file import bundled_sample_path, read_graph_file
    from amygdala.sources.mcp_client import read_mcp_graph

    given = [flag for flag, value in (("--memory-file", memory_file), ("--memory-mcp-url", url),
                                      ("--memory-mcp-command", command)) if value is not None]
    if len(given) > 1:
        raise SourceError(f"give one memory source, not {' and '.join(given)}")
    if url is not None:
        return read_mcp_graph(url=url), f"MCP memory server {url}"
    if command is not None:
        return read_mcp_graph(command=command), f"MCP memory server command {command!r}"
    if memory_file is None:
        return read_graph_file(bundled_sample_path()), "bundled sample memory graph"
    return read_graph_file(memory_file), f"memory file {memory_file}"


def _print_tag_table(graph: ScoredGraph, options: _ExtractOptions, source: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from amygdala.examples import tag_frequencies

    rows = tag_frequencies(graph, options.min_positive_score)
    table = Table(title=f"{len(rows)} tags in {source} ({len(graph.nodes)} usable of {graph.n_nodes} nodes)",
                  caption=f"positives: score >= {options.min_positive_score:g}; picked by default with >= "
                          f"{options.min_positives} positives; 171 list: the reference concept's cluster")
    for column in ("tag", "nodes", "positives", "mean", "picked", "171 list"):
        table.add_column(column, justify="left" if column in ("tag", "171 list") else "right", no_wrap=True)
    for row in rows:
        table.add_row(row.name, str(row.tagged), str(row.positives), f"{row.mean_score:.2f}",
                      "yes" if row.positives >= options.min_positives else "", row.cluster or "-")
    Console().print(table)


def _print_extract_summary(result: ExtractResult) -> None:
    counts = result.selection.counts()
    for emotion in result.selection.emotions:
        pos, neg = counts[emotion]["positive"], counts[emotion]["negative"]
        print(f"  {emotion:<16} positive {pos['train']:>4} train {pos['heldout']:>4} heldout   "
              f"negative {neg['train']:>4} train {neg['heldout']:>4} heldout")
    graph = result.selection.graph
    print(f"wrote {len(result.selection.emotions)} emotions to {result.output_dir} from {result.source} "
          f"({len(graph.nodes)} usable of {graph.n_nodes} nodes; skipped {len(graph.skipped_nodes)} nodes and "
          f"{len(graph.skipped_tags)} tags, listed in extract.json)")


@app.command()
def extract(
    memory_file: Path | None = _MEMORY_FILE,
    memory_mcp_url: str | None = _MEMORY_URL,
    memory_mcp_command: str | None = _MEMORY_COMMAND,
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
) -> None:
    """Turn a memory graph into training examples: one <emotion>.jsonl per emotion plus extract.json."""
    from amygdala.examples import score_graph
    from amygdala.extraction import check_output_dir
    from amygdala.extraction import extract as run_extract

    names = None if emotions is None else tuple(part.strip() for part in emotions.split(",") if part.strip())
    options = _ExtractOptions(min_positive_score, max_negative_mentions, min_content_chars, max_examples_per_emotion,
                              names, min_positives, max_negative_score, heldout_fraction, seed)
    options.check()  # options and output dir first: reading a server may be slow
    if not stats:
        check_output_dir(output_dir, force)
    nodes, source = _read_memory(memory_file, memory_mcp_url, memory_mcp_command)
    if stats:
        _print_tag_table(score_graph(nodes, options), options, source)
        return
    _print_extract_summary(run_extract(nodes, options, output_dir, source, force))


@app.command("emotions")
def emotions_table(
    memory_file: Path | None = _MEMORY_FILE,
    memory_mcp_url: str | None = _MEMORY_URL,
    memory_mcp_command: str | None = _MEMORY_COMMAND,
    min_positive_score: float = typer.Option(_EXTRACT.min_positive_score, help="Count a score >= this as positive."),
    min_positives: int = typer.Option(_EXTRACT.min_positives, help="Positives an emotion needs to be extracted."),
    min_content_chars: int = typer.Option(_EXTRACT.min_content_chars, help="Skip texts shorter than this."),
) -> None:
    """Print the tag frequency table of a memory graph, marking tags of the 171-concept list."""
    from amygdala.examples import score_graph

    options = _ExtractOptions(min_positive_score=min_positive_score, min_positives=min_positives,
                              min_content_chars=min_content_chars)
    nodes, source = _read_memory(memory_file, memory_mcp_url, memory_mcp_command)
    _print_tag_table(score_graph(nodes, options), options, source)


@app.command("memory-serve")
def memory_serve(
    file: Path | None = typer.Option(None, "--file", help="Graph file to serve (default: the bundled sample)."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(7777, help="TCP port; the MCP endpoint is http://HOST:PORT/mcp."),
) -> None:
    """Serve a graph file as an MCP memory server (read_graph, list_nodes) over streamable HTTP."""
    from amygdala.memory_server import MCP_PATH, serve_memory
    from amygdala.sources.graph_file import bundled_sample_path, read_graph_file

    path = file if file is not None else bundled_sample_path()
    nodes = read_graph_file(path)
    print(f"amygdala memory-serve: {len(nodes)} nodes from {path} at http://{host}:{port}{MCP_PATH} "
          f"(Ctrl-C stops)", flush=True)
    serve_memory(nodes, host, port)


from typing import TYPE_CHECKING  # noqa: E402 - kept inside the [train] section

if TYPE_CHECKING:
    from amygdala.artifact import ReadoutArtifact


def _parse_target_layers(value: str | None) -> list[int] | None:
    """``"5,9,12,15"`` -> ``[5, 9, 12, 15]``; None or empty -> None (``training.default_target_layers``)."""
    if value is None or not value.strip():
        return None
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a comma-separated list of layer indices, e.g. 5,9,12,15",
                                 param_hint="--target-layers") from None


def _parse_auto_layers(value: str | None) -> int | None:
    """``"auto"`` -> 4, ``"auto:6"`` -> 6 (layers chosen by ``layer_selection``); anything else -> None."""
    if value is None or not value.strip().startswith("auto"):
        return None
    count = value.strip().removeprefix("auto").removeprefix(":") or "4"
    if not count.isdigit() or int(count) < 1:
        raise typer.BadParameter(f"{value!r}: write auto or auto:K with K >= 1, e.g. auto:4", param_hint="--target-layers")
    return int(count)


def _train_summary(artifact: ReadoutArtifact, output: Path, manifest: Path, elh: Path | None, seconds: float) -> str:
    training = artifact.provenance["training"]
    counts = ", ".join(f"{concept} {c['positive']}/{c['negative']}" for concept, c in training["counts"].items())
    lines = [f"trained {len(artifact.concepts)} concepts x {len(artifact.layers)} layers {list(artifact.layers)} "
             f"on {training['n_unique_texts']} unique texts in {seconds:.1f} s "
             f"({training['method']}, {training['pooling']} pooling, {training['forward_dtype']} forward)",
             f"counts (positive/negative): {counts if len(counts) < 400 else counts[:400] + ' ...'}",
             f"vectors:  {output}", f"manifest: {manifest}"]
    return "\n".join(lines + ([f"eLH:      {elh}"] if elh else []))


@app.command("train")
def train_command(
    training_data_dir: Path = typer.Option(..., "--training-data-dir", help="Folder of <emotion>.jsonl examples."),
    model: str = typer.Option("default", "--model", help="'default' (embedded Gemma 3 270M), 'smollm2', an HF folder or a .gguf file."),
    target_layers: Optional[str] = typer.Option(None, "--target-layers", help="Decoder blocks, e.g. 5,9,12,15 (layer_<idx> = output of block idx), or auto[:K]: the K (default 4) best by validation AUROC on the train split. Default: 4 layers over 40-90% of the depth."),
    output: Path = typer.Option(Path("readout.safetensors"), "--output", help="Vectors file; readout.json goes beside it."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="Manifest path (default: <output>.json)."),
    dtype: str = typer.Option("float32", "--dtype", help="Forward precision: float32, bf16 or fp16 (statistics stay fp64)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Texts per forward pass."),
    pooling: str = typer.Option("mean", "--pooling", help="mean (non-pad tokens after --skip-tokens) or last (last non-pad token)."),
    skip_tokens: Optional[int] = typer.Option(None, "--skip-tokens", help="With --pooling mean: skip each text's first K tokens (BOS counts as one). Default: 1 for mean, 0 for last."),
    method: str = typer.Option("lda_diagonal", "--method", help="Direction method: diff_of_means, mean_centered, lda or lda_diagonal."),
    chat_template: bool = typer.Option(False, "--chat-template", help="Wrap texts in the model's chat template."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Keep pooled activations here; reruns skip the model and resume."),
    emotions: Optional[str] = typer.Option(None, "--emotions", help="Comma-separated emotions to train (default: all files)."),
    layout: str = typer.Option("layers", "--format", help="layers (one tensor per layer), or eLH to also write the older (concepts, layers, hidden) file."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Keep each text's first N tokens."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
) -> None:
    """Train CAA readout vectors (one forward per unique text) into readout.safetensors + readout.json."""
    import time

    from amygdala.artifact import elh_path_for, save_artifact
    from amygdala.examples import read_examples
    from amygdala.models import load_model
    from amygdala.outputs import check_output_path
    from amygdala.training import TrainOptions, train

    auto_k = _parse_auto_layers(target_layers)
    layers = None if auto_k else _parse_target_layers(target_layers)
    if layout not in ("layers", "eLH"):
        raise typer.BadParameter(f"{layout!r} is not 'layers' or 'eLH'", param_hint="--format")
    names = [name.strip() for name in emotions.split(",") if name.strip()] if emotions else None
    examples = read_examples(training_data_dir, names)
    for path in (output, manifest or output):  # before the model loads: no folder can be made under a file
        check_output_path(path)
    start = time.perf_counter()
    loaded = load_model(model, dtype=dtype)
    options = TrainOptions(target_layers=tuple(layers) if layers else None, pooling=pooling, skip_tokens=skip_tokens,
                           method=method, batch_size=batch_size, chat_template=chat_template,
                           max_length=max_length, cache_dir=cache_dir, progress=not no_progress)
    curve = None
    if auto_k:
        from dataclasses import replace

        from rich.console import Console

        from amygdala.layer_selection import select_layers
        from amygdala.report import curve_table

        curve = select_layers(loaded, examples, options, k=auto_k)
        Console().print(curve_table(curve))
        options = replace(options, target_layers=curve.chosen)
    artifact = train(loaded, examples, options)
    if curve is not None:
        artifact = replace(artifact, provenance={**artifact.provenance, "layer_selection": curve.to_json()})
    manifest_path = save_artifact(artifact, output, manifest_path=manifest, write_elh=layout == "eLH")
    elh = elh_path_for(output) if layout == "eLH" else None
    typer.echo(_train_summary(artifact, output, manifest_path, elh, time.perf_counter() - start))


@bench_app.command("train")
def bench_train_command(
    quick: bool = typer.Option(False, "--quick", help="Fewer examples: a smoke run, not the reported figures."),
    threads: int = typer.Option(0, "--threads", help="torch threads (0: torch's default)."),
) -> None:
    """Train-stage benchmark on the embedded model (CPU); the last line is one JSON object."""
    import runpy

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_train.py"
    if not script.exists():
        raise FileNotFoundError(f"{script} not found: run `amygdala bench train` from a source checkout")
    runpy.run_path(str(script), run_name="bench_train")["main"]([*(["--quick"] if quick else []), "--threads", str(threads)])


# [train]

if TYPE_CHECKING:
    from amygdala.examples import Example


def _eval_texts(texts: Path | None, examples: list[Example], count: int) -> list[tuple[str, str]]:
    """(label, text) pairs to read out token by token: the --texts file, else a few held-out positives."""
    from amygdala.readout_view import parse_input_lines
    from amygdala.report import example_texts

    if texts is None:
        return example_texts(examples, count)
    with texts.open(encoding="utf-8") as handle:
        return [(str(item.id), item.text) for item in parse_input_lines(handle, str(texts))]


@app.command("eval")
def eval_command(
    vectors: Path = typer.Option(..., "--vectors", help="readout.safetensors from `amygdala train`."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="Manifest (default: readout.json beside --vectors)."),
    training_data_dir: Path = typer.Option(..., "--training-data-dir", help="The <emotion>.jsonl examples (train and heldout splits)."),
    model: str = typer.Option("default", "--model", help="The model the vectors were trained on ('default', 'smollm2', an HF folder or a .gguf)."),
    report_dir: Path = typer.Option(Path("amygdala-out/report"), "--report-dir", help="Where report.json and report.html go."),
    texts: Optional[Path] = typer.Option(None, "--texts", help="JSONL ({\"id\", \"text\"}) or plain lines to read out token by token (default: a few held-out positives)."),
    fail_under: Optional[float] = typer.Option(None, "--fail-under", help="Exit 1 when the mean held-out AUROC at the artifact's layers is below this."),
    pooling: Optional[str] = typer.Option(None, "--pooling", help="last or mean (default: as trained, from the manifest)."),
    skip_tokens: Optional[int] = typer.Option(None, "--skip-tokens", help="With mean pooling (default: as trained)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="Forward precision (default: as trained)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Texts per forward pass."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Activation cache shared with `train --cache-dir`."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random baseline and the stability halves."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
) -> None:
    """Measure readout vectors on the held-out split: separation, ranking, cross-talk, stability; write a report."""
    from rich.console import Console

    from amygdala.artifact import load_artifact
    from amygdala.evaluation import EvalOptions, evaluate
    from amygdala.examples import read_examples
    from amygdala.layer_selection import LayerCurve
    from amygdala.models import load_model
    from amygdala.report import curve_table, summary_table, write_report

    if fail_under is not None and not 0 <= fail_under <= 1:
        raise typer.BadParameter(f"{fail_under} is not an AUROC: give a value in 0..1, e.g. 0.9", param_hint="--fail-under")
    artifact = load_artifact(vectors, manifest)
    options = EvalOptions.from_artifact(artifact, pooling=pooling, skip_tokens=skip_tokens, batch_size=batch_size,
                                        cache_dir=cache_dir, seed=seed, progress=not no_progress)
    examples = read_examples(training_data_dir, list(artifact.concepts))
    pairs = _eval_texts(texts, examples, 6)
    trained_dtype = artifact.provenance.get("training", {}).get("forward_dtype", "float32")
    loaded = load_model(model, dtype=dtype or trained_dtype)
    evaluation = evaluate(loaded, artifact, examples, options, pairs)
    curve = LayerCurve.from_json(artifact.provenance["layer_selection"]) if "layer_selection" in artifact.provenance else None
    json_path, html_path = write_report(evaluation, report_dir, curve)
    console = Console()
    if curve is not None:
        console.print(curve_table(curve))
    console.print(summary_table(evaluation))
    typer.echo(f"report: {html_path}\njson:   {json_path}")
    mean_auroc = evaluation.summary()["mean_auroc"]
    if fail_under is not None and not mean_auroc >= fail_under:
        typer.echo(f"amygdala: mean held-out AUROC {mean_auroc:.3f} at layers {list(artifact.layers)} is below "
                   f"--fail-under {fail_under:g}", err=True)
        raise typer.Exit(1)


# [eval]

from typing import TYPE_CHECKING  # noqa: E402 - kept inside the [readout] section

if TYPE_CHECKING:
    from amygdala.readout import ReadoutOptions
    from amygdala.readout_view import InputText

_VECTORS = typer.Option(..., "--vectors", help="readout.safetensors (its readout.json manifest beside it).")
_READOUT_MANIFEST = typer.Option(None, "--manifest", help="Manifest path (default: <vectors>.json).")
_READOUT_MODEL = typer.Option("default", "--model", help="'default' (embedded Gemma 3 270M), 'smollm2', an HF folder or a .gguf file.")
_STEER = typer.Option(None, "--steer", help="concept=alpha (repeatable): add alpha x (mean residual norm on the prompt) x the concept's unit vector at each steered layer.")
_STEER_LAYER = typer.Option(None, "--steer-layer", help="Layer that steers (repeatable; default: every hooked layer).")


def _readout_options(zscore: bool, steer: list[str] | None, steer_layer: list[int] | None) -> ReadoutOptions:
    from amygdala.readout import ReadoutOptions, parse_steer

    return ReadoutOptions(zscore=zscore, steer=parse_steer(steer or []),
                          steer_layers=tuple(steer_layer) if steer_layer else None)


def _read_input(source: str) -> list[InputText]:
    from amygdala.readout_view import parse_input_lines

    if source == "-":
        return parse_input_lines(sys.stdin, "stdin")
    with Path(source).open(encoding="utf-8") as handle:
        return parse_input_lines(handle, source)


@app.command("readout")
def readout_command(
    vectors: Path = _VECTORS,
    manifest: Optional[Path] = _READOUT_MANIFEST,
    model: str = _READOUT_MODEL,
    dtype: str = typer.Option("float32", "--dtype", help="Forward precision: float32, bf16 or fp16."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, mps..."),
    input_path: str = typer.Option(..., "--input", help="Texts: JSONL lines {\"id\"?, \"text\"} or plain lines; - reads stdin."),
    output: Path = typer.Option(..., "--output", help="JSONL, one line per input text (written atomically)."),
    per_token: bool = typer.Option(False, "--per-token", help="Write every token's readout, not one pooled readout."),
    zscore: bool = typer.Option(False, "--zscore", help="Z-score with the manifest calibration."),
    pooling: Optional[str] = typer.Option(None, "--pooling", help="last or mean (default: as trained, from the manifest)."),
    skip_tokens: Optional[int] = typer.Option(None, "--skip-tokens", help="With mean pooling: leave out each text's first K tokens (default: as trained)."),
    chat_template: Optional[bool] = typer.Option(None, "--chat-template/--no-chat-template", help="Wrap each text as a chat user turn (default: as trained)."),
    html_path: Optional[Path] = typer.Option(None, "--html", help="Also write a page colouring tokens by top concept."),
    view: bool = typer.Option(False, "--view", help="Print the tokens coloured by top concept."),
    steer: Optional[list[str]] = _STEER,
    steer_layer: Optional[list[int]] = _STEER_LAYER,
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
) -> None:
    """Read concepts out of texts: one JSON line per text, pooled or per token."""
    from amygdala.artifact import load_artifact
    from amygdala.models import load_model
    from amygdala.readout import check_options, read_texts, trained_text_options
    from amygdala.readout_view import readout_record, terminal_view, write_html, write_jsonl

    if pooling not in (None, "last", "mean"):
        raise typer.BadParameter(f"{pooling!r} is not 'last' or 'mean'", param_hint="--pooling")
    options = _readout_options(zscore, steer, steer_layer)
    items = _read_input(input_path)
    artifact = load_artifact(vectors, manifest)
    check_options(artifact, options)
    trained = trained_text_options(artifact)
    pool, skip = pooling or trained[0], trained[1] if skip_tokens is None else skip_tokens
    template = trained[2] if chat_template is None else chat_template
    loaded = load_model(model, dtype=dtype, device=device)
    readouts = read_texts(loaded, artifact, [item.text for item in items], options, chat_template=template,
                          max_length=trained[3], progress=not no_progress)
    records = [readout_record(item, readout, artifact, per_token=per_token, pooling=pool, skip_tokens=skip,
                              zscore=zscore) for item, readout in zip(items, readouts)]
    write_jsonl(output, records)
    if html_path is not None:
        write_html(html_path, list(zip(items, readouts)), artifact, zscore=zscore)
    if view:
        from rich.console import Console

        for item, readout in zip(items, readouts):
            Console().print(terminal_view(item, readout, artifact, zscore=zscore))
    tokens = sum(len(readout.token_ids) for readout in readouts)
    shape = "per token" if per_token else f"{pool} pooling"
    typer.echo(f"read out {len(items)} texts ({tokens} tokens) x {len(artifact.concepts)} concepts x "
               f"{len(artifact.layers)} layers {list(artifact.layers)}, {shape}{', z-scored' if zscore else ''} "
               f"-> {output}" + (f", {html_path}" if html_path else ""))


@bench_app.command("readout")
def bench_readout_command(
    quick: bool = typer.Option(False, "--quick", help="Fewer tokens: a smoke run, not the reported figures."),
    model: str = typer.Option("default", "--model", help="Model to serve ('default', 'smollm2', ...)."),
) -> None:
    """Per-token decode latency of the server with readout on vs off; the last line is one JSON object."""
    import runpy

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_readout.py"
    if not script.exists():
        raise FileNotFoundError(f"{script} not found: run `amygdala bench readout` from a source checkout")
    runpy.run_path(str(script), run_name="bench_readout")["main"]((["--quick"] if quick else []) + ["--model", model])


# [readout]

@app.command("serve")
def serve_command(
    vectors: Optional[Path] = typer.Option(None, "--vectors", help="readout.safetensors; without it the server generates but reads nothing out."),
    manifest: Optional[Path] = _READOUT_MANIFEST,
    model: str = _READOUT_MODEL,
    dtype: str = typer.Option("float32", "--dtype", help="Forward precision: float32, bf16 or fp16."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, mps..."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="AMYGDALA_API_KEY", help="Require 'Authorization: Bearer <key>' (env AMYGDALA_API_KEY)."),
    served_model_name: Optional[str] = typer.Option(None, "--served-model-name", help="Model id in /v1/models and responses (default: --model)."),
    steer: Optional[list[str]] = _STEER,
    steer_layer: Optional[list[int]] = _STEER_LAYER,
    max_tokens: int = typer.Option(512, "--max-tokens", help="Largest max_tokens a request may ask for."),
    max_prompt_tokens: int = typer.Option(2048, "--max-prompt-tokens", help="Longest prompt accepted, in tokens."),
    max_choices: int = typer.Option(4, "--max-choices", help="Most choices (n x prompts) per request."),
) -> None:
    """OpenAI-compatible server (/v1/completions, /v1/chat/completions) streaming per-token readouts."""
    from amygdala.artifact import load_artifact
    from amygdala.models import load_model
    from amygdala.readout import check_options
    from amygdala.serve import Engine, ServeOptions, create_app, serve_forever
    from amygdala.serve.run import check_address

    check_address(host, port)  # before loading anything: a busy port is a one-line error, not uvicorn's log
    readout = _readout_options(False, steer, steer_layer)
    if readout.steer and vectors is None:
        raise typer.BadParameter("steering needs --vectors", param_hint="--steer")
    if min(max_tokens, max_prompt_tokens, max_choices) < 1:
        raise typer.BadParameter("--max-tokens, --max-prompt-tokens and --max-choices must be at least 1")
    if api_key is None:  # click treats an empty environment variable as unset; an empty key is still a mistake
        api_key = os.environ.get("AMYGDALA_API_KEY")
    if api_key is not None and not api_key.strip():
        # An empty key (e.g. AMYGDALA_API_KEY="") must not silently leave the server open.
        raise typer.BadParameter("the API key is empty: give a non-empty key or unset AMYGDALA_API_KEY",
                                 param_hint="--api-key")
    artifact = load_artifact(vectors, manifest) if vectors is not None else None
    if artifact is not None:
        check_options(artifact, readout)
    options = ServeOptions(model_name=served_model_name or model, api_key=api_key,
                           max_prompt_tokens=max_prompt_tokens, max_tokens=max_tokens,
                           default_max_tokens=min(16, max_tokens), max_choices=max_choices,
                           steer=readout.steer, steer_layers=readout.steer_layers)
    loaded = load_model(model, dtype=dtype, device=device)
    engine = Engine(loaded, artifact)
    typer.echo(f"serving {loaded.model_id} as {options.model_name!r} on http://{host}:{port}/v1 "
               + (f"with {len(artifact.concepts)} concepts x layers {list(artifact.layers)}" if artifact
                  else "without vectors (no readout)"), err=True)
    serve_forever(create_app(engine, options), host=host, port=port, open_access=options.api_key is None)


# [serve]

@export_app.command("gguf")
def export_gguf_command(
    vectors: Path = typer.Option(..., "--vectors", help="readout.safetensors written by `amygdala train`."),
    concept: str = typer.Option(..., "--concept", help="The concept whose directions become the control vector."),
    output: Path = typer.Option(..., "--output", help="The control vector .gguf to write (atomically)."),
    scale: float = typer.Option(1.0, "--scale", help="Multiply each unit direction by S (negative steers away)."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="readout.json (default: beside --vectors)."),
) -> None:
    """Write one concept as a llama.cpp / repeng control vector (GGUF, `direction.<layer>` per layer)."""
    from amygdala.export import export_control_vector

    result = export_control_vector(vectors, concept=concept, output=output, scale=scale, manifest=manifest)
    typer.echo(f"wrote {result.path}: concept {result.concept!r} x {result.scale:g}, "
               f"layers {list(result.layers)} (direction.<N> = layer_<N>), hidden size {result.hidden_size}")
    if result.skipped_layers:
        typer.echo(f"left out layer(s) {list(result.skipped_layers)}: llama.cpp cannot steer block 0", err=True)
    typer.echo(f"use: llama-cli -m MODEL.gguf --control-vector-scaled {result.path} 1.0")


# [export]

@app.command("demo")
def demo_command(
    output_dir: Path = typer.Option(Path("amygdala-out"), "--output-dir", help="Where examples/, readout.safetensors, readout.json and report/ go."),
    model: str = typer.Option("default", "--model", help="'default' (embedded Gemma 3 270M), 'smollm2', an HF folder or a .gguf file."),
    graph: Optional[Path] = typer.Option(None, "--memory-file", help="A memory-graph JSONL file (default: the bundled sample)."),
    target_layers: Optional[str] = typer.Option(None, "--target-layers", help="Decoder blocks (default: 4 layers over 40-90% of the depth)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars."),
) -> None:
    """The main job on the embedded defaults: extract the bundled sample, train readout vectors, evaluate them."""
    from rich.console import Console

    from amygdala.demo import DemoOptions, run_demo
    from amygdala.report import summary_table
    from amygdala.training import TrainOptions

    layers = _parse_target_layers(target_layers)
    console = Console(stderr=True)
    console.print(f"[bold]amygdala demo[/bold]: extract -> train -> eval into {output_dir} (model: {model})")
    options = DemoOptions(output_dir=output_dir, model=model, graph=graph,
                          train=TrainOptions(target_layers=tuple(layers) if layers else None, progress=not no_progress))
    with console.status("running extract, train and eval (the first run converts the model once, ~1 min)"):
        result = run_demo(options)
    training = result.artifact.provenance["training"]
    typer.echo(f"concepts ({len(result.artifact.concepts)}): {', '.join(result.artifact.concepts)}")
    typer.echo(f"layers: {list(result.artifact.layers)}  pooling: {training['pooling']}  method: {training['method']}  "
               f"unique texts: {training['n_unique_texts']}")
    typer.echo("time: " + ", ".join(f"{stage} {value:.1f} s" for stage, value in result.seconds.items()))
    typer.echo(f"vectors:  {result.vectors_path}\nmanifest: {result.manifest_path}")
    Console().print(summary_table(result.evaluation))
    summary = result.evaluation.summary()
    typer.echo(f"eval: mean held-out AUROC {summary['mean_auroc']:.3f} (random {summary['random_mean_auroc']:.3f}), "
               f"min {summary['min_auroc']:.3f}, top-1 {summary['top1']:.3f}")
    typer.echo(f"report: {result.report_paths[1]}")


# [demo]


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, mapping known errors to one line and exit code 2."""
    try:
        # Without standalone mode, click returns the code of a raised typer.Exit instead of raising it.
        code = app(args=argv, standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("amygdala: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the error table below decides what is known
        import click

        if isinstance(exc, (click.exceptions.Exit, typer.Exit)):
            return int(exc.exit_code)
        # typer >= 0.29 vendors click: its usage errors derive from typer.TyperException, not click's.
        if isinstance(exc, (click.ClickException, typer.TyperException)) and hasattr(exc, "show"):
            exc.show()
            return exc.exit_code
        if _state["debug"] or not isinstance(exc, _known_errors()):
            raise
        print(f"amygdala: error: {exc}", file=sys.stderr)
        return 2
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
