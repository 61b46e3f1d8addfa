"""The watch client's stream against real servers on loopback: ``amygdala serve`` (Gemma, with and without vectors)
and a small fault-injecting server that sends what a broken stream sends (malformed chunks, tokens without a
readout, a cut connection, an error event, vLLM's merged chunks, a 503). Nothing may raise: every fault is a
notice, and the tokens that did arrive are kept."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from amygdala.artifact import ReadoutArtifact
from amygdala.forward.models import LoadedModel
from amygdala.serve import Engine, ServeOptions, create_app, serve_in_thread
from amygdala.serve.client import ReadoutClient
from amygdala.watch import LiveOptions, LiveSource, Manifest, Notice, Token, TurnEnd, TurnStart
from amygdala.watch.events import Event

from fault_server import fault_app
from mcp_servers import free_port
from readout_helpers import concept_artifact

pytestmark = pytest.mark.slow
KEY = "stream-key"
PROMPT = "I was so scared when"


@pytest.fixture(scope="module")
def artifact(gemma: LoadedModel) -> ReadoutArtifact:
    return concept_artifact(gemma)


@pytest.fixture(scope="module")
def url(gemma: LoadedModel, artifact: ReadoutArtifact) -> Iterator[str]:
    with serve_in_thread(create_app(Engine(gemma, artifact), ServeOptions(api_key=KEY))) as base:
        yield base


@pytest.fixture(scope="module")
def bare_url(gemma: LoadedModel) -> Iterator[str]:
    with serve_in_thread(create_app(Engine(gemma, None), ServeOptions())) as base:
        yield base


def _session(options: LiveOptions, prompt: str | None = PROMPT) -> list[Event]:
    source = LiveSource(options)
    try:
        return [*source.connect(), *(source.turn(prompt) if prompt is not None else [])]
    finally:
        source.close()


def _of(events: list[Event], kind: type) -> list:
    return [event for event in events if isinstance(event, kind)]


def test_manifest_carries_the_artifact_calibration(url: str, artifact: ReadoutArtifact) -> None:
    (manifest,) = _of(_session(LiveOptions(url, api_key=KEY), None), Manifest)
    assert manifest.concepts == artifact.concepts and manifest.layers == artifact.layers
    assert manifest.calibration is not None and not manifest.zscored
    for layer in artifact.layers:
        assert artifact.calibration is not None
        assert manifest.calibration[layer].mean == tuple(artifact.calibration.mean[layer].tolist())
        assert manifest.calibration[layer].std == tuple(artifact.calibration.std[layer].tolist())


def test_streamed_tokens_equal_the_non_streamed_answer(url: str) -> None:
    events = _session(LiveOptions(url, api_key=KEY, mode="completion", max_tokens=8, temperature=0))
    with ReadoutClient(url, api_key=KEY) as client:
        whole = client.complete(PROMPT, max_tokens=8, temperature=0)["choices"][0]
    tokens = _of(events, Token)
    assert [t.token_id for t in tokens] == whole["token_ids"]
    assert "".join(t.text for t in tokens) == whole["text"]
    assert [[list(row) for row in t.readout] for t in tokens] == whole["readout"]
    assert not _of(events, Notice) and _of(events, TurnEnd)[0].finish_reason == "length"


def test_chat_falls_back_to_completions_for_a_model_without_chat_template(url: str) -> None:
    events = _session(LiveOptions(url, api_key=KEY, max_tokens=3, temperature=0))
    starts = _of(events, TurnStart)
    assert [(s.kind, s.restart) for s in starts] == [("chat", False), ("completion", False)]
    assert "no chat template" in _of(events, Notice)[0].text and len(_of(events, Token)) == 3


def test_a_wrong_key_is_a_notice_naming_the_option(url: str) -> None:
    events = _session(LiveOptions(url, api_key="wrong", mode="completion", max_tokens=2))
    errors = [n.text for n in _of(events, Notice) if n.level == "error"]
    assert len(errors) == 2 and all("401" in e and "--api-key" in e for e in errors)
    assert not _of(events, Token) and not _of(events, Manifest)


def test_a_server_without_vectors_streams_uncoloured_tokens_after_one_notice(bare_url: str) -> None:
    events = _session(LiveOptions(bare_url, mode="completion", max_tokens=4, temperature=0))
    notices = _of(events, Notice)
    assert len(notices) == 1 and "404" in notices[0].text and "serves no readout" in notices[0].text
    tokens = _of(events, Token)
    assert len(tokens) == 4 and all(t.readout is None for t in tokens)


def test_an_unreachable_server_is_retried_only_on_request() -> None:
    port = free_port()
    once = _session(LiveOptions(f"http://127.0.0.1:{port}", mode="completion"), None)
    assert [n.level for n in _of(once, Notice)] == ["error"] and "cannot reach" in _of(once, Notice)[0].text
    retried = _session(LiveOptions(f"http://127.0.0.1:{port}", mode="completion", retries=1), None)
    assert [n.text.split(" ")[0] for n in _of(retried, Notice)] == ["cannot", "retrying", "cannot"]


# --- the fault server (tests/fault_server.py) -------------------------------------------------------------------
@pytest.fixture(scope="module")
def fault_url() -> Iterator[str]:
    with serve_in_thread(fault_app()) as base:
        yield base


def _fault(fault_url: str, prompt: str, retries: int = 0) -> list[Event]:
    return _session(LiveOptions(fault_url, mode="completion", retries=retries), prompt)


def test_malformed_chunks_and_missing_readouts_become_notices(fault_url: str) -> None:
    events = _fault(fault_url, "faults")
    tokens = _of(events, Token)
    assert [(t.text, t.token_id, t.readout is not None) for t in tokens] == [
        ("A", 1, True), ("B", 2, False), ("C", 3, False), ("D", 4, False), ("E", 5, True)]
    notices = [n.text for n in _of(events, Notice)]
    assert notices[0].startswith("skipped chunk 2: not JSON")
    assert notices[1].startswith("chunk 3: its readout is not [2][2] numbers")
    assert notices[2].startswith("token 'C' came without a readout")  # once, not again for D
    assert notices[3].startswith("skipped chunk 6: no 'choices' list") and len(notices) == 4


def test_a_cut_stream_is_reported_and_retried_only_on_request(fault_url: str) -> None:
    events = _fault(fault_url, "cut-once")
    assert [t.text for t in _of(events, Token)] == ["A", "B"]
    (error,) = [n.text for n in _of(events, Notice)]
    assert "the stream from" in error and "was cut after 2 tokens" in error
    assert _of(events, TurnEnd)[0].finish_reason is None
    retried = _fault(fault_url, "cut-retried", retries=2)
    assert [s.restart for s in _of(retried, TurnStart)] == [False, True]
    assert [n.text.split(" ")[0] for n in _of(retried, Notice)] == ["the", "retrying"]


def test_a_503_is_retried_with_backoff(fault_url: str) -> None:
    events = _fault(fault_url, "busy", retries=1)
    notices = [n.text for n in _of(events, Notice)]
    assert "answered 503: overloaded" in notices[0] and notices[1] == "retrying in 0.5 s (1/1)"
    assert len(_of(events, Token)) == 5


def test_an_error_event_ends_the_turn_with_its_message(fault_url: str) -> None:
    events = _fault(fault_url, "error")
    assert [t.text for t in _of(events, Token)] == ["A"]
    assert [n.text for n in _of(events, Notice)] == ["the server ended the answer with an error: generation failed: boom"]


def test_merged_vllm_chunks_keep_one_readout_per_token_with_its_id(fault_url: str) -> None:
    events = _fault(fault_url, "merged")
    assert [(t.text, t.token_id) for t in _of(events, Token)] == [("", 7), ("", 8), ("xyz", 9)]
    assert _of(events, TurnEnd)[0].finish_reason == "length" and not _of(events, Notice)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "amygdala.cli", "watch", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COLUMNS": "100", "LINES": "24"})


def test_cli_once_against_a_server_without_vectors_draws_tokens_and_exits_1(bare_url: str) -> None:
    done = _cli("--url", bare_url, "--completion", "--prompt", PROMPT, "--max-tokens", "4", "--once")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "serves no readout" in done.stdout and "no readout" in done.stdout and "4 tokens" in done.stdout
    assert done.stderr.strip().splitlines()[-1].startswith("amygdala: error: ") and "404" in done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--once"], "--once needs --prompt"),
    (["--replay", "missing.jsonl", "--once"], "is not a file"),
    (["--prompt", "x", "--once", "--record", "no/such/folder/out.jsonl"], "does not exist"),
    (["--prompt", "x", "--once", "--max-tokens", "0"], "--max-tokens must be >= 1"),
])
def test_cli_bad_options_fail_in_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    done = _cli("--url", "http://127.0.0.1:9", *args)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr and "Traceback" not in done.stderr
