"""The one sanitiser for untrusted text on its way to a terminal or a page: concept names, model ids, layer
labels, prompts and token text, which come from a manifest, a recording, a memory graph or a remote server.

On a terminal, a control character can move the cursor, rewrite the screen, set the window title or, behind
ESC / CSI / OSC / DCS, drive the terminal itself; a bidi override makes text read in another order than it is.
So each of them becomes U+FFFD (visible, never acted on):

- C0 controls (ESC included) and DEL, except newline and tab where a text may span lines (``terminal_text``);
- C1 controls U+0080-U+009F (the one-byte CSI U+009B among them);
- bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) and the implicit marks (U+200E,
  U+200F, U+061C), the line and paragraph separators U+2028/U+2029, and lone surrogates.

``terminal_line`` is for names and one-line messages (a newline there is forged output); ``terminal_text`` keeps
newlines and tabs for prompts and generated text. A rich ``Text`` built from the result shows it literally: rich
parses no markup in a ``Text``. On a page the result is escaped (``html_text``) or set as textContent, never as
markup. Stdlib only: the watch client and the vLLM plugin run without torch.
"""

from __future__ import annotations

import html
import re

REPLACEMENT = "\ufffd"
_UNSAFE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_IN_TEXT = re.compile(f"[{_UNSAFE}]")
_IN_LINE = re.compile(f"[\t\n{_UNSAFE}]")


def terminal_text(text: str) -> str:
    """``text`` with every control character and bidi control but newline and tab replaced by U+FFFD."""
    return _IN_TEXT.sub(REPLACEMENT, text)


def terminal_line(text: object) -> str:
    """``str(text)`` on one line: every control character, newline and tab included, replaced by U+FFFD."""
    return _IN_LINE.sub(REPLACEMENT, str(text))


def html_text(text: object) -> str:
    """``str(text)`` for a page: ``terminal_text``'s replacements, then HTML-escaped (quotes too, so it also fits
    inside an attribute)."""
    return html.escape(terminal_text(str(text)), quote=True)


__all__ = ["REPLACEMENT", "html_text", "terminal_line", "terminal_text"]
