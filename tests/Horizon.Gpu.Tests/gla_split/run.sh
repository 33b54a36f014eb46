#!/bin/bash
# GLA prefill, old vs new native/gla.cu side by side (the harness of the GLA runs in docs/performance.md): checks new against old on odd
# shapes (f32 and bf16, column splits 1/2/4, relative L2 of output and state; o and the workspace poisoned first), then
# the three launches timed apart (bf16, B = 1, 4 heads, d_k 128, d_v 256, 2K…64K; median of 20 after 5 warm-ups; old
# and new alternate twice), splits as CudaOps.GlaOutputSplits picks on an H200 (2 at 2K, 1 from 4K). GPU machine only:
#   bash run.sh OLD_GLA.cu NEW_GLA.cu NATIVE_DIR [build|run|all] [WORKDIR]   (old: A-phase row stride 33, new: 36)
# "build" only compiles into WORKDIR (so it can overlap other work), "run" only runs a WORKDIR built before.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
stage=${4:-all}; w=${5:-$(mktemp -d)}; mkdir -p "$w"; OUT=${OUT:-/tmp}
if [ "$stage" != run ]; then
  old=$(realpath "$1"); new=$(realpath "$2"); native=$(realpath "$3")
  rename='s/\bgla_(chunk_state_f32|chunk_state_bf16|state_scan_f32|chunk_output_f32|chunk_output_bf16|recurrent_decode_f32|log_gates_f32|norm_gate_f32_bf16|short_conv_silu_f32|tf32|mma_tf32)\b/old_gla_\1/g'
  sed -E "$rename" "$old" > "$w/old_gla.cu"
  cp "$new" "$w/new_gla.cu"; cp "$native"/*.cuh "$here"/main.cu "$here"/launcher.inc "$here"/old_tu.cu "$here"/new_tu.cu "$w/"
  (cd "$w"
   for f in main old_tu new_tu; do nvcc -O3 -std=c++17 -arch=sm_90 -I. -c $f.cu -o $f.o -Xptxas -v > "$f.log" 2>&1 & done; wait
   cat *.log > nvcc.all; nvcc -arch=sm_90 -o glabench main.o old_tu.o new_tu.o >> nvcc.all 2>&1 || { tail -30 nvcc.all; exit 1; }
   grep -A2 -E "Compiling entry function '(gla|old_gla)_(chunk|state)" nvcc.all | grep -E "Compiling|registers|spill" | sed 's/ptxas info    ://' | paste - - - | cut -c1-200 > regs.txt)
fi
if [ "$stage" != build ]; then
  cat "$w/regs.txt"; "$w/glabench" | tee "$OUT/harness.txt"
fi
