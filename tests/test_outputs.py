"""Publishing outputs on a real file system: a set of files changes as one set (also when a rename is refused
mid-way or the process is killed between renames), concurrent runs into one output never both succeed, and a
rewritten folder keeps its mode and owner.

Immutable files come from ``chattr +i`` and read-only folders from a read-only bind mount; where the file system
or the privileges do not allow them, those tests skip and say why. Concurrency is tested with real processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from amygdala.artifact import ArtifactError, Calibration, ReadoutArtifact, load_artifact, save_artifact
from amygdala.outputs.atomic import (
    OutputBusyError,
    OutputError,
    atomic_write_bytes,
    check_output_path,
    output_lock,
)
from amygdala.outputs.publish import publish_files

CONCEPTS, LAYERS, HIDDEN = ("calm", "fear", "joy"), (1, 3), 8
ERROR = "amygdala: error: "


def artifact(seed: int) -> ReadoutArtifact:
    generator = torch.Generator().manual_seed(seed)
    vectors = {layer: torch.nn.functional.normalize(torch.randn(3, HIDDEN, generator=generator), dim=1)
               for layer in LAYERS}
    calibration = Calibration({layer: torch.zeros(3) for layer in LAYERS}, {layer: torch.ones(3) for layer in LAYERS})
    return ReadoutArtifact(CONCEPTS, LAYERS, vectors, HIDDEN, calibration=calibration, extra={"seed": seed})


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones included) -> sha256 of its bytes."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


@contextmanager
def chattr(flag: str, *paths: Path) -> Iterator[None]:
    """``chattr +flag`` on ``paths`` for the block; skips where the file system or the privileges refuse it."""
    done = subprocess.run(["chattr", f"+{flag}", *map(str, paths)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +{flag} is not available here ({done.stderr.strip() or done.returncode})")
    try:
        yield
    finally:
        subprocess.run(["chattr", f"-{flag}", *map(str, paths)], check=True)


def assert_same_artifact(path: Path, expected: ReadoutArtifact, manifest: Path | None = None) -> None:
    loaded = load_artifact(path, manifest)
    assert loaded.extra["seed"] == expected.extra["seed"]
    for layer in LAYERS:
        torch.testing.assert_close(loaded.vectors[layer], expected.vectors[layer])


def test_atomic_write_bytes_creates_folders_and_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.json"
    atomic_write_bytes(target, b"first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second" and sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


def test_publish_files_writes_none_when_one_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "kept.txt").write_bytes(b"earlier")
    (tmp_path / "blocker").write_bytes(b"a file where a folder must be")
    with pytest.raises(OutputError, match=r"cannot write .*blocker/x.txt: .*blocker is a file, not a folder"):
        publish_files({tmp_path / "kept.txt": b"new", tmp_path / "blocker" / "x.txt": b"x"})
    assert (tmp_path / "kept.txt").read_bytes() == b"earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "kept.txt"], "no temp file is left behind"


def test_check_output_path_refuses_a_path_under_a_file_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    check_output_path(tmp_path / "new" / "out.bin")
    with pytest.raises(OutputError, match="is a file, not a folder") as caught:
        check_output_path(tmp_path / "file" / "out.bin")
    assert isinstance(caught.value, OSError)


# ---- a failed publish leaves the complete old set ----

def test_a_folder_at_the_manifest_path_leaves_the_old_artifact_whole(tmp_path: Path) -> None:
    """Regression: the vectors were renamed into place before the manifest; when the manifest could not be
    published (a folder at its path), the old artifact was left as new vectors beside the old manifest."""
    vectors, manifest = tmp_path / "readout.safetensors", tmp_path / "manifest.json"
    save_artifact(artifact(1), vectors, manifest_path=manifest)
    before = snapshot(tmp_path)
    manifest.unlink()
    manifest.mkdir()
    with pytest.raises(OutputError, match=f"cannot write {manifest}: it is a directory"):
        save_artifact(artifact(2), vectors, manifest_path=manifest)
    manifest.rmdir()
    assert set(snapshot(tmp_path)) == {"readout.safetensors"}
    assert snapshot(tmp_path)["readout.safetensors"] == before["readout.safetensors"]


@pytest.mark.parametrize("layout", ["layers", "eLH"])
def test_an_old_manifest_that_cannot_be_replaced_leaves_the_old_artifact_whole(tmp_path: Path, layout: str) -> None:
    """Regression: with an immutable readout.json (chattr +i), a train replaced the vectors (and the eLH file),
    then failed on the manifest: loading then reported a sha256 mismatch. Now nothing changes."""
    vectors = tmp_path / "readout.safetensors"
    save_artifact(artifact(1), vectors, write_elh=layout == "eLH")
    before = snapshot(tmp_path)
    with chattr("i", tmp_path / "readout.json"), pytest.raises(OutputError, match=r"readout.json: the existing file "
                                                                                 r"is immutable"):
        save_artifact(artifact(2), vectors, write_elh=layout == "eLH")
    assert snapshot(tmp_path) == before
    assert_same_artifact(vectors, artifact(1))


def test_a_rename_refused_mid_publish_puts_every_earlier_file_back(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel refuses the manifest's rename after the vectors' rename went through (its folder turns
    immutable at that very moment): the vectors are put back from their backup, so the old pair stands."""
    vectors, folder = tmp_path / "readout.safetensors", tmp_path / "manifests"
    manifest = folder / "readout.json"
    save_artifact(artifact(1), vectors, manifest_path=manifest)
    before = snapshot(tmp_path)
    real_replace, frozen = os.replace, []

    def replace_then_freeze(source: str | Path, target: str | Path) -> None:
        real_replace(source, target)
        if Path(target) == vectors and not frozen:
            done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
            frozen.append(done.returncode == 0)

    monkeypatch.setattr(os, "replace", replace_then_freeze)
    try:
        with pytest.raises(OutputError) as error:
            save_artifact(artifact(2), vectors, manifest_path=manifest)
    finally:
        monkeypatch.undo()
        if frozen and frozen[0]:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    if not frozen[0]:
        pytest.skip("chattr +i is not available here")
    assert str(manifest) in str(error.value) and "the earlier files are unchanged" in str(error.value)
    assert "[Errno" not in str(error.value) and ".tmp" not in str(error.value)
    assert_same_artifact(vectors, artifact(1), manifest)
    visible = {name: digest for name, digest in snapshot(tmp_path).items() if not Path(name).name.startswith(".")}
    assert visible == before
    save_artifact(artifact(3), vectors, manifest_path=manifest)  # the next publish clears the leftovers
    assert sorted(snapshot(tmp_path)) == ["manifests/readout.json", "readout.safetensors"]


_KILL_BETWEEN_RENAMES = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_outputs import artifact
from amygdala.artifact import save_artifact
real_replace = os.replace

def replace_then_die(source, target):
    real_replace(source, target)
    if Path(target).name == "readout.safetensors":
        os.kill(os.getpid(), signal.SIGKILL)  # the worst moment: new vectors, old manifest

os.replace = replace_then_die
save_artifact(artifact(2), Path({vectors!r}), write_elh=True)
"""


def test_a_save_killed_between_its_renames_is_rolled_back_on_the_next_load(tmp_path: Path) -> None:
    """Regression: a crash between the vectors' and the manifest's rename left a pair that no longer loads. The
    journal left behind lets the next load put the complete old artifact back."""
    vectors = tmp_path / "readout.safetensors"
    save_artifact(artifact(1), vectors, write_elh=True)
    before = snapshot(tmp_path)
    script = _KILL_BETWEEN_RENAMES.format(tests=str(Path(__file__).parent), vectors=str(vectors))
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert snapshot(tmp_path)["readout.safetensors"] != before["readout.safetensors"]  # it did die mid-way
    assert_same_artifact(vectors, artifact(1))
    assert snapshot(tmp_path) == before


def test_publish_removes_files_as_part_of_the_set_and_restores_them_on_failure(tmp_path: Path) -> None:
    keep, stale, blocked = tmp_path / "keep.txt", tmp_path / "stale.txt", tmp_path / "blocked.txt"
    for path in (keep, stale, blocked):
        path.write_text(path.name)
    before = snapshot(tmp_path)
    with chattr("i", blocked), pytest.raises(OutputError, match="blocked.txt: the existing file is immutable"):
        publish_files({keep: b"new", stale: None, blocked: b"new"})
    assert snapshot(tmp_path) == before
    publish_files({keep: b"new", stale: None})
    assert sorted(snapshot(tmp_path)) == ["blocked.txt", "keep.txt"] and keep.read_bytes() == b"new"


def test_a_replaced_file_keeps_its_mode_and_a_new_one_follows_the_umask(tmp_path: Path) -> None:
    """Regression: every rewritten output became mode 0600 (the temp file's), whatever it was before."""
    shared = tmp_path / "shared.jsonl"
    shared.write_text("old")
    shared.chmod(0o664)
    atomic_write_bytes(shared, b"new")
    save_artifact(artifact(1), tmp_path / "readout.safetensors")
    umask = os.umask(0o022)
    os.umask(umask)
    assert (shared.stat().st_mode & 0o777, shared.read_bytes()) == (0o664, b"new")
    assert (tmp_path / "readout.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_two_spellings_of_one_file_are_refused_before_writing(tmp_path: Path) -> None:
    vectors = tmp_path / "readout.safetensors"
    with pytest.raises(OutputError, match="name the same file twice"):
        save_artifact(artifact(1), vectors, manifest_path=tmp_path / "." / "readout.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_output_lock_refuses_a_second_holder_and_leaves_no_lock_file(tmp_path: Path) -> None:
    output = tmp_path / "readout.safetensors"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from amygdala.outputs.atomic import output_lock\n"
        f"with output_lock(Path({str(output)!r})):\n"
        "    print('held', flush=True); sys.stdin.readline()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        busy = rf"another amygdala run \(pid {holder.pid}\) is writing {output}"
        with pytest.raises(OutputBusyError, match=busy), output_lock(output):
            pass
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=30)
    with output_lock(output), output_lock(output):  # free again, and re-entrant in one process
        pass
    assert list(tmp_path.iterdir()) == []


# ---- examples dirs (extract) ----

def extract_argv(output: Path, seed: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "amygdala.cli", "extract", "--output-dir", str(output), "--emotions", "calm,warmth",
            "--max-examples-per-emotion", "12", "--seed", str(seed), *extra]


def run_extract(output: Path, seed: int, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(extract_argv(output, seed, *extra), capture_output=True, text=True, timeout=180)


def recorded_seed(output: Path) -> int:
    return int(json.loads((output / "extract.json").read_text())["parameters"]["seed"])


_PAUSE_WHILE_STAGING = """
import os, sys, time
from pathlib import Path
real_mkdir = os.mkdir

def mkdir_then_pause(path, *args, **kwargs):
    real_mkdir(path, *args, **kwargs)
    if ".staging-" in os.fspath(path):  # in the middle of writing the new dir: let the other run go first
        Path({paused!r}).touch()
        while not Path({resume!r}).exists():
            time.sleep(0.01)

os.mkdir = mkdir_then_pause
from amygdala.cli import main
sys.exit(main({argv!r}))
"""


def test_concurrent_extracts_into_one_new_dir_never_both_succeed(tmp_path: Path) -> None:
    """Regression: two extracts into the same new dir both succeeded, the second silently replacing the first's
    files without --force (a lost update). Run A is paused while it writes its staging dir, run B goes meanwhile:
    now B is refused in one line naming the run that holds the output, and A's output stands."""
    output, paused, resume = tmp_path / "examples", tmp_path / "paused", tmp_path / "resume"
    argv = extract_argv(output, 1)[3:]
    first = subprocess.Popen([sys.executable, "-c", _PAUSE_WHILE_STAGING.format(
        paused=str(paused), resume=str(resume), argv=argv)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not paused.exists():
            assert first.poll() is None, first.communicate()
            time.sleep(0.01)
        second = run_extract(output, 2)
    finally:
        resume.touch()
    assert first.wait(timeout=120) == 0, first.communicate()
    assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
    assert second.stderr.startswith(ERROR) and f"(pid {first.pid}) is writing {output}" in second.stderr
    assert recorded_seed(output) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["examples", "paused", "resume"]


def test_extract_force_is_all_or_nothing_when_one_file_cannot_be_replaced(tmp_path: Path) -> None:
    """Regression: ``extract --force`` replaced some files, then failed on one it could not replace, leaving a
    folder mixing the new run's files with the old run's."""
    output = tmp_path / "examples"
    assert run_extract(output, 1).returncode == 0
    before = snapshot(tmp_path)
    with chattr("i", output / "warmth.jsonl"):
        done = run_extract(output, 2, "--force")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"cannot write {output / 'warmth.jsonl'}: the existing file is immutable" in done.stderr
    assert snapshot(tmp_path) == before
    assert run_extract(output, 2, "--force").returncode == 0 and recorded_seed(output) == 2


def test_extract_into_an_existing_empty_dir_keeps_its_mode_and_owner(tmp_path: Path) -> None:
    """Regression: the empty dir was replaced by a new one (0755, the current user): a private dir became
    world-readable."""
    output = tmp_path / "private"
    output.mkdir(mode=0o700)
    output.chmod(0o700)
    owner = (os.getuid(), os.getgid())
    if os.geteuid() == 0:
        owner = (4321, 4321)
        os.chown(output, *owner)
    assert run_extract(output, 1).returncode == 0
    status = output.stat()
    assert (status.st_mode & 0o7777, (status.st_uid, status.st_gid)) == (0o700, owner)
    assert sorted(p.name for p in output.iterdir()) == ["calm.jsonl", "extract.json", "warmth.jsonl"]


def test_a_symlink_to_a_dir_works_as_the_output_dir(tmp_path: Path) -> None:
    """Regression: a symlink to an (empty or existing) dir as --output-dir failed with a raw [Errno 20]."""
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    done = run_extract(link, 1)
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and recorded_seed(real) == 1
    done = run_extract(link, 2, "--force")
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and recorded_seed(real) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_a_killed_extract_leaves_no_staging_dir_behind_the_next_run(tmp_path: Path) -> None:
    """A staging dir left by a killed extract (SIGKILL before its rename) is removed by the next run."""
    output = tmp_path / "examples"
    leftover = tmp_path / ".examples.staging-0123456789ab"
    leftover.mkdir()
    (leftover / "calm.jsonl").write_text("half")
    assert run_extract(output, 1).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["examples"]


def test_concurrent_trains_into_one_output_never_both_succeed(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Regression: two trains into the same output both succeeded, the last one silently replacing the first's
    artifact. Now the second is refused while the first runs, naming the holder."""
    examples = tmp_path / "examples"
    assert run_extract(examples, 1).returncode == 0
    output = tmp_path / "artifact" / "readout.safetensors"
    argv = [sys.executable, "-m", "amygdala.cli", "train", "--training-data-dir", str(examples), "--model",
            str(tiny_model_dir), "--target-layers", "1,3", "--output", str(output), "--no-progress"]
    runs = [subprocess.Popen(argv + ["--method", method], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for method in ("diff_of_means", "mean_centered")]
    results = [(run.wait(timeout=300), run.communicate()[1]) for run in runs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert refused.startswith(ERROR) and f"is writing {output}" in refused and refused.count("\n") == 1
    winner = ("diff_of_means", "mean_centered")[[code for code, _ in results].index(0)]
    record = load_artifact(output).record
    assert record is not None and record.method == winner
    assert sorted(p.name for p in output.parent.iterdir()) == ["readout.json", "readout.safetensors"]


def test_load_refuses_a_mixed_pair_without_a_journal(tmp_path: Path) -> None:
    """Without a journal (files copied by hand from two runs) nothing is guessed: the sha256 check refuses."""
    save_artifact(artifact(1), tmp_path / "a" / "readout.safetensors")
    save_artifact(artifact(2), tmp_path / "b" / "readout.safetensors")
    (tmp_path / "a" / "readout.safetensors").write_bytes((tmp_path / "b" / "readout.safetensors").read_bytes())
    with pytest.raises(ArtifactError, match="does not match manifest"):
        load_artifact(tmp_path / "a" / "readout.safetensors")
