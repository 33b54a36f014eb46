using System.Globalization;
using System.Text;

namespace Horizon.Cli.Bench;

/// <summary>Medians and the power-law fit of <c>bench scaling</c>.</summary>
internal static class ScalingStatistics
{
    public static double Median(IReadOnlyList<double> values)
    {
        if (values.Count == 0)
            return double.NaN;
        var sorted = values.Order().ToArray();
        int middle = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
    }

    /// <summary>
    /// Least-squares fit of ln t = ln a + b·ln n over the points (n_i, t_i): b = S_xy / S_xx with x = ln n, y = ln t.
    /// Returns b, its standard error √(Σ residual² / (k − 2) / S_xx) (NaN for k ≤ 2 points: a line through two
    /// points has no residual to judge it by), and R². All NaN for fewer than two distinct lengths.
    /// </summary>
    public static PowerLawFit FitPowerLaw(IReadOnlyList<int> lengths, IReadOnlyList<double> times)
    {
        int count = lengths.Count;
        if (count < 2 || times.Count != count)
            return new PowerLawFit(double.NaN, double.NaN, double.NaN);
        double[] x = lengths.Select(n => Math.Log(n)).ToArray();
        double[] y = times.Select(t => Math.Log(t)).ToArray();
        double meanX = x.Average(), meanY = y.Average();
        double sxx = 0, sxy = 0, syy = 0;
        for (int i = 0; i < count; i++)
        {
            sxx += (x[i] - meanX) * (x[i] - meanX);
            sxy += (x[i] - meanX) * (y[i] - meanY);
            syy += (y[i] - meanY) * (y[i] - meanY);
        }
        if (sxx == 0)
            return new PowerLawFit(double.NaN, double.NaN, double.NaN);
        double b = sxy / sxx;
        double residual = Math.Max(0, syy - b * sxy); // Σ (y − ŷ)²
        double error = count > 2 ? Math.Sqrt(residual / (count - 2) / sxx) : double.NaN;
        double r2 = syy == 0 ? 1 : sxy * sxy / (sxx * syy);
        return new PowerLawFit(b, error, r2);
    }

    /// <summary>Where the upper half of k lengths starts (its last ⌈k/2⌉; all k when k &lt; 4), where constant costs matter least.</summary>
    public static int UpperHalfStart(int count) => count < 4 ? 0 : count / 2;
}

/// <summary>The exponent b of t ≈ a·n^b, its standard error and the fit's R² (NaN where undefined).</summary>
internal readonly record struct PowerLawFit(double Exponent, double StandardError, double RSquared);

/// <summary>Prints the result of a <see cref="ScalingBenchmark"/> run as aligned text or as Markdown.</summary>
internal sealed class ScalingReport(ScalingRun run, TextWriter output)
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;
    private const string Anchor = "attention";
    private bool Markdown => run.Settings.Markdown;

    public void Write()
    {
        WriteHeader();
        WriteParameters();
        WriteSummary();
        WriteDetails();
        WriteExponents();
        WriteCrossovers();
    }

    private void WriteHeader()
    {
        var s = run.Settings;
        var shape = run.Shape;
        string chunking = s.Chunk >= shape.MaxLength
            ? "the whole context in one call per layer"
            : $"chunks of {s.Chunk} tokens, each through every layer before the next, the context carried in each mixer's state";
        Heading("horizon bench scaling: CPU prefill, float32");
        Line($"machine: {MachineInfo.Processor()}; {MachineInfo.Runtime()}");
        var loads = run.Cells.Select(c => c.LoadAverage).Distinct().Select(l => double.TryParse(l.Split(' ')[0], NumberStyles.Float, C, out double v) ? v : double.NaN).Where(v => !double.IsNaN(v)).ToList();
        string during = loads.Count == 0 ? "" : $", 1-minute load {loads.Min().ToString("F2", C)}–{loads.Max().ToString("F2", C)} at the start of each length";
        Line($"load average (1, 5, 15 min): {run.LoadBefore} at start, {run.LoadAfter} at end{during}; run took {run.Elapsed.TotalSeconds:F0} s");
        Line($"models: width {shape.Width}, {shape.Layers} layers of RMSNorm → mixer → residual → RMSNorm → SwiGLU MLP ({shape.Intermediate}) → residual; random weights from fixed seeds, the same norms and MLPs for every mixer; no embedding or LM head (inputs are random activations)");
        Line($"mixers: attention and sliding_window_attention {shape.Heads} heads × {shape.HeadDim}, RoPE; sliding window w = {shape.Window}, global position 0; gla {shape.Heads} heads, expand_k 0.5, expand_v 1 (d_k {shape.Width / 2 / shape.Heads}, d_v {shape.Width / shape.Heads}), output gate, chunk 64; hyena order 2, filter_order 64, max_seq_len {shape.MaxLength} (filter materialised at build time)");
        Line($"prefill: {chunking}");
        string gate = run.Settings.IdleWaitSeconds > 0 && MachineLoad.Available
            ? $"each timed run waits (up to {run.Settings.IdleWaitSeconds.ToString("F0", C)} s) until other processes use under 10 % of the processors, and a run during which they used more is noisy: " +
              "it is left out and retried (at most N retries); "
            : "no waiting for a quiet machine; ";
        Raw("time: median of N timed prefills after an untimed warm-up at the same length (and a JIT warm-up per mixer), the mixers taking turns run by run; " + gate + "spread = min–max over the N; " +
             "each timed prefill starts from a fresh session made before the clock starts, after a full GC");
        Raw("memory: state = bytes the mixer states of all layers hold after the prefill; alloc = managed bytes allocated during one timed prefill " +
             "(GC.GetTotalAllocatedBytes(precise) delta; pooled scratch rented in the warm-up is not counted again); peak = highest GC.GetTotalMemory(false), " +
             "sampled every ms during the warm-up prefill, above the heap before its session existed (state + scratch + garbage not yet collected). MiB = 2^20 bytes");
        Blank();
    }

    private void WriteParameters()
    {
        Heading("Parameters", level: 2);
        long anchor = run.Models.FirstOrDefault(m => m.Mixer == Anchor)?.MixerParameterCount ?? 0;
        var rows = run.Models.Select(m => new[]
        {
            Name(m.Mixer),
            m.ParameterCount.ToString("N0", C),
            m.MixerParameterCount.ToString("N0", C),
            (m.MixerParameterCount / run.Shape.Layers).ToString("N0", C),
            anchor == 0 ? "–" : (m.MixerParameterCount / (double)anchor).ToString("F3", C),
        }).ToList();
        Table(["mixer", "model params", "mixer params (all layers)", "per mixer layer", "mixer / attention"], rows, rightFrom: 1);
    }

    /// <summary>The table the issue asks for: per mixer and length, ms, tokens/s and state MiB; then the fitted exponents.</summary>
    private void WriteSummary()
    {
        Heading("Prefill time and state by context length", level: 2);
        int[] lengths = run.Settings.Lengths;
        var header = new List<string> { "mixer", "metric" };
        header.AddRange(lengths.Select(LengthLabel));
        header.Add("b (all)");
        header.Add($"b ({LengthLabel(lengths[ScalingStatistics.UpperHalfStart(lengths.Length)])}–{LengthLabel(lengths[^1])})");
        var rows = new List<string[]>();
        foreach (var model in run.Models)
        {
            var cells = lengths.Select(n => run.Cell(model.Mixer, n)).ToArray();
            var (all, upper) = Exponents(model.Mixer, c => c.MedianMs);
            rows.Add([Name(model.Mixer), "ms", .. cells.Select(c => c is null ? "–" : Ms(c.MedianMs)), Exponent(all), Exponent(upper)]);
            rows.Add(["", "tokens/s", .. cells.Select(c => c is null ? "–" : Rate(c.TokensPerSecond)), "", ""]);
            rows.Add(["", "state MiB", .. cells.Select(c => c is null ? "–" : MiB(c.StateBytes)), "", ""]);
        }
        Table(header, rows, rightFrom: 2);
    }

    private void WriteDetails()
    {
        Heading("Details", level: 2);
        Raw("N = timed runs; spread = min–max; mixer ms = median time inside the mixers (the rest is norms, MLPs, residual adds); first → last = the mixers' time for the first and for the last chunk " +
             "(the same for a mixer whose cost per token does not grow with the context); CPU ms = median processor time of the process, all threads (≈ 2 × ms on an otherwise idle 2-core machine; other processes' load stretches ms but hardly CPU ms); " +
             "speed-up = attention's median / this mixer's median at the same length; local b = the exponent between this length and the previous one; others % = median share of the processors other processes used during the runs kept; " +
             "left out = noisy runs (others > 10 %) not counted; load = 1-minute load average when this length's runs began (this benchmark's own 2 threads add about 2)");
        Blank();
        static string Note(ScalingCell c) => string.Join("; ", new[] { c.AllQuiet ? "" : "no quiet run: figures from noisy runs", c.Finite ? "" : "non-finite output" }.Where(n => n.Length > 0));
        bool anyNote = run.Cells.Any(c => Note(c).Length > 0);
        var rows = new List<string[]>();
        foreach (var model in run.Models)
        {
            ScalingCell? previous = null;
            foreach (var cell in run.CellsOf(model.Mixer))
            {
                var anchor = run.Cell(Anchor, cell.Length);
                string local = previous is null ? "" : Exponent(Math.Log(cell.MedianMs / previous.MedianMs) / Math.Log(cell.Length / (double)previous.Length));
                rows.Add(
                [
                    previous is null ? Name(model.Mixer) : "",
                    cell.Length.ToString(C),
                    cell.Repeats.ToString(C),
                    Ms(cell.MedianMs),
                    $"{Ms(cell.MinMs)}–{Ms(cell.MaxMs)}",
                    Rate(cell.TokensPerSecond),
                    Ms(cell.MedianMixerMs),
                    run.Settings.Chunk >= cell.Length ? "one chunk" : $"{Ms(cell.MedianFirstChunkMixerMs)} → {Ms(cell.MedianLastChunkMixerMs)}",
                    Ms(cell.MedianCpuMs),
                    anchor is null ? "–" : (anchor.MedianMs / cell.MedianMs).ToString("F2", C) + "×",
                    local,
                    MiB(cell.StateBytes),
                    MiB(cell.AllocatedBytes),
                    MiB(cell.PeakHeapBytes),
                    double.IsNaN(cell.MedianOthersShare) ? "–" : (100 * cell.MedianOthersShare).ToString("F0", C),
                    cell.Discarded.ToString(C),
                    cell.LoadAverage.Split(' ')[0],
                    .. (anyNote ? [Note(cell)] : Array.Empty<string>()),
                ]);
                previous = cell;
            }
        }
        string[] header = ["mixer", "n", "N", "ms", "spread ms", "tokens/s", "mixer ms", "mixer ms per chunk, first → last", "CPU ms", "speed-up", "local b", "state MiB", "alloc MiB", "peak MiB", "others %", "left out", "load"];
        Table(anyNote ? [.. header, "note"] : header, rows, rightFrom: 1, leftFrom: header.Length);
    }

    private void WriteExponents()
    {
        Heading("Growth exponent b of time ≈ a·n^b (least squares on log–log)", level: 2);
        Raw("b ± its standard error from the fit's residuals (k lengths leave k − 2 degrees of freedom, one for the upper half of six lengths: read that one as rough; none for two lengths); " +
            "ms = wall time of the whole prefill, mixer only = time inside the mixers, CPU time = processor time of the process");
        Blank();
        int[] lengths = run.Settings.Lengths;
        int upperStart = ScalingStatistics.UpperHalfStart(lengths.Length);
        string upperLabel = $"{LengthLabel(lengths[upperStart])}–{LengthLabel(lengths[^1])}";
        var rows = new List<string[]>();
        foreach (var model in run.Models)
        {
            var (all, upper) = Exponents(model.Mixer, c => c.MedianMs);
            var (mixerAll, mixerUpper) = Exponents(model.Mixer, c => c.MedianMixerMs);
            var (cpuAll, cpuUpper) = Exponents(model.Mixer, c => c.MedianCpuMs);
            rows.Add(
            [
                Name(model.Mixer),
                Exponent(all),
                all.RSquared.ToString("F4", C),
                Exponent(upper),
                Exponent(mixerAll),
                Exponent(mixerUpper),
                Exponent(cpuAll),
                Exponent(cpuUpper),
                Expected(model.Mixer),
            ]);
        }
        Table(["mixer", $"b ({LengthLabel(lengths[0])}–{LengthLabel(lengths[^1])})", "R²", $"b ({upperLabel})", "b mixer only", $"b mixer only ({upperLabel})", "b CPU time", $"b CPU time ({upperLabel})", "expected"], rows, rightFrom: 1, leftFrom: 8);
    }

    private void WriteCrossovers()
    {
        Heading("Faster than softmax attention", level: 2);
        if (!run.Models.Any(m => m.Mixer == Anchor))
        {
            Raw("attention was not measured in this run, so there is no crossover to report.");
            return;
        }
        Raw("lower median = this mixer's median time is below attention's at that length; clearly = its slowest run is faster than attention's fastest");
        Blank();
        foreach (var model in run.Models.Where(m => m.Mixer != Anchor))
        {
            var pairs = run.Settings.Lengths
                .Select(n => (Length: n, Own: run.Cell(model.Mixer, n), Anchor: run.Cell(Anchor, n)))
                .Where(p => p.Own is not null && p.Anchor is not null)
                .Select(p => (p.Length, Ratio: p.Anchor!.MedianMs / p.Own!.MedianMs, Clearly: p.Own.MaxMs < p.Anchor.MinMs))
                .ToList();
            string ratios = string.Join(", ", pairs.Select(p => $"{p.Ratio:F2}× at {LengthLabel(p.Length)}"));
            string text = $"{Name(model.Mixer)}: lower median {Crossover(pairs.Select(p => (p.Length, p.Ratio > 1)).ToList())}; " +
                $"clearly {Crossover(pairs.Select(p => (p.Length, p.Clearly)).ToList())} (speed-up {ratios})";
            Raw(Markdown ? "- " + text : text);
        }
        Blank();
    }

    /// <summary>"from n = L on" when the condition holds at L and every longer length; otherwise where it first holds.</summary>
    private static string Crossover(List<(int Length, bool Holds)> points)
    {
        int first = points.FirstOrDefault(p => p.Holds).Length;
        if (first == 0)
            return "at no measured length";
        int fromOn = 0;
        for (int i = points.Count - 1; i >= 0 && points[i].Holds; i--)
            fromOn = points[i].Length;
        return fromOn == first ? $"from n = {first} on"
            : fromOn == 0 ? $"first at n = {first}, but not at the longest length"
            : $"first at n = {first}, at every length from n = {fromOn} on";
    }

    private (PowerLawFit All, PowerLawFit Upper) Exponents(string mixer, Func<ScalingCell, double> time)
    {
        int upperStart = ScalingStatistics.UpperHalfStart(run.Settings.Lengths.Length);
        return (Fit(mixer, time, 0), Fit(mixer, time, upperStart));
    }

    private PowerLawFit Fit(string mixer, Func<ScalingCell, double> time, int from)
    {
        var cells = run.Settings.Lengths.Skip(from).Select(n => run.Cell(mixer, n)).OfType<ScalingCell>().ToList();
        return ScalingStatistics.FitPowerLaw(cells.Select(c => c.Length).ToList(), cells.Select(time).ToList());
    }

    private string Expected(string mixer) => mixer switch
    {
        "attention" => "O(n²) attention + O(n) projections/MLP: b → 2 as n grows",
        "sliding_window_attention" => $"O(n·w), w = {run.Shape.Window}: b ≈ 1",
        "gla" => "O(n): b ≈ 1",
        "hyena" => run.Settings.Chunk >= run.Shape.MaxLength
            ? "O(n log n), one FFT per layer: b a little above 1"
            : $"O(n log n) in one call; in chunks of C = {run.Settings.Chunk} each call FFTs the whole history: O(n²/C · log n)",
        _ => "",
    };

    // ------------------------------------------------------------ formatting

    private string Name(string mixer) => Markdown ? $"`{mixer}`" : mixer;

    private static string LengthLabel(int n) => n % 1024 == 0 ? $"{n / 1024}K" : n.ToString(C);

    private static string Ms(double ms) => ms >= 100 ? ms.ToString("F0", C) : ms >= 10 ? ms.ToString("F1", C) : ms.ToString("F2", C);

    private static string Rate(double perSecond) => perSecond >= 1e6
        ? (perSecond / 1e6).ToString("F2", C) + "M"
        : perSecond >= 1e3 ? (perSecond / 1e3).ToString("F1", C) + "k" : perSecond.ToString("F0", C);

    private static string MiB(long bytes) => (bytes / (1024.0 * 1024.0)).ToString(bytes < 10L << 20 ? "F2" : "F1", C);

    private static string Exponent(double b) => double.IsNaN(b) ? "–" : b.ToString("F2", C);

    private static string Exponent(PowerLawFit fit) => double.IsNaN(fit.StandardError)
        ? Exponent(fit.Exponent)
        : $"{Exponent(fit.Exponent)} ± {fit.StandardError.ToString("F2", C)}";

    private void Heading(string text, int level = 1)
    {
        output.WriteLine(Markdown ? $"{new string('#', level + 2)} {text}" : level == 1 ? text : $"{text}:");
        Blank();
    }

    private void Line(FormattableString text) => output.WriteLine(text.ToString(C));

    private void Raw(string text) => output.WriteLine(text);

    private void Blank() => output.WriteLine();

    /// <summary>A table, Markdown or space-aligned; columns from <paramref name="rightFrom"/> up to <paramref name="leftFrom"/> are right-aligned.</summary>
    private void Table(IReadOnlyList<string> header, IReadOnlyList<string[]> rows, int rightFrom, int leftFrom = int.MaxValue)
    {
        bool Right(int column) => column >= rightFrom && column < leftFrom;
        if (Markdown)
        {
            output.WriteLine("| " + string.Join(" | ", header) + " |");
            output.WriteLine("|" + string.Concat(header.Select((_, i) => Right(i) ? "---:|" : "---|")));
            foreach (var row in rows)
                output.WriteLine("| " + string.Join(" | ", row) + " |");
            Blank();
            return;
        }
        int[] widths = header.Select((h, i) => Math.Max(h.Length, rows.Select(r => i < r.Length ? r[i].Length : 0).DefaultIfEmpty(0).Max())).ToArray();
        string Format(IReadOnlyList<string> cells)
        {
            var line = new StringBuilder();
            for (int i = 0; i < widths.Length; i++)
            {
                string cell = i < cells.Count ? cells[i] : "";
                line.Append(Right(i) ? cell.PadLeft(widths[i]) : cell.PadRight(widths[i]));
                if (i < widths.Length - 1)
                    line.Append("  ");
            }
            return line.ToString().TrimEnd();
        }
        output.WriteLine(Format(header));
        output.WriteLine(string.Join("  ", widths.Select(w => new string('-', w))).TrimEnd());
        foreach (var row in rows)
            output.WriteLine(Format(row));
        Blank();
    }
}
