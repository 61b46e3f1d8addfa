"""Offline ``LLM.generate`` with the plugin, run in a fresh plugin-venv process (vLLM reads plugin settings once
per process). Reads ``{"model", "prompts", "max_tokens", "n", "engine_args"}`` (JSON file, argv[1]); prints, per
prompt and completion, ``{"prompt_ids", "token_ids", "readout"}``, then the engine's ``{"enforce_eager",
"compilation_mode", "reporting_ranks"}``."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(request_path: str) -> None:
    from vllm import LLM, SamplingParams

    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    llm = LLM(model=request["model"], **request["engine_args"])
    params = SamplingParams(max_tokens=request["max_tokens"], temperature=0, n=request["n"])
    results = [{"prompt_ids": list(output.prompt_token_ids or []), "token_ids": list(completion.token_ids),
                "readout": getattr(completion, "readout", None)}
               for output in llm.generate(request["prompts"], params, use_tqdm=False)
               for completion in output.outputs]
    print("RESULT " + json.dumps(results))
    config = llm.llm_engine.vllm_config
    answers = llm.collective_rpc("amygdala_readout_take", args=([],))  # one per rank: None = not reporting
    print("ENGINE " + json.dumps({"enforce_eager": config.model_config.enforce_eager,
                                  "compilation_mode": int(config.compilation_config.mode),
                                  "reporting_ranks": [rank for rank, answer in enumerate(answers) if answer]}))


if __name__ == "__main__":
    main(sys.argv[1])
