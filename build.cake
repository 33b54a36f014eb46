// Horizon build: `dotnet tool restore` once, then `dotnet cake --target=<Task>`.
//   Build  - compile the solution (Release)
//   Test   - the NUnit suite on the CPU backend (what CI runs)
//   Pack   - the one Horizon.Runtime NuGet (runtime + generator + specs) into artifacts/packages
// Kernels (nvcc -> committed PTX) and Bench arrive with the CUDA backend.
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

RunTarget(target);
