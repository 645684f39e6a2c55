#!/usr/bin/env bash
# The device check of issue #30, run on a lent GPU machine (.library/device) in one call:
#   here:  make gpu-kit
#   there: run(command="bash bench/device_check.sh", carry=[".whl"], timeout_s=540)
# The machine's image holds python3 with torch, timm and most of the core; .whl brings the
# rest. bench.hardware runs the factory grid (no data travels) on the CPU and on cuda,
# compares every image's score, and prints the GPU's latency, throughput and memory.
# Extra arguments go to bench.hardware (e.g. --published factory:bottle, which trains
# EfficientAD for 70,000 steps: likely longer than one 10-minute call; not measured).
set -euo pipefail
out=${OUT:-/tmp/device-check}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e .  # the plugins' entry points
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
status=0
python3 -m bench.hardware --device "${DEVICE:-cuda}" --reference cpu --out /tmp/hw -d padim -d patchcore \
    --set patchcore.search=exact "$@" 2>&1 | tee "$out/hardware.log" || status=$?
# at most 8 files come back: the comparison, both runs' records and leaderboards
for f in comparison.json reference/records.jsonl reference/leaderboard.md device/records.jsonl device/leaderboard.md; do
    [ -f "/tmp/hw/$f" ] && cp "/tmp/hw/$f" "$out/${f//\//-}"
done
exit "$status"
