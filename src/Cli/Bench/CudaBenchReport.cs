using System.Globalization;

namespace Horizon.Cli.Bench;

/// <summary>Prints the rows of a <see cref="CudaBenchmark"/> run as aligned text or as Markdown.</summary>
internal sealed class CudaBenchReport(
    CudaBenchSettings settings, IReadOnlyDictionary<string, string> meta, IReadOnlyList<CudaBenchRow> rows,
    IReadOnlyList<string> failures, TimeSpan elapsed, TextWriter output)
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    public void Write()
    {
        var table = new BenchTable(output, settings.Markdown);
        table.Heading("horizon bench cuda: Horizon's CUDA kernels on issue 4's matrix");
        string Meta(string key) => meta.TryGetValue(key, out string? value) ? value : "?";
        table.Raw($"device: {Meta("device")} (compute capability {Meta("capability")}, {Meta("multiprocessors")} multiprocessors), driver {Meta("driver")}, .NET {Meta("dotnet")}");
        table.Raw($"PTX: {Meta("ptx")}");
        table.Raw($"time: median of {settings.Repeats} timed launches after {settings.Warmup} warm-ups, device events around each launch; random normal bf16 inputs; run took {elapsed.TotalSeconds.ToString("F0", C)} s");
        var copy = rows.FirstOrDefault(r => r.Kind == "copy");
        if (copy is not null)
            table.Raw(string.Create(C, $"device copy (cuMemcpyDtoD of {copy.Tokens >> 20} MiB, read + write counted): {copy.Ms:F3} ms, {copy.Rate:F0} GB/s (the decode table's anchor)"));
        table.Blank();

        var prefill = rows.Where(r => r.Kind == "prefill").ToList();
        if (prefill.Count > 0)
        {
            table.Heading("Causal attention prefill, bf16 (FLOPs 4·B·H·N²·D / 2)", level: 2);
            table.Write(["B·H·N·D", "ms", "TFLOP/s"],
                prefill.Select(r => new[] { $"{r.Batch}·{r.Heads}·{r.Tokens}·{r.HeadDim}", Ms(r.Ms), r.Rate.ToString("F1", C) }).ToList(), rightFrom: 1);
        }

        var decode = rows.Where(r => r.Kind == "decode").ToList();
        if (decode.Count > 0)
        {
            table.Heading("Attention decode, 1 query, bf16 (bytes: K and V read once; % of the device copy above)", level: 2);
            table.Write(["B", "heads", "KV", "D", "K+V MB", "splits × keys", "ms", "GB/s", "% of copy"],
                decode.Select(r => new[]
                {
                    r.Batch.ToString(C), $"{r.Heads}/{r.KvHeads}", r.Tokens.ToString(C), r.HeadDim.ToString(C),
                    (CudaBenchMath.DecodeBytes(r.Batch, r.KvHeads, (int)r.Tokens, r.HeadDim) / 1e6).ToString("F1", C),
                    Detail(r, "splits")?.Replace("x", " × ", StringComparison.Ordinal) ?? "?", Ms(r.Ms), r.Rate.ToString("F0", C),
                    copy is null ? "–" : (r.Rate / copy.Rate).ToString("P0", C).Replace(" ", "", StringComparison.Ordinal),
                }).ToList(), rightFrom: 0);
        }

        var gla = rows.Where(r => r.Kind == "gla").ToList();
        if (gla.Count > 0)
        {
            table.Heading($"GLA chunked prefill, bf16 (B = 1, {CudaBenchMatrix.GlaHeads} heads, d_k {CudaBenchMatrix.GlaHeadKDim}, d_v {CudaBenchMatrix.GlaHeadVDim}) against Horizon's flash attention at the same width ({CudaBenchMatrix.GlaAttentionHeads} × {CudaBenchMatrix.GlaAttentionHeadDim}, causal)", level: 2);
            var attention = rows.Where(r => r.Kind == "gla_attention").ToDictionary(r => r.Tokens);
            table.Write(["tokens", "GLA ms", "GLA M tok/s", "attention ms", "attention M tok/s", "GLA speed-up"],
                gla.Select(r =>
                {
                    var a = attention.GetValueOrDefault(r.Tokens);
                    return new[]
                    {
                        r.Tokens.ToString(C), Ms(r.Ms), (r.Rate / 1e6).ToString("F2", C),
                        a is null ? "–" : Ms(a.Ms), a is null ? "–" : (a.Rate / 1e6).ToString("F2", C),
                        a is null ? "–" : (a.Ms / r.Ms).ToString("F2", C) + "×",
                    };
                }).ToList(), rightFrom: 0);
            table.Raw("GLA speed-up: attention time / GLA time at the same token count (> 1: GLA faster).");
            table.Blank();
        }

        if (failures.Count > 0)
        {
            table.Heading("Failed cases", level: 2);
            foreach (string failure in failures)
                table.Raw((settings.Markdown ? "- " : "  ") + failure);
            table.Blank();
        }
        if (settings.OutPath is not null)
            table.Raw($"rows: {settings.OutPath}; PyTorch on the same shapes: python3 bench/cuda/torch_anchor.py {settings.OutPath} TORCH.tsv, then python3 bench/cuda/join.py {settings.OutPath} TORCH.tsv");
    }

    private static string Ms(double ms) => ms.ToString(ms < 1 ? "F4" : "F3", C);

    /// <summary>The value of key=value in the row's detail, or null.</summary>
    internal static string? Detail(CudaBenchRow row, string key) =>
        row.Detail.Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Where(p => p.StartsWith(key + "=", StringComparison.Ordinal)).Select(p => p[(key.Length + 1)..]).FirstOrDefault();
}

/// <summary>Headings and tables as aligned text or Markdown (the style of <c>bench scaling</c>).</summary>
internal sealed class BenchTable(TextWriter output, bool markdown)
{
    public void Heading(string text, int level = 1)
    {
        output.WriteLine(markdown ? $"{new string('#', level + 2)} {text}" : level == 1 ? text : $"{text}:");
        Blank();
    }

    public void Raw(string text) => output.WriteLine(text);

    public void Blank() => output.WriteLine();

    /// <summary>A table; columns from <paramref name="rightFrom"/> on are right-aligned.</summary>
    public void Write(IReadOnlyList<string> header, IReadOnlyList<string[]> rows, int rightFrom)
    {
        if (markdown)
        {
            output.WriteLine("| " + string.Join(" | ", header) + " |");
            output.WriteLine("|" + string.Concat(header.Select((_, i) => i >= rightFrom ? "---:|" : "---|")));
            foreach (var row in rows)
                output.WriteLine("| " + string.Join(" | ", row) + " |");
            Blank();
            return;
        }
        int[] widths = header.Select((h, i) => Math.Max(h.Length, rows.Select(r => i < r.Length ? r[i].Length : 0).DefaultIfEmpty(0).Max())).ToArray();
        string Format(IReadOnlyList<string> cells) => string.Join("  ", widths.Select((w, i) =>
        {
            string cell = i < cells.Count ? cells[i] : "";
            return i >= rightFrom ? cell.PadLeft(w) : cell.PadRight(w);
        })).TrimEnd();
        output.WriteLine(Format(header));
        output.WriteLine(string.Join("  ", widths.Select(w => new string('-', w))));
        foreach (var row in rows)
            output.WriteLine(Format(row));
        Blank();
    }
}
