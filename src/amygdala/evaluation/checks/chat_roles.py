"""Chat roles: the same scenarios read out as the user's turn and as the assistant's turn, reported apart.

Each implicit scenario (``scenarios.implicit_scenarios``) is rendered with the tokenizer's chat template twice:
as the user's message, and as the assistant's reply to ``ASSISTANT_PROMPT``. The whole conversation is read out
token by token (``readout.attach.read_ids``, z-scored when the manifest has a calibration); the scenario's
readout in a role is the mean over the tokens of its own text (found by character offsets in the rendered
conversation) and over the layers. Per role: top-1 with a bootstrap 95% CI, and per concept the mean readout of
the concept on its own scenarios. A tokenizer without a chat template skips the check with a note.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from amygdala.artifact import ReadoutArtifact
from amygdala.evaluation.checks.options import CheckOptions
from amygdala.evaluation.checks.scenarios import Scenario, implicit_scenarios, rank_scenarios
from amygdala.evaluation.checks.scoring import fmt_interval, interval_json, share_interval
from amygdala.evaluation.metrics import Interval
from amygdala.forward.models import LoadedModel
from amygdala.readout.attach import read_ids
from amygdala.readout.projection import ReadoutOptions

Role = Literal["user", "assistant"]
ROLES: tuple[Role, ...] = ("user", "assistant")
ASSISTANT_PROMPT = "What happened today?"


@dataclass(frozen=True)
class RoleReadout:
    """One role: top-1 over the scenarios, and per concept the mean readout on its own scenarios."""

    role: Role
    top1: Interval
    concept_mean: dict[str, float]


@dataclass(frozen=True)
class ChatRoles:
    roles: tuple[RoleReadout, ...]
    n_scenarios: int
    skipped: tuple[str, ...]
    note: str | None = None
    name: str = "chat_roles"

    def to_json(self) -> dict[str, Any]:
        return {"n_scenarios": self.n_scenarios, "skipped": list(self.skipped), "note": self.note,
                "roles": {r.role: {"top1": interval_json(r.top1), "concept_mean": r.concept_mean}
                          for r in self.roles}}

    def line(self) -> str:
        if self.note:
            return f"skipped: {self.note}"
        return "; ".join(f"{r.role} turn top-1 {fmt_interval(r.top1)}" for r in self.roles) + \
            f" over {self.n_scenarios} scenarios"


def role_tokens(tokenizer: Any, text: str, role: Role) -> tuple[list[int], list[int]]:
    """(token ids of the conversation with ``text`` as the ``role``'s turn, positions of ``text``'s own tokens)."""
    turn = {"role": role, "content": text}
    messages = [turn] if role == "user" else [{"role": "user", "content": ASSISTANT_PROMPT}, turn]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    start = rendered.rfind(text)
    assert start >= 0, "the chat template dropped the message text"
    end = start + len(text)
    encoded = tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
    positions = [i for i, (a, b) in enumerate(encoded["offset_mapping"]) if b > a and a < end and b > start]
    return list(encoded["input_ids"]), positions


def _role_scores(loaded: LoadedModel, artifact: ReadoutArtifact, kept: list[Scenario], role: Role) -> torch.Tensor:
    options = ReadoutOptions(zscore=artifact.calibration is not None)
    rows = []
    for scenario in kept:
        ids, positions = role_tokens(loaded.tokenizer, scenario.text, role)
        rows.append(read_ids(loaded, artifact, ids, options)[positions].mean(dim=(0, 1)))
    return torch.stack(rows) if rows else torch.zeros((0, len(artifact.concepts)))


def chat_roles(loaded: LoadedModel, artifact: ReadoutArtifact, options: CheckOptions) -> ChatRoles:
    """The scenarios as user and as assistant turns (see the module doc); skipped without a chat template."""
    tokenizer: Any = loaded.tokenizer
    if not getattr(tokenizer, "chat_template", None):
        return ChatRoles((), 0, artifact.concepts, f"the tokenizer of {loaded.model_id} has no chat template")
    if not getattr(tokenizer, "is_fast", False):
        return ChatRoles((), 0, artifact.concepts, f"the tokenizer of {loaded.model_id} gives no character "
                                                   "offsets (not a fast tokenizer): the turns cannot be found")
    kept = [s for s in implicit_scenarios(options) if s.concept in artifact.concepts]
    truths = [artifact.concepts.index(s.concept) for s in kept]
    roles = []
    for role in ROLES:
        scores = _role_scores(loaded, artifact, kept, role)
        ranks = rank_scenarios(scores, truths)
        own = {c: [float(scores[i, truths[i]]) for i, s in enumerate(kept) if s.concept == c]
               for c in artifact.concepts}
        roles.append(RoleReadout(role, share_interval([r == 1 for r in ranks], options.n_boot, options.seed),
                                 {c: sum(v) / len(v) for c, v in own.items() if v}))
    covered = {s.concept for s in kept}
    return ChatRoles(tuple(roles), len(kept), tuple(c for c in artifact.concepts if c not in covered),
                     None if kept else "no scenario evokes a concept of the artifact")
