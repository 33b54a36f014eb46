#!/usr/bin/env bash
# Compiles every native/*.cu to PTX, one file per target: native/ptx/{name}.compute_{NN}.ptx.
#   usage: native/build_ptx.sh [OUTPUT_DIR]        (default: native/ptx next to this script)
#   env:   NVCC (default nvcc), HORIZON_PTX_TARGETS (default "80 90": compute_80 runs on Ampere and later,
#          compute_90 on Hopper; a target like 90a makes PTX for exactly that capability)
# Called by the Cake target Kernels (dotnet cake --target=Kernels) and on the GPU machine, which has nvcc.
# Each PTX starts with the SHA-256 of its sources: the .cu file, then every native/*.cuh in ordinal name order,
# carriage returns removed. tests/Horizon.Tests/PtxFreshnessTests.cs recomputes it, so a .cu edited without
# rebuilding its PTX fails CI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/ptx}
nvcc=${NVCC:-nvcc}
targets=${HORIZON_PTX_TARGETS:-"80 90"}
command -v "$nvcc" >/dev/null || { echo "build_ptx.sh: $nvcc not found (the CUDA toolkit's compiler is needed to rebuild PTX)" >&2; exit 2; }
mkdir -p "$out"
mapfile -t headers < <(find "$here" -maxdepth 1 -name '*.cuh' -printf '%f\n' | LC_ALL=C sort)
version=$("$nvcc" --version | tail -n 1)
for cu in "$here"/*.cu; do
  name=$(basename "$cu" .cu)
  hash=$( (cd "$here" && cat "$name.cu" "${headers[@]}") | tr -d '\r' | sha256sum | cut -d' ' -f1)
  for target in $targets; do
    tmp=$(mktemp)
    "$nvcc" -ptx -arch=compute_$target -O3 -std=c++17 -I"$here" -o "$tmp" "$cu"
    {
      echo "// horizon-source-sha256: $hash"
      echo "// horizon-source: native/$name.cu + native/*.cuh; built by native/build_ptx.sh: nvcc -ptx -arch=compute_$target -O3 ($version)"
      cat "$tmp"
    } > "$out/$name.compute_$target.ptx"
    rm -f "$tmp"
    echo "built $out/$name.compute_$target.ptx"
  done
done
