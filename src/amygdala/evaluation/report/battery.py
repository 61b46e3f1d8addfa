"""``report.html``'s validation-battery sections: one ``<section id="check-<name>">`` per check that ran, with its
headline line, a table and a figure where one helps. Every string from data or the model is escaped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from amygdala.evaluation.arousal import PUBLISHED_PC1_VALENCE_R, PUBLISHED_PC2_AROUSAL_R
from amygdala.evaluation.checks.arousal import Arousal
from amygdala.evaluation.checks.chat_roles import ChatRoles
from amygdala.evaluation.checks.logit_lens import LogitLens
from amygdala.evaluation.checks.negation import Negation
from amygdala.evaluation.checks.options import CheckResult
from amygdala.evaluation.checks.scenarios import Scenarios
from amygdala.evaluation.checks.sweeps import Sweeps
from amygdala.evaluation.checks.top_tokens import TopTokens
from amygdala.evaluation.report.figures import counts_figure, sweep_figure
from amygdala.evaluation.report.tables import fmt
from amygdala.outputs.sanitise import html_text

_TITLES = {"sweeps": "Intensity sweeps", "negation": "Negation", "scenarios": "Implicit scenarios",
           "top_tokens": "Top-activating tokens on held-out text", "logit_lens": "Logit lens",
           "chat_roles": "Chat roles: user turn and assistant turn", "arousal": "Arousal beside valence"}


def _table(head: list[str], rows: list[list[str]]) -> str:
    """Cells are escaped here: callers pass plain text."""
    header = "".join(f"<th>{html_text(cell)}</th>" for cell in head)
    body = "".join("<tr>" + "".join(f"<td class=l>{html_text(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{header}</tr>{body}</table>"


def _sweeps(result: Sweeps) -> str:
    rows = [[case.template, case.concept, "rises" if case.direction > 0 else "falls", fmt(case.rho.estimate),
             f"[{fmt(case.rho.low)}, {fmt(case.rho.high)}]", "yes" if case.signed_rho > 0 else "no"]
            for case in result.cases]
    figure = sweep_figure(result) if result.cases else ""
    return figure + _table(["template", "concept", "expected", "rho", "95% CI", "as expected"], rows)


def _negation(result: Negation) -> str:
    return _table(["concept", "pairs", "share that drops", "mean drop (z)"],
                  [[c.concept, str(c.n_pairs), fmt(c.drop_share), fmt(c.mean_drop, 2)] for c in result.per_concept])


def _scenarios(result: Scenarios) -> str:
    if not result.scenarios:
        return ""
    figure = counts_figure(result.confusion, result.concepts, "true (rows) vs top-ranked (columns)")
    return figure + _table(["concept", "top-1"], [[c, fmt(v)] for c, v in result.per_concept_top1().items()])


def _highlighted(before: str, token: str, after: str) -> str:
    return f"{html_text(before)}<mark>{html_text(token)}</mark>{html_text(after)}"


def _top_tokens(result: TopTokens) -> str:
    blocks = []
    for concept, hits in zip(result.concepts, result.hits):
        items = "".join(f"<li><span class=t>{_highlighted(h.before, h.token, h.after)}</span> "
                        f"<small>{h.score:+.2f}</small></li>" for h in hits)
        blocks.append(f"<h3>{html_text(concept)}</h3><ol class=hits>{items}</ol>")
    return f"<p>Sources: {html_text(', '.join(result.sources))}.</p>" + "".join(blocks)


def _logit_lens(result: LogitLens) -> str:
    return _table(["concept", "layer", "top tokens", "bottom tokens"],
                  [[e.concept, str(e.layer), " | ".join(e.top), " | ".join(e.bottom)] for e in result.entries])


def _chat_roles(result: ChatRoles) -> str:
    if not result.roles:
        return ""
    concepts = list(result.roles[0].concept_mean)
    rows = [[concept, *(fmt(role.concept_mean.get(concept, float("nan")), 2) for role in result.roles)]
            for concept in concepts]
    return _table(["concept", *(f"mean readout, {role.role} turn" for role in result.roles)], rows)


def _arousal(result: Arousal) -> str:
    pc = result.check.pc_r
    rows = [[name.replace("_", " | "), fmt(pc.get(name, float("nan")), 2)]
            for name in ("pc1_valence", "pc1_arousal", "pc2_valence", "pc2_arousal")]
    return (_table(["principal component | lexicon", "mean |r| over layers"], rows)
            + f"<p><small>Published reference over 171 emotions: PC1 | valence {PUBLISHED_PC1_VALENCE_R}, PC2 | "
            f"arousal {PUBLISHED_PC2_AROUSAL_R}. Sentences:"
            " EmoBank (Buechel &amp; Hahn 2017, CC BY-SA 4.0).</small></p>")


_BODIES: dict[type, Callable[[Any], str]] = {Sweeps: _sweeps, Negation: _negation, Scenarios: _scenarios,
                                             TopTokens: _top_tokens, LogitLens: _logit_lens, ChatRoles: _chat_roles,
                                             Arousal: _arousal}


def battery_sections(results: tuple[CheckResult, ...]) -> str:
    """The sections of every check that ran (empty without checks)."""
    sections = []
    for result in results:
        note = f"<p><b>Skipped:</b> {html_text(result.note)}</p>" if result.note else ""
        skipped = (f"<p><small>Concepts without data: {html_text(', '.join(result.skipped))}</small></p>"
                   if result.skipped and not result.note else "")
        body = "" if result.note else _BODIES[type(result)](result)
        sections.append(f'<section id="check-{html_text(result.name)}"><h2>'
                        f"{html_text(_TITLES.get(result.name, result.name))}</h2><p class=k>"
                        f"{html_text(result.line())}</p>{note}{skipped}{body}</section>")
    return "<h1>Validation battery</h1>" + "".join(sections) if sections else ""
