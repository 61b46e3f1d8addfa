"""The readout artifact format, pinned: exact keys, shapes and dtypes, both layouts, a strict loader, the typed
training record, and artifacts written by amygdala 0.1.0 (``tests/data/artifacts_0.1.0``) that still load."""

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
    LayerCurve,
    ModelIdentity,
    ReadoutArtifact,
    TrainingRecord,
    check_fits_model,
    elh_path_for,
    load_artifact,
    save_artifact,
)
from amygdala.forward.pooling import PoolingSpec

CONCEPTS, LAYERS, HIDDEN = ("calm", "fear", "joy"), (3, 7), 16
RECORD = TrainingRecord(ModelIdentity("m", "f" * 64, 8), "diff_of_means", PoolingSpec("mean", 1), "float32",
                        dict.fromkeys(CONCEPTS, (2, 3)), 5, "d" * 64)
DATA = Path(__file__).parent / "data" / "artifacts_0.1.0"


def _artifact(dtype: str = "float32") -> ReadoutArtifact:
    generator = torch.Generator().manual_seed(0)
    vectors = {layer: torch.nn.functional.normalize(torch.randn(3, HIDDEN, generator=generator), dim=1)
               for layer in LAYERS}
    calibration = Calibration({layer: torch.tensor([0.5, -1.0, 2.0]) for layer in LAYERS},
                              {layer: torch.tensor([1.0, 2.0, 0.25]) for layer in LAYERS})
    return ReadoutArtifact(CONCEPTS, LAYERS, vectors, HIDDEN, dtype, calibration, RECORD)


def _rewrite_manifest(path: Path, **changes: object) -> None:
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_save_artifact_writes_exactly_one_float32_tensor_per_layer(tmp_path: Path) -> None:
    manifest_path = save_artifact(_artifact(), tmp_path / "readout.safetensors")
    with safe_open(str(tmp_path / "readout.safetensors"), framework="pt") as handle:
        assert sorted(handle.keys()) == ["layer_3.vectors", "layer_7.vectors"]
        for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
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
    assert loaded.record == saved.record == RECORD


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
    assert manifest["dtype"] == "bfloat16" and load_artifact(tmp_path / "half.safetensors").record == loaded.record
    assert manifest["training"] == json.loads((tmp_path / "readout.json").read_text())["training"]


def test_the_training_record_is_written_in_the_0_1_0_manifest_layout(tmp_path: Path) -> None:
    curve = LayerCurve((0, 1, 2), (0.5, float("nan"), 0.9), (0.4, float("nan"), 0.8), (2,), "lda", 4, 0, 5)
    save_artifact(dataclasses.replace(_artifact(), record=dataclasses.replace(RECORD, layer_curve=curve)),
                  tmp_path / "readout.safetensors")
    manifest = json.loads((tmp_path / "readout.json").read_text())
    assert list(manifest)[:7] == ["concepts", "layers", "hidden_size", "dtype", "format_version", "layer_convention",
                                  "vectors_sha256"]
    assert manifest["model"] == {"id": "m", "fingerprint": "f" * 64, "n_layers": 8}
    assert manifest["training"] == {"method": "diff_of_means", "pooling": "mean", "skip_tokens": 1,
                                    "chat_template": False, "forward_dtype": "float32", "max_length": None,
                                    "split": "train", "data_sha256": "d" * 64,
                                    "counts": {c: {"positive": 2, "negative": 3} for c in CONCEPTS},
                                    "n_unique_texts": 5}
    assert manifest["layer_selection"]["mean_auroc"] == [0.5, None, 0.9]
    loaded = load_artifact(tmp_path / "readout.safetensors")
    assert loaded.record is not None and loaded.record.layer_curve is not None
    assert loaded.record.layer_curve.chosen == (2,) and loaded.pooling == PoolingSpec("mean", 1)


def test_a_data_parallel_record_adds_only_its_world_size_to_the_manifest(tmp_path: Path) -> None:
    save_artifact(dataclasses.replace(_artifact(), record=dataclasses.replace(RECORD, world_size=4)),
                  tmp_path / "readout.safetensors")
    training = json.loads((tmp_path / "readout.json").read_text())["training"]
    assert list(training)[-1] == "world_size" and training["world_size"] == 4
    loaded = load_artifact(tmp_path / "readout.safetensors")
    assert loaded.record is not None and loaded.record.world_size == 4


def test_shrinkage_and_neutral_pcs_round_trip_through_the_training_record(tmp_path: Path) -> None:
    """A data-driven method's per-layer shrinkage and the neutral PCs removed are written only when present
    (so other manifests keep the 0.1.0 layout) and load back into the typed record."""
    record = dataclasses.replace(RECORD, method="lda_oas", shrinkage={3: 0.125, 7: 0.5}, neutral_pcs=4)
    save_artifact(dataclasses.replace(_artifact(), record=record), tmp_path / "readout.safetensors")
    training = json.loads((tmp_path / "readout.json").read_text())["training"]
    assert list(training)[-2:] == ["shrinkage", "neutral_pcs"]
    assert training["shrinkage"] == {"3": 0.125, "7": 0.5} and training["neutral_pcs"] == 4
    assert load_artifact(tmp_path / "readout.safetensors").record == record
    save_artifact(_artifact(), tmp_path / "plain.safetensors")
    plain = json.loads((tmp_path / "plain.json").read_text())["training"]
    assert "shrinkage" not in plain and "neutral_pcs" not in plain
    assert load_artifact(tmp_path / "plain.safetensors").record == RECORD


@pytest.mark.parametrize(("training", "message"), [
    ({"pooling": "max"}, r"field 'training.pooling' must be 'last' or 'mean' or 'mean_last', not \"max\""),
    ({"shrinkage": {"3": 1.5}}, r"field 'training.shrinkage' must be an object of layer -> number in \[0, 1\]"),
    ({"neutral_pcs": -1}, r"field 'training.neutral_pcs' must be a non-negative integer, not -1"),
    ({"counts": {"joy": {"positive": -1, "negative": 3}}}, r"field 'training.counts' must be an object"),
    ({"skip_tokens": None}, r"field 'training.skip_tokens' must be a non-negative integer, not null"),
    ({"world_size": 0}, r"field 'training.world_size' must be a positive integer, not 0"),
])
def test_load_artifact_names_a_malformed_training_record(tmp_path: Path, training: dict[str, object],
                                                         message: str) -> None:
    save_artifact(_artifact(), tmp_path / "readout.safetensors")
    manifest = json.loads((tmp_path / "readout.json").read_text())
    _rewrite_manifest(tmp_path / "readout.json", training={**manifest["training"], **training})
    with pytest.raises(ArtifactError, match=message):
        load_artifact(tmp_path / "readout.safetensors")
    _rewrite_manifest(tmp_path / "readout.json", training={"method": "lda"}, model="m")
    with pytest.raises(ArtifactError, match=r"lacks field\(s\) training.pooling.*field 'model' must be an object"):
        load_artifact(tmp_path / "readout.safetensors")


def test_unknown_manifest_fields_are_kept_verbatim_on_resave(tmp_path: Path) -> None:
    save_artifact(_artifact(), tmp_path / "readout.safetensors")
    _rewrite_manifest(tmp_path / "readout.json", notes={"by": "a user"}, vectors_sha256=None)
    loaded = load_artifact(tmp_path / "readout.safetensors")
    assert loaded.extra == {"notes": {"by": "a user"}}
    save_artifact(loaded, tmp_path / "again.safetensors")
    assert json.loads((tmp_path / "again.json").read_text())["notes"] == {"by": "a user"}


def test_artifacts_written_by_0_1_0_load_into_the_typed_record() -> None:
    gemma = load_artifact(DATA / "gemma" / "readout.safetensors")
    assert gemma.record == TrainingRecord(
        ModelIdentity("google/gemma-3-270m (GGUF Q4_K_M, embedded)",
                      "1536875da1e3989f477c517f6f736291324d54efa570ca38fa1595abcafa49c9", 18),
        "lda_diagonal", PoolingSpec("mean", 1, False, None), "float32",
        {"anger": (4, 11), "fear": (4, 11), "joy": (4, 11)}, 15,
        "7b092e2a0ee8f10d433efa692a7bfa79bf79858a5b42d2bca69949f9aafcda82")
    assert gemma.layers == (7, 10, 12, 15) and gemma.hidden_size == 640 and gemma.extra == {}
    elh = load_artifact(DATA / "gemma" / "readout.eLH.safetensors", DATA / "gemma" / "readout.json")
    assert all(torch.equal(elh.vectors[layer], gemma.vectors[layer]) for layer in gemma.layers)
    chat = load_artifact(DATA / "tiny_chat_bf16" / "readout.safetensors")
    assert chat.record is not None and chat.record.layer_curve is None
    assert (chat.record.method, chat.record.forward_dtype) == ("diff_of_means", "bfloat16")
    assert chat.pooling == PoolingSpec("mean", 2, True, 40)
    auto = load_artifact(DATA / "tiny_auto" / "readout.safetensors")
    assert auto.record is not None and auto.record.layer_curve is not None
    assert auto.record.layer_curve.layers == (0, 1, 2, 3) and auto.record.layer_curve.chosen == auto.layers == (1, 2)
    assert auto.record.layer_curve.mean_auroc[1] == pytest.approx(0.5833333333333334)
    bare = load_artifact(DATA / "bare" / "readout.safetensors")
    assert bare.record is None and bare.pooling == PoolingSpec() and bare.extra == {}


def test_resaving_a_0_1_0_artifact_writes_the_same_manifest(tmp_path: Path) -> None:
    """The typed record round-trips to the exact manifest 0.1.0 wrote (field order included)."""
    for name in ("gemma", "tiny_auto", "tiny_chat_bf16", "bare"):
        save_artifact(load_artifact(DATA / name / "readout.safetensors"), tmp_path / name / "readout.safetensors")
        assert (tmp_path / name / "readout.json").read_text() == (DATA / name / "readout.json").read_text(), name
        assert (tmp_path / name / "readout.safetensors").read_bytes() == (DATA / name / "readout.safetensors").read_bytes()
