#!/bin/bash
# GLA prefill, old vs new gla.cu side by side (second harness, 2026-11-29 session D): checks new against old on odd
# shapes (f32 and bf16, column splits 1/2/4, relative L2 of output and state; o and the workspace poisoned first), then
# the three launches timed apart (bf16, B = 1, 4 heads, d_k 128, d_v 256, 2K…64K; median of 20 after 5 warm-ups) for
# old, new with splits 1 and 2, and two ablations of new's output kernel (noA: the A products left out; noOut: the
# output phase left out, o written as zeros). GPU machine only (nvcc, sm_90; ptxas -v to $OUT/nvcc.log):
#   bash run.sh OLD_GLA.cu NEW_GLA.cu NATIVE_DIR        e.g. git show HEAD~1:native/gla.cu > /tmp/old.cu
set -eu
here=$(cd "$(dirname "$0")" && pwd); w=$(mktemp -d)
old=$(realpath "$1"); new=$(realpath "$2"); native=$(realpath "$3")
rename='s/\bgla_(chunk_state_f32|chunk_state_bf16|state_scan_f32|chunk_output_f32|chunk_output_bf16|recurrent_decode_f32|log_gates_f32|norm_gate_f32_bf16|short_conv_silu_f32)\b/old_gla_\1/g'
sed -E "$rename" "$old" > "$w/old_gla.cu"
(cd "$w" && python3 "$here/ablate.py" "$new"); cp "$new" "$w/new_gla.cu"; cp "$here"/abl1_tu.cu "$here"/abl2_tu.cu "$native"/*.cuh "$here"/main.cu "$here"/launcher.inc "$here"/old_tu.cu "$here"/new_tu.cu "$w/"
cd "$w"; OUT=${OUT:-/tmp}
for f in main old_tu new_tu abl1_tu abl2_tu; do nvcc -O3 -std=c++17 -arch=sm_90 -I. -c $f.cu -o $f.o -Xptxas -v > "$f.log" 2>&1 & done; wait
cat *.log > "$OUT/nvcc.log"; nvcc -arch=sm_90 -o glabench main.o old_tu.o new_tu.o abl1_tu.o abl2_tu.o >> "$OUT/nvcc.log" 2>&1 || { tail -30 "$OUT/nvcc.log"; exit 1; }
grep -A2 -E "Compiling entry function '(gla|old_gla)_(chunk|state)" "$OUT/nvcc.log" | grep -E "Compiling|registers|spill" | sed 's/ptxas info    ://' | paste - - - | cut -c1-200
./glabench | tee "$OUT/harness.txt"
