#!/usr/bin/env bash
# Fills DEST with what one device-tool call needs to rebuild the PTX and run the Gpu tests and GpuBench timings
# (device_run.sh): the test project and the .NET runtime as one xz archive (../shared/gpu/pack.sh's output without
# satellite resources and symbols, recompressed: about 27 MB instead of .gpu/'s 38 MB, which with a tree of ~35 MiB
# no longer fits the tool's 64 MiB), a copy of native/ and the PyTorch reference scripts.
#   usage, from the repository root:  tests/Horizon.Gpu.Tests/make_device_bundle.sh DEST
# DEST must be an ignored folder of the checkout the device tool sends (for a helper working in a copy: of the
# session's checkout, e.g. artifacts/NAME); then the device tool: carry ["DEST"], command "bash DEST/device_run.sh".
set -euo pipefail
dest=${1:?usage: make_device_bundle.sh DEST}
../shared/gpu/pack.sh tests/Horizon.Gpu.Tests/Horizon.Gpu.Tests.csproj
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rt" && tar -C "$work/rt" -xJf .gpu/dotnet.tar.xz
cp -r .gpu/Horizon.Gpu.Tests "$work/tests"
(cd "$work/tests" && rm -rf cs de es fr it ja ko pl pt-BR ru tr zh-Hans zh-Hant && find . -name '*.pdb' -delete)
rm -rf "$dest" && mkdir -p "$dest/native"
tar -C "$work" -cf - rt tests | xz -9e -T0 > "$dest/bundle.tar.xz"
cp native/*.cu native/*.cuh native/build_ptx.sh "$dest/native/"
cp tests/Horizon.Gpu.Tests/sdpa_reference.py tests/Horizon.Gpu.Tests/gla_reference.py tests/Horizon.Gpu.Tests/device_run.sh "$dest/"
du -sh --apparent-size "$dest"
