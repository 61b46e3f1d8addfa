"""One line for the problems collected in one input: the first few, then how many more (every validator collects
all problems of a file before it raises once, and a message must stay one readable line)."""

from __future__ import annotations

from collections.abc import Sequence

#: Problems quoted before "and N more".
MAX_LISTED = 5


def listed(problems: Sequence[str], *, separator: str = "; ") -> str:
    """``a; b; c`` for at most MAX_LISTED problems, then `` and N more``."""
    more = f" and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return separator.join(problems[:MAX_LISTED]) + more
