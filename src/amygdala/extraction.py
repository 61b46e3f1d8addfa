"""``amygdala extract``: memory nodes -> an examples dir, one ``<emotion>.jsonl`` per emotion plus ``extract.json``.

``select_examples`` chooses the emotions and their capped, deterministic examples (rules in ``examples``);
``write_extract`` writes them atomically: everything goes to a staging dir beside the output first, then a
rename. ``extract`` is the two composed. A non-empty output dir is refused unless ``force``; with ``force`` only
amygdala's own files there are replaced (and those a previous extract listed, removed), never unrelated files.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from amygdala.emotions import mention_pattern, normalize_name
from amygdala.examples import (
    POLARITIES,
    SPLITS,
    Example,
    ExamplesError,
    ExtractOptions,
    Polarity,
    ScoredGraph,
    ScoredNode,
    SkippedNode,
    score_graph,
    seeded_fraction,
)
from amygdala.outputs import OutputError, check_output_path
from amygdala.sources import MemoryNode

MANIFEST = "extract.json"
MANIFEST_FORMAT = "amygdala-extract/1"
_EMOTION_FILE = re.compile(r"^[a-z0-9_]+\.jsonl$")
_LISTED = 8


@dataclass(frozen=True)
class EmotionCandidates:
    """Before the cap: how many nodes qualify for one emotion, and how many negatives were dropped for naming it."""

    positive: int
    negative: int
    negative_naming_emotion: int


@dataclass(frozen=True)
class Selection:
    """The examples of every chosen emotion (in output order), with the bookkeeping ``extract.json`` records."""

    graph: ScoredGraph
    emotions: tuple[str, ...]
    examples: Mapping[str, tuple[Example, ...]]
    candidates: Mapping[str, EmotionCandidates]
    skipped_emotions: tuple[SkippedNode, ...] = field(default=())

    def counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """emotion -> polarity -> split -> number of examples."""
        return {emotion: {polarity: {split: sum(1 for e in self.examples[emotion]
                                                if e.polarity == polarity and e.split == split) for split in SPLITS}
                          for polarity in POLARITIES} for emotion in self.emotions}


@dataclass(frozen=True)
class ExtractResult:
    """What ``extract`` wrote: the output dir, the file names (emotion files, then the manifest) and the selection."""

    output_dir: Path
    source: str
    files: tuple[str, ...]
    selection: Selection


def _positive_counts(graph: ScoredGraph, min_score: float) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in graph.nodes:
        for name, score in node.scores.items():
            counts[name] = counts.get(name, 0) + (score >= min_score)
    return counts


def _most_positive(counts: Mapping[str, int]) -> str:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:_LISTED]
    return ", ".join(f"{name} ({count})" for name, count in ranked) or "none"


def choose_emotions(graph: ScoredGraph, options: ExtractOptions,
                    source: str) -> tuple[tuple[str, ...], tuple[SkippedNode, ...]]:
    """The requested emotions (each must have ``min_positives`` positives), or every tag that has that many."""
    counts = _positive_counts(graph, options.min_positive_score)
    need = f"positives (score >= {options.min_positive_score:g}, min_positives={options.min_positives})"
    if options.emotions is not None:
        requested = sorted({normalize_name(name) for name in options.emotions})
        short = [f"{name} has {counts.get(name, 0)}" for name in requested
                 if counts.get(name, 0) < options.min_positives]
        if short:
            raise ExamplesError(f"too few {need} in {source}: {'; '.join(short)}; most positives: "
                                f"{_most_positive(counts)}; pick other --emotions or lower --min-positives")
        return tuple(requested), ()
    chosen = tuple(sorted(name for name, count in counts.items() if count >= options.min_positives))
    if not chosen:
        raise ExamplesError(f"no emotion in {source} has enough {need} among {len(graph.nodes)} usable nodes; most "
                            f"positives: {_most_positive(counts)}; lower --min-positives or --min-positive-score")
    skipped = tuple(SkippedNode(name, f"{count} positives, fewer than min_positives={options.min_positives}")
                    for name, count in sorted(counts.items()) if name not in chosen)
    return chosen, skipped


def cap_sizes(positives: int, negatives: int, cap: int) -> tuple[int, int]:
    """How many positives and negatives fit under ``cap``: half each, the smaller side whole if it fits in half."""
    n_positive = min(positives, max(cap - negatives, cap // 2))
    return n_positive, min(negatives, cap - n_positive)


def _sample(nodes: list[ScoredNode], count: int, emotion: str, polarity: Polarity, seed: int) -> list[ScoredNode]:
    """``count`` nodes chosen by a seeded hash ranking (independent of input order), returned sorted by key."""
    ranked = sorted(nodes, key=lambda node: (seeded_fraction("sample", seed, emotion, polarity, node.key), node.key))
    return sorted(ranked[:count], key=lambda node: node.key)


def emotion_examples(graph: ScoredGraph, emotion: str,
                     options: ExtractOptions) -> tuple[tuple[Example, ...], EmotionCandidates]:
    """One emotion's examples (positives, then negatives, each by key) and its candidate counts before the cap."""
    pattern = mention_pattern(emotion)
    positives: list[ScoredNode] = []
    negatives: list[ScoredNode] = []
    naming = 0
    for node in graph.nodes:
        score = node.scores.get(emotion, 0.0)
        if score >= options.min_positive_score:
            positives.append(node)
        elif score <= options.max_negative_score and emotion not in node.unreadable:
            if len(pattern.findall(node.text)) <= options.max_negative_mentions:
                negatives.append(node)
            else:
                naming += 1
    n_pos, n_neg = cap_sizes(len(positives), len(negatives), options.max_examples_per_emotion)
    chosen: list[tuple[Polarity, list[ScoredNode]]] = [
        ("positive", _sample(positives, n_pos, emotion, "positive", options.seed)),
        ("negative", _sample(negatives, n_neg, emotion, "negative", options.seed))]
    examples = tuple(Example(emotion, polarity, node.text, node.key, node.scores.get(emotion, 0.0), node.split)
                     for polarity, nodes in chosen for node in nodes)
    return examples, EmotionCandidates(len(positives), len(negatives), naming)


def _summarise_skips(graph: ScoredGraph) -> str:
    reasons: dict[str, int] = {}
    for skipped in graph.skipped_nodes:
        reason = skipped.reason.split(",")[0].split(" node ")[0]
        reasons[reason] = reasons.get(reason, 0) + 1
    return "; ".join(f"{count} x {reason}" for reason, count in sorted(reasons.items(), key=lambda i: -i[1])[:3])


def select_examples(nodes: list[MemoryNode], options: ExtractOptions,
                    source: str = "the memory graph") -> Selection:
    """Score the graph, choose the emotions and their examples; raises ``ExamplesError`` when nothing qualifies."""
    options.check()
    if not nodes:
        raise ExamplesError(f"{source} has no nodes: point the source at a graph with tagged memory nodes")
    graph = score_graph(nodes, options)
    if not graph.nodes:
        raise ExamplesError(f"none of the {len(nodes)} nodes of {source} is usable ({_summarise_skips(graph)}); "
                            f"nodes need a trailing tag line like 'warmth:9 calm:2' and {options.min_content_chars}+ "
                            f"characters of text")
    emotions, skipped = choose_emotions(graph, options, source)
    per_emotion = {emotion: emotion_examples(graph, emotion, options) for emotion in emotions}
    empty = [emotion for emotion, (_, found) in per_emotion.items() if found.negative == 0]
    if empty and (options.emotions is not None or len(empty) == len(emotions)):
        raise ExamplesError(f"no negatives (score <= {options.max_negative_score:g}, naming the emotion at most "
                            f"{options.max_negative_mentions} times) in {source} for: {', '.join(empty)}; raise "
                            f"--max-negative-score or --max-negative-mentions, or choose other --emotions")
    skipped += tuple(SkippedNode(emotion, "no negatives") for emotion in empty)
    kept = tuple(emotion for emotion in emotions if emotion not in empty)
    return Selection(graph, kept, {e: per_emotion[e][0] for e in kept}, {e: per_emotion[e][1] for e in kept},
                     tuple(sorted(skipped, key=lambda s: s.key)))


def _split_sizes(graph: ScoredGraph) -> dict[str, int]:
    return {split: sum(1 for node in graph.nodes if node.split == split) for split in SPLITS}


def extract_manifest(selection: Selection, options: ExtractOptions, source: str) -> dict[str, object]:
    """The content of ``extract.json``: parameters, source, counts and every skipped node, tag and emotion."""
    graph = selection.graph
    return {
        "format": MANIFEST_FORMAT,
        "source": source,
        "parameters": options.to_json(),
        "files": [f"{emotion}.jsonl" for emotion in selection.emotions],
        "emotions": list(selection.emotions),
        "nodes": {"total": graph.n_nodes, "usable": len(graph.nodes), **_split_sizes(graph)},
        "counts": selection.counts(),
        "candidates": {emotion: vars(selection.candidates[emotion]) for emotion in selection.emotions},
        "skipped_emotions": [{"emotion": s.key, "reason": s.reason} for s in selection.skipped_emotions],
        "skipped_nodes": [{"key": s.key, "reason": s.reason} for s in graph.skipped_nodes],
        "skipped_tags": [{"key": s.key, "token": s.token, "reason": s.reason} for s in graph.skipped_tags],
    }


def render_files(selection: Selection, manifest: Mapping[str, object]) -> dict[str, bytes]:
    """File name -> exact bytes: one JSON line per example, then ``extract.json`` (last, so it is written last)."""
    files = {f"{emotion}.jsonl": "".join(example.to_json() + "\n" for example in selection.examples[emotion])
             for emotion in selection.emotions}
    files[MANIFEST] = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    return {name: text.encode("utf-8") for name, text in files.items()}


def check_output_dir(output_dir: Path, force: bool, names: tuple[str, ...] = ()) -> None:
    """Refuse a file, a non-empty dir (unless ``force``), or a dir holding a directory where a file must go."""
    if output_dir.exists() and not output_dir.is_dir():
        raise ExamplesError(f"output dir {output_dir} is a file: give a new or empty directory")
    check_output_path(output_dir)
    present = sorted(entry.name for entry in output_dir.iterdir()) if output_dir.is_dir() else []
    if present and not force:
        shown = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
        raise ExamplesError(f"output dir {output_dir} already holds {len(present)} entries ({shown}): give a new or "
                            f"empty dir, or pass --force to replace amygdala's files there (other files are kept)")
    blocked = [name for name in names if (output_dir / name).is_dir()]
    if blocked:
        raise ExamplesError(f"output dir {output_dir} has directories named {', '.join(blocked)}: move them away")


def _previously_written(output_dir: Path) -> set[str]:
    """Emotion files listed by an earlier ``extract.json`` in ``output_dir`` (only plain ``<name>.jsonl`` names)."""
    try:
        listed = json.loads((output_dir / MANIFEST).read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {name for name in listed if isinstance(name, str) and _EMOTION_FILE.match(name)}


def write_files_atomically(output_dir: Path, files: Mapping[str, bytes], force: bool = False) -> None:
    """Write ``files`` into ``output_dir`` through a staging dir beside it. A new (or empty) dir appears with one
    rename; with ``force`` into a non-empty dir, each file is replaced by a rename, ``extract.json`` last."""
    check_output_dir(output_dir, force, tuple(files))
    staging = output_dir.parent / f".{output_dir.name}.staging-{secrets.token_hex(6)}"
    try:
        try:
            staging.mkdir(parents=True)
            for name, data in files.items():
                (staging / name).write_bytes(data)
        except OSError as exc:
            raise OutputError(f"cannot write {output_dir}: {exc.strerror or exc}") from exc
        if not output_dir.exists() or not any(output_dir.iterdir()):
            os.replace(staging, output_dir)  # one rename: the whole dir appears at once
            return
        stale = _previously_written(output_dir) - set(files)
        for name in files:  # dict order puts extract.json last
            os.replace(staging / name, output_dir / name)
        for name in sorted(stale):
            (output_dir / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_extract(selection: Selection, options: ExtractOptions, output_dir: Path | str, source: str,
                  force: bool = False) -> ExtractResult:
    """Write a selection as an examples dir (``<emotion>.jsonl`` files and ``extract.json``), atomically."""
    files = render_files(selection, extract_manifest(selection, options, source))
    write_files_atomically(Path(output_dir), files, force)
    return ExtractResult(Path(output_dir), source, tuple(files), selection)


def extract(nodes: list[MemoryNode], options: ExtractOptions, output_dir: Path | str,
            source_description: str = "the memory graph", force: bool = False) -> ExtractResult:
    """Memory nodes -> examples dir: check the output dir, select the examples, write them atomically."""
    check_output_dir(Path(output_dir), force)
    selection = select_examples(nodes, options, source_description)
    return write_extract(selection, options, output_dir, source_description, force)


__all__ = ["MANIFEST", "EmotionCandidates", "ExtractResult", "Selection", "cap_sizes", "check_output_dir",
           "choose_emotions", "emotion_examples", "extract", "extract_manifest", "render_files",
           "select_examples", "write_extract", "write_files_atomically"]
