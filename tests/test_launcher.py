"""The launcher's environment (``forward.launcher``): one torch-free reader of RANK, WORLD_SIZE and LOCAL_RANK,
used by the data-parallel commands, the CLI's error line and its progress bars."""

from __future__ import annotations

import subprocess
import sys

import pytest

from amygdala.cli.errors import rank_prefix
from amygdala.forward.launcher import SINGLE, DistributedError, World, world_from_env, world_or_single


def test_world_from_env_reads_empty_variables_as_unset() -> None:
    assert world_from_env({"RANK": "", "WORLD_SIZE": " ", "LOCAL_RANK": ""}) == SINGLE
    assert world_from_env({"RANK": "1", "WORLD_SIZE": "2"}) == World(rank=1, world_size=2, local_rank=0)


@pytest.mark.parametrize("environ", [{"RANK": "x"}, {"LOCAL_RANK": "-1"}, {"RANK": "1"}])
def test_world_from_env_names_the_variables_and_the_fix(environ: dict[str, str]) -> None:
    with pytest.raises(DistributedError, match=r"launcher variables .*RANK.*: launch with torchrun"):
        world_from_env(environ)


def test_world_or_single_never_fails_what_only_decorates_output() -> None:
    assert world_or_single({"RANK": "x", "WORLD_SIZE": "2"}) == SINGLE
    assert world_or_single({"RANK": "1", "WORLD_SIZE": "2"}).describe() == "rank 1 of 2"


def test_rank_prefix_and_the_commands_read_the_same_world() -> None:
    """Regression: the error line read RANK/WORLD_SIZE itself, so ``RANK=01`` named no rank there while the
    run itself was rank 1."""
    environ = {"RANK": "01", "WORLD_SIZE": "2"}
    assert world_from_env(environ).rank == 1 and rank_prefix(environ) == "[rank 1 of 2] "
    assert rank_prefix({"RANK": "0", "WORLD_SIZE": "1"}) == "" and rank_prefix({"RANK": "two"}) == ""


def test_the_cli_start_and_the_launcher_import_no_torch() -> None:
    code = ("import sys, amygdala.cli, amygdala.forward.launcher\n"
            "from amygdala.cli.options import is_main_rank\n"
            "assert is_main_rank()\n"
            "heavy = {'torch', 'transformers', 'fastapi'} & set(sys.modules)\n"
            "assert not heavy, sorted(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
