"""What every check of the validation battery shares: its options, its error, and the shape of its result.

A check is a plain function ``(loaded, artifact, options: CheckOptions) -> result``; the result is a frozen
dataclass with ``name``, ``skipped`` (the artifact's concepts it could not measure: no bundled or user data names them),
``note`` (why the whole check was skipped, else None), ``to_json()`` and ``line()`` (one line
for the terminal table). ``amygdala.evaluation.checks.CHECKS`` maps the names to the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from amygdala.errors import AmygdalaError
from amygdala.forward.pooling import PoolingSpec

DEFAULT_N_BOOT = 1000


class CheckError(AmygdalaError):
    """A battery input that cannot be used (unknown check, a template without a slot, a corpus that is not
    text): names the input, the line and the fix."""


@dataclass(frozen=True)
class CheckOptions:
    """How the battery runs; the data files add to the bundled ones."""

    checks: tuple[str, ...] = ()
    """The checks to run, names of ``CHECKS`` (empty: none)."""
    spec: PoolingSpec = PoolingSpec()
    """How texts are pooled: as the artifact was trained (``evaluate_files`` passes ``artifact.pooling``)."""
    batch_size: int | None = None
    """Most texts per pooled forward pass (None: the device's default)."""
    batch_tokens: int | None = None
    """Most padded tokens per pooled forward pass (None: only ``batch_size`` caps)."""
    seed: int = 0
    """Seeds every bootstrap."""
    n_boot: int = DEFAULT_N_BOOT
    """Bootstrap resamples behind each 95% confidence interval."""
    sweep_templates: Path | None = None
    """More intensity-sweep templates (JSONL, see ``sweeps``), run beside the bundled ones."""
    scenarios: Path | None = None
    """More implicit scenarios (JSONL ``{"concept", "text"}``), run beside the bundled ones."""
    corpus: Path | None = None
    """More held-out text for the top-activating tokens (plain lines or JSONL ``{"text"}``)."""
    corpus_sentences: int | None = None
    """Only the first N bundled rated sentences for the top tokens, and of the EmoBank sentences for arousal
    (None: all 600 each)."""
    top_k: int = 20
    """Token positions per concept (top tokens) and tokens per end (logit lens: ``top_k // 2``)."""


class CheckResult(Protocol):
    """What every check returns."""

    @property
    def name(self) -> str: ...

    @property
    def note(self) -> str | None: ...

    @property
    def skipped(self) -> tuple[str, ...]: ...

    def to_json(self) -> dict[str, Any]: ...

    def line(self) -> str: ...
