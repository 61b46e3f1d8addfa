"""`amygdala export gguf`: a control vector that repeng's own importer (and so llama.cpp) reads back exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from amygdala.artifact import ModelIdentity, ReadoutArtifact, TrainingRecord, save_artifact
from amygdala.cli import main
from amygdala.forward.pooling import PoolingSpec

LAYERS = (0, 3, 5)


@pytest.fixture()
def vectors_path(tmp_path: Path) -> Path:
    generator = torch.Generator().manual_seed(11)
    vectors = {layer: torch.nn.functional.normalize(torch.randn(2, 16, generator=generator), dim=-1)
               for layer in LAYERS}
    record = TrainingRecord(ModelIdentity("tiny-llama"), "diff_of_means", PoolingSpec(), "float32",
                            {"joy": (1, 1), "fear": (1, 1)}, 2, "")
    artifact = ReadoutArtifact(("joy", "fear"), LAYERS, vectors, 16, record=record)
    save_artifact(artifact, tmp_path / "readout.safetensors")
    return tmp_path / "readout.safetensors"


def _repeng_import(path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    """repeng 0.4.0 (the last release) names ``np.float_`` at import, which NumPy 2 removed: alias it first."""
    monkeypatch.setattr(np, "float_", np.float64, raising=False)
    from repeng import ControlVector

    return ControlVector.import_gguf(str(path))


def test_export_gguf_reads_back_with_repeng_layers_values_and_sign(
        vectors_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from amygdala.artifact import load_artifact

    output = tmp_path / "out" / "fear.gguf"
    assert main(["export", "gguf", "--vectors", str(vectors_path), "--concept", "fear", "--scale", "4",
                 "--output", str(output)]) == 0
    control = _repeng_import(output, monkeypatch)
    artifact = load_artifact(vectors_path)
    assert control.model_type == "tiny-llama"
    assert sorted(control.directions) == [3, 5], "layer_<N> is direction.<N>; layer 0 cannot be steered"
    for layer in (3, 5):
        expected = 4 * artifact.vectors[layer][1].numpy()
        np.testing.assert_allclose(control.directions[layer], expected, rtol=1e-6)
        assert float(np.dot(control.directions[layer], artifact.vectors[layer][1].numpy())) == pytest.approx(4.0)
    assert not list(output.parent.glob(".*.tmp")), "the temp file is renamed away"


def test_export_gguf_writes_llama_cpp_tensor_layout(vectors_path: Path, tmp_path: Path) -> None:
    """llama.cpp refuses a control vector whose tensors are not 1-D F32 ``direction.<N>`` with N >= 1."""
    import gguf

    output = tmp_path / "joy.gguf"
    assert main(["export", "gguf", "--vectors", str(vectors_path), "--concept", "joy", "--scale", "-1.5",
                 "--output", str(output)]) == 0
    reader = gguf.GGUFReader(str(output))
    arch = reader.get_field("general.architecture")
    assert bytes(arch.parts[-1]).decode() == "controlvector"
    assert int(reader.get_field("controlvector.layer_count").parts[-1][0]) == 2
    for tensor in reader.tensors:
        assert tensor.tensor_type == gguf.GGMLQuantizationType.F32
        assert tensor.n_elements == 16 and len(tensor.shape) == 1
        assert int(tensor.name.split(".")[1]) >= 1


def test_export_gguf_reports_every_bad_option_and_writes_nothing(
        vectors_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "bad.gguf"
    code = main(["export", "gguf", "--vectors", str(vectors_path), "--concept", "awe", "--scale", "0",
                 "--output", str(output)])
    error = capsys.readouterr().err
    assert code == 2
    assert "--concept 'awe' is not in the artifact (it has joy, fear)" in error
    assert "--scale 0.0 must be a finite non-zero number" in error
    assert not output.exists()
