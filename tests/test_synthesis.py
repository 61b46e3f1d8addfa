"""The synthesis parts without a server: prompts, filters, the journal, topic splits, rows and emotion choice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amygdala.extraction.emotions import reference_emotions
from amygdala.synthesis.filters import FilterOptions, filter_replies, text_problem
from amygdala.synthesis.journal import Journal, Reply
from amygdala.synthesis.prompts import SynthesisError, load_prompts, make_request
from amygdala.synthesis.rows import choose_emotions, emotion_rows, topic_splits

STORY = ("Mara counted the parcels twice before she stacked them by the door, then read the labels again under "
         "the lamp, slower this time, as if the names might change while she was not looking at them at all.")


def reply(text: str, emotion: str | None = "joy", topic: str = "mail", index: int = 0,
          finish_reason: str | None = "stop") -> Reply:
    return Reply("story" if emotion else "neutral", emotion, topic, index, "f", text, finish_reason, 10, 20, 1.0)


def test_bundled_prompts_hold_at_least_50_topics_and_both_templates() -> None:
    prompts = load_prompts()
    assert len(prompts.topics) >= 50 and len(set(prompts.topics)) == len(prompts.topics)
    assert "{emotion}" in prompts.story and "{topic}" in prompts.story and "{emotion}" not in prompts.neutral


def test_a_prompt_dir_overrides_files_and_bad_templates_are_named(tmp_path: Path) -> None:
    (tmp_path / "topics.txt").write_text("# mine\nbaking bread\n\nfixing a gate\n")
    prompts = load_prompts(tmp_path)
    assert prompts.topics == ("baking bread", "fixing a gate") and prompts.origins["story.txt"] == "bundled"
    (tmp_path / "story.txt").write_text("A story about {topic} and {mood}.")
    with pytest.raises(SynthesisError, match=r"story.txt lacks \{emotion\}.*has \{mood\}"):
        load_prompts(tmp_path)


def test_requests_have_their_own_seed_and_a_fingerprint_of_what_shapes_the_reply() -> None:
    prompts = load_prompts()
    shape = {"model": "m", "max_tokens": 100, "temperature": 0.9, "seed": 0}
    a, b = (make_request("story", "joy", "mail", i, prompts, **shape) for i in (0, 1))  # type: ignore[arg-type]
    assert a.seed != b.seed and a.fingerprint != b.fingerprint and "joy" in a.message
    again = make_request("story", "joy", "mail", 0, prompts, **shape)  # type: ignore[arg-type]
    assert again == a
    other = make_request("story", "joy", "mail", 0, prompts, **{**shape, "max_tokens": 50})  # type: ignore[arg-type]
    assert other.fingerprint != a.fingerprint


@pytest.mark.parametrize(("text", "finish", "emotion", "reason"), [
    ("   ", "stop", "joy", "empty"),
    (STORY, "length", "joy", "truncated"),
    ("As an AI language model, I cannot write that story.", "stop", "joy", "refusal"),
    ("I'm sorry, but I can't help with that. " + STORY, "stop", "joy", "refusal"),
    ("Too short to keep.", "stop", "joy", "too_short"),
    (STORY + " Her frustration grew.", "stop", "frustrated", "names_emotion"),
    (STORY + " It was so frustrating.", "stop", "frustrated", "names_emotion"),
    (STORY, "stop", "frustrated", None),
])
def test_text_problem_names_the_first_reason(text: str, finish: str, emotion: str, reason: str | None) -> None:
    assert text_problem(reply(text, emotion, finish_reason=finish), FilterOptions(min_words=20)) == reason


def test_duplicates_and_near_duplicates_are_dropped_whatever_the_arrival_order() -> None:
    near = STORY.replace("lamp", "window")
    replies = [reply(STORY, index=0), reply("  " + STORY.upper(), index=1), reply(near, index=2),
               reply("Tom painted the fence a pale green before lunch, " + STORY[40:], index=3),
               reply("An entirely different story about a ferry crossing where gulls followed the boat and a "
                     "child counted the waves while the engine hummed below deck.", index=4)]
    options = FilterOptions(min_words=10)
    forward, backward = filter_replies(replies, options), filter_replies(replies[::-1], options)
    assert forward == backward
    assert [r.index for r in forward.kept] == [0, 4]
    assert forward.counts()["story"] == {"empty": 0, "truncated": 0, "refusal": 0, "too_short": 0,
                                         "names_emotion": 0, "duplicate": 1, "near_duplicate": 2, "kept": 2}


def test_the_journal_drops_a_torn_last_line_and_keeps_the_first_reply_of_a_key(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.append(reply(STORY, index=0))
        journal.append(reply("later duplicate", index=0))
    with path.open("a") as handle:
        handle.write('{"kind": "story", "emotion": "joy", "topic": "mail", "ind')  # a kill -9 mid-write
    with Journal(path) as journal:
        assert [r.text for r in journal.replies.values()] == [STORY]
        journal.append(reply(STORY, index=1))
    assert [json.loads(line)["index"] for line in path.read_text().splitlines()] == [0, 0, 1]


def test_topic_splits_hold_out_whole_topics_by_a_seeded_hash() -> None:
    topics = [f"topic {i}" for i in range(10)]
    splits = topic_splits(topics, 0.2, seed=0)
    assert sum(split == "heldout" for split in splits.values()) == 2
    assert splits == topic_splits(topics, 0.2, seed=0) and splits != topic_splits(topics, 0.2, seed=1)
    assert list(topic_splits(["a", "b"], 0.1, seed=0).values()).count("heldout") == 1
    assert set(topic_splits(["a"], 0.5, seed=0).values()) == {"train"}


def test_rows_are_positives_of_their_emotion_and_negatives_of_the_others_unless_named() -> None:
    kept = [reply(STORY, "joy", "mail", 0), reply(STORY + " calm", "sad", "mail", 0),
            reply("They felt joy and " + STORY, "sad", "mail", 1), reply("A: the bus. B: at nine.", None, "bus", 0)]
    rows = emotion_rows(kept, ["joy", "sad"], {"mail": "train", "bus": "heldout"}, negative_ratio=5)
    joy = {(e.polarity, e.key) for e in rows["joy"]}
    assert joy == {("positive", "synthetic/joy/mail/0"), ("negative", "synthetic/neutral/bus/0"),
                   ("negative", "synthetic/sad/mail/0")}  # the story naming joy is no negative of joy
    assert all(e.source == "synthetic" and e.topic in ("mail", "bus") for e in rows["sad"])
    assert {e.split for e in rows["joy"] if e.topic == "bus"} == {"heldout"}


def test_choose_emotions_takes_a_list_all171_or_the_sparse_ones_of_an_extract_dir(tmp_path: Path) -> None:
    assert choose_emotions("Sad, at ease") == ("sad", "at_ease")
    assert choose_emotions("all171") == tuple(c.name for c in reference_emotions())
    (tmp_path / "extract.json").write_text(json.dumps({
        "counts": {"joy": {"positive": {"train": 8, "heldout": 4}}, "calm": {"positive": {"train": 3, "heldout": 1}}},
        "skipped_emotions": [{"emotion": "lonely", "reason": "2 positives"}]}))
    assert choose_emotions(None, sparse_from=tmp_path, min_positives=10) == ("calm", "lonely")
    with pytest.raises(SynthesisError, match="unknown emotion.s. glorp, blah"):
        choose_emotions("sad,glorp,blah")
