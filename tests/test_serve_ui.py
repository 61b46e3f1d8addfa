"""``GET /ui`` of ``amygdala serve --ui``: off by default, behind the API key, one self-contained page; and the
page itself in real headless Chromium (Debian's, driven by playwright-core from tests/node) against a real
server with the embedded Gemma: a prompt streams tinted tokens and a concept x token heat strip. One answer of
that server, recorded, is played to the page and to ``amygdala.readout.scale``: their z-scores and colour
strengths must agree.

Without Node.js, the npm install or Chromium the browser tests skip locally and fail when ``CI`` is set
(scripts/test.sh installs all three). The screenshot is kept in the test artifacts folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from amygdala.forward.models import LoadedModel
from amygdala.readout.scale import page_constants
from amygdala.serve import Engine, ServeOptions, create_app, serve_in_thread
from amygdala.serve.client import ReadoutClient
from amygdala.watch import LiveOptions, LiveSource
from amygdala.watch.record import Recorder, read_record, replay_events
from amygdala.watch.state import ViewOptions, WatchState

from fault_server import fault_app
from readout_helpers import concept_artifact
from replay_server import replay_app
from tmux_pane import artifact_dir

pytestmark = pytest.mark.slow
KEY = "ui-key"
PROMPT = "The storm destroyed our house and"
NODE_DIR = Path(__file__).resolve().parent / "node"


@pytest.fixture(scope="module")
def keyed_url(gemma: LoadedModel) -> Iterator[str]:
    options = ServeOptions(model_name="gemma", api_key=KEY, ui=True)
    with serve_in_thread(create_app(Engine(gemma, concept_artifact(gemma)), options)) as url:
        yield url


@pytest.fixture(scope="module")
def bare_url(gemma: LoadedModel) -> Iterator[str]:
    """No vectors and no key: the page must still stream, and say why nothing is tinted."""
    with serve_in_thread(create_app(Engine(gemma, None), ServeOptions(ui=True))) as url:
        yield url


def test_ui_is_off_unless_asked(gemma: LoadedModel) -> None:
    with serve_in_thread(create_app(Engine(gemma, None), ServeOptions())) as url:
        assert httpx.get(f"{url}/ui").status_code == 404


def test_ui_is_behind_the_key_and_loads_nothing_from_the_network(keyed_url: str) -> None:
    locked = httpx.get(f"{keyed_url}/ui")
    wrong = httpx.get(f"{keyed_url}/ui", headers={"Authorization": "Bearer nope"})
    page = httpx.get(f"{keyed_url}/ui", headers={"Authorization": f"Bearer {KEY}"})
    assert locked.status_code == wrong.status_code == 401 and 'id="key"' in locked.text and "id=\"send\"" not in locked.text
    assert page.status_code == 200 and 'id="send"' in page.text and 'id="heat"' in page.text
    for response in (locked, page):
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "connect-src 'self'" in policy
        assert response.headers["cache-control"] == "no-store" and "set-cookie" not in response.headers
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|<link|<img|@import|src=", response.text, re.I), \
            "the page must not name anything on the network"


def _browser() -> tuple[str, str]:
    node, chromium = shutil.which("node"), shutil.which("chromium") or shutil.which("chromium-browser")
    problem = ("Node.js is not on PATH" if node is None else
               "Chromium is not installed (apt-get install chromium)" if chromium is None else
               f"playwright-core is missing: run `npm ci` in {NODE_DIR}"
               if not (NODE_DIR / "node_modules" / "playwright-core").is_dir() else None)
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test is required in CI: {problem}")
        pytest.skip(problem)
    assert node is not None and chromium is not None
    return node, chromium


def _drive(url: str, key: str | None, prompts: list[str], max_tokens: int, screenshot: Path | None = None,
           wrong_key: str | None = None) -> dict:
    node, chromium = _browser()
    config = {"chromium": chromium, "url": url, "key": key, "prompts": prompts, "maxTokens": max_tokens,
              "screenshot": str(screenshot) if screenshot else None, "wrongKey": wrong_key}
    done = subprocess.run([node, str(NODE_DIR / "ui_check.mjs"), json.dumps(config)], capture_output=True,
                          text=True, timeout=300, cwd=NODE_DIR)
    assert done.returncode == 0, f"the browser script failed:\n{done.stderr[-3000:]}"
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["outside"] == [] and seen["pageErrors"] == [] and seen["consoleErrors"] == [], seen
    return seen


def test_page_streams_tinted_tokens_and_a_heat_strip_in_chromium(keyed_url: str) -> None:
    with ReadoutClient(keyed_url, api_key=KEY) as client:
        expected = client.complete(PROMPT, max_tokens=20, temperature=0)["choices"][0]
    screenshot = artifact_dir() / "ui.png"
    seen = _drive(keyed_url, KEY, [PROMPT], 20, screenshot, wrong_key="nope")
    assert seen["firstStatus"] == 401 and seen["keyPage"] and seen["wrongKeyMessage"] == "the server refused this key"
    assert seen["info"] == "gemma · 3 concepts × layers 3, 9, 14"
    assert seen["layers"] == ["layer 3", "layer 9", "layer 14"] and seen["selectedLayer"] == "layer 14"
    (answer,) = seen["answers"]
    assert answer["state"] == "done (length)" and answer["messages"] == []
    assert "".join(answer["tokens"]) == expected["text"] and len(answer["tokens"]) == len(expected["token_ids"])
    assert answer["zsource"] == "z-scores: manifest calibration" and answer["tinted"] > 0
    assert set(answer["concepts"]) <= {"joy", "anger", "fear"}
    heat = answer["heat"]
    assert (heat["tokens"], heat["rows"], heat["layer"]) == (20, 3, "14") and heat["painted"] > 0
    assert sorted(answer["heatLabels"]) == ["anger", "fear", "joy"]
    assert seen["firstLayer"]["heat"]["layer"] == "3" and seen["firstLayer"]["heat"]["image"] != heat["image"]
    assert seen["raw"]["zsource"] == "raw values" and seen["raw"]["heat"]["image"] != seen["firstLayer"]["heat"]["image"]
    assert screenshot.stat().st_size > 10_000


def test_page_on_a_server_without_readout_says_so_and_still_streams(bare_url: str) -> None:
    seen = _drive(bare_url, None, [PROMPT], 6)
    assert seen["firstStatus"] == 200 and seen["layers"] == []
    (answer,) = seen["answers"]
    assert len(answer["tokens"]) == 6 and answer["tinted"] == 0 and answer["heat"]["rows"] == 0
    assert answer["messages"][0].startswith("error: this server serves no readout (404 on /v1/readout/manifest)")
    assert answer["state"] == "done (length)"


def test_page_survives_malformed_chunks_missing_readouts_and_a_cut_stream() -> None:
    """The fault server's scripts (tests/fault_server.py) in the page: each fault is a message, the tokens that
    came are shown, and the page takes the next prompt."""
    with serve_in_thread(fault_app(ui=True)) as url:
        seen = _drive(url, None, ["faults", "cut-page", "error"], 8)
    faults, cut, error = seen["answers"]
    assert faults["tokens"] == ["A", "B", "C", "D", "E"] and faults["state"] == "ended"
    assert faults["messages"] == ["warning: skipped chunk 2: not JSON (\"{not json\")",
                                  "warning: chunk 3: its readout is not [2][2] numbers; token shown uncoloured",
                                  'warning: token "C" came without a readout; such tokens show uncoloured',
                                  "warning: skipped chunk 6: no 'choices' list"]
    assert faults["heat"]["tokens"] == 5 and faults["heat"]["rows"] == 2
    assert cut["tokens"][-2:] == ["A", "B"] and cut["state"] == "failed"
    assert cut["messages"][-1].startswith("error: the stream was cut after 2 tokens")
    assert error["state"] == "failed" and error["messages"][-1] == (
        "error: the server ended the answer with an error: generation failed: boom")


def _recorded_answer(url: str, path: Path) -> dict:
    """One greedy answer of the real server, recorded as ``amygdala watch --record`` records it."""
    source, recorder = LiveSource(LiveOptions(url, api_key=KEY, mode="completion", max_tokens=40,
                                              temperature=0)), Recorder(path, url)
    try:
        for event in [*source.connect(), *source.turn(PROMPT)]:
            assert recorder.apply(event) is None
    finally:
        source.close()
    (row,) = read_record(path)
    return row


def _python_views(row: dict, views: list[dict]) -> list[list[dict]]:
    """What ``readout.scale`` (through the watch state) shows for each of the page's views."""
    state = WatchState(ViewOptions(buffer=10_000))
    for event in replay_events([row], "record"):
        state.apply(event)
    assert state.manifest is not None
    expected = []
    for view in views:
        state.position, state.zscore = state.manifest.layers.index(view["layer"]), view["zsource"] != "raw values"
        tops = state.tops()
        expected.append([{"values": state.values(token), "concept": None if top is None else top[0],
                          "strength": None if top is None else top[1]} for token, top in zip(state.tokens, tops)])
    return expected


def _largest_differences(page: list[dict], python: list[dict]) -> tuple[float, float]:
    assert len(page) == len(python) and all(p["concept"] == q["concept"] for p, q in zip(page, python))
    z = max(abs(a - b) for p, q in zip(page, python) for a, b in zip(p["values"], q["values"], strict=True))
    strength = max(abs(p["strength"] - q["strength"]) for p, q in zip(page, python))
    return z, strength


@pytest.mark.parametrize("calibrated", [True, False], ids=["manifest-calibration", "running-stats"])
def test_page_and_readout_scale_agree_on_one_recorded_stream(keyed_url: str, tmp_path: Path,
                                                             calibrated: bool) -> None:
    """The page repeats ``readout.scale``'s arithmetic on the constants the server renders into it: on one
    recorded answer, its z-scores and colour strengths (calibrated or running statistics; z-scores at two layers,
    raw values) equal the Python module's to 1e-6."""
    row = _recorded_answer(keyed_url, tmp_path / "answer.jsonl")
    if not calibrated:
        row = {key: value for key, value in row.items() if key != "calibration"}
    node, chromium = _browser()
    with serve_in_thread(replay_app(row, calibrated=calibrated)) as url:
        page = httpx.get(f"{url}/ui").text
        done = subprocess.run([node, str(NODE_DIR / "ui_scale.mjs"), json.dumps(
            {"chromium": chromium, "url": url, "prompt": PROMPT})], capture_output=True, text=True, timeout=300,
            cwd=NODE_DIR)
    assert done.returncode == 0, f"the browser script failed:\n{done.stderr[-3000:]}"
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["pageErrors"] == [] and json.dumps(page_constants()) in page
    views = seen["views"]
    assert [view["zsource"] for view in views] == (["z-scores: manifest calibration"] * 2 if calibrated else
                                                   [f"z-scores: running stats ({len(row['tokens'])} tokens)"] * 2
                                                   ) + ["raw values"]
    assert views[0]["layer"] != views[1]["layer"] == views[2]["layer"] and views[0]["state"] == "done (length)"
    for view, python in zip(views, _python_views(row, views), strict=True):
        assert [t["text"] for t in view["tokens"]] == row["tokens"]
        z, strength = _largest_differences(view["tokens"], python)
        print(f"{'calibrated' if calibrated else 'running stats'} layer {view['layer']} {view['zsource']}: "
              f"max |z| difference {z:.3g}, max strength difference {strength:.3g}")
        assert z <= 1e-6 and strength <= 1e-6
        assert 0 < max(t["strength"] for t in view["tokens"]) <= 1, "some token must be coloured"
