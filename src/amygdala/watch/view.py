"""The watch screen, drawn with rich: a header (source; layer, z-score state, tokens/s), the text with each token
coloured by its top concept at the selected layer, a side panel of the top-K concepts by |value| with a sparkline
each, and a footer with the latest notices and the keys (or the message being typed).

Every string from the server or the recording (concept names, prompts, token text, finish reasons, notices that
quote a server's error) goes through ``outputs.sanitise`` here, and into a rich ``Text`` (no markup parsed)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console, Group
from rich.layout import Layout
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from amygdala.outputs.sanitise import terminal_line, terminal_text
from amygdala.readout.scale import Z_FULL, concept_colour, token_style
from amygdala.watch.state import ConceptTrace, WatchState

BLOCKS = "▁▂▃▄▅▆▇█"
_NOTICE_STYLES = {"error": "bold red", "warning": "yellow", "info": "cyan"}
HEADER_LINES, FOOTER_LINES = 2, 3


@dataclass(frozen=True)
class Controls:
    """What the terminal itself adds to the screen."""

    #: The URL or the replayed file, shown in the first header line.
    source: str
    paused: bool = False
    #: Interactive mode: Enter writes a new message.
    interactive: bool = False
    #: The message being typed, if any.
    typing: str | None = None


def sparkline(values: tuple[float | None, ...], low: float, high: float) -> str:
    """One block per value, ``low`` .. ``high`` mapped onto eight heights; a blank where a readout is missing."""
    span = high - low if high > low else 1.0
    return "".join(" " if v is None else BLOCKS[round((min(max(v, low), high) - low) / span * 7)] for v in values)


def _turn_heading(prompt: str, kind: str) -> tuple[str, str]:
    if kind == "chat":
        return f"› {terminal_text(prompt)}\n", "bold"
    if kind == "completion":
        return terminal_text(prompt), "dim italic"
    return f"#{terminal_text(prompt)}: ", "bold"


def text_body(state: WatchState) -> Text:
    """The buffered tokens under their turns' prompts, each coloured by its top concept."""
    text, turn = Text(), None
    for token, top in zip(state.tokens, state.tops()):
        if token.turn != turn:
            turn = token.turn
            heading, style = _turn_heading(*state.prompts.get(turn, ("", "text")))
            text.append(("\n\n" if text else "") + heading, style=style)
        text.append(terminal_text(token.text), style=token_style(*top) if top else "")
    latest = max(state.prompts, default=None)
    if latest is not None and latest != turn and (not state.tokens or latest > state.tokens[-1].turn):
        heading, style = _turn_heading(*state.prompts[latest])
        text.append(("\n\n" if text else "") + heading, style=style)
    return text


def _last_lines(text: Text, console: Console, width: int, height: int) -> Text:
    lines = text.wrap(console, max(width, 1))
    return Text("\n").join(lines[-height:]) if height > 0 else Text()


def _status(state: WatchState, controls: Controls) -> Text:
    parts = []
    if state.manifest is not None:
        parts.append(f"layer {state.layer} ({state.position + 1}/{len(state.manifest.layers)})")
    parts.append(state.z_source())
    rate = state.rate()
    parts.append(f"{rate:.1f} tok/s" if rate is not None else "- tok/s")
    parts.append(f"{state.seen} tokens")
    if controls.paused:
        parts.append("PAUSED")
    elif state.streaming:
        parts.append("streaming")
    elif state.prompts:  # no finish reason: the answer was cut or refused (a notice says which), or never said
        parts.append(f"done ({terminal_line(state.finish_reason)})" if state.finish_reason else "ended")
    return Text(" · ".join(parts), style="bold")


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if abs(value) < 100 else f"{value:+.0f}"


def _concept_table(state: WatchState, traces: list[ConceptTrace], width: int) -> Table:
    """Name, latest value and a sparkline as wide as the panel allows (its last ``width - 21`` tokens)."""
    name_width, value_width = 12, 7
    spark = max(width - name_width - value_width - 2, 4)
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True, width=name_width, overflow="ellipsis")
    table.add_column(justify="right", no_wrap=True, width=value_width)
    table.add_column(no_wrap=True)
    shown = [v for trace in traces for v in trace.values[-spark:] if v is not None]
    zscored = state.zscore or bool(state.manifest and state.manifest.zscored)
    low, high = (-Z_FULL, Z_FULL) if zscored else (min(shown, default=0.0), max(shown, default=1.0))
    for trace in traces:
        latest = next((v for v in reversed(trace.values) if v is not None), None)
        colour = concept_colour(trace.concept)
        table.add_row(Text(terminal_line(trace.name), style=colour), _number(latest),
                      Text(sparkline(trace.values[-spark:], low, high), style=colour))
    return table


def _side_panel(state: WatchState, width: int) -> Panel:
    if state.manifest is None:
        return Panel(Text("no readout from this server", style="dim"), title="concepts")
    by = "|z|" if state.zscore or state.manifest.zscored else "|raw|"
    title = f"top {min(state.options.top_k, len(state.manifest.concepts))} of {len(state.manifest.concepts)} by {by}"
    return Panel(_concept_table(state, state.ranked(), width - 4), title=title,
                 subtitle=f"mean over last {state.options.window} tokens", subtitle_align="right")


def _footer(state: WatchState, controls: Controls) -> Group:
    notices = [Text(("! " if n.level != "info" else "") + terminal_line(n.text), style=_NOTICE_STYLES[n.level],
                    no_wrap=True, overflow="ellipsis") for n in state.notices[-(FOOTER_LINES - 1):]]
    notices = [Text("")] * (FOOTER_LINES - 1 - len(notices)) + notices
    if controls.typing is not None:
        keys = Text(f"you> {terminal_text(controls.typing)}▏", style="bold")
    else:
        keys = Text("[ ] layer   z z-score/raw   p pause   q quit" + ("   enter: write a message"
                                                                      if controls.interactive else ""), style="dim")
    return Group(*notices, keys)


def render(state: WatchState, controls: Controls, console: Console, width: int, height: int) -> Layout:
    """The whole screen for a ``width`` x ``height`` terminal."""
    side_width = min(max(40, width * 2 // 5), max(width - 20, 10))
    body_height = max(height - HEADER_LINES - FOOTER_LINES, 3)
    header = Group(Text.assemble(("amygdala watch ", "bold"), (terminal_line(controls.source), "dim"),
                                 no_wrap=True, overflow="ellipsis"), _status(state, controls))
    text = _last_lines(text_body(state), console, width - side_width - 4, body_height - 2)
    buffered = f"last {state.options.buffer} tokens" if state.seen > len(state.tokens) else "text"
    layout = Layout()
    layout.split_column(Layout(header, size=HEADER_LINES), Layout(name="body", size=body_height),
                        Layout(_footer(state, controls), size=FOOTER_LINES))
    layout["body"].split_row(Layout(Panel(text, title=buffered)),
                             Layout(_side_panel(state, side_width), size=side_width))
    return layout
