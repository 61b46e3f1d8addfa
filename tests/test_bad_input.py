"""Bad input across every command, table-driven through ``amygdala.cli.main`` with real arguments.

Each case must give: a non-zero exit; exactly one line on stderr, ``amygdala: error: ...``, naming the input and
what is wrong; no traceback (``--debug`` alone shows one); and no partial output: every file of the workspace,
earlier outputs included, is byte-identical afterwards and no file (temp or staging) is added.

The full-disk and read-only cases mount a small tmpfs (root only); where mounting is not permitted they skip and
say so, and ``test_full_disk_simulated_by_a_file_size_limit`` still runs (RLIMIT_FSIZE, no privileges needed).

Regressions these cases found (fixed in the library): a full disk during ``train --format eLH`` left new vectors
beside the old manifest; one flipped bit in the vectors loaded silently; manifest fields of the wrong type gave a
traceback; deeply nested JSON and lone surrogate escapes gave tracebacks or nameless messages; unwritable outputs
said ``[Errno 17] File exists`` or ``[Errno 28]`` without the path; non-UTF-8 or non-numeric example files and
readout inputs gave messages without the file; an empty ``<emotion>.jsonl`` was silently dropped; a huge text ran
a forward far past the model's context; a busy ``serve`` port ended in uvicorn's multi-line log after the model
loaded; transformers' "Loading weights" bar added lines to stderr when it was not a terminal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from amygdala.artifact import load_artifact, save_artifact
from amygdala.cli import main
from amygdala.forward.models import ModelLoadError

from mcp_servers import free_port

ERROR = "amygdala: error: "


@dataclass
class Workspace:
    """A temp dir holding copies of earlier outputs (``examples/``, ``artifact/``, ``texts.txt``,
    ``readout.jsonl``), the tiny model's folder, and cleanups (mounts) to run after the case."""

    root: Path
    model: str
    cleanup: ExitStack = field(default_factory=ExitStack)

    @property
    def vectors(self) -> Path:
        return self.root / "artifact" / "readout.safetensors"

    def write(self, name: str, data: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def copy_artifact(self, name: str) -> Path:
        """A copy of the earlier artifact (vectors + manifest) in ``name/``; returns its vectors path."""
        shutil.copytree(self.root / "artifact", self.root / name)
        return self.root / name / "readout.safetensors"

    def edit_manifest(self, vectors: Path, **changes: object) -> None:
        manifest_path = vectors.with_suffix(".json")
        manifest = json.loads(manifest_path.read_text())
        manifest.update(changes)
        manifest_path.write_text(json.dumps(manifest))


Case = Callable[[Workspace], tuple[list[str], tuple[str, ...]]]


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones included) -> sha256 of its bytes."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def _mount_tmpfs(ws: Workspace, name: str, size_kb: int) -> Path:
    """A fresh tmpfs of ``size_kb`` at ``ws.root/name``, unmounted after the case; skips where not permitted."""
    target = ws.root / name
    target.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(target)],
                              capture_output=True, text=True, timeout=30)
        problem = done.stderr.strip() or f"exit {done.returncode}" if done.returncode != 0 else None
    except OSError as exc:
        problem = str(exc)
    if problem is not None:
        pytest.skip(f"cannot mount a tmpfs here ({problem}); test_full_disk_simulated_by_a_file_size_limit "
                    f"covers a failing write instead")
    ws.cleanup.callback(subprocess.run, ["umount", "-l", str(target)], check=False)
    return target


def _fill(folder: Path) -> None:
    """Write a filler file until the file system is full."""
    with (folder / "filler").open("wb", buffering=0) as filler:
        while True:
            try:
                filler.write(b"\0" * 4096)
            except OSError:
                return


def _dying_mcp_server(ws: Workspace) -> str:
    """A stdio MCP memory server (official SDK) that exits in the middle of its read_graph call."""
    script = ws.write("dying_server.py", (
        "import os, sys\n"
        "from mcp.server.mcpserver import MCPServer\n"
        "server = MCPServer('dying-memory', log_level='WARNING')\n"
        "@server.tool(name='read_graph', description='Read the graph')\n"
        "def read_graph() -> dict:\n"
        "    sys.stderr.write('memory store went away\\n'); sys.stderr.flush()\n"
        "    os._exit(3)\n"
        "server.run('stdio')\n"))
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"


def _graph(ws: Workspace, name: str, contents: list[str]) -> Path:
    return ws.write(name, "".join(json.dumps({"key": f"k{i}", "content": c}) + "\n" for i, c in enumerate(contents)))


def _train(ws: Workspace, *extra: str) -> list[str]:
    return ["train", "--training-data-dir", str(ws.root / "examples"), "--model", ws.model, "--target-layers", "1,3",
            "--pooling", "mean", "--no-progress", *extra]


def _readout(ws: Workspace, vectors: Path, *extra: str) -> list[str]:
    return ["readout", "--vectors", str(vectors), "--model", ws.model, "--input", str(ws.root / "texts.txt"),
            "--output", str(ws.root / "readout.jsonl"), "--no-progress", *extra]


def _artifact_variant(ws: Workspace, name: str, **changes: object) -> Path:
    """The earlier artifact with some fields replaced, saved properly (a valid pair that fits no tiny model)."""
    artifact = dataclasses.replace(load_artifact(ws.vectors), **changes)
    path = ws.root / name / "readout.safetensors"
    save_artifact(artifact, path)
    return path


# ---- extract and the memory sources ----

def non_utf8_graph(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    graph = ws.write("graph.jsonl", b'{"key": "a", "content": "caf\xe9 at noon\\ncalm:9"}\n')
    return ["extract", "--memory-file", str(graph), "--output-dir", str(ws.root / "out")], (str(graph), "not UTF-8")


def lone_surrogate_in_graph(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    graph = ws.write("graph.jsonl", '{"key": "a", "content": "broken \\ud800 text\\ncalm:9"}\n')
    return (["extract", "--memory-file", str(graph), "--output-dir", str(ws.root / "out")],
            (str(graph), "line 1", "lone surrogate"))


def malformed_tag_lines_only(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    body = "Spent the evening untangling the lock ordering in the journal replay path."
    graph = _graph(ws, "graph.jsonl", [f"{body}\ncalm:11 joy:", f"{body} again\nwarmth:-1", f"{body}!\n:5"])
    return (["extract", "--memory-file", str(graph), "--output-dir", str(ws.root / "out")],
            (str(graph), "none of the 3 nodes", "no valid tag"))


def empty_graph(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    graph = ws.write("graph.jsonl", "\n\n")
    return ["extract", "--memory-file", str(graph), "--output-dir", str(ws.root / "out")], (str(graph), "has no nodes")


def duplicated_graph(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    """Forty copies of one node under forty keys: one usable text, so no emotion has ten positives."""
    graph = _graph(ws, "graph.jsonl", ["The same long journal entry about the canal walk at dusk.\ncalm:9"] * 40)
    return (["extract", "--memory-file", str(graph), "--output-dir", str(ws.root / "out")],
            (str(graph), "among 1 usable nodes", "calm (1)"))


def _log(ws: Workspace, bad: dict[str, object]) -> tuple[list[str], tuple[str, ...]]:
    """A versioned log whose second record has one bad field: the error names line 2, the field and the node."""
    good = {"uuid": "u1", "version": 1, "key": "k1", "timestamp": 1770028800, "content": "A long enough entry.\ncalm:9"}
    graph = ws.write("log.jsonl", "".join(json.dumps(row) + "\n" for row in (good, {**good, **bad})))
    field = next(iter(bad))
    return (["extract", "--memory-file", str(graph), "--output-dir", str(ws.root / "out")],
            (str(graph), f"line 2: field '{field}' of node 'k1'"))


def log_version_not_a_non_negative_integer(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    return _log(ws, {"version": -2})


def log_uuid_not_a_string(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    return _log(ws, {"uuid": 12})


def log_deleted_not_a_boolean(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    return _log(ws, {"deleted": "yes"})


def log_unreadable_timestamp(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    return _log(ws, {"timestamp": "last tuesday"})


def array_file_not_of_objects(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    graph = ws.write("graph.json", '[\n  {"key": "k1", "content": "A long enough entry.\\ncalm:9"},\n  "k2"\n]\n')
    return (["extract", "--memory-file", str(graph), "--output-dir", str(ws.root / "out")],
            (str(graph), "line 3 (element 2): expected a JSON object, got a string"))


def unknown_emotion(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    return (["extract", "--emotions", "calm,zorblax", "--output-dir", str(ws.root / "out")],
            ("zorblax has 0", "--emotions"))


def missing_graph_file(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    graph = ws.root / "nowhere.jsonl"
    argv = ["extract", "--memory-file", str(graph), "--output-dir", str(ws.root / "out")]
    return argv, (str(graph), "does not exist")


def extract_output_under_a_file(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    """As root, permission bits stop nothing: a path below a regular file is unwritable for anyone."""
    out = ws.root / "texts.txt" / "examples"
    return ["extract", "--output-dir", str(out)], (str(out), f"{ws.root / 'texts.txt'} is a file")


def extract_onto_a_full_disk(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    disk = _mount_tmpfs(ws, "disk", 256)
    _fill(disk)
    return ["extract", "--output-dir", str(disk / "examples")], (str(disk / "examples"), "No space left on device")


def extract_force_into_a_read_only_mount(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    disk = _mount_tmpfs(ws, "disk", 256)
    shutil.copytree(ws.root / "examples", disk / "examples")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    return (["extract", "--output-dir", str(disk / "examples"), "--force", "--emotions", "calm"],
            (str(disk / "examples"), "Read-only file system"))


def mcp_server_dies_mid_read(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    command = _dying_mcp_server(ws)
    return (["extract", "--memory-mcp-command", command, "--output-dir", str(ws.root / "out")],
            ("dying_server.py", "cannot read the memory graph", "memory store went away"))


def mcp_http_server_dies_mid_read(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    """A streamable-HTTP MCP memory server (official SDK) whose list_nodes call kills its own process."""
    port = free_port()
    script = ws.write("dying_http_server.py", (
        "import os, sys\n"
        "from mcp.server.mcpserver import MCPServer\n"
        "server = MCPServer('dying-memory', log_level='WARNING')\n"
        "@server.tool(name='list_nodes', description='List nodes')\n"
        "def list_nodes(offset: int = 0, limit: int = 500) -> dict:\n"
        "    os._exit(3)\n"
        f"server.run('streamable-http', host='127.0.0.1', port={port}, streamable_http_path='/mcp')\n"))
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ws.cleanup.callback(process.wait, 10)
    ws.cleanup.callback(process.kill)
    deadline = time.monotonic() + 30
    while not _listening(port):
        assert process.poll() is None and time.monotonic() < deadline, "the stub MCP server did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/mcp"
    return (["extract", "--memory-mcp-url", url, "--output-dir", str(ws.root / "out")],
            (url, "cannot read the memory graph", "disconnected"))


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def memory_serve_non_utf8_file(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    graph = ws.write("graph.jsonl", b"\xff\xfe{}\n")
    return ["memory-serve", "--file", str(graph), "--port", str(free_port())], (str(graph), "not UTF-8")


# ---- train ----

def examples_not_utf8(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    path = ws.root / "examples" / "calm.jsonl"
    path.write_bytes(path.read_bytes() + b"\xff\n")
    return _train(ws, "--output", str(ws.root / "new.safetensors")), (str(path), "not UTF-8")


def examples_with_a_bad_score(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    path = ws.root / "examples" / "warmth.jsonl"
    rows = path.read_text().splitlines()
    rows[2] = json.dumps({**json.loads(rows[2]), "score": "very"})
    path.write_text("\n".join(rows) + "\n")
    return _train(ws, "--output", str(ws.root / "new.safetensors")), (f"{path}:3", 'score "very"')


def empty_examples_file(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    path = ws.root / "examples" / "warmth.jsonl"
    path.write_text("")
    return _train(ws, "--output", str(ws.root / "new.safetensors")), (str(path), "holds no examples")


def train_unknown_emotion(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    return (_train(ws, "--emotions", "calm,zorblax", "--output", str(ws.root / "new.safetensors")),
            ("zorblax", "available: calm, warmth"))


def train_layers_out_of_range(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    argv = _train(ws, "--output", str(ws.vectors))
    argv[argv.index("1,3")] = "1,7"
    return argv, ("target layers [7] out of range", "4 layers (0..3)")


def model_path_missing(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    argv = _train(ws, "--output", str(ws.vectors))
    argv[argv.index(ws.model)] = str(ws.root / "no-model")
    return argv, (str(ws.root / "no-model"), "does not exist")


def model_path_not_a_model(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    argv = _train(ws, "--output", str(ws.vectors))
    argv[argv.index(ws.model)] = str(ws.root / "examples")
    return argv, (str(ws.root / "examples"), "neither a .gguf file nor a folder with config.json")


def huge_node_in_the_examples(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    """A 1 MB memory node (about 200,000 tokens) would need a forward far past the model's context: refused before
    any forward, instead of running out of memory."""
    path = ws.root / "examples" / "calm.jsonl"
    huge = {"emotion": "calm", "polarity": "positive", "text": "So calm tonight. " + "word " * 200_000,
            "key": "huge", "score": 9.0, "split": "train"}
    path.write_text(path.read_text() + json.dumps(huge) + "\n")
    return (_train(ws, "--output", str(ws.vectors)),
            ("1 text(s) have more tokens than the model's context of 512", "'So calm tonight.", "--max-length 512"))


def train_bad_dtype(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    return _train(ws, "--output", str(ws.vectors), "--dtype", "int3"), ("'int3'", "float32, bfloat16 or float16")


def train_output_under_a_file(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    output = ws.root / "texts.txt" / "readout.safetensors"
    return _train(ws, "--output", str(output)), (str(output), f"{ws.root / 'texts.txt'} is a file")


def train_onto_a_full_disk(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    """The earlier artifact sits on the full disk: the new one (with its eLH file) must not half-replace it."""
    disk = _mount_tmpfs(ws, "disk", 256)
    shutil.copytree(ws.root / "artifact", disk / "artifact")
    _fill(disk)
    output = disk / "artifact" / "readout.safetensors"
    return _train(ws, "--output", str(output), "--format", "eLH"), ("cannot write", str(disk / "artifact"),
                                                                    "No space left on device")


def _without_model(ws: Workspace, argv: list[str]) -> list[str]:
    """``argv`` with a model that does not exist: an output error must come first, before any model work."""
    argv[argv.index(ws.model)] = str(ws.root / "no-model")
    return argv


def train_output_is_a_directory(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    """Regression: the whole training ran, then the save failed with a raw ``[Errno 21]``."""
    output = ws.root / "artifact"
    return (_without_model(ws, _train(ws, "--output", str(output))),
            (f"cannot write {output}: it is a directory", "give a file path"))


def train_manifest_and_elh_paths_are_directories(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    (ws.root / "new.eLH.safetensors").mkdir()
    argv = _train(ws, "--output", str(ws.root / "new.safetensors"), "--manifest", str(ws.root / "examples"),
                  "--format", "eLH")
    return _without_model(ws, argv), (f"cannot write {ws.root / 'new.eLH.safetensors'}: it is a directory",
                                      f"cannot write {ws.root / 'examples'}: it is a directory")


def readout_output_is_a_directory(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    argv = _readout(ws, ws.vectors, "--html", str(ws.root / "examples"))
    argv[argv.index(str(ws.root / "readout.jsonl"))] = str(ws.root / "artifact")
    return _without_model(ws, argv), (f"cannot write {ws.root / 'artifact'}: it is a directory",
                                      f"cannot write {ws.root / 'examples'}: it is a directory")


def eval_report_dir_under_a_file(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    """Regression: the whole evaluation ran before the report could not be written."""
    argv = ["eval", "--vectors", str(ws.vectors), "--training-data-dir", str(ws.root / "examples"), "--model",
            ws.model, "--report-dir", str(ws.root / "texts.txt" / "report"), "--no-progress"]
    return _without_model(ws, argv), (str(ws.root / "texts.txt" / "report" / "report.json"),
                                      f"{ws.root / 'texts.txt'} is a file")


def export_output_is_a_directory(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    """Regression: the export failed at its last step with a raw ``[Errno 21]`` naming an internal temp file."""
    return (["export", "gguf", "--vectors", str(ws.vectors), "--concept", "calm", "--output", str(ws.root / "examples")],
            (f"cannot write {ws.root / 'examples'}: it is a directory",))


def extract_output_is_a_broken_symlink(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    (ws.root / "dangling").symlink_to(ws.root / "nowhere")
    return ["extract", "--output-dir", str(ws.root / "dangling")], (str(ws.root / "dangling"), "broken symlink")


# ---- readout, eval, export, serve: artifacts that do not load or do not fit ----

def truncated_safetensors(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    vectors = ws.copy_artifact("cut")
    vectors.write_bytes(vectors.read_bytes()[:300])
    return _readout(ws, vectors), (str(vectors), "not a readable safetensors file")


def corrupted_tensor_bytes(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    """One flipped bit in the tensor data loads fine as safetensors: only the manifest's sha256 can tell."""
    vectors = ws.copy_artifact("flipped")
    data = bytearray(vectors.read_bytes())
    data[-7] ^= 0x10
    vectors.write_bytes(bytes(data))
    return _readout(ws, vectors), (str(vectors), "does not match manifest", "corrupted")


def manifest_fields_missing(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    vectors = ws.copy_artifact("partial")
    manifest = json.loads(vectors.with_suffix(".json").read_text())
    del manifest["hidden_size"], manifest["layers"]
    vectors.with_suffix(".json").write_text(json.dumps(manifest))
    return _readout(ws, vectors), (str(vectors.with_suffix(".json")), "lacks field(s) layers, hidden_size")


def manifest_field_of_the_wrong_type(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    vectors = ws.copy_artifact("typed")
    ws.edit_manifest(vectors, layers=None, concepts="calm")
    return _readout(ws, vectors), (str(vectors.with_suffix(".json")), "'concepts' must be a list of strings",
                                   "'layers' must be a list of integers")


def manifest_disagrees_with_the_vectors(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    vectors = ws.copy_artifact("more-concepts")
    ws.edit_manifest(vectors, concepts=["calm", "warmth", "awe"])
    return _readout(ws, vectors), (str(vectors), "expected [3, 64]")


def vectors_from_another_run(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    """Same concepts, layers and shapes, other values: the manifest (and its calibration) belongs elsewhere."""
    artifact = load_artifact(ws.vectors)
    other = _artifact_variant(ws, "other", vectors={layer: -v for layer, v in artifact.vectors.items()})
    argv = _readout(ws, other, "--manifest", str(ws.vectors.with_suffix(".json")))
    return argv, (str(other), "does not match manifest")


def hidden_size_mismatch(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    vectors = _artifact_variant(ws, "wide", hidden_size=32, calibration=None, vectors={
        layer: torch.nn.functional.normalize(torch.ones(2, 32), dim=1) for layer in (1, 3)})
    return _readout(ws, vectors), ("hidden size 32 != the model's 64", "tiny")


def artifact_layers_out_of_range(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    artifact = load_artifact(ws.vectors)
    vectors = _artifact_variant(ws, "deep", layers=(1, 9), calibration=None,
                                vectors={1: artifact.vectors[1], 9: artifact.vectors[3]})
    return _readout(ws, vectors), ("layer(s) [9] out of range", "4 layers")


def readout_input_not_utf8(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    texts = ws.write("texts.txt", b"caf\xe9 au lait\n")
    return _readout(ws, ws.vectors), (str(texts), "not UTF-8")


def readout_text_beyond_the_context(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    ws.write("texts.txt", "A calm evening.\n" + "Calm again. " + "word " * 100_000 + "\n")
    return _readout(ws, ws.vectors), ("more tokens than the model's context of 512", "'Calm again.", "shorten it")


def readout_output_under_a_file(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    argv = _readout(ws, ws.vectors)
    output = ws.root / "texts.txt" / "out.jsonl"
    argv[argv.index(str(ws.root / "readout.jsonl"))] = str(output)
    return argv, (str(output), "is a file")


def eval_missing_vectors(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    vectors = ws.root / "gone" / "readout.safetensors"
    argv = ["eval", "--vectors", str(vectors), "--training-data-dir", str(ws.root / "examples"), "--model", ws.model,
            "--report-dir", str(ws.root / "report"), "--no-progress"]
    return argv, (str(vectors.with_suffix(".json")), "does not exist")


def export_unknown_concept(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    return (["export", "gguf", "--vectors", str(ws.vectors), "--concept", "zorblax", "--output",
             str(ws.root / "calm.gguf")], ("--concept 'zorblax'", "calm, warmth"))


def serve_corrupted_vectors(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    vectors = ws.copy_artifact("cut")
    vectors.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    return (["serve", "--vectors", str(vectors), "--model", ws.model, "--port", str(free_port())],
            (str(vectors), "not a readable"))


def serve_port_in_use(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    busy = ws.cleanup.enter_context(socket.socket())
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    return ["serve", "--model", ws.model, "--port", str(port)], (f"127.0.0.1:{port}", "in use", "--port")


def serve_port_out_of_range(ws: Workspace) -> tuple[list[str], tuple[str, ...]]:
    return ["serve", "--model", ws.model, "--port", "70000"], ("--port 70000", "1-65535")


CASES: dict[str, Case] = {case.__name__: case for case in (
    non_utf8_graph, lone_surrogate_in_graph, malformed_tag_lines_only, empty_graph, duplicated_graph, unknown_emotion,
    log_version_not_a_non_negative_integer, log_uuid_not_a_string, log_deleted_not_a_boolean, log_unreadable_timestamp,
    array_file_not_of_objects,
    missing_graph_file, extract_output_under_a_file, extract_onto_a_full_disk, extract_force_into_a_read_only_mount,
    mcp_server_dies_mid_read, mcp_http_server_dies_mid_read, memory_serve_non_utf8_file, examples_not_utf8,
    examples_with_a_bad_score, empty_examples_file, train_unknown_emotion, train_layers_out_of_range,
    model_path_missing, model_path_not_a_model, huge_node_in_the_examples, train_bad_dtype, train_output_under_a_file,
    train_onto_a_full_disk, train_output_is_a_directory, train_manifest_and_elh_paths_are_directories,
    readout_output_is_a_directory, eval_report_dir_under_a_file, export_output_is_a_directory, extract_output_is_a_broken_symlink,
    truncated_safetensors, corrupted_tensor_bytes, manifest_fields_missing,
    manifest_field_of_the_wrong_type, manifest_disagrees_with_the_vectors, vectors_from_another_run,
    hidden_size_mismatch, artifact_layers_out_of_range, readout_input_not_utf8, readout_text_beyond_the_context,
    readout_output_under_a_file, eval_missing_vectors, export_unknown_concept, serve_corrupted_vectors,
    serve_port_in_use, serve_port_out_of_range)}


@pytest.fixture(scope="module")
def earlier_outputs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Outputs of earlier successful runs (extract, train, readout) that every bad run must leave untouched."""
    root = tmp_path_factory.mktemp("earlier")
    assert main(["extract", "--output-dir", str(root / "examples"), "--emotions", "calm,warmth",
                 "--max-examples-per-emotion", "16"]) == 0
    assert main(["train", "--training-data-dir", str(root / "examples"), "--model", str(tiny_model_dir),
                 "--target-layers", "1,3", "--pooling", "mean", "--output",
                 str(root / "artifact" / "readout.safetensors"), "--no-progress"]) == 0
    (root / "texts.txt").write_text("A calm evening by the river.\nShe hugged me at the station.\n")
    assert main(["readout", "--vectors", str(root / "artifact" / "readout.safetensors"), "--model",
                 str(tiny_model_dir), "--input", str(root / "texts.txt"), "--output", str(root / "readout.jsonl"),
                 "--no-progress"]) == 0
    return root


@pytest.fixture
def workspace(earlier_outputs: Path, tiny_model_dir: Path, tmp_path: Path) -> Iterator[Workspace]:
    shutil.copytree(earlier_outputs, tmp_path / "ws")
    ws = Workspace(tmp_path / "ws", str(tiny_model_dir))
    with ws.cleanup:
        yield ws


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_fails_in_one_line_and_leaves_outputs_untouched(name: str, workspace: Workspace,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    argv, expected = CASES[name](workspace)
    before = snapshot(workspace.root)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0, f"{name}: exit 0"
    assert err.startswith(ERROR) and err.count("\n") == 1, f"{name}: stderr is not one error line: {err!r}"
    assert "Traceback" not in err
    assert not any(internal in err for internal in ("[Errno", ".staging-", ".tmp", ".lock")), err  # user's names only
    for part in expected:
        assert part in err, f"{name}: {part!r} not in {err!r}"
    assert snapshot(workspace.root) == before, f"{name}: the workspace changed"


def test_debug_shows_the_traceback_of_a_known_error(workspace: Workspace) -> None:
    argv, _ = model_path_missing(workspace)
    with pytest.raises(ModelLoadError, match="does not exist"):
        main(["--debug", *argv])


def test_a_duplicated_graph_extracts_like_the_single_graph(workspace: Workspace, sample_graph_path: Path) -> None:
    """A graph file concatenated with itself is not an error: each repeated key is skipped once, with its reason,
    and the example files equal the single graph's byte for byte."""
    twice = workspace.write("twice.jsonl", sample_graph_path.read_bytes() * 2)
    single, double = workspace.root / "single", workspace.root / "double"
    assert main(["extract", "--memory-file", str(sample_graph_path), "--output-dir", str(single)]) == 0
    assert main(["extract", "--memory-file", str(twice), "--output-dir", str(double)]) == 0
    manifest = json.loads((double / "extract.json").read_text())
    assert manifest["nodes"]["total"] == 2 * manifest["nodes"]["usable"]
    assert {skip["reason"].split(":")[0] for skip in manifest["skipped_nodes"]} == {"duplicate key"}
    emotion_files = snapshot(single)
    assert emotion_files.pop("extract.json") and len(emotion_files) >= 16
    assert {name: digest for name, digest in snapshot(double).items() if name != "extract.json"} == emotion_files


def test_a_huge_node_extracts_intact(workspace: Workspace, sample_graph_path: Path) -> None:
    """A 1 MB node is no problem for extract (its text is kept verbatim); train then refuses it in one line
    (case huge_node_in_the_examples)."""
    body = "So calm tonight by the water. " + "word " * 200_000
    graph = workspace.write("graph.jsonl", sample_graph_path.read_bytes() + (json.dumps(
        {"key": "huge", "content": f"{body}\ncalm:10"}) + "\n").encode())
    assert main(["extract", "--memory-file", str(graph), "--output-dir", str(workspace.root / "big"),
                 "--emotions", "calm"]) == 0
    rows = [json.loads(line) for line in (workspace.root / "big" / "calm.jsonl").read_text().splitlines()]
    assert [row["text"] for row in rows if row["key"] == "huge"] == [body.strip()]


def test_full_disk_simulated_by_a_file_size_limit(workspace: Workspace) -> None:
    """Without mount privileges: RLIMIT_FSIZE makes every write past 1 KiB fail (EFBIG), as a full disk would."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    out = workspace.root / "examples"
    before = snapshot(workspace.root)
    done = subprocess.run([sys.executable, "-m", "amygdala.cli", "extract", "--output-dir", str(out), "--force"],
                          capture_output=True, text=True, preexec_fn=limit, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith(ERROR) and done.stderr.count("\n") == 1, done.stderr
    assert f"cannot write {out}: File too large" in done.stderr
    assert snapshot(workspace.root) == before
