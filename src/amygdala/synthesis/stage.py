"""``amygdala synthesize``: an OpenAI-compatible writer -> an examples dir in ``extract``'s format.

1. every option, the prompt files and the output dir are checked first (one error lists every problem);
2. the requests are planned: for each of the first ``n_topics`` topics, ``per_topic`` stories per emotion and
   ``neutral_per_topic`` neutral dialogues (``prompts``);
3. under the output's lock, the journal (``<output-dir>.journal.jsonl`` unless given) answers what a previous
   run finished; the rest is asked (``writer.run_requests``), each reply journalled and fsynced as it arrives;
4. every reply of the plan is filtered (``filters``) and turned into rows split by topic (``rows``);
5. the ``<emotion>.jsonl`` files and ``synthesize.json`` (provenance: endpoint, prompts, topics and splits,
   filter counts, tokens, time) are published as one set (``extraction.stage.write_files_atomically``).

A killed run leaves the journal; the same command resumes it and ends with the same files (replies are judged in
key order, each request has its own seed). ``train`` and ``eval`` read the dir like any extract dir.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from amygdala.extraction.examples import Example
from amygdala.extraction.stage import check_output_dir, write_files_atomically
from amygdala.outputs.atomic import output_lock
from amygdala.synthesis.filters import Filtered, FilterOptions, filter_replies
from amygdala.synthesis.journal import Journal, Reply
from amygdala.synthesis.prompts import Kind, PromptSet, Request, SynthesisError, load_prompts, make_request
from amygdala.synthesis.rows import emotion_rows, topic_splits
from amygdala.synthesis.writer import Endpoint, run_requests

MANIFEST = "synthesize.json"
MANIFEST_FORMAT = "amygdala-synthesize/1"


@dataclass(frozen=True)
class SynthesizeOptions:
    """What to write and how to judge it; every field is a ``synthesize`` option."""

    emotions: tuple[str, ...]
    """The concepts to write stories for (``rows.choose_emotions``)."""
    n_topics: int | None = None
    """Use the first K topics of ``topics.txt`` (``--topics``); None: all."""
    per_topic: int = 2
    """Stories per emotion and topic (``--per-topic``)."""
    neutral_per_topic: int | None = None
    """Neutral dialogues per topic (``--neutral-per-topic``); None: as ``per_topic``."""
    concurrency: int = 4
    """Requests in flight at once (``--concurrency``)."""
    prompts_dir: Path | None = None
    """A folder overriding any of ``story.txt``, ``neutral.txt``, ``topics.txt`` (``--prompts``)."""
    filters: FilterOptions = field(default_factory=FilterOptions)
    heldout_fraction: float = 0.2
    """Share of the topics held out (``--heldout-fraction``)."""
    negative_ratio: float = 2.0
    """Other emotions' stories per positive, as negatives (``--negative-ratio``), besides every dialogue."""
    seed: int = 0
    """Seeds each request, the held-out topics and the negatives' ranking (``--seed``)."""
    journal: Path | None = None
    """The journal of finished requests (``--journal``); None: ``<output-dir>.journal.jsonl``."""
    progress: bool = False

    def problems(self) -> list[str]:
        problems = [f"--{name} {value} must be >= 1" for name, value in
                    (("per-topic", self.per_topic), ("concurrency", self.concurrency), ("topics", self.n_topics))
                    if value is not None and value < 1]
        if self.neutral_per_topic is not None and self.neutral_per_topic < 0:
            problems.append(f"--neutral-per-topic {self.neutral_per_topic} must be >= 0")
        if not 0 <= self.heldout_fraction < 1:
            problems.append(f"--heldout-fraction {self.heldout_fraction} must be in [0, 1)")
        if self.negative_ratio < 0:
            problems.append(f"--negative-ratio {self.negative_ratio} must be >= 0")
        return problems + self.filters.problems()


@dataclass(frozen=True)
class SynthesisResult:
    """What ``synthesize`` wrote: the dir, its files (emotion files, then the manifest), the manifest's content."""

    output_dir: Path
    journal: Path
    files: tuple[str, ...]
    manifest: dict[str, Any]


def journal_path_for(output_dir: Path) -> Path:
    output_dir = Path(output_dir)
    return output_dir.with_name(output_dir.name + ".journal.jsonl")


def _topics(prompts: PromptSet, options: SynthesizeOptions) -> tuple[str, ...]:
    return prompts.topics[: options.n_topics]


def _topic_problems(prompts: PromptSet, options: SynthesizeOptions) -> list[str]:
    origin = prompts.origins["topics.txt"]
    if options.n_topics is not None and options.n_topics > len(prompts.topics):
        return [f"--topics {options.n_topics} is more than the {len(prompts.topics)} topics of "
                f"{'the bundled topics.txt' if origin == 'bundled' else origin}: lower it, or add topics with "
                "--prompts"]
    return []


def plan_requests(endpoint: Endpoint, prompts: PromptSet, options: SynthesizeOptions) -> list[Request]:
    """Every request of the run, topic by topic: the stories of each emotion, then the neutral dialogues."""
    def request(kind: Kind, emotion: str | None, topic: str, index: int) -> Request:
        return make_request(kind, emotion, topic, index, prompts, model=endpoint.model,
                            max_tokens=endpoint.max_tokens, temperature=endpoint.temperature, seed=options.seed)

    neutral = options.per_topic if options.neutral_per_topic is None else options.neutral_per_topic
    requests = []
    for topic in _topics(prompts, options):
        requests += [request("story", emotion, topic, index)
                     for emotion in options.emotions for index in range(options.per_topic)]
        requests += [request("neutral", None, topic, index) for index in range(neutral)]
    return requests


def _ask(endpoint: Endpoint, requests: list[Request], journal: Journal, options: SynthesizeOptions) -> list[Reply]:
    """The replies to ``requests`` not journalled yet; a lasting failure says how much the journal keeps."""
    todo = [request for request in requests if journal.reply_to(request) is None]
    try:
        return run_requests(endpoint, todo, journal, concurrency=options.concurrency, progress=options.progress)
    except SynthesisError as exc:
        kept = sum(journal.reply_to(request) is not None for request in requests)
        raise SynthesisError(f"{exc}; {kept} of {len(requests)} replies are kept in {journal.path}: rerun the same "
                             "command to resume") from None


def _counts(rows: dict[str, list[Example]]) -> dict[str, dict[str, dict[str, int]]]:
    return {emotion: {polarity: {split: sum(e.polarity == polarity and e.split == split for e in examples)
                                 for split in ("train", "heldout")} for polarity in ("positive", "negative")}
            for emotion, examples in rows.items()}


def _manifest(endpoint: Endpoint, prompts: PromptSet, options: SynthesizeOptions, requests: list[Request],
              asked: list[Reply], filtered: Filtered, rows: dict[str, list[Example]], splits: dict[str, str],
              started: float, seconds: float) -> dict[str, object]:
    replies = [*filtered.kept, *(reply for reply, _ in filtered.dropped)]
    completion = sum(reply.completion_tokens for reply in asked)
    parameters = {k: v for k, v in asdict(options).items() if k not in ("filters", "progress", "emotions")}
    return {
        "format": MANIFEST_FORMAT,
        "source": "synthetic",
        "endpoint": {"base_url": endpoint.base_url, "model": endpoint.model, "max_tokens": endpoint.max_tokens,
                     "temperature": endpoint.temperature, "retries": endpoint.retries},
        "parameters": json.loads(json.dumps(parameters, default=str)),
        "prompts": {**prompts.to_json(), "sha256": hashlib.sha256(
            json.dumps([prompts.story, prompts.neutral, prompts.topics]).encode("utf-8")).hexdigest()},
        "files": [f"{emotion}.jsonl" for emotion in rows],
        "emotions": list(rows),
        "skipped_emotions": [e for e in options.emotions if e not in rows],
        "topics": splits,
        "requests": {"planned": len(requests), "from_journal": len(requests) - len(asked), "asked": len(asked)},
        "filters": {"options": options.filters.to_json(), "counts": filtered.counts()},
        "counts": _counts(rows),
        "tokens": {"prompt": sum(r.prompt_tokens for r in replies),
                   "completion": sum(r.completion_tokens for r in replies)},
        "time": {"started": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
                 "seconds": round(seconds, 3)},
        "throughput": {"asked": len(asked),
                       "stories_per_minute": round(60 * len(asked) / seconds, 3) if seconds else None,
                       "completion_tokens_per_second": round(completion / seconds, 3) if seconds else None},
    }


def synthesize(endpoint: Endpoint, options: SynthesizeOptions, output_dir: Path | str,
               force: bool = False) -> SynthesisResult:
    """Write, filter and publish an examples dir of synthetic stories (see the module docstring)."""
    output_dir = Path(output_dir)
    prompts = load_prompts(options.prompts_dir)
    if problems := endpoint.problems() + options.problems() + _topic_problems(prompts, options):
        raise SynthesisError("synthesize options: " + "; ".join(problems))
    requests = plan_requests(endpoint, prompts, options)
    check_output_dir(output_dir, force)
    journal_path = options.journal or journal_path_for(output_dir)
    started, clock = time.time(), time.perf_counter()
    with output_lock(output_dir), Journal(journal_path) as journal:
        asked = _ask(endpoint, requests, journal, options)
        seconds = time.perf_counter() - clock
        replies = [reply for request in requests if (reply := journal.reply_to(request)) is not None]
        filtered = filter_replies(replies, options.filters)
        splits = topic_splits(_topics(prompts, options), options.heldout_fraction, options.seed)
        rows = {emotion: examples for emotion, examples in emotion_rows(
            filtered.kept, options.emotions, dict(splits), negative_ratio=options.negative_ratio,
            seed=options.seed).items() if any(e.polarity == "positive" for e in examples)
            and any(e.polarity == "negative" for e in examples)}
        if not rows:
            raise SynthesisError(f"no emotion kept both a story and a negative ({filtered.counts()}): raise "
                                 "--max-tokens or --per-topic, or lower --min-words; the replies stay in "
                                 f"{journal_path}")
        manifest = _manifest(endpoint, prompts, options, requests, asked, filtered, rows, dict(splits), started,
                             seconds)
        files = {f"{emotion}.jsonl": "".join(e.to_json() + "\n" for e in examples).encode("utf-8")
                 for emotion, examples in rows.items()}
        files[MANIFEST] = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        write_files_atomically(output_dir, files, force)
    return SynthesisResult(output_dir, journal_path, tuple(files), manifest)


__all__ = ["MANIFEST", "SynthesisResult", "SynthesizeOptions", "journal_path_for", "plan_requests", "synthesize"]
