#!/usr/bin/env bash
# The GPU checks of issue 7 as one command, for a machine with CUDA, run from the repository root:
#   bash scripts/device_check.sh [OUT]      (default OUT: results/runs/device-check)
# The CUDA tests (tests/test_cuda.py), then the benchmark at roberta-base size in bf16, with RoBERTa's attention
# dropout and without, then the plan's calibration. Logs and records land in OUT (7 files). It installs nothing:
# the GPU's torch is used, and the package need not be installed (python -m from the root). The entrypoint test also needs the suite's
# dependencies (hydra-core, datasets, evaluate, ...); where they are missing only that test fails.
set -uo pipefail
out="${1:-results/runs/device-check}"
python="${PYTHON:-python3}"
mkdir -p "$out"
"$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to check')" || exit 2
"$python" -c "import torch; print(torch.__version__, torch.cuda.get_device_name())" | tee "$out/device.txt"
status=0
HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 "$python" -m pytest -p no:cacheprovider tests/test_cuda.py 2>&1 \
    | tee "$out/cuda-tests.log" || status=1
for dropout in 0.1 0; do
    PYTHONUNBUFFERED=1 "$python" -m propulsion.studies.bench --attention-dropout "$dropout" \
        --out "$out/bench-attention-dropout-$dropout.json" 2>&1 | tee "$out/bench-attention-dropout-$dropout.log" \
        || status=1
done
# The plan's constants measured on this GPU (issue 28): RoBERTa-base Propulsion(All) and full fine-tuning at the
# authors' MNLI settings, written to results/plan/calibration-<gpu>.json and copied into OUT. Untested on a GPU.
HF_HUB_OFFLINE=1 "$python" -m propulsion.studies.plan --calibrate model=roberta-base task=mnli \
    method=propulsion,full_ft trainer=authors 2>&1 | tee "$out/plan-calibrated.log" || status=1
cp results/plan/calibration-*.json "$out/" 2>/dev/null || status=1
exit "$status"
