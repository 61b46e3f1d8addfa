"""Top-activating tokens on held-out text: per concept, the token positions that read out highest, in context.

The text: the bundled human-rated sentences (``evaluation.valence.rated_sentences``: 600 movie-review sentences
amygdala never trains on) plus a user's ``corpus`` (plain lines or JSONL ``{"text"}``). Each text is read out
token by token through ``readout.attach.read_texts`` (tokenised as the artifact was trained), z-scored when the
manifest has a calibration, averaged over the layers. The first token of each text (BOS, an attention-sink
outlier) is left out, and each text gives a concept at most its best position, so one sentence cannot fill the
list. Per concept, the ``top_k`` highest positions with up to ``CONTEXT`` tokens either side.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import Any

from amygdala.artifact import ReadoutArtifact
from amygdala.evaluation.checks.bundled import read_text_file
from amygdala.evaluation.checks.options import CheckOptions
from amygdala.evaluation.valence import rated_sentences
from amygdala.forward.models import LoadedModel
from amygdala.readout.attach import read_texts
from amygdala.readout.projection import ReadoutOptions
from amygdala.readout.view import parse_input_lines

CONTEXT = 8


@dataclass(frozen=True)
class TokenHit:
    """One token position: its readout, the text it is in (``source`` and index), and its context."""

    score: float
    source: str
    text_index: int
    position: int
    before: str
    token: str
    after: str


@dataclass(frozen=True)
class TopTokens:
    concepts: tuple[str, ...]
    hits: tuple[tuple[TokenHit, ...], ...]
    n_texts: int
    sources: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    note: str | None = None
    name: str = "top_tokens"

    def to_json(self) -> dict[str, Any]:
        return {"n_texts": self.n_texts, "sources": list(self.sources), "skipped": list(self.skipped),
                "note": self.note, "per_concept": {concept: [asdict(hit) for hit in hits]
                                                   for concept, hits in zip(self.concepts, self.hits)}}

    def line(self) -> str:
        tops = ", ".join(f"{concept}: {hits[0].token.strip()!r}" for concept, hits in
                         list(zip(self.concepts, self.hits))[:4] if hits)
        return f"{self.n_texts} texts; highest token per concept: {tops}{', ...' if len(self.concepts) > 4 else ''}"


def corpus_texts(options: CheckOptions) -> list[tuple[str, str]]:
    """(source, text): the bundled rated sentences, then the user's corpus (refused if it is not text)."""
    texts = [("rated sentences", text) for text in rated_sentences(options.corpus_sentences).texts]
    if options.corpus is not None:
        content = read_text_file(options.corpus, "corpus")
        texts += [(str(options.corpus), item.text) for item in
                  parse_input_lines(io.StringIO(content), str(options.corpus))]
    return texts


def top_tokens(loaded: LoadedModel, artifact: ReadoutArtifact, options: CheckOptions) -> TopTokens:
    """Per concept of the artifact, its ``options.top_k`` best token positions over the corpus."""
    corpus = corpus_texts(options)
    readouts = read_texts(loaded, artifact, [text for _, text in corpus],
                          ReadoutOptions(zscore=artifact.calibration is not None), spec=options.spec)
    best: list[list[TokenHit]] = [[] for _ in artifact.concepts]
    for index, ((source, _), readout) in enumerate(zip(corpus, readouts)):
        values = readout.values.mean(dim=1)  # [tokens, concepts]
        start = 1 if values.shape[0] > 1 else 0
        for c, position in enumerate((values[start:].argmax(dim=0) + start).tolist()):
            tokens = readout.tokens
            best[c].append(TokenHit(float(values[position, c]), source, index, position,
                                    "".join(tokens[max(start, position - CONTEXT):position]), tokens[position],
                                    "".join(tokens[position + 1:position + 1 + CONTEXT // 2])))
    hits = tuple(tuple(sorted(column, key=lambda hit: -hit.score)[:options.top_k]) for column in best)
    return TopTokens(artifact.concepts, hits, len(corpus), tuple(dict.fromkeys(source for source, _ in corpus)))
