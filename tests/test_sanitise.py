"""The one sanitiser (``outputs.sanitise``): hostile names and text from a manifest or a recording reach the
watch view, the offline terminal view, their pages and the CLI's error line, and nothing escapes: no control
character, escape sequence or bidi override gets to the terminal, and no markup gets into a page."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import torch
from rich.console import Console

from amygdala.artifact import ReadoutArtifact, load_artifact, save_artifact
from amygdala.cli import main
from amygdala.outputs.sanitise import REPLACEMENT, html_text, terminal_line, terminal_text
from amygdala.readout.projection import TextReadout
from amygdala.readout.view import InputText, html_page, terminal_view
from amygdala.watch import WatchOptions, run_watch
from amygdala.watch.state import ViewOptions

#: Each would act on a terminal or a page if it got there: OSC (window title) ended by BEL, CSI (clear screen)
#: in its 7-bit and one-byte C1 forms, a DCS, a bidi override, a carriage return over the line, and markup.
HOSTILE_NAMES = ("\x1b]0;pwned\x07joy", "\x9b2Jfear", "\x1bP+q\x1b\\calm", "\u202eevil\u202c", "ok\rbad",
                 "<script>alert(1)</script>", "[bold red]markup[/]")
HOSTILE_TOKENS = ("\x1b[2J", "hi\x1b[31m", "\u2067x\u2069", "\x85next", " <img src=x onerror=alert(1)>", "\n")
_RICH_STYLE = re.compile(r"\x1b\[[0-9;]*m")  # the colour codes rich itself writes around styled text
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def escaped(screen: str) -> list[str]:
    """What reached the terminal besides rich's own colour codes and newlines: control or bidi characters."""
    return _UNSAFE.findall(_RICH_STYLE.sub("", screen).replace("\n", ""))


def hostile_artifact(tmp_path: Path) -> ReadoutArtifact:
    """An artifact whose manifest names the hostile concepts, written and read back as any other."""
    n = len(HOSTILE_NAMES)
    artifact = ReadoutArtifact(HOSTILE_NAMES, (2,), {2: torch.eye(n, 8)}, 8)
    save_artifact(artifact, tmp_path / "readout.safetensors")
    return load_artifact(tmp_path / "readout.safetensors")


def test_terminal_text_keeps_text_and_replaces_every_control() -> None:
    assert terminal_text("héllo\tworld\n🙂\u200d🙂") == "héllo\tworld\n🙂\u200d🙂"  # ZWJ emoji stay whole
    assert terminal_text("a\x1b[2Jb\x9bc\u202ed\x00\x7f") == f"a{REPLACEMENT}[2Jb{REPLACEMENT}c{REPLACEMENT}d" \
        + REPLACEMENT * 2
    assert terminal_line("two\nlines\tand\u2028more") == f"two{REPLACEMENT}lines{REPLACEMENT}and{REPLACEMENT}more"
    assert terminal_line(7) == "7" and html_text('<a href="x">\u202e') == f"&lt;a href=&quot;x&quot;&gt;{REPLACEMENT}"


def test_hostile_names_in_a_recording_do_not_escape_the_watch_view(tmp_path: Path) -> None:
    n = len(HOSTILE_NAMES)
    row = {"id": 1, "layers": [2], "concepts": list(HOSTILE_NAMES), "zscore": True,
           "tokens": list(HOSTILE_TOKENS), "token_ids": list(range(len(HOSTILE_TOKENS))),
           "readout": [[[float(3 - (t + c) % n) for c in range(n)]] for t in range(len(HOSTILE_TOKENS))],
           "prompt": "\x1b]52;c;cGF5bG9hZA==\x07tell me", "kind": "chat", "finish_reason": "\x1b[1;1Hstop\u202e"}
    record = tmp_path / "hostile.jsonl"
    record.write_text(json.dumps(row) + "\n", encoding="utf-8")
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system="truecolor", width=140, height=40)
    outcome = run_watch(WatchOptions(replay=record, once=True, view=ViewOptions(top_k=n)), console=console)
    screen = out.getvalue()
    assert outcome.tokens == len(HOSTILE_TOKENS) and escaped(screen) == []
    assert "pwned" in screen and "<script>ale" in screen and "[bold red]m" in screen  # shown, as text, cut at 12
    assert "tell me" in screen and "stop" in screen and REPLACEMENT in screen


def test_hostile_names_in_a_manifest_do_not_escape_the_offline_views(tmp_path: Path) -> None:
    artifact = hostile_artifact(tmp_path)
    n = len(HOSTILE_NAMES)
    values = torch.tensor([[[float((t + c) % n == 0) * 5 for c in range(n)]] for t in range(len(HOSTILE_TOKENS))])
    readout = TextReadout(tuple(range(len(HOSTILE_TOKENS))), HOSTILE_TOKENS, values)
    out = io.StringIO()
    Console(file=out, force_terminal=True, color_system="truecolor", width=200).print(
        terminal_view(InputText("\x1b[2Jid", "text"), readout, artifact))
    assert escaped(out.getvalue()) == [] and "pwned" in out.getvalue()
    page = html_page([(InputText("<b>id</b>", "text"), readout)], artifact)
    assert "<script>" not in page and "<img" not in page and "<b>id" not in page and _UNSAFE.findall(page) == []
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_hostile_path_in_a_cli_error_line_does_not_escape(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "rec\x1b]0;pwned\x07\u202e.jsonl"
    assert main(["watch", "--replay", str(missing), "--once"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("amygdala: error: --replay ") and err.count("\n") == 1 and escaped(err) == []
    assert "pwned" in err


def test_the_live_page_sets_text_never_markup() -> None:
    """``/ui`` shows concept names, the model id and token text from the server: as text (textContent, append,
    title), never parsed as HTML."""
    import amygdala.serve

    page = (Path(amygdala.serve.__file__).parent / "ui.html").read_text(encoding="utf-8")
    assert re.findall(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\.html\(", page) == []
    assert "textContent" in page
