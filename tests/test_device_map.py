"""Training a model larger than one device: ``load_model(device_map=...)`` (accelerate) on a CPU-only machine.

The test splits SmolLM2-135M between the CPU and disk offload (accelerate keeps offloaded weights on ``meta`` and
streams them in per forward pass through its module hooks): the amygdala hooks, the truncated forward pass and
the fingerprint must give exactly what the whole model gives.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from amygdala.extraction.examples import Example
from amygdala.forward.models import LoadedModel, load_model, resolve_model_path
from amygdala.training.stage import CAA_RECIPE, TrainOptions, train

TEXTS = ["I am so happy today, the sun is shining on us", "This is terrible, I lost everything I had",
         "What a lovely surprise party you threw for me", "The meeting was moved to noon on Tuesday",
         "We won the championship after ten hard years", "The invoice lists three items and a total"]


def _split_map(n_layers: int) -> dict[str, str]:
    """The first half of the blocks on the CPU; the second half, the final norm and the LM head offloaded."""
    device_map = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.norm": "disk", "lm_head": "disk"}
    device_map.update({f"model.layers.{i}": "cpu" if i < n_layers // 2 else "disk" for i in range(n_layers)})
    return device_map


@pytest.mark.slow
def test_train_on_a_model_split_across_cpu_and_disk_equals_the_whole_model(smollm2: LoadedModel) -> None:
    """Regression guard: the fingerprint copied weights out of the meta tensors accelerate leaves for offloaded
    modules, so ``load_model(device_map=...)`` crashed before any forward pass."""
    folder, _ = resolve_model_path("smollm2")
    split = load_model(str(folder), device_map=_split_map(smollm2.n_layers))
    assert any(p.device.type == "meta" for p in split.model.parameters()), "the split should offload weights"
    assert split.fingerprint == smollm2.fingerprint
    examples = [Example("joy", "positive" if i in (0, 2, 4) else "negative", text, f"k{i}", 5.0, "train")
                for i, text in enumerate(TEXTS)]
    options = TrainOptions(**CAA_RECIPE, target_layers=(4, 22), batch_size=3)
    whole, offloaded = train(smollm2, examples, options), train(split, examples, options)
    for layer in (4, 22):
        torch.testing.assert_close(offloaded.vectors[layer], whole.vectors[layer], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(offloaded.calibration.mean[layer], whole.calibration.mean[layer],
                                   atol=1e-4, rtol=1e-5)


def test_train_cli_device_map_gives_the_same_artifact_as_one_device(tiny_model_dir: Path, tmp_path: Path) -> None:
    """``amygdala train --device-map JSON`` reaches load_model: half of the tiny model offloaded to disk trains
    byte-identical vectors; a malformed map is a one-line usage error."""
    from amygdala.cli import main

    data = tmp_path / "examples"
    data.mkdir()
    rows = [Example("joy", "positive" if i in (0, 2, 4) else "negative", text, f"k{i}", 5.0, "train")
            for i, text in enumerate(TEXTS)]
    (data / "joy.jsonl").write_text("".join(row.to_json() + "\n" for row in rows))
    device_map = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
                  "model.layers.1": "cpu", "model.layers.2": "disk", "model.layers.3": "disk", "model.norm": "disk",
                  "lm_head": "disk"}
    base = ["train", "--model", str(tiny_model_dir), "--training-data-dir", str(data), "--target-layers", "1,3",
            "--no-progress"]
    assert main([*base, "--output", str(tmp_path / "one.safetensors")]) == 0
    assert main([*base, "--output", str(tmp_path / "split.safetensors"), "--device-map", json.dumps(device_map)]) == 0
    assert (tmp_path / "one.safetensors").read_bytes() == (tmp_path / "split.safetensors").read_bytes()
    assert main([*base, "--output", str(tmp_path / "bad.safetensors"), "--device-map", "{not json"]) == 2
    assert not (tmp_path / "bad.safetensors").exists()
