#!/bin/bash
# GLA prefill, the three launches timed apart (device events between them), for up to three versions of native/gla.cu
# side by side in one binary: OLD and MID (earlier gla.cu files, e.g. `git show HEAD~1:native/gla.cu > old.cu`; their
# kernels are renamed old_gla_* / mid_gla_*) and NEW (NATIVE/gla.cu). First checks NEW against OLD and MID (relative
# L2 difference of output and state: f32 and bf16, odd sizes, strong gates), then bf16 at B = 1, 4 heads, d_k 128,
# d_v 256 for 4K/16K/64K tokens: median of 20 runs after 3 warm-ups per launch. GPU machine only (nvcc, sm_90):
#   bash gla_split.sh NATIVE_DIR OLD.cu MID.cu        (prints the checks and "time …" lines; ptxas -v to $OUT/nvcc.log)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
native=$(cd "$1" && pwd); old=$2; mid=$3
work=$(mktemp -d)
rename='s/\bgla_(chunk_state_f32|chunk_state_bf16|state_scan_f32|chunk_output_f32|chunk_output_bf16|recurrent_decode_f32)\b/PFX_gla_\1/g'
sed -E "${rename//PFX/old}" "$old" > "$work/old_gla.cu"
sed -E "${rename//PFX/mid}" "$mid" > "$work/mid_gla.cu"
cp "$native/gla.cu" "$work/new_gla.cu"
cp "$here"/*.cu "$here"/launcher.inc "$work/"
cd "$work"
nvcc -O3 -std=c++17 -arch=sm_90 -I"$native" -o glabench main.cu old_tu.cu mid_tu.cu new_tu.cu -Xptxas -v > "${OUT:-.}/nvcc.log" 2>&1
./glabench
