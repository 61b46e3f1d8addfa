"""Tag lines: parsing, the prose/tag-line boundary, malformed tags, and round trips (property-based)."""

from __future__ import annotations

import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from amygdala.extraction.tags import (
    TagError,
    format_content,
    format_score,
    format_tag_line,
    is_tag_line,
    parse_content,
    parse_tag_line,
)

BODY = "Spent the evening untangling the lock ordering in the journal replay path."


def test_parse_content_splits_body_and_tag_line() -> None:
    parsed = parse_content(f"{BODY}\nwarmth:9 clarity:10")
    assert parsed.body == BODY
    assert parsed.scores == {"warmth": 9.0, "clarity": 10.0}
    assert parsed.problems == ()
    assert parsed.tag_lines == ("warmth:9 clarity:10",)


def test_parse_content_merges_several_trailing_tag_lines() -> None:
    parsed = parse_content(f"{BODY}\n\nwarmth:9 clarity:7\n\ncalm:2\n  tired:4.5  \n")
    assert parsed.body == BODY
    assert parsed.scores == {"warmth": 9.0, "clarity": 7.0, "calm": 2.0, "tired": 4.5}
    assert len(parsed.tag_lines) == 3


def test_parse_content_normalises_names_case_and_dashes() -> None:
    parsed = parse_content(f"{BODY}\nWarmth:9 Grief-Stricken:3 AT_EASE:1")
    assert parsed.scores == {"warmth": 9.0, "grief_stricken": 3.0, "at_ease": 1.0}


@pytest.mark.parametrize(("token", "score"), [("joy:0", 0.0), ("joy:10", 10.0), ("joy:7.5", 7.5), ("joy:.5", 0.5),
                                              ("joy:10.0", 10.0), ("joy:08", 8.0)])
def test_parse_tag_line_accepts_integer_and_decimal_scores(token: str, score: float) -> None:
    assert parse_tag_line(token) == ({"joy": score}, ())


@pytest.mark.parametrize(("bad", "name", "reason"), [
    ("joy:11", "joy", "outside 0-10"),
    ("joy:", "joy", "missing score"),
    (":5", None, "missing tag name"),
    ("joy:-1", "joy", "outside 0-10"),
    ("joy:10.5", "joy", "outside 0-10"),
    ("joy:high", "joy", "not a number"),
    ("10:5", None, "with a letter"),
])
def test_parse_content_reports_a_malformed_tag_and_keeps_the_others(bad: str, name: str | None, reason: str) -> None:
    parsed = parse_content(f"{BODY}\ncalm:5 {bad} warmth:8")
    assert parsed.body == BODY
    assert parsed.scores == {"calm": 5.0, "warmth": 8.0}
    assert len(parsed.problems) == 1
    problem = parsed.problems[0]
    assert (problem.token, problem.name) == (bad, name)
    assert reason in problem.reason
    assert parsed.unreadable_names == (frozenset() if name is None else frozenset({name}))


def test_parse_content_treats_a_lone_out_of_range_tag_as_a_tag_line() -> None:
    parsed = parse_content(f"{BODY}\njoy:11")
    assert parsed.body == BODY
    assert parsed.scores == {}
    assert [p.token for p in parsed.problems] == ["joy:11"]


@pytest.mark.parametrize("line", ["We met at 10:30 and went through the review.", "10:30", "Time: 10:30",
                                  "Note:", "see http://example.org", "ratio 3:1 in favour", "a:b:c", ""])
def test_is_tag_line_rejects_prose(line: str) -> None:
    assert not is_tag_line(line)
    assert parse_content(f"{BODY}\n{line}").body == f"{BODY}\n{line}".strip()


@pytest.mark.parametrize("line", ["warmth:9", "  warmth:9 clarity:7.5  ", "joy:11 calm:5", "joy: calm:5", ":5 calm:5"])
def test_is_tag_line_accepts_tag_lines_even_with_a_bad_token(line: str) -> None:
    assert is_tag_line(line)


def test_parse_content_only_strips_trailing_tag_lines() -> None:
    content = f"warmth:9\n{BODY}\ncalm:3"
    parsed = parse_content(content)
    assert parsed.body == f"warmth:9\n{BODY}"
    assert parsed.scores == {"calm": 3.0}


def test_parse_content_without_tag_line_keeps_everything() -> None:
    parsed = parse_content(f"  {BODY}\n\n")
    assert (parsed.body, parsed.scores, parsed.problems, parsed.tag_lines) == (BODY, {}, (), ())


def test_parse_tag_line_drops_a_name_given_twice_with_different_scores() -> None:
    scores, problems = parse_tag_line("calm:5 warmth:8 Calm:6")
    assert scores == {"warmth": 8.0}
    assert [(p.token, p.name) for p in problems] == [("calm:5 Calm:6", "calm")]
    assert parse_tag_line("calm:5 calm:5.0") == ({"calm": 5.0}, ())


def test_parse_content_merges_conflicts_across_tag_lines() -> None:
    parsed = parse_content(f"{BODY}\ncalm:5\ncalm:7 warmth:1")
    assert parsed.scores == {"warmth": 1.0}
    assert parsed.unreadable_names == frozenset({"calm"})


@pytest.mark.parametrize("scores", [{"joy": 11.0}, {"joy": -1.0}, {"": 3.0}, {"two words": 3.0}, {"10": 3.0},
                                    {"joy": float("nan")}])
def test_format_tag_line_refuses_unwritable_tags(scores: dict[str, float]) -> None:
    with pytest.raises(TagError, match="cannot write tag"):
        format_tag_line(scores)


def test_format_score_never_uses_an_exponent() -> None:
    assert [format_score(v) for v in (9.0, 7.5, 0.00001, 10.0, 0.0)] == ["9", "7.5", "0.00001", "10", "0"]


# ---- property-based ----

names = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)
scores_st = st.one_of(st.integers(0, 10).map(float), st.floats(0, 10, allow_nan=False, allow_infinity=False))
tag_dicts = st.dictionaries(names, scores_st, min_size=1, max_size=8)
prose = st.text(alphabet=string.ascii_letters + string.digits + " .,;:'!?-\n", min_size=1, max_size=200)


@given(tag_dicts)
def test_format_then_parse_tag_line_round_trips(scores: dict[str, float]) -> None:
    line = format_tag_line(scores)
    assert is_tag_line(line)
    assert parse_tag_line(line) == (scores, ())


@given(prose, tag_dicts)
def test_format_then_parse_content_round_trips(body: str, scores: dict[str, float]) -> None:
    body = body.strip()
    assume(body and not is_tag_line(body.splitlines()[-1]))
    parsed = parse_content(format_content(body, scores))
    assert (parsed.body, parsed.scores, parsed.problems) == (body, scores, ())


@given(st.text(max_size=300))
def test_parse_content_never_raises_and_its_body_ends_without_a_tag_line(content: str) -> None:
    parsed = parse_content(content)
    assert parsed.body in content
    assert parse_content(parsed.body).tag_lines == ()
    assert all(is_tag_line(line) for line in parsed.tag_lines)


@given(tag_dicts, st.sampled_from(["mood:11", "mood:", ":5", "mood:-1", "mood:x"]), st.integers(0, 8))
def test_a_malformed_token_never_drops_valid_tags(scores: dict[str, float], bad: str, at: int) -> None:
    assume("mood" not in scores)
    tokens = format_tag_line(scores).split()
    tokens.insert(min(at, len(tokens)), bad)
    parsed = parse_content(f"{BODY}\n{' '.join(tokens)}")
    assert parsed.scores == scores
    assert [problem.token for problem in parsed.problems] == [bad]
