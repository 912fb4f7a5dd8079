#!/usr/bin/env bash
# Every CUDA path of hilo end to end, and issue 13's GPU figures, in one script sized for a short
# lease on a GPU machine (about 10 minutes; each step has its own time limit, so one hang cannot
# eat the lease). Offline: random-init LITv2-S and the tiny test checkpoint, the sample photos.
#
#   DEVICE=cuda OUT=/some/dir bash benchmarks/device_check.sh     # on the GPU machine
#   DEVICE=cpu QUICK=1 OUT=/tmp/check bash benchmarks/device_check.sh   # a dry run of the script
#
# Writes $OUT/device_check.log (every command's output, its exit code and seconds) and a few
# records beside it: spectrum.json, attn_map.json, compare.json, flops_benchmark.json (at most 8
# files, as the lease brings back). Files the commands draw go to a scratch folder, not $OUT.
# Read the log's "== summary" lines first. Not covered: NCCL with several ranks (one GPU cannot
# hold two NCCL ranks); run `torchrun --nproc_per_node N -m hilocli spectrum ...` on a multi-GPU
# machine for that.
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-hilo-device-check}
QUICK=${QUICK:-0} # 1: the smallest sizes (a dry run of the script on a CPU)
PY=${PYTHON:-python3}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/device_check.log"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
: >"$LOG"
SUMMARY=()
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg PYTHONUNBUFFERED=1

step() { # [STDOUT=FILE] step LIMIT_S NAME COMMAND...: run, log, remember rc and seconds
    local limit=$1 name=$2 start rc
    shift 2
    echo "== $name: $*" >>"$LOG"
    start=$(date +%s)
    timeout "$limit" "$@" >>"${STDOUT:-$LOG}" 2>>"$LOG"
    rc=$?
    SUMMARY+=("$name: rc $rc, $(($(date +%s) - start)) s")
    echo "-- $name: rc $rc, $(($(date +%s) - start)) s" >>"$LOG"
}

hilo() { "$PY" -m hilocli "$@"; }

if [ "$QUICK" = 1 ]; then
    RES=64 BATCH=2 ROUNDS=2 IMAGES=40 MODEL_RES=(--resolution 64)
else
    RES=224 BATCH=64 ROUNDS=7 IMAGES=1000 MODEL_RES=()
fi

step 60 environment "$PY" -c "
import torch
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(p.name, p.total_memory // 2**20, 'MiB', p.multi_processor_count, 'SMs')
    print('bf16 supported', torch.cuda.is_bf16_supported())
from hilocli.runtime import keep_freed_memory, environment
keep_freed_memory(); print(environment('$DEVICE'))
"
command -v nvidia-smi >/dev/null && step 30 nvidia-smi nvidia-smi

# Every command on the device, end to end (files in $WORK, records to $OUT).
STDOUT=$OUT/spectrum.json step 300 "spectrum (LITv2-S random init, control)" hilo spectrum \
    samples/ --random-init "${MODEL_RES[@]}" --layer all --control random --control-seeds 2 \
    --device "$DEVICE" --out "$WORK/spectrum" --json
step 300 "spectrum --dtype bfloat16 --compile on (tiny)" hilo spectrum samples/ \
    -c tests/fixtures/litv2_tiny_a.pth --resolution 64 --dtype bfloat16 --compile on \
    --device "$DEVICE" --out "$WORK/spectrum_bf16"
STDOUT=$OUT/attn_map.json step 120 "attn-map (bfloat16 auto on CUDA)" hilo attn-map \
    samples/chelsea.jpg --random-init "${MODEL_RES[@]}" --layer all --heads mean \
    --device "$DEVICE" --out "$WORK/attn" --json
step 60 "perturbed copy of the tiny checkpoint" "$PY" -c "
import torch
raw = torch.load('tests/fixtures/litv2_tiny_a.pth', weights_only=True)
g = torch.Generator().manual_seed(1)
raw['model'] = {k: v * torch.exp(0.05 * torch.randn(v.shape, generator=g))
                if v.is_floating_point() else v for k, v in raw['model'].items()}
torch.save(raw, '$WORK/tiny_perturbed.pth')
"
TF32=()
[ "$DEVICE" = cuda ] && TF32=(--tf32)
STDOUT=$OUT/compare.json step 180 "compare (tiny and a perturbed copy, TF32 on CUDA)" \
    hilo compare samples/ -c tests/fixtures/litv2_tiny_a.pth -c "$WORK/tiny_perturbed.pth" \
    --resolution 64 "${TF32[@]}" --device "$DEVICE" --out "$WORK/compare" --json
step 120 "user model (--model-fn)" hilo spectrum samples/ --model-fn examples/my_model.py:build \
    --random-init --resolution 64 --device "$DEVICE" --out "$WORK/user"
step 60 "info" hilo info --random-init --device "$DEVICE"

# flops --benchmark: per attention type and the whole model, per dtype, every SDPA backend forced
# in turn, CUDA events, peak memory, MFU against the matmul peak measured before and after.
BACKENDS=default,flash,efficient,cudnn,math,explicit
[ "$DEVICE" = cpu ] && BACKENDS=default,math,explicit
STDOUT=$OUT/flops_benchmark.json step 300 "flops --benchmark bfloat16, every backend" \
    hilo flops --benchmark --device "$DEVICE" --dtype bfloat16 --resolution "$RES" \
    --batch-size "$BATCH" --sdpa-backends "$BACKENDS" --json
if [ "$DEVICE" = cuda ]; then
    step 240 "flops --benchmark float16" hilo flops --benchmark --device cuda --dtype float16 \
        --resolution "$RES" --batch-size "$BATCH"
    step 240 "flops --benchmark float32" hilo flops --benchmark --device cuda \
        --dtype float32 --resolution "$RES" --batch-size "$BATCH"
    step 240 "flops --benchmark 1024 px" hilo flops --benchmark --device cuda --resolution 1024 \
        --batch-size 8
fi

# Forward speed (explicit, fused, compiled; float32, bfloat16, float16) with the share of peak.
DTYPES=float32,bfloat16
[ "$DEVICE" = cuda ] && DTYPES=float32,bfloat16,float16
step 420 "benchmarks/forward.py" "$PY" benchmarks/forward.py --device "$DEVICE" --batch "$BATCH" \
    --resolution "$RES" --rounds "$ROUNDS" --dtypes "$DTYPES" --compile
# hilo spectrum over a folder against the bare forward (the issue's 1,000-image throughput).
step 420 "benchmarks/throughput.py" "$PY" benchmarks/throughput.py --device "$DEVICE" \
    --model litv2_s --resolution "$RES" --batch-size "$BATCH" --images "$IMAGES" \
    --workers 0,4 --processes 1 --rss-at "$IMAGES"
step 300 "benchmarks/compile_spectrum.py" "$PY" benchmarks/compile_spectrum.py --device "$DEVICE"

{
    echo "== summary ($DEVICE, $(date -u +%Y-%m-%dT%H:%MZ))"
    printf '%s\n' "${SUMMARY[@]}"
} | tee -a "$LOG"
