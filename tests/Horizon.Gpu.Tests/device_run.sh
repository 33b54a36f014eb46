#!/bin/bash
# One call on the GPU machine: rebuild the PTX, run the Gpu tests and the GpuBench timings with that PTX, then
# PyTorch's SDPA on the same shapes (sdpa_reference.py, gla_reference.py). $OUT gets the logs, the tables and ptx.tar
# (the rebuilt native/ptx/*.ptx, to commit). Runs from the folder make_device_bundle.sh filled; device tool:
#   carry ["DEST"], command: bash DEST/device_run.sh        (env FILTER, TEST_TIMEOUT to narrow or extend the run)
set -u
here=$(cd "$(dirname "$0")" && pwd); cd "$here"
export PYTHONUNBUFFERED=1 HORIZON_PTX_DIR=/tmp/ptx HORIZON_GPU_LOG=$OUT/gpu.log HORIZON_BENCH_OUT=$OUT/bench.tsv
export DOTNET_ROOT=/tmp/hz/rt DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
start=$(date +%s)
mkdir -p /tmp/hz && tar -C /tmp/hz -xJf bundle.tar.xz
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv,noheader; nvcc --version | tail -1; } > $OUT/build.log 2>&1
( time bash native/build_ptx.sh /tmp/ptx ) >> $OUT/build.log 2>&1 || { echo BUILD_FAILED; tail -40 $OUT/build.log; }
tar -C /tmp -cf $OUT/ptx.tar ptx
echo "build done at $(( $(date +%s) - start )) s"
timeout ${TEST_TIMEOUT:-200} /tmp/hz/rt/dotnet /tmp/hz/tests/Horizon.Gpu.Tests.dll --filter "${FILTER:-TestCategory=Gpu|TestCategory=GpuBench}" > $OUT/tests.log 2>&1; echo "tests rc=$? at $(( $(date +%s) - start )) s"
timeout 60 python3 sdpa_reference.py $OUT/bench.tsv > $OUT/table.txt 2>&1
timeout 60 python3 gla_reference.py $OUT/bench.tsv > $OUT/gla_table.txt 2>&1
echo "all done at $(( $(date +%s) - start )) s"
grep -E "^failed |Test run summary|total:|failed:|succeeded:|skipped:" $OUT/tests.log | head -40
grep -E "^failed " -A6 $OUT/tests.log | head -60
cat $OUT/table.txt $OUT/gla_table.txt
