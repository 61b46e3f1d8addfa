"""amygdala's exception hierarchy: every error a stage raises for a caller's mistake derives from ``AmygdalaError``.

``AmygdalaError`` is a ``ValueError``, so code written against the earlier ``except ValueError`` keeps working.
The CLI's error table (``amygdala.cli.errors``) turns any ``AmygdalaError`` into one line and exit code 2.
"""

from __future__ import annotations

from collections.abc import Sequence


class AmygdalaError(ValueError):
    """A caller's mistake (bad input, options that cannot work, files that do not fit): the message names the
    input, what is wrong and, where there is one, the fix."""

# One line for the problems collected in one input: the first few, then how many more (every validator
# collects all problems of a file before it raises once, and a message must stay one readable line).

#: Problems quoted before "and N more".
MAX_LISTED = 5


def listed(problems: Sequence[str], *, separator: str = "; ") -> str:
    """``a; b; c`` for at most MAX_LISTED problems, then `` and N more``."""
    more = f" and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return separator.join(problems[:MAX_LISTED]) + more
