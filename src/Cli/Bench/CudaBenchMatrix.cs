using System.Globalization;
using System.Text;

[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("Horizon.Tests")]

namespace Horizon.Cli.Bench;

/// <summary>The parts of <c>horizon bench cuda</c> (<c>--only</c>).</summary>
[Flags]
internal enum CudaBenchParts
{
    None = 0,
    Prefill = 1,
    Decode = 2,
    Gla = 4,
    All = Prefill | Decode | Gla,
}

/// <summary>What <c>horizon bench cuda</c> measures and how it reports.</summary>
/// <param name="Parts">Which tables to measure.</param>
/// <param name="Warmup">Untimed launches before the timed ones, per case.</param>
/// <param name="Repeats">Timed launches per case; the figure is their median.</param>
/// <param name="Markdown">Print the tables as Markdown.</param>
/// <param name="OutPath">Tab-separated rows for the PyTorch anchor and the join (bench/cuda/), or null.</param>
internal sealed record CudaBenchSettings(CudaBenchParts Parts, int Warmup, int Repeats, bool Markdown, string? OutPath);

/// <summary>Causal bf16 prefill of B sequences of N tokens, H heads (as many key/value heads) of D.</summary>
internal readonly record struct PrefillCase(int Batch, int Heads, int Tokens, int HeadDim)
{
    public double Flops => CudaBenchMath.CausalPrefillFlops(Batch, Heads, Tokens, HeadDim);

    public string Label => string.Create(CultureInfo.InvariantCulture, $"{Batch}·{Heads}·{Tokens}·{HeadDim}");
}

/// <summary>One decode step (1 query per sequence) against a cache of KeyCount keys, bf16.</summary>
internal readonly record struct DecodeCase(int Batch, int Heads, int KvHeads, int KeyCount, int HeadDim)
{
    public double Bytes => CudaBenchMath.DecodeBytes(Batch, KvHeads, KeyCount, HeadDim);

    /// <summary>Cache copies the timed steps rotate over (<see cref="CudaBenchMath.CacheCopies"/>).</summary>
    public int Copies => CudaBenchMath.CacheCopies(Bytes);
}

/// <summary>
/// Issue 4's matrix. Prefill: causal bf16, B·H·N ∈ {16·16·1K, 4·16·4K, 1·16·16K, 1·8·64K} × D ∈ {64, 128}. Decode:
/// 1 query, 32 heads, D 128, MHA 32/32 and GQA 32/8, KV 4K / 64K / 256K. GLA chunked prefill at the gla-340M head
/// shapes (B = 1, 4 heads, d_k 128, d_v 256: hidden 1024) for N = 2K … 64K, against causal softmax attention at the
/// same width (8 heads × 128).
/// </summary>
internal static class CudaBenchMatrix
{
    public const int GlaHeads = 4, GlaHeadKDim = 128, GlaHeadVDim = 256, GlaAttentionHeads = 8, GlaAttentionHeadDim = 128;

    /// <summary>Bytes of the device-to-device copy that measures the copy bandwidth (1 GiB).</summary>
    public const long CopyBytes = 1L << 30;

    public static readonly IReadOnlyList<PrefillCase> Prefill =
    [
        .. from headDim in new[] { 64, 128 }
           from shape in new[] { (16, 16, 1024), (4, 16, 4096), (1, 16, 16384), (1, 8, 65536) }
           select new PrefillCase(shape.Item1, shape.Item2, shape.Item3, headDim),
    ];

    public static readonly IReadOnlyList<DecodeCase> Decode =
    [
        .. from keys in new[] { 4096, 65536, 262144 }
           from kvHeads in new[] { 32, 8 }
           select new DecodeCase(1, 32, kvHeads, keys, 128),
    ];

    public static readonly IReadOnlyList<int> GlaTokens = [2048, 4096, 8192, 16384, 32768, 65536];

    /// <summary>"prefill,decode" → the parts; "all" → every part. Refuses unknown and empty lists.</summary>
    public static CudaBenchParts ParseParts(string text)
    {
        var parts = CudaBenchParts.None;
        foreach (string name in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            parts |= name.ToLowerInvariant() switch
            {
                "prefill" => CudaBenchParts.Prefill,
                "decode" => CudaBenchParts.Decode,
                "gla" => CudaBenchParts.Gla,
                "all" => CudaBenchParts.All,
                _ => throw new HorizonException($"--only: unknown part '{name}' (known: prefill, decode, gla, all)"),
            };
        }
        return parts == CudaBenchParts.None ? throw new HorizonException("--only: give at least one of prefill, decode, gla") : parts;
    }
}

/// <summary>The figures' formulas (docs/performance.md, "CUDA (issue 4)").</summary>
internal static class CudaBenchMath
{
    /// <summary>L2 working set the decode steps rotate past: the caches of one step are not timed from the ~60 MB L2.</summary>
    public const double RotationBytes = 256e6;

    public const int MaxCacheCopies = 16;

    /// <summary>Causal attention: half of full attention's 4·B·H·N²·D (QKᵀ and PV, 2 FLOPs per multiply-add), FlashAttention's convention.</summary>
    public static double CausalPrefillFlops(int batch, int heads, int tokens, int headDim) =>
        4.0 * batch * heads * (double)tokens * tokens * headDim / 2;

    /// <summary>Decode reads K and V once: 2 tensors × B·KV·kv_heads·D bf16 values of 2 bytes.</summary>
    public static double DecodeBytes(int batch, int kvHeads, int keyCount, int headDim) =>
        2.0 * batch * keyCount * kvHeads * headDim * 2;

    /// <summary>Enough copies of the cache (≥ 256 MB in all, at most 16) that a step's K and V left the L2 since their last step.</summary>
    public static int CacheCopies(double bytes) => (int)Math.Clamp(Math.Ceiling(RotationBytes / bytes), 1, MaxCacheCopies);

    public static double TeraflopsPerSecond(double flops, double ms) => flops / (ms * 1e-3) / 1e12;

    public static double GigabytesPerSecond(double bytes, double ms) => bytes / (ms * 1e-3) / 1e9;

    /// <summary>A device copy reads and writes every byte: 2·bytes moved (the convention of every copy figure here).</summary>
    public static double CopyGigabytesPerSecond(double bytes, double ms) => GigabytesPerSecond(2 * bytes, ms);

    public static double TokensPerSecond(int tokens, double ms) => tokens / (ms * 1e-3);
}

/// <summary>
/// One measured row of <c>horizon bench cuda</c>, as written to <c>--out</c> (tab-separated, one header line, lines
/// starting with '#' are comments): kind (copy, prefill, decode, gla, gla_attention), batch, heads, kv_heads, tokens
/// (N; the cache length for decode; the bytes for copy), head_dim (d_k for gla), ms (median), rate and its unit,
/// detail (space-separated key=value pairs). bench/cuda/torch_anchor.py reads the shapes from it.
/// </summary>
internal sealed record CudaBenchRow(string Kind, int Batch, int Heads, int KvHeads, long Tokens, int HeadDim, double Ms, double Rate, string Unit, string Detail = "")
{
    public const string Header = "kind\tbatch\theads\tkv_heads\ttokens\thead_dim\tms\trate\tunit\tdetail";

    public string ToTsv() => string.Create(CultureInfo.InvariantCulture,
        $"{Kind}\t{Batch}\t{Heads}\t{KvHeads}\t{Tokens}\t{HeadDim}\t{Ms:F4}\t{Rate:F2}\t{Unit}\t{Detail}");

    /// <summary>The comment line that opens the file: key=value pairs, tab-separated (values may hold spaces).</summary>
    public static string MetaLine(IEnumerable<KeyValuePair<string, string>> pairs)
    {
        var line = new StringBuilder("# horizon bench cuda");
        foreach (var (key, value) in pairs)
            line.Append('\t').Append(key).Append('=').Append(value.Replace('\t', ' ').ReplaceLineEndings(" "));
        return line.ToString();
    }
}
