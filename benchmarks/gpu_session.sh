#!/usr/bin/env bash
# Everything a short GPU slot should run, at most 7.5 minutes (the sum of the step limits: 30 + 90 + 90 + 150 +
# 90 s): the device checks, the train benchmark at Qwen3-8B's and Qwen3-32B's shapes (random weights, bf16), then
# the vLLM plugin's readout op in a CUDA graph on a Qwen3-32B-shaped stack (torch only; vLLM is not needed). Each step runs in its own process under a timeout, so one failure or hang loses nothing else.
# One JSON line per step goes to stdout and to $OUT/gpu_session.jsonl (a benchmark cut short reports its last
# finished batching); each step's full stdout/stderr stays in $OUT/<step>.out / .err.
#
#   OUT=/some/dir bash benchmarks/gpu_session.sh            # from the repository root (no install needed)
#   SESSION_DEVICE=cpu SESSION_MODELS=tiny bash benchmarks/gpu_session.sh   # the same script, tried on a CPU
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
OUT="${OUT:-$PWD/gpu-session-out}"
DEVICE="${SESSION_DEVICE:-cuda}"
MODELS="${SESSION_MODELS:-qwen3-8b qwen3-32b}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT"
LOG="$OUT/gpu_session.jsonl"
: > "$LOG"

step() {  # step NAME SECONDS COMMAND...: run it under a timeout, then print one JSON line about it
  local name=$1 limit=$2
  shift 2
  local start
  start=$(date +%s.%N)
  timeout --kill-after=15 "$limit" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"
  local rc=$?
  "$PYTHON" - "$name" "$rc" "$start" "$OUT/$name.out" "$OUT/$name.err" <<'EOF' | tee -a "$LOG"
import json, sys, time
name, rc, start, out, err = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
lines = open(out, encoding="utf-8", errors="replace").read().splitlines()
try:
    result = json.loads(lines[-1]) if lines else None
except ValueError:
    result = None
step = {"step": name, "rc": rc, "timed_out": rc in (124, 137), "seconds": round(time.time() - start, 1),
        "result": result}
if rc != 0 or result is None:
    step["stderr_tail"] = open(err, encoding="utf-8", errors="replace").read()[-1500:]
print(json.dumps(step), flush=True)
EOF
}

step environment 30 "$PYTHON" -c "
import json, platform, torch, transformers
cuda = torch.cuda.is_available()
print(json.dumps({'python': platform.python_version(), 'torch': torch.__version__,
                  'transformers': transformers.__version__, 'cuda': torch.version.cuda if cuda else None,
                  'gpus': [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
                  'gpu_memory_gib': round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None}))"
step checks 90 "$PYTHON" benchmarks/device_checks.py --device "$DEVICE"
for model in $MODELS; do
  case $model in
    qwen3-32b) limit=150 ;;
    qwen3-8b) limit=90 ;;
    *) limit=90 ;;
  esac
  step "bench_train_$model" "$limit" "$PYTHON" benchmarks/bench_train.py --device "$DEVICE" --random-model "$model"
done
op_size=$([[ $MODELS == tiny ]] && echo --tiny)
step readout_op 90 "$PYTHON" plugins/vllm/benchmarks/bench_readout_op_gpu.py --device "$DEVICE" $op_size
echo "all steps done; lines in $LOG" >&2
