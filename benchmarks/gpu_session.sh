#!/usr/bin/env bash
# One command for a session that has a GPU (an H200 for at most 15 minutes, start-up included):
#
#   bash benchmarks/gpu_session.sh            # from the repository root; about 5-8 minutes
#
# 1. prints nvidia-smi, python and package versions, and what is missing (never installs from a network);
# 2. makes vramplan importable from this working tree (pip install -e . offline, else PYTHONPATH);
# 3. python benchmarks/gpu_calibration.py under a hard `timeout` (the script itself stops starting runs at
#    420 s and interrupts a run at 450 s; SIGTERM still leaves a complete JSONL);
# 4. python benchmarks/calibration_accuracy.py on the new JSONL;
# 5. pytest -m gpu tests/monitor -q.
#
# Everything is written under calibration/: the JSONL as calibration/<gpu>-<UTC time>.jsonl (what
# calibration_accuracy.py reads) and the logs as calibration/logs/<UTC time>-*.log, ready to commit. When $OUT
# is set (the device tool's output folder), the same files (7 at most) are copied there too, since only $OUT
# comes back from the GPU machine. The whole script stays under SESSION_LIMIT seconds (default 570: the device
# tool allows 600 s per command): each step's timeout is cut to what is left. It always exits 0 and ends with a
# table of the steps and their status.
set -u
cd "$(dirname "$0")/.." || exit 0
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY=${PYTHON:-python3}
STAMP=$(date -u +%Y%m%d-%H%M%S)
LOGS=calibration/logs
mkdir -p "$LOGS"
SESSION_LOG="$LOGS/$STAMP-session.log"
T0=$(date +%s)
LIMIT=${SESSION_LIMIT:-570}
declare -a STEPS=()

log() { echo "[gpu_session +$(( $(date +%s) - T0 ))s] $*" | tee -a "$SESSION_LOG"; }
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
# step NAME CAP_SECONDS LOGFILE CMD...: run CMD under timeout min(CAP, time left - reserve), tee to LOGFILE
step() {
  local name=$1 cap=$2 logfile=$3; shift 3
  local budget; budget=$(left)
  budget=$(( budget - ${RESERVE:-15} ))
  [ "$budget" -gt "$cap" ] && budget=$cap
  if [ "$budget" -lt 10 ]; then
    log "SKIP $name: no time left (session limit ${LIMIT}s)"; STEPS+=("$name: skipped (no time left)"); return 0
  fi
  log "START $name (timeout ${budget}s): $*"
  local t=$(date +%s)
  timeout -k 10 "$budget" "$@" > >(tee -a "$logfile") 2>&1
  local rc=$?
  sleep 0.2  # let tee finish
  local what="ok"
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then what="TIMEOUT after ${budget}s"; elif [ $rc -ne 0 ]; then what="FAILED (exit $rc)"; fi
  log "END $name: $what in $(( $(date +%s) - t ))s"
  STEPS+=("$name: $what ($(( $(date +%s) - t ))s, log $logfile)")
  return 0
}

log "vramplan GPU session $STAMP in $(pwd); session limit ${LIMIT}s"

# 1. environment -------------------------------------------------------------------------------------------
ENV_LOG="$LOGS/$STAMP-env.log"
{
  echo "== nvidia-smi"; (command -v nvidia-smi >/dev/null && timeout 30 nvidia-smi) || echo "nvidia-smi: not found"
  echo "== nvidia-smi query"; timeout 30 nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.sm --format=csv 2>&1 || true
  echo "== python: $(command -v "$PY") $("$PY" --version 2>&1)"; echo "== cpus: $(nproc 2>/dev/null)"
  echo "== PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-} CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-}"
  timeout 120 "$PY" - <<'EOF'
import importlib.metadata, importlib.util
missing = []
dists = {"yaml": "PyYAML", "pynvml": "nvidia-ml-py"}
for name in ("torch", "transformers", "peft", "pynvml", "bitsandbytes", "yaml", "pytest", "accelerate", "deepspeed",
             "setuptools", "wheel"):
    if importlib.util.find_spec(name) is None:
        missing.append(name)
        print(f"{name:<13} MISSING")
        continue
    try:
        version = importlib.metadata.version(dists.get(name, name))
    except Exception:
        version = "?"
    print(f"{name:<13} {version}")
need = {"torch": "everything", "transformers": "every run", "yaml": "vramplan itself", "pytest": "step 5",
        "peft": "the LoRA runs (recorded as skipped)", "bitsandbytes": "the QLoRA runs (recorded as skipped)",
        "pynvml": "NVML device-used numbers (cudaMemGetInfo is used instead)"}
for name in missing:
    if name in need:
        print(f"missing {name}: needed for {need[name]}")
try:
    import torch
    print("torch.cuda.is_available():", torch.cuda.is_available(), "| cuda", torch.version.cuda)
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        free, total = torch.cuda.mem_get_info(0)
        print(f"device 0: {p.name}, {p.total_memory / 2**30:.2f} GiB, cc {p.major}.{p.minor}, "
              f"free {free / 2**30:.2f} GiB; bf16 {torch.cuda.is_bf16_supported()}")
        print("grouped_mm:", hasattr(torch.nn.functional, "grouped_mm"), hasattr(torch, "_grouped_mm"))
except Exception as exc:
    print("torch CUDA check failed:", type(exc).__name__, exc)
EOF
} > >(tee -a "$ENV_LOG") 2>&1
sleep 0.2
STEPS+=("environment: see $ENV_LOG")

# 2. vramplan from this tree ----------------------------------------------------------------------------------
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
HERE=$(cd /tmp && "$PY" -c "import os, vramplan; print(os.path.dirname(os.path.dirname(os.path.abspath(vramplan.__file__))))" 2>/dev/null)
if [ "$HERE" = "$(pwd)" ] && [ -n "$(cd /tmp && "$PY" -m pip show vramplan 2>/dev/null | grep -i '^Editable project location')" ]; then
  log "vramplan is already installed in editable mode from this tree"
  STEPS+=("install: already editable from this tree")
elif timeout 90 "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e . >>"$SESSION_LOG" 2>&1; then
  log "pip install -e . (offline, no deps): ok"
  STEPS+=("install: pip install -e . ok")
else
  log "pip install -e . failed (see $SESSION_LOG); using PYTHONPATH=$(pwd)"
  STEPS+=("install: pip install -e . FAILED, PYTHONPATH used")
fi
if ! "$PY" -c "import vramplan, vramplan.monitor, torch, transformers; print('vramplan', vramplan.__version__, 'from', vramplan.__file__)" 2>&1 | tee -a "$SESSION_LOG"; then
  log "vramplan or torch/transformers do not import: the steps below will fail (see above)"
fi

# 3. calibration ----------------------------------------------------------------------------------------------
CAL_LOG="$LOGS/$STAMP-calibration.log"
before=$(ls calibration/*.jsonl calibration/*.jsonl.partial 2>/dev/null | sort)
RESERVE=75 step calibration 475 "$CAL_LOG" "$PY" benchmarks/gpu_calibration.py
after=$(ls calibration/*.jsonl calibration/*.jsonl.partial 2>/dev/null | sort)
NEW=$(comm -13 <(echo "$before") <(echo "$after") | head -n 1)
if [ -n "$NEW" ] && [ "${NEW%.partial}" != "$NEW" ]; then  # killed hard: keep the complete lines
  mv "$NEW" "${NEW%.partial}" && NEW="${NEW%.partial}" && log "renamed the .partial file to $NEW"
fi
if [ -n "$NEW" ]; then
  log "calibration records: $NEW ($(wc -l < "$NEW") lines): $("$PY" -c "import json,sys,collections; c=collections.Counter(json.loads(l).get('status') for l in open(sys.argv[1]) if l.strip()); print(dict(c))" "$NEW" 2>&1)"
else
  log "calibration wrote no JSONL"
fi

# 4. accuracy -------------------------------------------------------------------------------------------------
ACC_LOG="$LOGS/$STAMP-accuracy.log"
if [ -n "$NEW" ]; then
  RESERVE=40 step accuracy 60 "$ACC_LOG" "$PY" benchmarks/calibration_accuracy.py --file "$NEW"
else
  RESERVE=40 step accuracy 60 "$ACC_LOG" "$PY" benchmarks/calibration_accuracy.py
fi

# 5. GPU tests ------------------------------------------------------------------------------------------------
TEST_LOG="$LOGS/$STAMP-pytest-gpu.log"
RESERVE=5 step "pytest -m gpu" 150 "$TEST_LOG" "$PY" -m pytest -m gpu tests/monitor -q -p no:cacheprovider -rs

# summary and copies ------------------------------------------------------------------------------------------
log "summary ($(( $(date +%s) - T0 ))s in all):"
for s in "${STEPS[@]}"; do log "  $s"; done
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ] && [ -w "${OUT:-}" ]; then
  for f in $NEW "$SESSION_LOG" "$ENV_LOG" "$CAL_LOG" "$ACC_LOG" "$TEST_LOG"; do
    [ -f "$f" ] && cp "$f" "$OUT/" 2>/dev/null
  done
  log "copied the JSONL and logs to \$OUT ($OUT): commit them under calibration/ (JSONL) and calibration/logs/"
  cp "$SESSION_LOG" "$OUT/" 2>/dev/null
fi
exit 0
