using System.Security.Cryptography;
using System.Text;
using Horizon.Cuda;
using NUnit.Framework;

namespace Horizon.Tests;

/// <summary>
/// The committed PTX of the CUDA kernels, checked on the CPU (no GPU, no nvcc): every <c>native/*.cu</c> has a PTX
/// for each target whose stamped source hash (first line, written by <c>native/build_ptx.sh</c>) matches the
/// sources as they are now, so a kernel edited without rebuilding its PTX fails here; the runtime embeds exactly
/// those files; every kernel the launchers call is in them; and the PTX choice per device follows the rule.
/// </summary>
public class PtxFreshnessTests
{
    /// <summary>The targets native/build_ptx.sh builds by default (HORIZON_PTX_TARGETS="80 90").</summary>
    private static readonly string[] Targets = ["compute_80", "compute_90"];

    private static string NativeDirectory => Path.Combine(RepositoryPaths.Root, "native");

    private static string PtxDirectory => Path.Combine(NativeDirectory, "ptx");

    public static IEnumerable<string> KernelModules() =>
        Directory.EnumerateFiles(Path.Combine(RepositoryPaths.Root, "native"), "*.cu")
            .Select(path => Path.GetFileNameWithoutExtension(path)!)
            .Order(StringComparer.Ordinal);

    /// <summary>
    /// SHA-256 of the module's sources as native/build_ptx.sh hashes them: the .cu file, then every native/*.cuh in
    /// ordinal name order, with carriage returns removed (so a checkout with CRLF line ends hashes the same).
    /// </summary>
    private static string SourceHash(string module)
    {
        var bytes = new List<byte>(File.ReadAllBytes(Path.Combine(NativeDirectory, module + ".cu")));
        foreach (string header in Directory.EnumerateFiles(NativeDirectory, "*.cuh").Order(StringComparer.Ordinal))
            bytes.AddRange(File.ReadAllBytes(header));
        bytes.RemoveAll(b => b == (byte)'\r');
        return Convert.ToHexStringLower(SHA256.HashData(bytes.ToArray()));
    }

    [Test]
    public void There_are_kernel_sources() =>
        Assert.That(KernelModules(), Is.Not.Empty, "native/*.cu");

    [TestCaseSource(nameof(KernelModules))]
    public void Every_kernel_source_has_ptx_built_from_its_current_text(string module)
    {
        string expected = SourceHash(module);
        foreach (string target in Targets)
        {
            string path = Path.Combine(PtxDirectory, $"{module}.{target}.ptx");
            Assert.That(File.Exists(path), Is.True, $"{path} is missing: run `dotnet cake --target=Kernels` (native/build_ptx.sh) where nvcc is");
            string? stamped = CudaPtx.ReadSourceHash(File.ReadAllBytes(path));
            Assert.That(stamped, Is.EqualTo(expected),
                $"native/ptx/{module}.{target}.ptx was built from other sources than native/{module}.cu + native/*.cuh as they are now: " +
                "rebuild the PTX with `dotnet cake --target=Kernels` (native/build_ptx.sh) and commit it");
        }
    }

    [Test]
    public void Every_ptx_file_belongs_to_a_kernel_source()
    {
        foreach (string path in Directory.EnumerateFiles(PtxDirectory, "*.ptx"))
        {
            string name = Path.GetFileName(path);
            int dot = name.IndexOf('.');
            Assert.That(dot, Is.GreaterThan(0), name);
            Assert.That(File.Exists(Path.Combine(NativeDirectory, name[..dot] + ".cu")), Is.True, $"{name} has no native/{name[..dot]}.cu");
        }
    }

    [Test]
    public void The_runtime_embeds_every_committed_ptx_unchanged()
    {
        var assembly = typeof(CudaPtx).Assembly;
        var resources = assembly.GetManifestResourceNames().Where(n => n.StartsWith(CudaPtx.ResourcePrefix, StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList();
        var files = Directory.EnumerateFiles(PtxDirectory, "*.ptx").Select(path => Path.GetFileName(path)).Order(StringComparer.Ordinal).ToList();
        Assert.That(resources, Is.EqualTo(files.Select(f => CudaPtx.ResourcePrefix + f).ToList()));
        foreach (string file in files)
        {
            using var stream = assembly.GetManifestResourceStream(CudaPtx.ResourcePrefix + file)!;
            var embedded = new MemoryStream();
            stream.CopyTo(embedded);
            Assert.That(embedded.ToArray(), Is.EqualTo(File.ReadAllBytes(Path.Combine(PtxDirectory, file))), file);
        }
    }

    [Test]
    public void Every_kernel_the_launchers_call_is_in_each_ptx_of_its_module()
    {
        foreach (var (module, name) in CudaOps.Kernels)
        {
            foreach (string target in Targets)
            {
                string text = File.ReadAllText(Path.Combine(PtxDirectory, $"{module}.{target}.ptx"), Encoding.UTF8);
                Assert.That(text, Does.Contain($".entry {name}("), $"{name} in {module}.{target}.ptx");
            }
        }
    }

    [Test]
    public void Ptx_choice_takes_the_highest_target_the_device_runs()
    {
        CudaPtxImage Image(int number, bool archSpecific = false) => new("attention", number, archSpecific, "test", () => []);
        var images = new[] { Image(80), Image(90), Image(90, archSpecific: true) };

        Assert.That(CudaPtx.Select("attention", new ComputeCapability(9, 0), images).Target, Is.EqualTo("compute_90a"));
        Assert.That(CudaPtx.Select("attention", new ComputeCapability(8, 6), images).Target, Is.EqualTo("compute_80"));
        Assert.That(CudaPtx.Select("attention", new ComputeCapability(8, 0), images).Target, Is.EqualTo("compute_80"));
        // compute_90a runs on 9.0 only; a newer device takes the portable compute_90.
        Assert.That(CudaPtx.Select("attention", new ComputeCapability(12, 0), images).Target, Is.EqualTo("compute_90"));

        var tooOld = Assert.Throws<HorizonException>(() => CudaPtx.Select("attention", new ComputeCapability(7, 5), images));
        Assert.That(tooOld!.Message, Does.Contain("compute capability 7.5").And.Contain("compute_80, compute_90, compute_90a"));
        var missing = Assert.Throws<HorizonException>(() => CudaPtx.Select("gla", new ComputeCapability(9, 0), images));
        Assert.That(missing!.Message, Does.Contain("'gla'").And.Contain("no build"));
    }

    [Test]
    public void Embedded_ptx_covers_every_module_for_hopper_and_ampere()
    {
        foreach (string module in KernelModules())
        {
            Assert.That(CudaPtx.Select(module, new ComputeCapability(9, 0)).Target, Is.EqualTo("compute_90"), module);
            Assert.That(CudaPtx.Select(module, new ComputeCapability(8, 0)).Target, Is.EqualTo("compute_80"), module);
        }
    }

    [Test]
    public void Diagnostics_report_cuda_or_say_why_it_is_off()
    {
        // Either branch is a full check: without a driver (CI) the reason names the library; with one, the devices.
        var report = CudaDiagnostics.Describe();
        string text = report.ToString();
        if (report.Available)
        {
            Assert.That(report.Devices, Is.Not.Empty);
            Assert.That(text, Does.StartWith("CUDA: on: driver "));
        }
        else
        {
            Assert.That(report.Reason, Is.Not.Null.And.Not.Empty);
            Assert.That(text, Does.StartWith("CUDA: off: " + report.Reason));
            string library = OperatingSystem.IsWindows() ? "nvcuda.dll" : "libcuda.so.1";
            if (!System.Runtime.InteropServices.NativeLibrary.TryLoad(library, out _))
                Assert.That(report.Reason, Does.StartWith($"CUDA driver not found ({library}): "));
        }
        Assert.That(text, Does.Contain("PTX: ").And.Contain("cuBLAS: "));
    }
}
