"""Options and flag parsers shared by several commands, defined once."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, cast

import typer

if TYPE_CHECKING:  # the CLI starts without torch: stage modules are imported when a command runs
    from amygdala.forward.pooling import Pooling
    from amygdala.readout.projection import LayerCombine, ReadoutOptions
    from amygdala.training.layers import AutoLayers

MODEL = typer.Option("default", "--model", help="'default' (embedded Gemma 3 270M), 'smollm2', an HF folder or a "
                     ".gguf file.")
MANIFEST = typer.Option(None, "--manifest", help="Manifest path (default: <vectors>.json).")
FORWARD_DTYPE = typer.Option(None, "--dtype", help="Forward precision: float32, bf16 or fp16 (default: bf16 on a GPU, "
                             "float32 on a CPU).")
DEVICE = typer.Option(None, "--device", help="cpu, cuda, cuda:N or mps (default: cuda if available, else cpu; under "
                      "torchrun each rank takes cuda:LOCAL_RANK).")
STEER = typer.Option(None, "--steer", help="concept=alpha (repeatable): add alpha x (mean residual norm on the "
                     "prompt) x the concept's unit vector at each steered layer.")
STEER_LAYER = typer.Option(None, "--steer-layer", help="Layer that steers (repeatable; default: every hooked layer).")
BATCH_SIZE = typer.Option(None, "--batch-size", help="Most texts per forward pass (default: 8 on a CPU; on a GPU "
                          "--batch-tokens caps instead).")
BATCH_TOKENS = typer.Option(None, "--batch-tokens", help="Most padded tokens (texts x the longest) per forward pass of "
                            "the length-sorted texts (default: 8192 on a GPU; none on a CPU).")
NO_PROGRESS = typer.Option(False, "--no-progress", help="No progress bar.")
#: Commands that hand the arguments they do not know to a script (``amygdala bench ...``).
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def parse_target_layers(value: str | None) -> tuple[int, ...] | AutoLayers | None:
    """``"5,9,12,15"`` -> ``(5, 9, 12, 15)``; ``"auto"`` / ``"auto:K"`` -> ``AutoLayers(K)`` (K defaults to 4);
    None or empty -> None (``training.default_target_layers``)."""
    if value is None or not value.strip():
        return None
    if value.strip().startswith("auto"):
        from amygdala.training.layers import AutoLayers

        count = value.strip().removeprefix("auto").removeprefix(":") or "4"
        if not count.isdigit() or int(count) < 1:
            raise typer.BadParameter(f"{value!r}: write auto or auto:K with K >= 1, e.g. auto:4",
                                     param_hint="--target-layers")
        return AutoLayers(k=int(count))
    try:
        return tuple(int(part) for part in value.split(",") if part.strip()) or None
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a comma-separated list of layer indices, e.g. 5,9,12,15",
                                 param_hint="--target-layers") from None


def parse_device_map(value: str | None) -> str | dict[str, object] | None:
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


def parse_pooling(value: str | None) -> Pooling | None:
    """A pooling rule name (``pooling.POOLINGS``), or None (as trained)."""
    from amygdala.forward.pooling import POOLINGS

    if value is None:
        return None
    if value not in POOLINGS:
        raise typer.BadParameter(f"{value!r} is not {' or '.join(map(repr, POOLINGS))}", param_hint="--pooling")
    return cast("Pooling", value)


def parse_combine_layers(value: str | None, *, zscore: bool) -> LayerCombine | None:
    """A ``readout.LAYER_COMBINES`` name, or None (one readout per layer); combining needs z-scores."""
    from amygdala.readout.projection import LAYER_COMBINES

    if value is None:
        return None
    if value not in LAYER_COMBINES:
        raise typer.BadParameter(f"{value!r} is not {' or '.join(map(repr, LAYER_COMBINES))}",
                                 param_hint="--combine-layers")
    if not zscore:
        raise typer.BadParameter(f"{value!r} averages the layers' z-scores: add --zscore", param_hint="--combine-layers")
    return value


def readout_options(zscore: bool, steer: list[str] | None, steer_layer: list[int] | None) -> ReadoutOptions:
    """``--zscore``, ``--steer`` and ``--steer-layer`` as ``ReadoutOptions`` (readout and serve)."""
    from amygdala.readout.projection import ReadoutOptions, parse_steer

    return ReadoutOptions(zscore=zscore, steer=parse_steer(steer or []),
                          steer_layers=tuple(steer_layer) if steer_layer else None)


def parse_names(value: str | None) -> tuple[str, ...] | None:
    """``"joy, fear"`` -> ``("joy", "fear")``; None or only commas -> None."""
    names = tuple(name.strip() for name in (value or "").split(",") if name.strip())
    return names or None


def is_main_rank() -> bool:
    """False in the ranks > 0 of a torchrun / accelerate launch (they draw no progress bars, print no summary)."""
    from amygdala.forward.launcher import world_or_single

    return world_or_single().is_main


#: ``amygdala bench <command>`` -> the installed module whose ``main(argv) -> int`` runs it.
BENCHMARKS = {"train": "amygdala.bench.train", "readout": "amygdala.bench.readout"}


def run_benchmark(command: str, argv: list[str]) -> None:
    """Run ``amygdala.bench.<command>`` (installed with the package; imports torch only now)."""
    import importlib

    code = importlib.import_module(BENCHMARKS[command]).main(argv)
    if code:
        raise typer.Exit(int(code))
