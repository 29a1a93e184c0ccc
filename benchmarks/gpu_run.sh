#!/usr/bin/env bash
# The GPU checks, as one script for a machine with an NVIDIA card and PyTorch (no install needed):
#   bash benchmarks/gpu_run.sh OUTDIR
# It runs `rnncheck verify examples/ --device cuda`, the cost benchmark at hidden sizes 256
# and 1024 on the GPU (H=1024 is an 8.4-million-parameter LSTM), and the regression gate on
# the GPU with a baseline written from 3 runs (cuDNN's nondeterminism sets its tolerances).
set -u
OUT="${1:-${OUT:-gpu-out}}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
[ -e rnncheck/reference ] || ln -s "$PWD/reference" rnncheck/reference   # what the wheel's package-dir does
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
echo "== verify examples on cuda"
python3 -m rnncheck verify examples/ --device cuda --json "$OUT/gpu_examples.json" > "$OUT/gpu_examples.txt" 2>&1
echo "exit code $?" | tee -a "$OUT/gpu_examples.txt"
tail -3 "$OUT/gpu_examples.txt"
echo "== ordinary and non-finite models on cuda (packed, out of order, 0-d, bfloat16, softmax head, NaN causes)"
python3 -m rnncheck verify tests/models/ordinary_models.py tests/models/nonfinite_models.py --device cuda \
  --timeout 120 --json "$OUT/gpu_ordinary.json" > "$OUT/gpu_ordinary.txt" 2>&1
echo "exit code $? (1 expected: the files hold planted bugs and user errors)" | tee -a "$OUT/gpu_ordinary.txt"
grep -E "^(PASS|WARN|FAIL|ERROR)" "$OUT/gpu_ordinary.txt"
echo "== cost benchmark on cuda"
python3 benchmarks/bench_cost.py --sizes 256 1024 --device cuda --limit 20 --json "$OUT/gpu_cost.json" 2>&1 | tee "$OUT/gpu_cost.txt"
echo "== flow structure (σ_max, spectral radius) on cuda"
python3 benchmarks/bench_structure.py --device cuda --json "$OUT/gpu_structure.json" 2>&1 | tee "$OUT/gpu_structure.txt"
echo "== gate on cuda"
python3 -m rnncheck verify ci/reference_models.py examples/lstm_module.py examples/flow_healthy_lstm.py --device cuda \
  --baseline "$OUT/gpu_baseline.json" --update-baseline --baseline-repeats 3 > "$OUT/gpu_gate.txt" 2>&1
echo "update exit code $?" | tee -a "$OUT/gpu_gate.txt"
python3 -m rnncheck verify ci/reference_models.py examples/lstm_module.py examples/flow_healthy_lstm.py --device cuda \
  --baseline "$OUT/gpu_baseline.json" >> "$OUT/gpu_gate.txt" 2>&1
echo "compare exit code $?" | tee -a "$OUT/gpu_gate.txt"
tail -3 "$OUT/gpu_gate.txt"
echo "== profile"
python3 benchmarks/gpu_profile.py cuda 2>&1 | tee "$OUT/gpu_profile.txt" | head -40
