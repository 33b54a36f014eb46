// Horizon build: `dotnet tool restore` once, then `dotnet cake --target=<Task>`.
//   Build  - compile the solution (Release)
//   Test   - the NUnit suite on the CPU backend (what CI runs)
//   Pack   - the one Horizon.Runtime NuGet (runtime + generator + specs) into artifacts/packages
//   Kernels - native/*.cu -> native/ptx/*.ptx with nvcc (native/build_ptx.sh); the PTX is committed and embedded,
//             so only whoever changes a kernel needs the CUDA toolkit. Bench arrives with the CUDA backend.
var target = Argument("target", "Test");
var configuration = Argument("configuration", "Release");

Task("Build")
    .Does(() =>
{
    DotNetBuild("./Runtime.sln", new DotNetBuildSettings { Configuration = configuration });
});

Task("Test")
    .IsDependentOn("Build")
    .Does(() =>
{
    // Microsoft.Testing.Platform runner (global.json); the test project is an executable.
    var exitCode = StartProcess("dotnet", new ProcessSettings {
        Arguments = $"test --configuration {configuration} --no-build"
    });
    if (exitCode != 0)
        throw new Exception($"tests failed (exit code {exitCode})");
});

Task("Pack")
    .IsDependentOn("Build")
    .Does(() =>
{
    DotNetPack("./src/Runtime/Horizon.Runtime.csproj", new DotNetPackSettings {
        Configuration = configuration,
        OutputDirectory = "./artifacts/packages",
        NoBuild = true,
    });
});

Task("Kernels")
    .Does(() =>
{
    // The same script the GPU machine runs; it stamps each PTX with its sources' SHA-256 (PtxFreshnessTests).
    var exitCode = StartProcess("bash", new ProcessSettings { Arguments = "native/build_ptx.sh" });
    if (exitCode != 0)
        throw new Exception($"native/build_ptx.sh failed (exit code {exitCode}); is nvcc on the PATH?");
});

RunTarget(target);
