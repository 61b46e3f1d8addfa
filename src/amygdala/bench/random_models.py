"""Random-weight models at real models' shapes, a word-level tokenizer and a synthetic token stream: speed
figures at scale with no download. Never evidence of quality (the weights are noise).

- ``RANDOM_MODELS``: Qwen3 configs embedded here (``qwen3-32b``, ``qwen3-8b``: the published shapes; ``tiny``:
  the same architecture, small enough for a CPU smoke run).
- ``build_random_model``: built on the meta device, then materialised directly on the target device in the
  target dtype and filled with a seeded small normal (std 0.02; norms 1), so a 32B model takes seconds and no
  value is NaN/inf (which could change which kernels run).
- ``word_tokenizer``: a real Hugging Face fast tokenizer whose words ``w<id>`` map to token ``<id>``, so a
  synthetic text is exactly the token ids it spells and ``amygdala.training.stage.train`` runs unchanged.
- ``synthetic_examples``: the issue's setup, ``n_texts`` unique texts with a skewed length distribution
  (about 108 tokens on average), each a positive for one of ``n_concepts`` concepts and a negative for four
  others.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import torch

from amygdala.extraction.examples import Example
from amygdala.forward.models import LoadedModel, canonical_dtype

_QWEN3_COMMON: dict[str, Any] = {"max_position_embeddings": 40960, "rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6,
                 "tie_word_embeddings": False, "head_dim": 128, "vocab_size": 151936,
                 "hidden_act": "silu", "attention_bias": False}
RANDOM_MODELS: dict[str, dict[str, Any]] = {
    "qwen3-32b": {**_QWEN3_COMMON, "hidden_size": 5120, "intermediate_size": 25600, "num_hidden_layers": 64,
                  "num_attention_heads": 64, "num_key_value_heads": 8},
    "qwen3-8b": {**_QWEN3_COMMON, "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
                 "num_attention_heads": 32, "num_key_value_heads": 8},
    "tiny": {**_QWEN3_COMMON, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
             "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32, "vocab_size": 4096},
}
_WORDS = 32768  # distinct words of the synthetic tokenizer (ids 0..min(vocab, this)-1; id 0 pads)


def qwen3_config(name: str) -> Any:
    from transformers import Qwen3Config

    if name not in RANDOM_MODELS:
        raise ValueError(f"random model {name!r} is not one of {', '.join(RANDOM_MODELS)}")
    return Qwen3Config(**RANDOM_MODELS[name])


def _fill(model: torch.nn.Module, seed: int) -> None:
    """Seeded small normal weights (std 0.02, as HF's initializer_range), RMSNorm weights 1."""
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.fill_(1.0)
            else:
                parameter.normal_(0.0, 0.02, generator=generator)


def build_random_model(name: str, device: str = "cpu", dtype: str = "bfloat16", seed: int = 0) -> LoadedModel:
    """A Qwen3 of ``RANDOM_MODELS[name]``'s shape with random weights, materialised on ``device`` in ``dtype``."""
    from transformers import Qwen3ForCausalLM

    config = qwen3_config(name)
    target = torch.device(device)
    with torch.device("meta"):
        model = Qwen3ForCausalLM._from_config(config, dtype=_dtype(dtype))
    model = model.to_empty(device=target)
    rotary = model.model.rotary_emb
    with torch.device(target):  # its inv_freq buffers are computed, not parameters: build them for real
        model.model.rotary_emb = type(rotary)(config=config)
    _fill(model, seed)
    model.eval()
    model.requires_grad_(False)
    tokenizer = word_tokenizer(int(config.vocab_size))
    return LoadedModel(model, tokenizer, f"random:{name}", f"random-{name}-seed{seed}-{dtype}",
                       canonical_dtype(dtype))


def word_tokenizer(vocab_size: int) -> object:
    """A fast tokenizer splitting on whitespace, word ``w<i>`` -> id ``i``; ``w0`` pads (no BOS, no EOS)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = min(vocab_size, _WORDS)
    core = Tokenizer(models.WordLevel({f"w{i}": i for i in range(words)}, unk_token="w0"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="w0", unk_token="w0", padding_side="right")


@dataclass(frozen=True)
class SyntheticSet:
    """The synthetic training set and its size in tokens."""

    examples: tuple[Example, ...]
    texts: tuple[str, ...]
    token_counts: tuple[int, ...]

    @property
    def tokens(self) -> int:
        return sum(self.token_counts)


def synthetic_examples(n_texts: int = 496, mean_tokens: float = 107.4, n_concepts: int = 12, vocab_size: int = 151936,
                       seed: int = 0) -> SyntheticSet:
    """``n_texts`` unique texts of seeded random words; lengths log-normal (sigma 0.5, clipped to 16..512) with
    mean about ``mean_tokens``; text i is a positive for concept i mod C and a negative for the next four."""
    rng, words = random.Random(seed), min(vocab_size, _WORDS)
    median = mean_tokens / math.exp(0.125)  # a log-normal's mean is its median x exp(sigma^2 / 2)
    lengths = [min(512, max(16, round(rng.lognormvariate(math.log(median), 0.5)))) for _ in range(n_texts)]
    texts = []
    for index, length in enumerate(lengths):  # the first word (index + 1) keeps every text distinct
        texts.append(" ".join(f"w{1 + (index if i == 0 else rng.randrange(words - 1))}" for i in range(length)))
    concepts = [f"c{c:02d}" for c in range(n_concepts)]
    examples = []
    for index, text in enumerate(texts):
        examples.append(Example(concepts[index % n_concepts], "positive", text, f"t{index}", 9.0, "train"))
        for shift in range(1, min(5, n_concepts)):
            examples.append(Example(concepts[(index + shift) % n_concepts], "negative", text, f"t{index}", 0.0,
                                    "train"))
    return SyntheticSet(tuple(examples), tuple(texts), tuple(lengths))


def forward_flops(config: Any, token_counts: list[int] | tuple[int, ...], n_blocks: int) -> float:
    """Model FLOPs of a forward through the first ``n_blocks`` decoder blocks over texts of these lengths, real
    tokens only: 2 x the block matmul weights per token, plus causal attention (QK^T and AV, 2·T²·d per layer)."""
    hidden, heads, kv = config.hidden_size, config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    attention = hidden * head_dim * (2 * heads + 2 * kv)
    mlp = 3 * hidden * config.intermediate_size
    per_token = 2 * (attention + mlp) * n_blocks
    quadratic = sum(2 * t * t * heads * head_dim for t in token_counts) * n_blocks
    return float(per_token * sum(token_counts) + quadratic)


def matmul_peak_tflops(device: str, dtype: str, seconds: float = 2.0) -> float:
    """Measured dense matmul throughput in ``dtype`` on ``device`` (TFLOP/s): square products, best of a few."""
    size = 8192 if torch.device(device).type == "cuda" else 1024
    a = torch.randn(size, size, device=device, dtype=_dtype(dtype))
    b = torch.randn(size, size, device=device, dtype=_dtype(dtype))
    best, spent, rounds = 0.0, 0.0, 0
    while spent < seconds or rounds < 3:
        _sync(device)
        start = _now()
        for _ in range(10):
            a @ b
        _sync(device)
        elapsed = _now() - start
        best, spent, rounds = max(best, 10 * 2 * size**3 / elapsed / 1e12), spent + elapsed, rounds + 1
    return best


def _dtype(name: str) -> torch.dtype:
    return getattr(torch, canonical_dtype(name))


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _now() -> float:
    import time

    return time.perf_counter()
