#!/usr/bin/env bash
# Fills DEST with what one device-tool call needs (device_run.sh): rebuild the PTX, then run the Gpu tests and/or
# `horizon bench cuda` with its PyTorch anchor. The test project's build holds the horizon CLI too (it references
# src/Cli: Horizon.Cli.dll with its runtimeconfig.json and deps.json sits beside the tests), so one folder serves both.
# Contents: that folder and the .NET runtime as one xz archive (../shared/gpu/pack.sh's output without satellite
# resources and symbols, recompressed: about 27 MB instead of .gpu/'s 38 MB; the device tool carries at most 64 MiB
# with the tree, ~37 MiB on 2026-11-29), a copy of native/ (sources and build_ptx.sh) and bench/cuda/*.py.
#   usage, from the repository root:  tests/Horizon.Gpu.Tests/make_device_bundle.sh DEST
# DEST must be an ignored folder of the checkout the device tool sends (for a helper working in a copy: of the
# session's checkout, e.g. /work/main/artifacts/NAME); then the device tool: carry ["artifacts/NAME"], command
# "bash artifacts/NAME/device_run.sh bench" (or tests, or all; device_run.sh says more).
set -euo pipefail
dest=${1:?usage: make_device_bundle.sh DEST}
../shared/gpu/pack.sh tests/Horizon.Gpu.Tests/Horizon.Gpu.Tests.csproj
test -s .gpu/Horizon.Gpu.Tests/Horizon.Cli.dll -a -s .gpu/Horizon.Gpu.Tests/Horizon.Cli.runtimeconfig.json \
  || { echo "make_device_bundle.sh: the test build lacks Horizon.Cli.dll or its runtimeconfig.json" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rt" && tar -C "$work/rt" -xJf .gpu/dotnet.tar.xz
cp -r .gpu/Horizon.Gpu.Tests "$work/tests"
(cd "$work/tests" && rm -rf cs de es fr it ja ko pl pt-BR ru tr zh-Hans zh-Hant && find . -name '*.pdb' -delete)
# The tree (~39 MiB with the default model and the PTX) and the bundle share the tool's 64 MiB: leave out what a
# test run never loads (checked with strace): the debugger's and createdump's libraries, the standalone GCs, and
# libraries for data sets, dynamic, PLINQ, networking, code pages and data contracts; the XML docs.
find "$work/rt/shared" \( -name createdump -o -name 'libmscordaccore.so' -o -name 'libmscordbi.so' -o -name 'libclrgc*.so' \
  -o -name 'Microsoft.VisualBasic.Core.dll' -o -name 'System.Data.Common.dll' -o -name 'System.Private.DataContractSerialization.dll' \
  -o -name 'Microsoft.CSharp.dll' -o -name 'System.Linq.Parallel.dll' -o -name 'System.Net.Http.dll' -o -name 'System.Net.Security.dll' \
  -o -name 'System.Net.Sockets.dll' -o -name 'System.Text.Encoding.CodePages.dll' \) -delete
find "$work/tests" -name '*.xml' -delete
rm -rf "$dest" && mkdir -p "$dest/native" "$dest/bench"
tar -C "$work" -cf - rt tests | xz -9e -T0 > "$dest/bundle.tar.xz"
cp native/*.cu native/*.cuh native/build_ptx.sh "$dest/native/"
cp bench/cuda/*.py "$dest/bench/"
cp tests/Horizon.Gpu.Tests/device_run.sh "$dest/"
du -sh --apparent-size "$dest"
