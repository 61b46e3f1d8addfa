"""``amygdala watch`` in a real terminal (tmux) against a real ``amygdala serve`` on loopback: the embedded Gemma
for completions, SmolLM2 (which has a chat template) for interactive chat. Each check reads the screen."""

from __future__ import annotations

import io
import json
import re
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text

from amygdala.forward.models import LoadedModel
from amygdala.serve import Engine, ServeOptions, create_app, serve_in_thread
from amygdala.serve.client import ReadoutClient

from readout_helpers import concept_artifact
from tmux_pane import Pane, artifact_dir, tmux_pane

pytestmark = pytest.mark.slow
KEY = "watch-key"
PROMPT = "The storm destroyed our house and"
MAX_TOKENS = 16
WATCH = f"{shlex.quote(sys.executable)} -m amygdala.cli watch"


@pytest.fixture(scope="module")
def gemma_url(gemma: LoadedModel) -> Iterator[str]:
    """Gemma 3 270M (no chat template) with the 3-concept artifact (layers 3, 9, 14, calibrated) and a key."""
    options = ServeOptions(model_name="gemma", api_key=KEY, max_tokens=64)
    with serve_in_thread(create_app(Engine(gemma, concept_artifact(gemma)), options)) as url:
        yield url


@pytest.fixture(scope="module")
def expected(gemma_url: str) -> dict:
    """The greedy answer, asked without streaming: what the watched stream must show."""
    with ReadoutClient(gemma_url, api_key=KEY) as client:
        return client.complete(PROMPT, max_tokens=MAX_TOKENS, temperature=0)["choices"][0]


def _watch(url: str, *args: str) -> str:
    return f"{WATCH} --url {url} --api-key {KEY} " + " ".join(shlex.quote(arg) for arg in args)


def _panels(screen: str) -> tuple[list[str], list[str]]:
    """The text panel's and the concept panel's inner lines (the body rows: '│ text │╭│ concepts │')."""
    left, right = [], []
    for line in screen.splitlines():
        if line.startswith("│") and "││" in line:
            text, concepts = line.split("││", 1)
            left.append(text[1:].strip())
            right.append(concepts.rstrip().rstrip("│").strip())
    return left, right


def _squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _concept_rows(screen: str) -> dict[str, str]:
    """Concept name -> the rest of its row (value and sparkline) in the side panel."""
    rows = {}
    for line in _panels(screen)[1]:
        if line:
            name, _, rest = line.partition(" ")
            rows[name] = rest.strip()
    return rows


def _terminal_restored(pane: Pane) -> None:
    assert pane.value("alternate_on") == "0", "the alternate screen is still on"
    assert pane.value("cursor_flag") == "1", "the cursor is still hidden"
    pane.keys("stty -a | tr ' ' '\\n' | grep -x -e icanon -e -icanon -e echo -e -echo | tr '\\n' ' '; echo", "Enter")
    modes = pane.wait_for(lambda s: "icanon" in s.split("grep -x")[-1], "stty's line").split("grep -x")[-1]
    assert "icanon" in modes.split() and "echo" in modes.split(), f"terminal modes not restored: {modes}"


def test_watch_shows_streamed_tokens_concepts_and_switches_layers(gemma_url: str, expected: dict,
                                                                  tmp_path: Path) -> None:
    record = tmp_path / "live.jsonl"
    with tmux_pane() as pane:
        pane.start("bash --norc --noprofile")
        pane.keys(_watch(gemma_url, "--completion", "--prompt", PROMPT, "--max-tokens", str(MAX_TOKENS),
                         "--temperature", "0", "--record", str(record)) + "; echo EXIT=$?", "Enter")
        first = pane.wait_for(lambda s: "done (" in s, "the answer to finish")
        first_colours = _panels(pane.screen(colours=True))[0]
        assert pane.value("alternate_on") == "1", "the view should run on the alternate screen"
        assert "layer 14 (3/3)" in first and "z-scores: manifest calibration" in first
        assert _squeezed(PROMPT + expected["text"]) in _squeezed("".join(_panels(first)[0]))
        assert f"{len(expected['token_ids'])} tokens" in first
        assert set(_concept_rows(first)) == {"joy", "anger", "fear"}

        pane.keys("[")
        second = pane.wait_for(lambda s: "layer 9 (2/3)" in s, "layer 9")
        before, after = _concept_rows(first), _concept_rows(second)
        assert set(after) == {"joy", "anger", "fear"}
        assert any(before[name] != after[name] for name in before), "layer 9 shows the same values as layer 14"
        assert _panels(pane.screen(colours=True))[0] != first_colours, "token colours did not follow the layer"

        pane.keys("z")
        assert "raw values" in pane.wait_for(lambda s: "raw values" in s, "raw values")
        pane.keys("q")
        pane.wait_for(lambda s: "EXIT=0" in s, "watch to exit")
        _terminal_restored(pane)
    line = json.loads(record.read_text())
    assert line["token_ids"] == expected["token_ids"] and line["prompt"] == PROMPT
    assert line["readout"] == expected["readout"]


def test_ctrl_c_ends_watch_and_restores_the_terminal(gemma_url: str) -> None:
    with tmux_pane() as pane:
        pane.start("bash --norc --noprofile")
        pane.keys(_watch(gemma_url) + "; echo EXIT=$?", "Enter")
        pane.wait_for(lambda s: "you>" in s, "the message line")
        pane.keys("I feel", literal=True)
        pane.wait_for(lambda s: "you> I feel" in s, "typed text")
        pane.keys("C-c")
        pane.wait_for(lambda s: "EXIT=130" in s, "watch to exit on Ctrl-C")
        _terminal_restored(pane)


@pytest.fixture(scope="module")
def smol_server(smollm2: LoadedModel) -> Iterator[tuple[str, Engine]]:
    engine = Engine(smollm2, concept_artifact(smollm2))
    with serve_in_thread(create_app(engine, ServeOptions(model_name="smollm2", api_key=KEY))) as url:
        yield url, engine


def test_interactive_messages_are_chat_turns_with_history(smol_server: tuple[str, Engine], tmp_path: Path) -> None:
    url, engine = smol_server
    record = tmp_path / "chat.jsonl"
    with tmux_pane() as pane:
        pane.start("bash --norc --noprofile")
        pane.keys(_watch(url, "--max-tokens", "6", "--temperature", "0", "--record", str(record))
                  + "; echo EXIT=$?", "Enter")
        pane.wait_for(lambda s: "you>" in s, "the message line")
        for number, message in enumerate(["Say hello.", "Now say goodbye."], start=1):
            if number > 1:
                pane.keys("Enter")
                pane.wait_for(lambda s: "you>" in s, "the message line")
            pane.keys(message, literal=True)
            pane.keys("Enter")
            pane.wait_for(lambda s, n=number: f"{6 * n} tokens" in s and "done (" in s, f"answer {number}")
        screen = pane.screen()
        assert "› Say hello." in screen and "› Now say goodbye." in screen
        pane.keys("q")
        pane.wait_for(lambda s: "EXIT=0" in s, "watch to exit")
    turns = [json.loads(line) for line in record.read_text().splitlines()]
    assert [(t["kind"], t["prompt"]) for t in turns] == [("chat", "Say hello."), ("chat", "Now say goodbye.")]
    first, second = list(engine.history)[-2:]
    assert second.prompt_tokens > first.prompt_tokens + 6, "the second turn did not carry the conversation"


def _save_svg(screen_ansi: str, path: Path, width: int) -> None:
    """The captured screen (with its colours) as an SVG, through rich's own export."""
    console = Console(record=True, width=width, force_terminal=True, color_system="truecolor", file=io.StringIO())
    console.print(Text.from_ansi(screen_ansi.rstrip("\n")))
    console.save_svg(str(path), title="amygdala watch")


def _final_frame(pane: Pane) -> tuple[list[str], list[str]]:
    """The screen ``--once`` left, from its title line through its key line (the summary and tmux's own 'Pane is
    dead' line may have scrolled it up): plain, and with colours."""
    lines = pane.screen(history=True).splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("amygdala watch"))
    end = next(i for i in range(start, len(lines)) if "q quit" in lines[i])
    return lines[start:end + 1], [pane.coloured_line(number) for number in range(start, end + 1)]


def test_replay_draws_the_same_screen_as_the_live_run(gemma_url: str, tmp_path: Path) -> None:
    """``--once`` against the server with ``--record``, then ``--replay`` of that file with ``--once``: the same
    final screen, colours included, but for the first header line naming the source. The live capture is kept as
    text and as an SVG (the README's picture)."""
    record = tmp_path / "session.jsonl"
    width, height = 100, 20
    with tmux_pane(width, height) as pane:
        pane.start(_watch(gemma_url, "--completion", "--prompt", PROMPT, "--max-tokens", "24", "--temperature", "0",
                          "--once", "--record", str(record)), keep_dead=True)
        pane.wait_for(lambda _s: pane.value("pane_dead") == "1", "watch --once to exit")
        live, live_colours = _final_frame(pane)
        pane.respawn(f"{WATCH} --replay {shlex.quote(str(record))} --once")
        pane.wait_for(lambda _s: pane.value("pane_dead") == "1", "the replay to exit")
        replayed, replayed_colours = _final_frame(pane)
    _save_svg("\n".join(live_colours), artifact_dir() / "watch.svg", width)
    (artifact_dir() / "watch.txt").write_text("\n".join(live) + "\n")
    assert len(live) == height - 1 and "layer 14 (3/3)" in live[1] and "done (" in live[1]
    assert live[0].split()[:3] == ["amygdala", "watch", gemma_url]
    assert replayed[0].split()[:4] == ["amygdala", "watch", "replay", "of"]
    assert live[1:] == replayed[1:]
    assert live_colours[1:] == replayed_colours[1:] and any("\x1b[" in line for line in live_colours)


def test_pause_holds_a_replay_until_pressed_again(tmp_path: Path) -> None:
    """A replay keeps its recorded pace (one token a second here); 'p' holds it, 'p' again lets it go on."""
    record = tmp_path / "slow.jsonl"
    tokens = [f" w{k}" for k in range(12)]
    record.write_text(json.dumps({"id": 1, "layers": [0, 1], "concepts": ["joy", "fear"], "zscore": False,
                                  "tokens": tokens, "readout": [[[k, -k], [1.0, 2.0 * k]] for k in range(12)],
                                  "elapsed_s": [float(k) for k in range(12)], "prompt": "slow", "kind": "completion"})
                      + "\n")

    def count(screen: str) -> int:
        return int(re.search(r"(\d+) tokens", screen).group(1))  # type: ignore[union-attr]

    with tmux_pane() as pane:
        pane.start("bash --norc --noprofile")
        pane.keys(f"{WATCH} --replay {shlex.quote(str(record))}; echo EXIT=$?", "Enter")
        pane.wait_for(lambda s: "z-scores: running stats" in s and count(s) >= 2, "the replay to start")
        pane.keys("p")
        held = count(pane.wait_for(lambda s: "PAUSED" in s, "the pause"))
        time.sleep(2.5)
        assert count(pane.screen()) == held and "PAUSED" in pane.screen(), "the replay went on while paused"
        pane.keys("p")
        pane.wait_for(lambda s: "PAUSED" not in s and count(s) >= held + 2, "the replay to go on")
        pane.keys("q")
        pane.wait_for(lambda s: "EXIT=0" in s, "watch to exit")
