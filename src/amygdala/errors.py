"""amygdala's exception hierarchy: every error a stage raises for a caller's mistake derives from ``AmygdalaError``.

``AmygdalaError`` is a ``ValueError``, so code written against the earlier ``except ValueError`` keeps working.
The CLI's error table (``amygdala.cli.errors``) turns any ``AmygdalaError`` into one line and exit code 2.
"""

from __future__ import annotations


class AmygdalaError(ValueError):
    """A caller's mistake (bad input, options that cannot work, files that do not fit): the message names the
    input, what is wrong and, where there is one, the fix."""
