"""Chat roles: the scenario's own tokens are found in both turns of a real chat template (SmolLM2's), readouts
come back per role, and Gemma's tokenizer (no chat template) skips the check with a note."""

from __future__ import annotations

from typing import Any

import torch

from amygdala.evaluation.checks import CheckOptions
from amygdala.evaluation.checks.chat_roles import ROLES, chat_roles, role_tokens
from amygdala.forward.models import LoadedModel
from checks_helpers import planted

TEXT = "The biopsy came back benign, and I sat in the car breathing out."


def test_chat_roles_role_tokens_are_exactly_the_turns_text(smollm2: LoadedModel) -> None:
    tokenizer: Any = smollm2.tokenizer
    for role in ROLES:
        ids, positions = role_tokens(tokenizer, TEXT, role)
        assert positions == list(range(positions[0], positions[-1] + 1))
        assert tokenizer.decode([ids[i] for i in positions]).strip() == TEXT
        assert len(ids) > positions[-1] + 1  # the template's end-of-turn tokens follow


def test_chat_roles_report_both_roles_apart(smollm2: LoadedModel) -> None:
    generator = torch.Generator().manual_seed(0)
    artifact = planted(("relieved", "tired"), list(torch.randn((2, smollm2.hidden_size), generator=generator)),
                       smollm2.hidden_size)
    result = chat_roles(smollm2, artifact, CheckOptions(("chat_roles",), n_boot=20))
    assert result.note is None and result.n_scenarios == 16
    assert [r.role for r in result.roles] == ["user", "assistant"]
    assert all(set(r.concept_mean) == {"relieved", "tired"} for r in result.roles)
    assert result.roles[0].concept_mean != result.roles[1].concept_mean


def test_chat_roles_without_a_chat_template_are_skipped_with_a_note(gemma: LoadedModel) -> None:
    row = torch.ones(gemma.hidden_size)
    result = chat_roles(gemma, planted(("sad",), [row], gemma.hidden_size), CheckOptions(("chat_roles",)))
    assert result.roles == () and result.note is not None and "no chat template" in result.note
