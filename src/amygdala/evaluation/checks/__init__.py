"""The validation battery: checks that the vectors mean their emotions beyond held-out separation.

Each check is one module with one function of the same signature, ``(loaded, artifact, options: CheckOptions)
-> result`` (a frozen dataclass with ``to_json()`` and ``line()``, see ``options.CheckResult``); ``CHECKS`` maps
the names the CLI takes to them. Every check measures only the concepts the artifact has and names the ones it
skipped. ``check_battery_inputs`` reads and validates every data file a selection needs before any model work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from amygdala.artifact import ReadoutArtifact
from amygdala.evaluation.checks.arousal import arousal
from amygdala.evaluation.checks.chat_roles import chat_roles
from amygdala.evaluation.checks.logit_lens import logit_lens
from amygdala.evaluation.checks.negation import negation, negation_pairs
from amygdala.evaluation.checks.options import CheckError, CheckOptions, CheckResult
from amygdala.evaluation.checks.scenarios import implicit_scenarios, scenarios
from amygdala.evaluation.checks.sweeps import sweep_templates, sweeps
from amygdala.evaluation.checks.top_tokens import corpus_texts, top_tokens
from amygdala.forward.models import LoadedModel

__all__ = ["CHECKS", "CheckError", "CheckOptions", "CheckResult", "check_battery_inputs", "parse_checks",
           "run_checks"]

Check = Callable[[LoadedModel, ReadoutArtifact, CheckOptions], CheckResult]

CHECKS: dict[str, Check] = {
    "sweeps": sweeps,
    "negation": negation,
    "scenarios": scenarios,
    "top_tokens": top_tokens,
    "logit_lens": logit_lens,
    "chat_roles": chat_roles,
    "arousal": arousal,
}
"""Check name -> check, in the order they run and are reported."""


def parse_checks(spec: str) -> tuple[str, ...]:
    """``"all"`` or a comma-separated list of check names -> the names in ``CHECKS`` order; unknown names are one
    ``CheckError`` listing the known ones."""
    names = [name.strip().replace("-", "_") for name in spec.split(",") if name.strip()]
    if "all" in names:
        return tuple(CHECKS)
    if unknown := [name for name in names if name not in CHECKS]:
        raise CheckError(f"--checks {', '.join(unknown)}: unknown check(s); known: {', '.join(CHECKS)} (or all)")
    if not names:
        raise CheckError(f"--checks is empty: name checks ({', '.join(CHECKS)}) or all")
    return tuple(name for name in CHECKS if name in names)


def check_battery_inputs(options: CheckOptions) -> None:
    """Read every data file the selected checks use, raising the first file's ``CheckError``, before any model
    work; a data file given for a check that is not selected is a mistake too."""
    selected = set(options.checks)
    unused = [flag for flag, value, users in (("--sweep-templates", options.sweep_templates, {"sweeps"}),
                                              ("--scenarios", options.scenarios, {"scenarios", "chat_roles"}),
                                              ("--corpus", options.corpus, {"top_tokens"}))
              if value is not None and not users & selected]
    if unused:
        raise CheckError(f"{', '.join(unused)} given but no check that reads it is selected: add it to --checks")
    if "sweeps" in selected:
        sweep_templates(options)
    if "negation" in selected:
        negation_pairs()
    if selected & {"scenarios", "chat_roles"}:
        implicit_scenarios(options)
    if "top_tokens" in selected:
        corpus_texts(options)


def run_checks(loaded: LoadedModel, artifact: ReadoutArtifact, options: CheckOptions,
               names: Sequence[str] | None = None) -> tuple[CheckResult, ...]:
    """Run ``names`` (default ``options.checks``) in ``CHECKS`` order."""
    chosen = options.checks if names is None else tuple(names)
    return tuple(CHECKS[name](loaded, artifact, options) for name in CHECKS if name in chosen)
