"""Offline ``LLM.generate`` with the plugin, run in a fresh plugin-venv process (vLLM reads plugin settings once
per process). Reads ``{"model", "prompts", "max_tokens", "n"}`` (JSON file, argv[1]); prints, per prompt and
completion, ``{"prompt_ids", "token_ids", "readout"}``."""

from __future__ import annotations

import json
import sys


def main(request_path: str) -> None:
    from vllm import LLM, SamplingParams

    request = json.loads(open(request_path, encoding="utf-8").read())
    llm = LLM(model=request["model"], dtype="float32", kv_cache_memory_bytes=64 << 20, max_model_len=256,
              max_num_seqs=4, seed=0)
    params = SamplingParams(max_tokens=request["max_tokens"], temperature=0, n=request["n"])
    results = [{"prompt_ids": list(output.prompt_token_ids), "token_ids": list(completion.token_ids),
                "readout": completion.readout}
               for output in llm.generate(request["prompts"], params, use_tqdm=False)
               for completion in output.outputs]
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])
