"""The readout artifact format, pinned: exact keys, shapes and dtypes, both layouts, and a strict loader."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from amygdala.artifact import (
    ArtifactError,
    Calibration,
    ReadoutArtifact,
    check_fits_model,
    elh_path_for,
    load_artifact,
    save_artifact,
)

CONCEPTS, LAYERS, HIDDEN = ("calm", "fear", "joy"), (3, 7), 16


def _artifact(dtype: str = "float32") -> ReadoutArtifact:
    generator = torch.Generator().manual_seed(0)
    vectors = {layer: torch.nn.functional.normalize(torch.randn(3, HIDDEN, generator=generator), dim=1)
               for layer in LAYERS}
    calibration = Calibration({layer: torch.tensor([0.5, -1.0, 2.0]) for layer in LAYERS},
                              {layer: torch.tensor([1.0, 2.0, 0.25]) for layer in LAYERS})
    provenance = {"model": {"id": "m", "fingerprint": "f" * 64, "n_layers": 8},
                  "training": {"method": "diff_of_means", "counts": {c: {"positive": 2, "negative": 3} for c in CONCEPTS}}}
    return ReadoutArtifact(CONCEPTS, LAYERS, vectors, HIDDEN, dtype, calibration, provenance)


def _rewrite_manifest(path: Path, **changes: object) -> None:
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_save_artifact_writes_exactly_one_float32_tensor_per_layer(tmp_path: Path) -> None:
    manifest_path = save_artifact(_artifact(), tmp_path / "readout.safetensors")
    with safe_open(str(tmp_path / "readout.safetensors"), framework="pt") as handle:
        assert sorted(handle.keys()) == ["layer_3.vectors", "layer_7.vectors"]
        for key in handle.keys():
            assert handle.get_slice(key).get_shape() == [3, HIDDEN]
            assert handle.get_slice(key).get_dtype() == "F32"
    manifest = json.loads(manifest_path.read_text())
    assert manifest_path == tmp_path / "readout.json"
    assert (manifest["concepts"], manifest["layers"], manifest["hidden_size"], manifest["dtype"]) == (
        list(CONCEPTS), list(LAYERS), HIDDEN, "float32")
    assert manifest["calibration"]["layer_7"] == {"mean": [0.5, -1.0, 2.0], "std": [1.0, 2.0, 0.25]}
    assert manifest["training"]["method"] == "diff_of_means" and "layer_convention" in manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["readout.json", "readout.safetensors"]


def test_load_artifact_equals_the_saved_artifact(tmp_path: Path) -> None:
    saved = _artifact()
    save_artifact(saved, tmp_path / "readout.safetensors", manifest_path=tmp_path / "elsewhere" / "m.json")
    loaded = load_artifact(tmp_path / "readout.safetensors", tmp_path / "elsewhere" / "m.json")
    assert (loaded.concepts, loaded.layers, loaded.hidden_size, loaded.dtype) == (CONCEPTS, LAYERS, HIDDEN, "float32")
    for layer in LAYERS:
        assert torch.equal(loaded.vectors[layer], saved.vectors[layer])
        assert torch.equal(loaded.calibration.mean[layer], saved.calibration.mean[layer])
        assert torch.equal(loaded.calibration.std[layer], saved.calibration.std[layer])
    assert loaded.provenance["model"] == saved.provenance["model"]
    assert loaded.provenance["training"] == saved.provenance["training"]


def test_save_artifact_writes_the_elh_layout_that_loads_to_the_same_vectors(tmp_path: Path) -> None:
    save_artifact(_artifact(), tmp_path / "readout.safetensors", write_elh=True)
    elh = elh_path_for(tmp_path / "readout.safetensors")
    assert elh.name == "readout.eLH.safetensors"
    with safe_open(str(elh), framework="pt") as handle:
        assert list(handle.keys()) == ["vectors"]
        assert handle.get_slice("vectors").get_shape() == [3, 2, HIDDEN]
        stacked = handle.get_tensor("vectors")
    assert torch.equal(stacked[:, 1], _artifact().vectors[7])
    loaded = load_artifact(elh, tmp_path / "readout.json")
    for layer in LAYERS:
        assert torch.equal(loaded.vectors[layer], _artifact().vectors[layer])


def test_save_artifact_stores_bfloat16_when_asked(tmp_path: Path) -> None:
    save_artifact(_artifact("bfloat16"), tmp_path / "readout.safetensors")
    with safe_open(str(tmp_path / "readout.safetensors"), framework="pt") as handle:
        assert handle.get_slice("layer_3.vectors").get_dtype() == "BF16"
    assert load_artifact(tmp_path / "readout.safetensors").dtype == "bfloat16"


@pytest.mark.parametrize(("changes", "message"), [
    ({"hidden_size": 32}, r"layer 3 has shape \(3, 16\), expected \[3, 32\]"),
    ({"dtype": "bfloat16"}, r"layer 3 is stored as torch.float32, manifest says bfloat16"),
    ({"concepts": ["calm", "fear", "joy", "awe"]}, r"expected \[4, 16\]"),
    ({"layers": [3, 7, 9]}, r"missing key\(s\) layer_9.vectors"),
    ({"layers": [3]}, r"unexpected key\(s\) layer_7.vectors"),
    ({"calibration": {"layer_3": {"mean": [0.0], "std": [1.0]}}}, r"calibration is malformed|must have 3 values"),
])
def test_load_artifact_rejects_a_manifest_that_does_not_match_the_tensors(tmp_path: Path, changes: dict[str, object],
                                                                          message: str) -> None:
    save_artifact(_artifact(), tmp_path / "readout.safetensors")
    _rewrite_manifest(tmp_path / "readout.json", **changes)
    with pytest.raises(ArtifactError, match=message) as caught:
        load_artifact(tmp_path / "readout.safetensors")
    assert "\n" not in str(caught.value)


def test_load_artifact_rejects_an_elh_tensor_with_the_wrong_layer_count(tmp_path: Path) -> None:
    save_artifact(_artifact(), tmp_path / "readout.safetensors")
    save_file({"vectors": torch.zeros(3, 3, HIDDEN)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ArtifactError, match=r"eLH tensor has shape \(3, 3, 16\), expected \[n_concepts, 2, hidden\]"):
        load_artifact(tmp_path / "bad.safetensors", tmp_path / "readout.json")


def test_load_artifact_rejects_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        load_artifact(tmp_path / "none.safetensors")
    save_artifact(_artifact(), tmp_path / "readout.safetensors")
    (tmp_path / "readout.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ArtifactError, match="not a readable safetensors file"):
        load_artifact(tmp_path / "readout.safetensors")


def test_check_fits_model_refuses_another_hidden_size_and_missing_layers() -> None:
    with pytest.raises(ArtifactError, match=r"hidden size 16 != the model's 640.*layer\(s\) \[7\] out of range"):
        check_fits_model(_artifact(), n_layers=5, hidden_size=640, model_id="gemma")
    check_fits_model(_artifact(), n_layers=8, hidden_size=HIDDEN, model_id="tiny")


def test_resaving_a_loaded_artifact_records_the_new_vectors_hash(tmp_path: Path) -> None:
    """Regression: a loaded artifact's provenance carried the old vectors_sha256, which overwrote the new one
    when the artifact was saved again (e.g. converted to bfloat16)."""
    save_artifact(_artifact(), tmp_path / "readout.safetensors")
    loaded = load_artifact(tmp_path / "readout.safetensors")
    save_artifact(dataclasses.replace(loaded, dtype="bfloat16"), tmp_path / "half.safetensors")
    manifest = json.loads((tmp_path / "half.json").read_text())
    assert manifest["vectors_sha256"] == hashlib.sha256((tmp_path / "half.safetensors").read_bytes()).hexdigest()
    assert manifest["dtype"] == "bfloat16" and manifest["training"] == loaded.provenance["training"]
