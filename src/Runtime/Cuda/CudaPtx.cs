using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;

namespace Horizon.Cuda;

/// <summary>One PTX build of a kernel module: <c>native/{Module}.cu</c> compiled for <c>compute_{Number}</c>.</summary>
public sealed class CudaPtxImage
{
    private readonly Func<byte[]> _read;

    internal CudaPtxImage(string module, int number, bool archSpecific, string origin, Func<byte[]> read)
    {
        Module = module;
        Number = number;
        ArchSpecific = archSpecific;
        Origin = origin;
        _read = read;
    }

    /// <summary>The kernel file's name without extension, for example <c>attention</c>.</summary>
    public string Module { get; }

    /// <summary>The virtual architecture's number: 90 for <c>compute_90</c>.</summary>
    public int Number { get; }

    /// <summary><c>compute_90a</c>-style PTX: uses features of exactly that capability, runs on no other.</summary>
    public bool ArchSpecific { get; }

    /// <summary><c>compute_90</c> or <c>compute_90a</c>.</summary>
    public string Target => $"compute_{Number}{(ArchSpecific ? "a" : "")}";

    /// <summary>Where it comes from: "embedded" or the file's path (HORIZON_PTX_DIR).</summary>
    public string Origin { get; }

    /// <summary>Whether a device of capability <paramref name="capability"/> can run this PTX.</summary>
    public bool RunsOn(ComputeCapability capability) =>
        ArchSpecific ? capability.Number == Number : capability.Number >= Number;

    /// <summary>The PTX text (no trailing NUL).</summary>
    public byte[] Read() => _read();

    /// <summary>The SHA-256 of the sources it was built from, read from its first line (<see cref="CudaPtx.SourceHashMarker"/>).</summary>
    public string? SourceHash => CudaPtx.ReadSourceHash(Read());

    public override string ToString() => $"{Module}.{Target} ({Origin})";
}

/// <summary>
/// The PTX of Horizon's kernels: built from <c>native/*.cu</c> by <c>native/build_ptx.sh</c> (Cake target
/// <c>Kernels</c>), committed under <c>native/ptx/{module}.compute_{NN}.ptx</c> and embedded in this assembly, so
/// running needs no CUDA compiler. <see cref="Select(string, ComputeCapability)"/> picks, for a device, the PTX of the highest virtual
/// architecture it can run. Setting <c>HORIZON_PTX_DIR</c> to a folder of such files makes those take the place of
/// the embedded ones of the same module (to try a kernel without rebuilding the runtime).
/// </summary>
public static partial class CudaPtx
{
    /// <summary>Logical-name prefix of the embedded PTX resources.</summary>
    public const string ResourcePrefix = "Horizon.Cuda.ptx.";

    /// <summary>Environment variable naming a folder of PTX files that replace the embedded ones.</summary>
    public const string DirectoryVariable = "HORIZON_PTX_DIR";

    /// <summary>First-line marker of the source hash that native/build_ptx.sh writes into every PTX.</summary>
    public const string SourceHashMarker = "// horizon-source-sha256: ";

    [GeneratedRegex(@"^(?<module>[A-Za-z0-9_]+)\.compute_(?<number>[0-9]{2,3})(?<a>a?)\.ptx$")]
    private static partial Regex FileNamePattern();

    /// <summary>Every PTX image available: the embedded ones, except modules that HORIZON_PTX_DIR provides.</summary>
    public static IReadOnlyList<CudaPtxImage> Available()
    {
        var images = new List<CudaPtxImage>();
        string? directory = Environment.GetEnvironmentVariable(DirectoryVariable);
        if (!string.IsNullOrEmpty(directory) && Directory.Exists(directory))
        {
            foreach (string path in Directory.EnumerateFiles(directory, "*.ptx").Order(StringComparer.Ordinal))
            {
                if (Parse(Path.GetFileName(path), path, () => File.ReadAllBytes(path)) is { } image)
                    images.Add(image);
            }
        }
        var overridden = images.Select(i => i.Module).ToHashSet(StringComparer.Ordinal);
        var assembly = typeof(CudaPtx).Assembly;
        foreach (string resource in assembly.GetManifestResourceNames().Order(StringComparer.Ordinal))
        {
            if (!resource.StartsWith(ResourcePrefix, StringComparison.Ordinal))
                continue;
            string fileName = resource[ResourcePrefix.Length..];
            if (Parse(fileName, "embedded", () => ReadResource(assembly, resource)) is { } image && !overridden.Contains(image.Module))
                images.Add(image);
        }
        return images;
    }

    /// <summary>
    /// The PTX of <paramref name="module"/> for a device of capability <paramref name="capability"/>: among the builds
    /// the device can run (compute_NN runs on capability ≥ N.N; compute_NNa only on N.N), the highest.
    /// </summary>
    /// <exception cref="HorizonException">No build of the module fits; the message lists the builds there are.</exception>
    public static CudaPtxImage Select(string module, ComputeCapability capability) => Select(module, capability, Available());

    /// <summary><see cref="Select(string, ComputeCapability)"/> over a given list (tests).</summary>
    public static CudaPtxImage Select(string module, ComputeCapability capability, IReadOnlyList<CudaPtxImage> images)
    {
        ArgumentNullException.ThrowIfNull(images);
        var builds = images.Where(i => i.Module == module).ToList();
        var best = builds.Where(i => i.RunsOn(capability))
            .OrderByDescending(i => i.Number).ThenByDescending(i => i.ArchSpecific).FirstOrDefault();
        if (best is not null)
            return best;
        string have = builds.Count == 0
            ? "there is no build of it at all (is native/ptx/ embedded, or HORIZON_PTX_DIR right?)"
            : $"its builds are {string.Join(", ", builds.Select(b => b.Target))}";
        throw new HorizonException(
            $"no PTX of CUDA module '{module}' runs on a device of compute capability {capability}: {have}; " +
            $"compute_NN runs on capability N.N and above (rebuild with native/build_ptx.sh, HORIZON_PTX_TARGETS)");
    }

    /// <summary>Reads the hash after <see cref="SourceHashMarker"/> on the first line of a PTX, or null.</summary>
    public static string? ReadSourceHash(ReadOnlySpan<byte> ptx)
    {
        int newline = ptx.IndexOf((byte)'\n');
        string first = Encoding.UTF8.GetString(newline < 0 ? ptx : ptx[..newline]).TrimEnd('\r');
        return first.StartsWith(SourceHashMarker, StringComparison.Ordinal) ? first[SourceHashMarker.Length..].Trim() : null;
    }

    private static CudaPtxImage? Parse(string fileName, string origin, Func<byte[]> read)
    {
        var match = FileNamePattern().Match(fileName);
        if (!match.Success)
            return null;
        return new CudaPtxImage(match.Groups["module"].Value, int.Parse(match.Groups["number"].Value, CultureInfo.InvariantCulture),
            match.Groups["a"].Length > 0, origin, read);
    }

    private static byte[] ReadResource(Assembly assembly, string name)
    {
        using var stream = assembly.GetManifestResourceStream(name)
            ?? throw new HorizonException($"embedded PTX resource '{name}' cannot be opened");
        var buffer = new MemoryStream((int)stream.Length);
        stream.CopyTo(buffer);
        return buffer.ToArray();
    }
}
