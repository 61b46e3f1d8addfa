"""Validated request -> generation jobs: tokenise the prompt(s), check every bound, merge steering.

Every problem of a request is collected and answered in one 400, naming the first offending field as ``param``.
"""

from __future__ import annotations

from typing import Any

from amygdala.readout.generation import GenerationError, SamplingOptions, check_sampling
from amygdala.readout.projection import ReadoutError, ReadoutOptions, check_options
from amygdala.serve.engine import Engine, GenerationJob, ServeOptions
from amygdala.serve.schemas import APIError, ChatCompletionRequest, CompletionRequest, GenerationRequest

MAX_STOP_STRINGS = 4
Problems = list[tuple[str, str]]


def completion_jobs(request: CompletionRequest, engine: Engine, options: ServeOptions) -> list[GenerationJob]:
    """One job per prompt and choice, prompt-major (choice index = prompt index * n + k)."""
    tokenizer: Any = engine.loaded.tokenizer
    problems: Problems = []
    prompt = request.prompt
    if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
        texts_or_ids: list[str | list[int]] = [prompt]  # type: ignore[list-item]
    else:
        texts_or_ids = list(prompt)  # type: ignore[arg-type]
    prompts = []
    vocab = len(tokenizer)
    for item in texts_or_ids:
        ids = list(tokenizer(item).input_ids) if isinstance(item, str) else list(item)
        if isinstance(item, list) and any(not 0 <= token < vocab for token in item):
            problems.append(("prompt", f"prompt token ids must be in 0..{vocab - 1}"))
        prompts.append(ids)
    return _jobs(request, prompts, request.max_tokens, engine, options, problems)


def chat_jobs(request: ChatCompletionRequest, engine: Engine, options: ServeOptions) -> list[GenerationJob]:
    """The conversation through the tokenizer's chat template (with the generation prompt), n jobs."""
    tokenizer: Any = engine.loaded.tokenizer
    problems: Problems = []
    if not getattr(tokenizer, "chat_template", None):
        raise APIError(400, f"model {options.model_name} has no chat template: use /v1/completions with a prompt",
                       param="messages", code="no_chat_template")
    if any(part.get("type") != "text" for message in request.messages if isinstance(message.content, list)
           for part in message.content):
        problems.append(("messages", "only text content parts are supported"))
    messages = [{"role": message.role, "content": message.text()} for message in request.messages]
    try:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except Exception as exc:  # noqa: BLE001 - a template rejecting the conversation is the caller's 400
        raise APIError(400, f"the chat template rejected the messages: {exc}", param="messages") from None
    ids = list(tokenizer(text, add_special_tokens=False).input_ids)
    max_tokens = request.max_completion_tokens or request.max_tokens
    return _jobs(request, [ids], max_tokens, engine, options, problems)


def _stops(request: GenerationRequest, problems: Problems) -> tuple[str, ...]:
    stops = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    if len(stops) > MAX_STOP_STRINGS:
        problems.append(("stop", f"stop has {len(stops)} strings; at most {MAX_STOP_STRINGS} are allowed"))
    return tuple(stops)


def _readout_options(request: GenerationRequest, engine: Engine, options: ServeOptions,
                     problems: Problems) -> ReadoutOptions:
    steer = {**options.steer, **request.steer}
    layers = tuple(request.steer_layers) if request.steer_layers is not None else options.steer_layers
    readout = ReadoutOptions(zscore=request.readout_zscore and request.readout, steer=steer, steer_layers=layers)
    if engine.artifact is None:
        if request.steer or request.readout_zscore or request.steer_layers is not None:
            problems.append(("steer" if request.steer else "readout_zscore",
                             "this server was started without vectors: steer and readout_zscore need --vectors"))
        return ReadoutOptions()
    try:
        check_options(engine.artifact, readout)
    except ReadoutError as exc:
        problems.append(("steer" if "steer" in str(exc) else "readout_zscore", str(exc)))
    return readout


def _jobs(request: GenerationRequest, prompts: list[list[int]], max_tokens: int | None, engine: Engine,
          options: ServeOptions, problems: Problems) -> list[GenerationJob]:
    if unsupported := request.unsupported():
        problems.append((unsupported[0], f"field(s) {', '.join(unsupported)} are not supported by amygdala serve"))
    if not prompts or any(not ids for ids in prompts):
        problems.append(("prompt", "the prompt is empty: give at least one token"))
    if (longest := max((len(ids) for ids in prompts), default=0)) > options.max_prompt_tokens:
        problems.append(("prompt", f"the prompt has {longest} tokens; this server allows {options.max_prompt_tokens}"))
    if max_tokens is not None and max_tokens > options.max_tokens:
        problems.append(("max_tokens", f"max_tokens {max_tokens} exceeds this server's limit {options.max_tokens}"))
    if (choices := request.n * len(prompts)) > options.max_choices:
        problems.append(("n", f"{choices} choices requested (n x prompts); this server allows {options.max_choices}"))
    sampling = SamplingOptions(max_tokens=max_tokens or options.default_max_tokens, temperature=request.temperature,
                               top_p=request.top_p, seed=request.seed, stop=_stops(request, problems))
    try:
        check_sampling(sampling)
    except GenerationError as exc:
        problems.append(("stop", str(exc)))
    readout = _readout_options(request, engine, options, problems)
    if problems:
        raise APIError(400, "; ".join(message for _, message in problems), param=problems[0][0],
                       code="invalid_value")
    return [GenerationJob(tuple(ids), _choice_sampling(sampling, k), request.readout, readout)
            for ids in prompts for k in range(request.n)]


def _choice_sampling(sampling: SamplingOptions, k: int) -> SamplingOptions:
    """Choice k of a seeded request samples with seed + k, so n choices differ yet replay exactly."""
    if sampling.seed is None or k == 0:
        return sampling
    return SamplingOptions(sampling.max_tokens, sampling.temperature, sampling.top_p, sampling.seed + k, sampling.stop)
