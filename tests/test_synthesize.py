"""``amygdala synthesize`` end to end over real HTTP on loopback: the canned writer (``writer_server``) for exact
filter counts, faults and kills, and a real ``amygdala serve`` with SmolLM2-135M-Instruct as the writer."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amygdala.cli import main
from amygdala.extraction.examples import read_examples
from amygdala.forward.models import LoadedModel
from amygdala.serve import Engine, ServeOptions, create_app, serve_in_thread
from amygdala.synthesis.filters import FilterOptions
from amygdala.synthesis.prompts import SynthesisError
from amygdala.synthesis.stage import SynthesizeOptions, synthesize
from amygdala.synthesis.writer import Endpoint
from writer_server import PROMPTS, writer_app

SERVER_SCRIPT = Path(__file__).with_name("writer_server.py")


@pytest.fixture
def prompts_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "prompts"
    folder.mkdir()
    for name, text in PROMPTS.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture(scope="module")
def writer_url() -> Iterator[str]:
    with serve_in_thread(writer_app()) as url:
        yield url


def synth_args(url: str, out: Path, prompts: Path, *extra: str) -> list[str]:
    return ["synthesize", "--output-dir", str(out), "--base-url", url, "--model", "canned", "--prompts", str(prompts),
            "--min-words", "20", "--no-progress", *extra]


def files(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.glob("*.jsonl"))}


def test_synthesize_writes_an_examples_dir_split_by_topic(writer_url: str, prompts_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(synth_args(writer_url, out, prompts_dir, "--emotions", "sad,proud", "--per-topic", "2",
                           "--heldout-fraction", "0.25")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["proud.jsonl", "sad.jsonl", "synthesize.json"]
    examples = read_examples(out)
    assert {e.source for e in examples} == {"synthetic"}
    heldout = {e.topic for e in examples if e.split == "heldout"}
    assert len(heldout) == 1 and not heldout & {e.topic for e in examples if e.split == "train"}
    manifest = json.loads((out / "synthesize.json").read_text())
    assert manifest["requests"] == {"planned": 24, "from_journal": 0, "asked": 24}
    assert manifest["filters"]["counts"]["story"]["kept"] == 16 and manifest["tokens"]["completion"] > 0
    assert sum(e.polarity == "positive" for e in examples if e.emotion == "sad") == 8
    assert "wrote 2 emotions" in capsys.readouterr().out


def test_every_filter_is_counted_in_the_provenance(writer_url: str, prompts_dir: Path, tmp_path: Path) -> None:
    (prompts_dir / "topics.txt").write_text("garden\nrefusal\nnaming\ncutoff\necho\nnear\nshort\n")
    result = synthesize(Endpoint(writer_url, "canned"), SynthesizeOptions(
        ("sad",), per_topic=2, neutral_per_topic=1, prompts_dir=prompts_dir), tmp_path / "out")
    counts = result.manifest["filters"]["counts"]
    assert counts["story"] == {"empty": 0, "truncated": 2, "refusal": 2, "too_short": 2, "names_emotion": 2,
                               "duplicate": 2, "near_duplicate": 2, "kept": 2}
    assert counts["neutral"] == {"empty": 0, "truncated": 1, "refusal": 1, "too_short": 1, "names_emotion": 0,
                                 "duplicate": 0, "near_duplicate": 0, "kept": 4}


def test_an_unknown_emotion_is_one_line_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synthesize", "--output-dir", str(tmp_path / "out"), "--emotions", "sad,glorp"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown emotion(s) glorp" in err[0]
    assert not (tmp_path / "out").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_url_is_one_line_naming_it(prompts_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    assert main(synth_args(url, tmp_path / "out", prompts_dir, "--emotions", "sad", "--retries", "1")) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "cannot reach it" in line and url in line and "after 2 tries" in line and "rerun" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("model", ["garbage", "empty", "nochoices"])
def test_a_malformed_or_empty_response_is_one_line(writer_url: str, prompts_dir: Path, tmp_path: Path, model: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    args = synth_args(writer_url, tmp_path / "out", prompts_dir, "--emotions", "sad", "--retries", "1")
    assert main([*args, "--model", model]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "malformed response" in line and "0 of 16 replies are kept" in line


def test_a_busy_server_is_retried(writer_url: str, prompts_dir: Path, tmp_path: Path) -> None:
    args = synth_args(writer_url, tmp_path / "out", prompts_dir, "--emotions", "sad", "--retries", "2")
    assert main([*args, "--model", "busy"]) == 0
    assert read_examples(tmp_path / "out")


def _start_writer(port: int, delay: float) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, str(SERVER_SCRIPT), str(port), str(delay)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("the writer server did not start")


def _synthesize_process(url: str, out: Path, prompts: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    argv = [sys.executable, "-m", "amygdala.cli", *synth_args(url, out, prompts, "--emotions", "sad,proud",
                                                              "--per-topic", "2", "--concurrency", "2",
                                                              "--retries", "0")]
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_lines(journal: Path, n: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if journal.exists() and journal.read_text().count("\n") >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{journal} never reached {n} lines")


def _journal_keys(journal: Path) -> list[tuple[str, str, str, int]]:
    rows = [json.loads(line) for line in journal.read_text().splitlines()]
    return [(r["kind"], r["emotion"] or "", r["topic"], r["index"]) for r in rows]


@pytest.mark.parametrize("killed", ["synthesize", "server"])
def test_a_kill_mid_run_and_a_rerun_end_with_the_same_set_and_no_duplicates(
        writer_url: str, prompts_dir: Path, tmp_path: Path, killed: str) -> None:
    """kill -9 of the synthesize process (crash-safe journal), or of the writer server (one line, then resume)."""
    reference = tmp_path / "reference"
    assert main(synth_args(writer_url, reference, prompts_dir, "--emotions", "sad,proud", "--per-topic", "2")) == 0
    port = _free_port()
    url, out = f"http://127.0.0.1:{port}", tmp_path / "out"
    server = _start_writer(port, delay=0.15)
    try:
        process = _synthesize_process(url, out, prompts_dir)
        _wait_lines(tmp_path / "out.journal.jsonl", 5)
        os.kill((process if killed == "synthesize" else server).pid, signal.SIGKILL)
        _, err = process.communicate(timeout=120)
        if killed == "server":
            assert process.returncode == 2 and len(err.decode().strip().splitlines()) == 1
            assert "replies are kept in" in err.decode() and "rerun the same command to resume" in err.decode()
            server.wait(timeout=30)
            server = _start_writer(port, delay=0.0)
        assert not out.exists()
        kept = len(_journal_keys(tmp_path / "out.journal.jsonl"))
        assert 5 <= kept < 24
        rerun = _synthesize_process(url, out, prompts_dir)
        assert rerun.wait(timeout=120) == 0, rerun.stderr.read().decode() if rerun.stderr else ""
    finally:
        server.kill()
        server.wait(timeout=30)
    keys = _journal_keys(tmp_path / "out.journal.jsonl")
    assert len(keys) == len(set(keys)) == 24
    assert files(out) == files(reference)
    assert json.loads((out / "synthesize.json").read_text())["requests"]["from_journal"] == kept


KEY = "synth-key"


@pytest.fixture(scope="module")
def smollm2_server(smollm2: LoadedModel) -> Iterator[str]:
    options = ServeOptions(model_name="smollm2", api_key=KEY, max_tokens=64)
    with serve_in_thread(create_app(Engine(smollm2, None), options)) as url:
        yield url


def test_a_wrong_api_key_is_one_line_from_a_real_server(smollm2_server: str, prompts_dir: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    args = synth_args(smollm2_server, tmp_path / "out", prompts_dir, "--emotions", "sad", "--model", "smollm2")
    assert main([*args, "--api-key", "wrong"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "refused the request (401" in line and "check --api-key" in line and "0 of 16 replies are kept" in line


def test_smollm2_served_by_amygdala_writes_journalled_filtered_stories(smollm2_server: str, tmp_path: Path) -> None:
    """The real writer: 2 stories and 1 dialogue of at most 40 tokens (CPU generation is slow); the texts are
    poor, so this checks the mechanics: every reply journalled with its tokens, every one counted by a filter."""
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "story.txt").write_text("In one sentence, tell what a person who feels {emotion} does at {topic}.")
    (prompts / "neutral.txt").write_text("In one sentence, say what time {topic} opens.")
    (prompts / "topics.txt").write_text("the library\n")
    endpoint = Endpoint(smollm2_server, "smollm2", KEY, max_tokens=40, temperature=0.7, retries=1)
    options = SynthesizeOptions(("sad", "proud"), per_topic=1, prompts_dir=prompts, concurrency=2,
                                heldout_fraction=0.0, filters=FilterOptions(min_words=3))
    try:
        result = synthesize(endpoint, options, tmp_path / "out")
        counts = result.manifest["filters"]["counts"]
        assert result.manifest["tokens"]["completion"] > 0
        assert all(e.source == "synthetic" and e.topic == "the library" for e in read_examples(tmp_path / "out"))
    except SynthesisError as exc:  # nothing kept for any emotion: the counts are in the message
        assert "no emotion kept" in str(exc)
        counts = None
    replies = [json.loads(line) for line in (tmp_path / "out.journal.jsonl").read_text().splitlines()]
    assert len(replies) == 3 and all(r["completion_tokens"] > 0 and r["text"].strip() for r in replies)
    if counts is not None:
        assert sum(counts["story"].values()) == 2 and sum(counts["neutral"].values()) == 1
