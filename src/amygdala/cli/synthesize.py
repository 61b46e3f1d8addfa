"""``amygdala synthesize``: stories per emotion x topic from an OpenAI-compatible endpoint -> an examples dir."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from amygdala.cli import options
from amygdala.cli.app import app

if TYPE_CHECKING:
    from amygdala.synthesis.stage import SynthesisResult


def _summary(result: SynthesisResult) -> str:
    manifest: dict[str, Any] = result.manifest
    requests, throughput = manifest["requests"], manifest["throughput"]
    filters = manifest["filters"]["counts"]
    dropped = {kind: ", ".join(f"{reason} {n}" for reason, n in row.items() if n and reason != "kept") or "none"
               for kind, row in filters.items()}
    return "\n".join([
        f"wrote {len(manifest['emotions'])} emotions to {result.output_dir} "
        f"({requests['planned']} requests: {requests['from_journal']} from the journal, "
        f"{requests['asked']} asked in {manifest['time']['seconds']:.1f} s; "
        f"{throughput['stories_per_minute']} stories/min, "
        f"{throughput['completion_tokens_per_second']} tokens/s)",
        f"stories kept {filters['story']['kept']}, dropped: {dropped['story']}",
        f"dialogues kept {filters['neutral']['kept']}, dropped: {dropped['neutral']}",
        *([f"skipped (no story or no negative kept): {', '.join(manifest['skipped_emotions'])}"]
          if manifest["skipped_emotions"] else []),
        f"journal: {result.journal}  (provenance: {result.output_dir / 'synthesize.json'})"])


@app.command("synthesize")
def synthesize_command(
    output_dir: Path = typer.Option(..., "--output-dir", help="The examples dir to write (<emotion>.jsonl + synthesize.json)."),
    emotions: str | None = typer.Option(None, "--emotions", help="Comma-separated concepts of the 171-concept list, or all171."),
    sparse_from: Path | None = typer.Option(None, "--sparse-from", help="Also every emotion of this extract dir with fewer than --min-positives positives."),
    min_positives: int = typer.Option(10, "--min-positives", help="With --sparse-from: the positives an emotion needs not to be sparse."),
    base_url: str = typer.Option("http://127.0.0.1:8000", "--base-url", help="OpenAI-compatible server (vLLM, `amygdala serve`, a hosted API), with or without /v1."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="AMYGDALA_WRITER_API_KEY", help="Bearer key of the writer (env AMYGDALA_WRITER_API_KEY)."),
    model: str = typer.Option("default", "--model", help="The model name the endpoint serves."),
    topics: int | None = typer.Option(None, "--topics", help="Use the first K topics (default: all of topics.txt)."),
    per_topic: int = typer.Option(2, "--per-topic", help="Stories per emotion and topic."),
    neutral_per_topic: int | None = typer.Option(None, "--neutral-per-topic", help="Neutral dialogues per topic (default: --per-topic)."),
    concurrency: int = typer.Option(4, "--concurrency", help="Requests in flight at once."),
    max_tokens: int = typer.Option(320, "--max-tokens", help="Tokens per story; a story cut at this length is dropped."),
    temperature: float = typer.Option(0.9, "--temperature", help="Sampling temperature (each request has its own seed)."),
    retries: int = typer.Option(4, "--retries", help="Retries of a request on 429, 5xx, timeouts, lost connections and malformed replies (backoff 1, 2, 4, ... s)."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds to wait for one reply."),
    prompts: Path | None = typer.Option(None, "--prompts", help="Folder overriding any of story.txt, neutral.txt, topics.txt (bundled defaults in amygdala/data/synthesis)."),
    min_words: int = typer.Option(30, "--min-words", help="Drop a story or dialogue of fewer words."),
    near_duplicate: float = typer.Option(0.6, "--near-duplicate", help="Drop a text whose 4-word-shingle Jaccard similarity with a kept one is at least this."),
    heldout_fraction: float = typer.Option(0.2, "--heldout-fraction", help="Share of the topics held out (whole topics)."),
    negative_ratio: float = typer.Option(2.0, "--negative-ratio", help="Other emotions' stories per positive, as negatives (besides every dialogue)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the requests, the held-out topics and the negatives."),
    journal: Path | None = typer.Option(None, "--journal", help="Journal of finished requests (default: <output-dir>.journal.jsonl); a rerun resumes from it."),
    force: bool = typer.Option(False, "--force", help="Replace amygdala's files in a non-empty --output-dir."),
    no_progress: bool = options.NO_PROGRESS,
) -> None:
    """Ask a model for stories (a character feels the emotion, never named) and neutral dialogues; filter them and
    write an examples dir that train and eval read like an extract dir."""
    from amygdala.synthesis.filters import FilterOptions
    from amygdala.synthesis.rows import choose_emotions
    from amygdala.synthesis.stage import SynthesizeOptions, synthesize
    from amygdala.synthesis.writer import Endpoint

    chosen = choose_emotions(emotions, sparse_from=sparse_from, min_positives=min_positives)
    endpoint = Endpoint(base_url, model, api_key or None, max_tokens, temperature, timeout, retries)
    synth_options = SynthesizeOptions(chosen, topics, per_topic, neutral_per_topic, concurrency, prompts,
                                      FilterOptions(min_words, near_duplicate), heldout_fraction, negative_ratio,
                                      seed, journal, progress=not no_progress)
    typer.echo(_summary(synthesize(endpoint, synth_options, output_dir, force)))
