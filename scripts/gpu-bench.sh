#!/usr/bin/env bash
# The full ViT-L on an NVIDIA GPU: this project's native wgpu (Vulkan) forward pass, with the fused attention
# kernel and with the reference attention, beside PyTorch CUDA in fp32 and fp16, on the same random weights
# and inputs; outputs compared, times and ratios printed.
# Not part of CI (it needs a GPU). Run from the repository root:
#
#   bash scripts/gpu-bench.sh [RUNS]        # default 5 timed runs after one warm-up each
#
# Needs: the Rust toolchain, an NVIDIA driver with Vulkan (`vulkaninfo` lists the GPU), and a Python venv
# with torch (CUDA build), transformers and safetensors: PYTHON=/path/to/python (default .venv-ref/bin/python).
# Smoke test without a GPU: SEGGPT_BENCH_CONFIG='{"hidden_size":32,...}' (a smaller model), SEGGPT_BENCH_DEVICE=cpu
# (PyTorch on the CPU, fp32 only), SEGGPT_BENCH_BACKEND=cpu (burn's CPU backend); SEGGPT=path skips the build.
set -euo pipefail

RUNS="${1:-5}"
PYTHON="${PYTHON:-.venv-ref/bin/python}"
TORCH_DEVICE="${SEGGPT_BENCH_DEVICE:-cuda}"
BACKEND="${SEGGPT_BENCH_BACKEND:-wgpu}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/seggpt-gpu-bench.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
CONFIG_ARGS=()
if [[ -n "${SEGGPT_BENCH_CONFIG:-}" ]]; then CONFIG_ARGS=(--config "$SEGGPT_BENCH_CONFIG"); fi

echo "== machine"; uptime; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || true

if [[ -z "${SEGGPT:-}" ]]; then
    echo "== building seggpt (release)"
    cargo build --release --locked
    SEGGPT="${CARGO_TARGET_DIR:-target}/release/seggpt"
fi

echo "== random ViT-L weights and inputs (seed 0), saved in $WORK"
"$PYTHON" scripts/bench_torch.py "${CONFIG_ARGS[@]}" --runs 0 --save-dir "$WORK"

echo "== PyTorch $TORCH_DEVICE fp32"
"$PYTHON" scripts/bench_torch.py --load-dir "$WORK" --device "$TORCH_DEVICE" --dtype fp32 --runs "$RUNS" \
    --output "$WORK/torch-fp32.safetensors" | tee "$WORK/torch-fp32.log"
echo "== PyTorch $TORCH_DEVICE fp16"
if [[ "$TORCH_DEVICE" == cpu ]]; then
    echo "(skipped: fp16 on the CPU is not what this compares)"
else
    "$PYTHON" scripts/bench_torch.py --load-dir "$WORK" --device "$TORCH_DEVICE" --dtype fp16 --runs "$RUNS" \
        --output "$WORK/torch-fp16.safetensors" | tee "$WORK/torch-fp16.log"
fi

echo "== seggpt $BACKEND f32 (official ensemble; one prompt; the fused attention kernel)"
"$SEGGPT" bench --backend "$BACKEND" --model "$WORK" --inputs "$WORK/inputs.safetensors" --runs "$RUNS" \
    --profile --output "$WORK/seggpt.safetensors" | tee "$WORK/seggpt.log"
echo "== seggpt $BACKEND f32, the reference attention (score matrices written whole)"
"$SEGGPT" bench --backend "$BACKEND" --model "$WORK" --inputs "$WORK/inputs.safetensors" --runs "$RUNS" \
    --profile --attention reference --output "$WORK/seggpt-reference.safetensors" | tee "$WORK/seggpt-reference.log"

echo "== comparison"
"$PYTHON" - "$WORK" <<'PY'
import os, re, sys
from safetensors.numpy import load_file
work = sys.argv[1]
def mean_of(log, pattern):
    text = open(os.path.join(work, log)).read()
    return float(re.search(pattern, text).group(1))
ours = load_file(os.path.join(work, "seggpt.safetensors"))["pred_masks"][0]
ours_s = mean_of("seggpt.log", r"mean=([0-9.]+)s")
print(f"seggpt: mean {ours_s:.3f} s per forward")
reference = load_file(os.path.join(work, "seggpt-reference.safetensors"))["pred_masks"][0]
reference_s = mean_of("seggpt-reference.log", r"mean=([0-9.]+)s")
print(f"seggpt, reference attention: mean {reference_s:.3f} s per forward; fused / reference = "
      f"{ours_s / reference_s:.2f}x; max abs output difference {float(abs(ours - reference).max()):.3e}")
for dtype in ("fp32", "fp16"):
    path = os.path.join(work, f"torch-{dtype}.safetensors")
    if not os.path.exists(path):
        continue
    theirs = load_file(path)["pred_masks"][0]
    diff = float(abs(ours - theirs).max())
    torch_s = mean_of(f"torch-{dtype}.log", r"mean ([0-9.]+) s")
    print(f"PyTorch {dtype}: mean {torch_s:.3f} s; seggpt / PyTorch = {ours_s / torch_s:.2f}x; "
          f"max abs output difference {diff:.3e}")
PY
