#!/usr/bin/env bash
# Everything a lent GPU machine should run, in one call (device time is scarce; one call may run
# 600 s): the CUDA tests, the GPU suite, then the batch-1 kernel diagnostics (default: the fused
# step's variants (attention split or not, SDPA, dependent launches) with kernel times by name;
# KERNELS_ARGS="--sweep --breakdown" adds the launch-configuration sweep (run 3 recorded it),
# KERNELS_ARGS=--compile the compiled steps). Results land in $OUT (or ./gpu-out). Arguments go
# to the suite (e.g. --only b1,large).
# The suite and diagnostics need torch, safetensors and transformers only; the tests also save
# tokenizer files (sacremoses: put it on PYTHONPATH where the machine lacks it).
set -uo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
# the whole log comes back in $OUT; the console shows its end
timeout "${TEST_TIMEOUT:-150}" python3 -m pytest -q --maxfail=15 --tb=short -p no:cacheprovider ${TESTS:-tests/model/test_cuda.py tests/model/test_training_step.py} > "$OUT/tests-full.log" 2>&1
tail -n 30 "$OUT/tests-full.log" | tee "$OUT/tests.log"
timeout "${SUITE_TIMEOUT:-300}" python3 -m benchmarks.run --suite gpu --json "$OUT/gpu.json" --markdown "$OUT/gpu.md" "$@" 2>&1 | grep -v -e "Loading weights" -e "select_algorithm" | tee "$OUT/suite.log"
timeout "${KERNELS_TIMEOUT:-140}" python3 -m benchmarks.gpu_kernels --large ${KERNELS_ARGS:---breakdown} 2>&1 | tee "$OUT/kernels.log" | grep -v "select_algorithm"  # inductor's autotuning chatter stays in the log
