#!/bin/bash
# One call on the GPU machine, from the folder make_device_bundle.sh filled:
#   bash DEST/device_run.sh [bench|tests|all] [options of horizon bench cuda, e.g. --only prefill --repeats 50]
# Always: unpack the bundle, rebuild the PTX from the bundle's native/ (HORIZON_PTX_DIR=/tmp/ptx points the runtime
# at it; $OUT/ptx.tar brings it back to commit). Then
#   tests  the Gpu tests (env FILTER, default TestCategory=Gpu; TEST_TIMEOUT, default 200 s) → $OUT/tests.log
#   bench  horizon bench cuda --out $OUT/horizon.tsv (→ horizon.txt, progress in horizon.log; BENCH_TIMEOUT, default
#          300 s), PyTorch's anchor on the same shapes (bench/torch_anchor.py → torch.tsv, torch.log;
#          ANCHOR_TIMEOUT, default 200 s), and the side-by-side table (bench/join.py → $OUT/table.md), printed last
#   all    both (the default)
# The bundle folder sits in the checkout (artifacts/NAME): the model tests read tests/golden and models/ from it
# (HORIZON_REPOSITORY). BASELINE=1 first re-measures PyTorch's bf16 error on those fixtures
# (tests/golden/bf16_baseline.py → tests/golden/bf16_baseline.json there and in $OUT, to commit).
set -u
mode=${1:-all}; [ $# -gt 0 ] && shift
case "$mode" in bench|tests|all) ;; *) echo "usage: device_run.sh [bench|tests|all] [horizon bench cuda options]" >&2; exit 2;; esac
here=$(cd "$(dirname "$0")" && pwd); cd "$here"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HORIZON_GPU_LOG=$OUT/gpu.log HORIZON_REPOSITORY=$(cd "$here/../.." && pwd)
export DOTNET_ROOT=/tmp/hz/rt DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start )) s"; }
mkdir -p /tmp/hz && tar -C /tmp/hz -xJf bundle.tar.xz
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader; nvcc --version | tail -1; } > "$OUT/build.log" 2>&1
if ( time bash native/build_ptx.sh /tmp/ptx ) >> "$OUT/build.log" 2>&1; then
  export HORIZON_PTX_DIR=/tmp/ptx
  tar -C /tmp -cf "$OUT/ptx.tar" ptx
  echo "PTX rebuilt at $(elapsed)"
else
  echo "PTX BUILD FAILED: the runs below use the PTX embedded in the bundle's runtime"; tail -40 "$OUT/build.log"
fi
head -1 "$OUT/build.log"
rc=0
if [ -n "${BASELINE:-}" ]; then
  (cd "$HORIZON_REPOSITORY" && timeout 200 python3 tests/golden/bf16_baseline.py > "$OUT/bf16_baseline.json" 2> "$OUT/baseline.log" \
    && cp "$OUT/bf16_baseline.json" tests/golden/bf16_baseline.json) || { rc=1; tail -5 "$OUT/baseline.log"; }
  echo "PyTorch bf16 baseline at $(elapsed)"; grep -v "Loading weights" "$OUT/baseline.log" | tail -12
fi
if [ "$mode" != bench ]; then
  timeout "${TEST_TIMEOUT:-200}" /tmp/hz/rt/dotnet /tmp/hz/tests/Horizon.Gpu.Tests.dll --filter "${FILTER:-TestCategory=Gpu}" > "$OUT/tests.log" 2>&1
  trc=$?; echo "tests rc=$trc at $(elapsed)"; [ $trc -eq 0 ] || rc=1
  grep -E "^failed |Test run summary|total:|failed:|succeeded:|skipped:" "$OUT/tests.log" | head -40
  grep -E "^failed " -A6 "$OUT/tests.log" | head -60
fi
if [ "$mode" != tests ]; then
  timeout "${BENCH_TIMEOUT:-300}" /tmp/hz/rt/dotnet /tmp/hz/tests/Horizon.Cli.dll bench cuda --out "$OUT/horizon.tsv" "$@" > "$OUT/horizon.txt" 2> "$OUT/horizon.log"
  brc=$?; echo "horizon bench cuda rc=$brc at $(elapsed)"; [ $brc -eq 0 ] || { rc=1; tail -20 "$OUT/horizon.log"; }
  if [ -s "$OUT/horizon.tsv" ]; then
    timeout "${ANCHOR_TIMEOUT:-200}" python3 bench/torch_anchor.py "$OUT/horizon.tsv" "$OUT/torch.tsv" 2> "$OUT/torch.log"
    arc=$?; echo "torch_anchor rc=$arc at $(elapsed)"; [ $arc -eq 0 ] || { rc=1; tail -20 "$OUT/torch.log"; }
    python3 bench/join.py "$OUT/horizon.tsv" "$OUT/torch.tsv" > "$OUT/table.md" 2>&1 || rc=1
  fi
  echo; cat "$OUT/horizon.txt"; echo; cat "$OUT/table.md" 2>/dev/null
fi
echo "all done at $(elapsed), rc=$rc"
exit $rc
