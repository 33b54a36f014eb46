using System.Diagnostics;
using System.Globalization;
using Horizon.Cuda;

namespace Horizon.Cli.Bench;

/// <summary>
/// <c>horizon bench cuda</c>: times Horizon's CUDA kernels on issue 4's matrix (<see cref="CudaBenchMatrix"/>) and
/// prints the figures, each beside the anchor measured in the same run: the device copy's bandwidth for decode,
/// Horizon's own flash attention at the same width for GLA. PyTorch's kernels on the same shapes come from
/// bench/cuda/torch_anchor.py over the <c>--out</c> file, in the same device call (bench/cuda/join.py prints the
/// side-by-side table).
/// </summary>
/// <remarks>
/// Method: per case, <see cref="CudaBenchSettings.Warmup"/> untimed launches, then <see cref="CudaBenchSettings.Repeats"/>
/// timed ones, each between two device events on the benchmark's stream (the host waits for the end event before the
/// next launch); the figure is the median. Inputs are random normal bf16 (a 16 Mi-value pool drawn once, copied in
/// from a random offset per tensor): never zeros. Decode steps rotate over <see cref="DecodeCase.Copies"/> copies of
/// the cache so that a small cache is not timed from the L2. The copy bandwidth is a 1 GiB cuMemcpyDtoD, read and
/// write counted.
/// </remarks>
internal sealed class CudaBenchmark(CudaBenchSettings settings, TextWriter output, TextWriter progress)
{
    private const int PoolValues = 1 << 24;
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    private CudaContext _context = null!;
    private CudaOps _ops = null!;
    private CudaStream _stream = null!;
    private CudaEvent _start = null!, _end = null!;
    private BFloat16[] _pool = [];
    private float[] _gatePool = [];
    private readonly Random _random = new(7);
    private readonly List<string> _failures = [];
    private StreamWriter? _tsv;

    /// <summary>
    /// Why CUDA cannot run the benchmark here (<see cref="CudaDiagnostics.Describe"/>, the lines of <c>horizon doctor</c>),
    /// or null when device 0 is usable.
    /// </summary>
    public static string? Unavailable(CudaReport report)
    {
        if (!report.Available)
            return report.Reason ?? "CUDA is off";
        if (report.Devices.Count == 0)
            return "the driver sees no CUDA device";
        return report.Devices[0].Problem is string problem ? $"device 0: {problem}" : null;
    }

    public int Run()
    {
        var report = CudaDiagnostics.Describe();
        if (Unavailable(report) is string why)
            throw new HorizonException($"bench cuda: CUDA is unavailable: {why} (horizon doctor says more)");
        var clock = Stopwatch.StartNew();
        var device = report.Devices[0];

        using var context = CudaContext.CreatePrimary(0);
        using var ops = new CudaOps(context);
        using var stream = context.CreateStream();
        using var start = context.CreateEvent();
        using var end = context.CreateEvent();
        (_context, _ops, _stream, _start, _end) = (context, ops, stream, start, end);
        ops.Preload();
        _pool = DrawPool();

        var meta = new Dictionary<string, string>
        {
            ["device"] = device.Name,
            ["capability"] = device.ComputeCapability.ToString(),
            ["multiprocessors"] = device.Multiprocessors.ToString(C),
            ["driver"] = report.DriverVersionText ?? "?",
            ["ptx"] = string.Join(", ", device.SelectedPtx),
            ["warmup"] = settings.Warmup.ToString(C),
            ["repeats"] = settings.Repeats.ToString(C),
            ["dotnet"] = Environment.Version.ToString(),
        };
        if (settings.OutPath is string path)
        {
            _tsv = new StreamWriter(path, append: false) { AutoFlush = true };
            _tsv.WriteLine(CudaBenchRow.MetaLine(meta));
            _tsv.WriteLine(CudaBenchRow.Header);
        }
        try
        {
            var rows = new List<CudaBenchRow>();
            var copy = MeasureCopy();
            rows.Add(copy);
            if (settings.Parts.HasFlag(CudaBenchParts.Prefill))
            {
                foreach (var c in CudaBenchMatrix.Prefill)
                    Try($"prefill {c.Label}", () => rows.Add(MeasurePrefill(c)));
            }
            if (settings.Parts.HasFlag(CudaBenchParts.Decode))
            {
                foreach (var c in CudaBenchMatrix.Decode)
                    Try($"decode heads {c.Heads}/{c.KvHeads} KV {c.KeyCount}", () => rows.Add(MeasureDecode(c, copy.Rate)));
            }
            if (settings.Parts.HasFlag(CudaBenchParts.Gla))
            {
                _gatePool = DrawGates();
                foreach (int n in CudaBenchMatrix.GlaTokens)
                    Try($"gla {n}", () => rows.AddRange(MeasureGla(n)));
            }
            clock.Stop();
            new CudaBenchReport(settings, meta, rows, _failures, clock.Elapsed, output).Write();
        }
        finally
        {
            _tsv?.Dispose();
        }
        return _failures.Count == 0 ? 0 : 1;
    }

    /// <summary>Runs one case; a CUDA or argument error is reported, recorded and the run goes on with the next case.</summary>
    private void Try(string what, Action measure)
    {
        try
        {
            measure();
        }
        catch (Exception e) when (e is HorizonException or NotSupportedException or ArgumentException)
        {
            string line = $"{what}: {e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")}";
            _failures.Add(line);
            progress.WriteLine($"  failed: {line}");
        }
    }

    private void Emit(CudaBenchRow row)
    {
        _tsv?.WriteLine(row.ToTsv());
        progress.WriteLine($"  {row.Kind} B {row.Batch} heads {row.Heads}/{row.KvHeads} N {row.Tokens} D {row.HeadDim}: " +
            string.Create(C, $"{row.Ms:F4} ms, {row.Rate:F1} {row.Unit} {row.Detail}").TrimEnd());
    }

    /// <summary>Median device time of one launch (or one short sequence of launches) on <paramref name="stream"/>.</summary>
    private double MedianMs(Action launch, CudaStream? stream)
    {
        for (int i = 0; i < settings.Warmup; i++)
            launch();
        var times = new double[settings.Repeats];
        for (int i = 0; i < times.Length; i++)
        {
            _start.Record(stream);
            launch();
            _end.Record(stream);
            times[i] = CudaEvent.ElapsedMilliseconds(_start, _end);
        }
        return ScalingStatistics.Median(times);
    }

    private CudaBenchRow MeasureCopy()
    {
        long bytes = CudaBenchMatrix.CopyBytes;
        using var source = _context.Allocate<byte>(bytes);
        using var target = _context.Allocate<byte>(bytes);
        source.Fill(0x5A);
        // cuMemcpyDtoD runs on the legacy default stream: the events go there too.
        double ms = MedianMs(() => target.CopyToDevice(source), null);
        var row = new CudaBenchRow("copy", 1, 0, 0, bytes, 0, ms, CudaBenchMath.CopyGigabytesPerSecond(bytes, ms), "GB/s", "cuMemcpyDtoD read+write");
        Emit(row);
        return row;
    }

    private CudaBenchRow MeasurePrefill(PrefillCase c)
    {
        long elements = (long)c.Batch * c.Tokens * c.Heads * c.HeadDim;
        using var q = RandomBf16(elements);
        using var k = RandomBf16(elements);
        using var v = RandomBf16(elements);
        using var o = _context.Allocate<BFloat16>(elements);
        double ms = MedianMs(() => _ops.AttentionPrefill(q, k, v, o, c.Batch, c.Tokens, c.Tokens, c.Heads, c.Heads, c.HeadDim, 0, stream: _stream), _stream);
        var row = new CudaBenchRow("prefill", c.Batch, c.Heads, c.Heads, c.Tokens, c.HeadDim, ms, CudaBenchMath.TeraflopsPerSecond(c.Flops, ms), "TFLOP/s");
        Emit(row);
        return row;
    }

    private CudaBenchRow MeasureDecode(DecodeCase c, double copyGbs)
    {
        long kvElements = (long)c.Batch * c.KeyCount * c.KvHeads * c.HeadDim;
        int copies = c.Copies;
        var ks = new CudaDeviceVariable<BFloat16>[copies];
        var vs = new CudaDeviceVariable<BFloat16>[copies];
        try
        {
            for (int i = 0; i < copies; i++)
            {
                // The first K and V drawn at random, the others device copies of them (their values do not change the work).
                ks[i] = i == 0 ? RandomBf16(kvElements) : _context.Allocate<BFloat16>(kvElements);
                vs[i] = i == 0 ? RandomBf16(kvElements) : _context.Allocate<BFloat16>(kvElements);
                if (i > 0)
                {
                    ks[i].CopyToDevice(ks[0]);
                    vs[i].CopyToDevice(vs[0]);
                }
            }
            using var q = RandomBf16((long)c.Batch * c.Heads * c.HeadDim);
            using var o = _context.Allocate<BFloat16>((long)c.Batch * c.Heads * c.HeadDim);
            var plan = _ops.PlanAttentionDecode(c.Batch, c.Heads, c.KvHeads, c.HeadDim, c.KeyCount);
            using var workspace = _context.Allocate<float>(plan.WorkspaceFloats);
            int step = 0;
            double ms = MedianMs(() =>
            {
                int i = step++ % copies;
                _ops.AttentionDecode(q, ks[i], vs[i], o, c.Batch, c.Heads, c.KvHeads, c.HeadDim, c.KeyCount, c.KeyCount, workspace, stream: _stream);
            }, _stream);
            double gbs = CudaBenchMath.GigabytesPerSecond(c.Bytes, ms);
            var row = new CudaBenchRow("decode", c.Batch, c.Heads, c.KvHeads, c.KeyCount, c.HeadDim, ms, gbs, "GB/s",
                string.Create(C, $"splits={plan.Splits}x{plan.KeysPerSplit} copies={copies} of_copy={gbs / copyGbs:F3}"));
            Emit(row);
            return row;
        }
        finally
        {
            foreach (var variable in ks)
                variable?.Dispose();
            foreach (var variable in vs)
                variable?.Dispose();
        }
    }

    /// <summary>GLA chunked prefill (bf16 q/k/v/o, float32 log-gates and state) and Horizon's flash attention at the same width.</summary>
    private CudaBenchRow[] MeasureGla(int n)
    {
        const int heads = CudaBenchMatrix.GlaHeads, dk = CudaBenchMatrix.GlaHeadKDim, dv = CudaBenchMatrix.GlaHeadVDim;
        double glaMs;
        {
            using var q = RandomBf16((long)n * heads * dk);
            using var k = RandomBf16((long)n * heads * dk);
            using var v = RandomBf16((long)n * heads * dv);
            using var g = RandomGates((long)n * heads * dk);
            using var state = _context.Allocate<float>((long)heads * dk * dv);
            using var o = _context.Allocate<BFloat16>((long)n * heads * dv);
            var plan = CudaOps.PlanGlaPrefill(1, n, heads, dk, dv);
            using var workspace = _context.Allocate<float>(plan.WorkspaceFloats);
            state.Fill(0);
            glaMs = MedianMs(() => _ops.GlaChunkPrefill(q, k, v, g, state, o, 1, n, heads, heads, dk, dv, workspace, stream: _stream), _stream);
        }
        var gla = new CudaBenchRow("gla", 1, heads, heads, n, dk, glaMs, CudaBenchMath.TokensPerSecond(n, glaMs), "tok/s",
            string.Create(C, $"head_v_dim={dv}"));
        Emit(gla);

        const int attentionHeads = CudaBenchMatrix.GlaAttentionHeads, d = CudaBenchMatrix.GlaAttentionHeadDim;
        long elements = (long)n * attentionHeads * d;
        using var aq = RandomBf16(elements);
        using var ak = RandomBf16(elements);
        using var av = RandomBf16(elements);
        using var ao = _context.Allocate<BFloat16>(elements);
        double attentionMs = MedianMs(() => _ops.AttentionPrefill(aq, ak, av, ao, 1, n, n, attentionHeads, attentionHeads, d, 0, stream: _stream), _stream);
        var attention = new CudaBenchRow("gla_attention", 1, attentionHeads, attentionHeads, n, d, attentionMs,
            CudaBenchMath.TokensPerSecond(n, attentionMs), "tok/s", string.Create(C, $"gla_speedup={attentionMs / glaMs:F3}"));
        Emit(attention);
        return [gla, attention];
    }

    private static BFloat16[] DrawPool()
    {
        var random = new Random(1234);
        var values = new float[PoolValues];
        for (int i = 0; i < values.Length; i += 2)
        {
            double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
            double radius = Math.Sqrt(-2.0 * Math.Log(u1));
            values[i] = (float)(radius * Math.Cos(2 * Math.PI * u2));
            values[i + 1] = (float)(radius * Math.Sin(2 * Math.PI * u2));
        }
        var result = new BFloat16[values.Length];
        BFloat16.FromSingle(values, result);
        return result;
    }

    /// <summary>Log-gates in [−0.1, 0) (GLA's decays, as the GLA tests draw them).</summary>
    private static float[] DrawGates()
    {
        var random = new Random(99);
        var values = new float[1 << 20];
        for (int i = 0; i < values.Length; i++)
            values[i] = (float)(-0.1 * random.NextDouble()) - 1e-6f;
        return values;
    }

    private CudaDeviceVariable<BFloat16> RandomBf16(long count)
    {
        var variable = _context.Allocate<BFloat16>(count);
        FillFromPool(variable, _pool);
        return variable;
    }

    private CudaDeviceVariable<float> RandomGates(long count)
    {
        var variable = _context.Allocate<float>(count);
        FillFromPool(variable, _gatePool);
        return variable;
    }

    /// <summary>Fills the variable with the pool's values read cyclically from a random starting offset.</summary>
    private void FillFromPool<T>(CudaDeviceVariable<T> variable, T[] pool) where T : unmanaged
    {
        int from = _random.Next(pool.Length);
        long offset = 0;
        while (offset < variable.Size)
        {
            int length = (int)Math.Min(pool.Length - from, variable.Size - offset);
            variable.CopyToDevice(pool.AsSpan(from, length), offset);
            offset += length;
            from = 0;
        }
    }
}
