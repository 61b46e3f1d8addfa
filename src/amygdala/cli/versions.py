"""At the CLI's start: are the packages amygdala declares (its ``Requires-Dist``) installed in versions that fit?

Installing an optional peer the plain way (``pip install steering-vectors``) pulls transformers back to 4.57 in
the same environment; amygdala would then run on and fail much later with "Tokenizer class TokenizersBackend does
not exist". This check reads only package metadata (``importlib.metadata``, no torch import), so it costs a few
milliseconds, and says in one line what does not fit and the pip command that fixes it.
``AMYGDALA_SKIP_VERSION_CHECK=1`` skips it (e.g. ``amygdala watch``, which needs no model, in a vLLM venv that
pins an older transformers).
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from amygdala.errors import AmygdalaError, listed

DISTRIBUTION = "amygdala"
SKIP_VARIABLE = "AMYGDALA_SKIP_VERSION_CHECK"


class DependencyVersionError(AmygdalaError):
    """An installed dependency does not fit amygdala's declared requirement (or is missing)."""


@dataclass(frozen=True)
class VersionProblem:
    """One declared requirement the environment does not meet."""

    package: str
    """The requirement's distribution name, as declared (e.g. ``transformers``)."""
    installed: str | None
    """The installed version; None when the package is not installed."""
    required: str
    """The declared specifier, e.g. ``>=5.23.0``."""

    @property
    def pip_argument(self) -> str:
        return f"'{self.package}{self.required}'"

    def describe(self) -> str:
        found = f"{self.package} {self.installed} is installed" if self.installed else f"{self.package} is missing"
        return f"{found}, amygdala needs {self.package}{self.required}"


def version_problems(requirements: Iterable[str], installed: Callable[[str], str | None]) -> list[VersionProblem]:
    """The requirements (PEP 508 strings, as in ``Requires-Dist``) that ``installed(name) -> version or None`` does
    not satisfy. Requirements of extras (``extra == "test"``) and of other platforms are left out; pre-releases
    count as satisfying (a dev build of transformers 5.24 is fine); an unparsable version is not judged."""
    problems = []
    for line in requirements:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue  # metadata pip accepted; not ours to police
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        version = installed(requirement.name)
        try:
            fits = version is not None and requirement.specifier.contains(Version(version), prereleases=True)
        except InvalidVersion:
            continue
        if not fits:
            problems.append(VersionProblem(requirement.name, version, str(requirement.specifier)))
    return problems


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def declared_requirements(distribution: str = DISTRIBUTION) -> list[str]:
    """The distribution's ``Requires-Dist`` lines; none when it is not installed (a bare source tree on the path)."""
    try:
        return importlib.metadata.requires(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return []


def check_installed_versions(environ: Mapping[str, str] = os.environ, distribution: str = DISTRIBUTION) -> None:
    """Raise one ``DependencyVersionError`` naming every declared requirement that is not met, and the fix."""
    if environ.get(SKIP_VARIABLE, "") not in ("", "0"):
        return
    problems = version_problems(declared_requirements(distribution), installed_version)
    if problems:
        fix = "pip install " + " ".join(problem.pip_argument for problem in problems)
        raise DependencyVersionError(f"{listed([problem.describe() for problem in problems])}: {fix} "
                                     f"(or set {SKIP_VARIABLE}=1 to run anyway)")
