"""``amygdala train`` and ``bench train``: examples -> readout vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from amygdala.cli.app import app, bench_app

if TYPE_CHECKING:
    from amygdala.artifact import ReadoutArtifact


def _parse_target_layers(value: str | None) -> list[int] | None:
    """``"5,9,12,15"`` -> ``[5, 9, 12, 15]``; None or empty -> None (``training.default_target_layers``)."""
    if value is None or not value.strip():
        return None
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a comma-separated list of layer indices, e.g. 5,9,12,15",
                                 param_hint="--target-layers") from None


def _parse_device_map(value: str | None) -> str | dict[str, object] | None:
    """``auto``/``balanced``/... pass through to accelerate; a JSON object maps module names to devices."""
    if value is None or not value.strip().startswith("{"):
        return value
    try:
        mapping = json.loads(value)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"{value!r} is not a JSON object ({exc.msg})", param_hint="--device-map") from None
    if not isinstance(mapping, dict):
        raise typer.BadParameter(f"{value!r} must be a JSON object of module -> device", param_hint="--device-map")
    return mapping


def _parse_auto_layers(value: str | None) -> int | None:
    """``"auto"`` -> 4, ``"auto:6"`` -> 6 (layers chosen by ``layer_selection``); anything else -> None."""
    if value is None or not value.strip().startswith("auto"):
        return None
    count = value.strip().removeprefix("auto").removeprefix(":") or "4"
    if not count.isdigit() or int(count) < 1:
        raise typer.BadParameter(f"{value!r}: write auto or auto:K with K >= 1, e.g. auto:4", param_hint="--target-layers")
    return int(count)


def _train_summary(artifact: ReadoutArtifact, output: Path, manifest: Path, elh: Path | None, seconds: float) -> str:
    training = artifact.provenance["training"]
    counts = ", ".join(f"{concept} {c['positive']}/{c['negative']}" for concept, c in training["counts"].items())
    lines = [f"trained {len(artifact.concepts)} concepts x {len(artifact.layers)} layers {list(artifact.layers)} "
             f"on {training['n_unique_texts']} unique texts in {seconds:.1f} s "
             f"({training['method']}, {training['pooling']} pooling, {training['forward_dtype']} forward)",
             f"counts (positive/negative): {counts if len(counts) < 400 else counts[:400] + ' ...'}",
             f"vectors:  {output}", f"manifest: {manifest}"]
    return "\n".join(lines + ([f"eLH:      {elh}"] if elh else []))


@app.command("train")
def train_command(
    training_data_dir: Path = typer.Option(..., "--training-data-dir", help="Folder of <emotion>.jsonl examples."),
    model: str = typer.Option("default", "--model", help="'default' (embedded Gemma 3 270M), 'smollm2', an HF folder or a .gguf file."),
    target_layers: Optional[str] = typer.Option(None, "--target-layers", help="Decoder blocks, e.g. 5,9,12,15 (layer_<idx> = output of block idx), or auto[:K]: the K (default 4) best by validation AUROC on the train split. Default: 4 layers over 40-90% of the depth."),
    output: Path = typer.Option(Path("readout.safetensors"), "--output", help="Vectors file; readout.json goes beside it."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="Manifest path (default: <output>.json)."),
    dtype: str = typer.Option("float32", "--dtype", help="Forward precision: float32, bf16 or fp16 (statistics stay fp64)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Texts per forward pass."),
    pooling: str = typer.Option("mean", "--pooling", help="mean (non-pad tokens after --skip-tokens) or last (last non-pad token)."),
    skip_tokens: Optional[int] = typer.Option(None, "--skip-tokens", help="With --pooling mean: skip each text's first K tokens (BOS counts as one). Default: 1 for mean, 0 for last."),
    method: str = typer.Option("lda_diagonal", "--method", help="Direction method: diff_of_means, mean_centered, lda or lda_diagonal."),
    chat_template: bool = typer.Option(False, "--chat-template", help="Wrap texts in the model's chat template."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Keep pooled activations here; reruns skip the model and resume."),
    emotions: Optional[str] = typer.Option(None, "--emotions", help="Comma-separated emotions to train (default: all files)."),
    layout: str = typer.Option("layers", "--format", help="layers (one tensor per layer), or eLH to also write the older (concepts, layers, hidden) file."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Keep each text's first N tokens."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    device_map: Optional[str] = typer.Option(None, "--device-map", help="Spread a model larger than one device (accelerate): 'auto', 'balanced', or a JSON {module: device} map."),
) -> None:
    """Train CAA readout vectors (one forward per unique text) into readout.safetensors + readout.json."""
    import time

    from amygdala.artifact import elh_path_for, save_artifact
    from amygdala.examples import read_examples
    from amygdala.models import load_model
    from amygdala.outputs import check_output_path
    from amygdala.training import TrainOptions, train

    auto_k = _parse_auto_layers(target_layers)
    layers = None if auto_k else _parse_target_layers(target_layers)
    if layout not in ("layers", "eLH"):
        raise typer.BadParameter(f"{layout!r} is not 'layers' or 'eLH'", param_hint="--format")
    names = [name.strip() for name in emotions.split(",") if name.strip()] if emotions else None
    examples = read_examples(training_data_dir, names)
    for path in (output, manifest or output):  # before the model loads: no folder can be made under a file
        check_output_path(path)
    start = time.perf_counter()
    loaded = load_model(model, dtype=dtype, device_map=_parse_device_map(device_map))
    options = TrainOptions(target_layers=tuple(layers) if layers else None, pooling=pooling, skip_tokens=skip_tokens,
                           method=method, batch_size=batch_size, chat_template=chat_template,
                           max_length=max_length, cache_dir=cache_dir, progress=not no_progress)
    curve = None
    if auto_k:
        from dataclasses import replace

        from rich.console import Console

        from amygdala.layer_selection import select_layers
        from amygdala.report import curve_table

        curve = select_layers(loaded, examples, options, k=auto_k)
        Console().print(curve_table(curve))
        options = replace(options, target_layers=curve.chosen)
    artifact = train(loaded, examples, options)
    if curve is not None:
        artifact = replace(artifact, provenance={**artifact.provenance, "layer_selection": curve.to_json()})
    manifest_path = save_artifact(artifact, output, manifest_path=manifest, write_elh=layout == "eLH")
    elh = elh_path_for(output) if layout == "eLH" else None
    typer.echo(_train_summary(artifact, output, manifest_path, elh, time.perf_counter() - start))


@bench_app.command("train")
def bench_train_command(
    quick: bool = typer.Option(False, "--quick", help="Fewer examples: a smoke run, not the reported figures."),
    threads: int = typer.Option(0, "--threads", help="torch threads (0: torch's default)."),
) -> None:
    """Train-stage benchmark on the embedded model (CPU); the last line is one JSON object."""
    import runpy

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_train.py"
    if not script.exists():
        raise FileNotFoundError(f"{script} not found: run `amygdala bench train` from a source checkout")
    runpy.run_path(str(script), run_name="bench_train")["main"]([*(["--quick"] if quick else []), "--threads", str(threads)])
