using System.Diagnostics;
using System.Globalization;
using System.Runtime;
using Horizon.Cpu;

namespace Horizon.Cli.Bench;

/// <summary>What <c>horizon bench scaling</c> measures: which mixers, which context lengths, which model sizes.</summary>
/// <param name="Lengths">Context lengths n, ascending, distinct.</param>
/// <param name="Mixers">Mixer names, in <see cref="SyntheticModel.MixerNames"/> order.</param>
/// <param name="Width">D.</param>
/// <param name="Layers">Blocks per model.</param>
/// <param name="Heads">Heads of the attention mixers and GLA.</param>
/// <param name="Window">w of sliding-window attention.</param>
/// <param name="Chunk">Tokens per prefill call; the whole context in one call when it is ≥ n.</param>
/// <param name="Repeats">Timed runs per length; null: adaptive (<see cref="ScalingBenchmark.ChooseRepeats"/>).</param>
/// <param name="TargetSeconds">Adaptive repeats aim at about this much timed work per (mixer, length).</param>
/// <param name="IdleWaitSeconds">Longest wait for a quiet machine before each timed run; 0: no waiting, no noisy runs left out.</param>
/// <param name="Markdown">Print the tables as Markdown.</param>
internal sealed record ScalingSettings(
    int[] Lengths, string[] Mixers, int Width, int Layers, int Heads, int Window, int Chunk, int? Repeats, double TargetSeconds,
    double IdleWaitSeconds, bool Markdown);

/// <summary>One timed prefill.</summary>
/// <param name="Ms">Wall time.</param>
/// <param name="MixerMs">Time spent inside the mixers (the rest is norms, MLPs, residual adds).</param>
/// <param name="FirstChunkMixerMs">Time inside the mixers for the first chunk (all layers).</param>
/// <param name="LastChunkMixerMs">Time inside the mixers for the last chunk: for a mixer whose cost per token does not grow with the context, about the first's.</param>
/// <param name="CpuMs">
/// Processor time the whole process used (user + kernel, all threads; Environment.CpuUsage). Other processes on the
/// machine stretch the wall time more than this, so it is the steadier figure on a shared machine.
/// </param>
/// <param name="OthersShare">Share of all processors that other processes used meanwhile (/proc/stat); NaN if unknown.</param>
/// <param name="Quiet">Whether other processes took at most 10 % (always true when the idle gate is off).</param>
internal sealed record TimedRun(double Ms, double MixerMs, double FirstChunkMixerMs, double LastChunkMixerMs, double CpuMs, double OthersShare, bool Quiet);

/// <summary>The measurements of one (mixer, context length).</summary>
/// <param name="Runs">The timed runs the figures come from: the quiet ones, or all when none was quiet.</param>
/// <param name="Discarded">Noisy runs left out.</param>
/// <param name="AllQuiet">False when no run was quiet and the figures come from noisy runs.</param>
/// <param name="Waited">Time spent waiting for a quiet machine before the runs.</param>
/// <param name="StateBytes">Bytes the mixer states of all layers hold after the prefill.</param>
/// <param name="AllocatedBytes">Managed bytes allocated during the last timed prefill (GC.GetTotalAllocatedBytes, precise).</param>
/// <param name="PeakHeapBytes">Highest managed heap seen during the warm-up prefill, above the heap before its session existed.</param>
/// <param name="WarmupMs">Wall time of the untimed warm-up prefill at this length.</param>
/// <param name="Finite">Whether the output of every timed prefill was finite (a check on the synthetic weights).</param>
/// <param name="LoadAverage">The 1, 5 and 15 minute load averages when this length's measurements began.</param>
internal sealed record ScalingCell(
    string Mixer, int Length, TimedRun[] Runs, int Discarded, bool AllQuiet, TimeSpan Waited,
    long StateBytes, long AllocatedBytes, long PeakHeapBytes, double WarmupMs, bool Finite, string LoadAverage)
{
    public int Repeats => Runs.Length;
    public double MedianMs => ScalingStatistics.Median(Runs.Select(r => r.Ms).ToArray());
    public double MinMs => Runs.Min(r => r.Ms);
    public double MaxMs => Runs.Max(r => r.Ms);
    public double MedianMixerMs => ScalingStatistics.Median(Runs.Select(r => r.MixerMs).ToArray());
    public double MedianCpuMs => ScalingStatistics.Median(Runs.Select(r => r.CpuMs).ToArray());
    public double MedianFirstChunkMixerMs => ScalingStatistics.Median(Runs.Select(r => r.FirstChunkMixerMs).ToArray());
    public double MedianLastChunkMixerMs => ScalingStatistics.Median(Runs.Select(r => r.LastChunkMixerMs).ToArray());
    public double MedianOthersShare => ScalingStatistics.Median(Runs.Select(r => r.OthersShare).Where(v => !double.IsNaN(v)).ToArray());
    public double TokensPerSecond => Length / (MedianMs / 1000.0);
}

/// <summary>
/// <c>horizon bench scaling</c>: CPU prefill time and memory of equal-width models that differ only in their token
/// mixer (softmax attention, sliding-window attention, GLA, Hyena), over growing context lengths; then the growth
/// exponent b of time ≈ a·n^b and the length from which each mixer beats softmax attention.
/// </summary>
/// <remarks>
/// Method: per mixer, a JIT warm-up (prefills at the shortest length until their time stops falling, so tiered
/// compilation has promoted the kernels); per length, one untimed warm-up prefill per mixer (it also sizes the array
/// pools, samples the peak heap and chooses N), then the timed prefills, round-robin over the mixers, each from a
/// fresh session created before the clock starts and after a full garbage collection. The time reported is the
/// median of the N; min and max are printed as the spread.
/// </remarks>
internal sealed class ScalingBenchmark(ScalingSettings settings, TextWriter output, TextWriter progress)
{
    private const int MaxRepeats = 15;

    /// <summary>Warm-ups longer than this get at least two timed runs; shorter ones at least three.</summary>
    private const double LongRunSeconds = 10.0;

    /// <summary>Other processes' share of the processors above which a moment is not quiet and a run is noisy.</summary>
    private const double NoisyShare = 0.10;

    public int Run()
    {
        int maxLength = settings.Lengths[^1];
        var shape = new ModelShape(settings.Width, settings.Layers, settings.Heads, settings.Window, maxLength);
        string loadBefore = MachineInfo.LoadAverage();
        var total = Stopwatch.StartNew();
        float[] inputs = new SyntheticWeights(7).Activations(maxLength, shape.Width);

        var models = new List<SyntheticModel>();
        foreach (string mixer in settings.Mixers)
        {
            var model = SyntheticModel.Create(mixer, shape);
            models.Add(model);
            progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{mixer}: {model.ParameterCount:N0} parameters ({model.MixerParameterCount:N0} in the mixers)"));
            WarmUpJit(model, inputs);
        }

        var cells = new List<ScalingCell>();
        foreach (int length in settings.Lengths)
        {
            cells.AddRange(MeasureLength(models, inputs, length));
            foreach (var cell in cells.Where(c => c.Length == length))
                progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  n = {length,6} {cell.Mixer,-24}: {cell.MedianMs,10:F1} ms median of {cell.Repeats} (min {cell.MinMs:F1}, max {cell.MaxMs:F1}; {cell.Discarded} noisy left out, waited {cell.Waited.TotalSeconds:F0} s; others {100 * cell.MedianOthersShare:F0} %; warm-up {cell.WarmupMs:F1} ms; load {cell.LoadAverage})"));
        }
        total.Stop();

        var run = new ScalingRun(settings, shape, models, cells, loadBefore, MachineInfo.LoadAverage(), total.Elapsed);
        new ScalingReport(run, output).Write();
        return cells.All(c => c.Finite) ? 0 : 1;
    }

    /// <summary>
    /// Prefills at the shortest length until tiered compilation has settled: at least 3 s and 10 runs, then until
    /// the median of the last 5 runs is no more than 3 % below that of the 5 before (at most 20 s). Measured on this
    /// machine, attention takes about 2 s (some 25 runs of 512 tokens) to reach its steady speed.
    /// </summary>
    private void WarmUpJit(SyntheticModel model, float[] inputs)
    {
        int length = settings.Lengths[0];
        var times = new List<double>();
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed.TotalSeconds < 20)
        {
            long start = Stopwatch.GetTimestamp();
            model.Prefill(model.CreateSession(length, settings.Chunk), inputs, length);
            times.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
            if (clock.Elapsed.TotalSeconds >= 3 && times.Count >= 10
                && ScalingStatistics.Median(times[^5..]) >= 0.97 * ScalingStatistics.Median(times[^10..^5]))
                break;
        }
        progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  JIT warm-up: {times.Count} prefills of {length} tokens in {clock.Elapsed.TotalSeconds:F1} s, first {times[0]:F1} ms, last five {ScalingStatistics.Median(times[^Math.Min(5, times.Count)..]):F1} ms (median)"));
    }

    /// <summary>
    /// Every model at one length: each is warmed up (which chooses its N), then the timed runs go round-robin over
    /// the models, so a change in the machine's load while they run hits all of them alike and their ratios stay fair.
    /// On Linux each timed run first waits (up to <see cref="ScalingSettings.IdleWaitSeconds"/>) for a moment when
    /// other processes use under 10 % of the processors, and a run during which they took more than 10 % counts
    /// as noisy: a model gets up to N extra attempts to collect N quiet runs, and its figures come from the quiet
    /// runs when there is at least one (from all its runs otherwise, which the report flags).
    /// </summary>
    private List<ScalingCell> MeasureLength(List<SyntheticModel> models, float[] inputs, int length)
    {
        string load = MachineInfo.LoadAverage();
        var warmups = models.Select(m => WarmUp(m, inputs, length)).ToArray();
        int[] wanted = warmups.Select(w => settings.Repeats ?? ChooseRepeats(w.Ms, settings.TargetSeconds)).ToArray();
        var runs = models.Select(_ => new List<TimedRun>()).ToArray();
        var stateBytes = new long[models.Count];
        var allocated = new long[models.Count];
        var finite = Enumerable.Repeat(true, models.Count).ToArray();
        var waited = new TimeSpan[models.Count];
        bool gate = settings.IdleWaitSeconds > 0 && MachineLoad.Available;

        bool NeedsMore(int m) => runs[m].Count(r => r.Quiet) < wanted[m] && runs[m].Count < (gate ? 2 * wanted[m] : wanted[m]);
        while (Enumerable.Range(0, models.Count).Any(NeedsMore))
        {
            for (int m = 0; m < models.Count; m++)
            {
                if (!NeedsMore(m))
                    continue;
                var model = models[m];
                var session = model.CreateSession(length, settings.Chunk);
                FullCollect();
                if (gate)
                    waited[m] += MachineLoad.WaitUntilQuiet(NoisyShare, TimeSpan.FromMilliseconds(300), TimeSpan.FromSeconds(settings.IdleWaitSeconds)).Waited;
                var machineBefore = MachineLoad.Read();
                long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
                TimeSpan cpuBefore = Environment.CpuUsage.TotalTime;
                long before = Stopwatch.GetTimestamp();
                long mixerTicks = model.Prefill(session, inputs, length);
                long after = Stopwatch.GetTimestamp();
                TimeSpan cpu = Environment.CpuUsage.TotalTime - cpuBefore;
                allocated[m] = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
                var machineAfter = MachineLoad.Read();
                TimeSpan wall = Stopwatch.GetElapsedTime(before, after);
                double others = machineBefore is { } b && machineAfter is { } a ? a.OthersShareSince(b, cpu, wall) : double.NaN;
                double TicksToMs(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
                runs[m].Add(new TimedRun(wall.TotalMilliseconds, TicksToMs(mixerTicks), TicksToMs(session.ChunkMixerTicks[0]), TicksToMs(session.ChunkMixerTicks[^1]),
                    cpu.TotalMilliseconds, others, Quiet: !gate || !(others > NoisyShare)));
                stateBytes[m] = session.StateBytes;
                finite[m] &= session.OutputIsFinite();
            }
        }
        return [.. models.Select((model, m) =>
        {
            var quiet = runs[m].Where(r => r.Quiet).ToArray();
            var used = quiet.Length > 0 ? quiet : [.. runs[m]];
            return new ScalingCell(model.Mixer, length, used, runs[m].Count - used.Length, quiet.Length > 0, waited[m],
                stateBytes[m], allocated[m], warmups[m].PeakHeapBytes, warmups[m].Ms, finite[m], load);
        })];
    }

    /// <summary>
    /// One untimed prefill at <paramref name="length"/>, with the managed heap sampled every millisecond on another
    /// thread: returns its wall time and the highest heap seen above the heap before its session was created.
    /// </summary>
    private (double Ms, long PeakHeapBytes) WarmUp(SyntheticModel model, float[] inputs, int length)
    {
        FullCollect();
        long heapBefore = GC.GetTotalMemory(forceFullCollection: false);
        var sampler = new HeapSampler();
        var session = model.CreateSession(length, settings.Chunk);
        long start = Stopwatch.GetTimestamp();
        model.Prefill(session, inputs, length);
        double ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        return (ms, Math.Max(0, sampler.Stop() - heapBefore));
    }

    /// <summary>
    /// N from the warm-up time t: enough runs for about <paramref name="targetSeconds"/> of timed work, at least 3
    /// (2 when t exceeds 10 s, the longest contexts of the quadratic mixers, so there is still a spread), at most 15.
    /// </summary>
    public static int ChooseRepeats(double warmupMs, double targetSeconds)
    {
        int least = warmupMs > LongRunSeconds * 1000 ? 2 : 3;
        double wanted = Math.Ceiling(targetSeconds * 1000 / Math.Max(warmupMs, 1e-3));
        return (int)Math.Clamp(wanted, least, MaxRepeats);
    }

    private static void FullCollect()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
    }

    /// <summary>Samples GC.GetTotalMemory(false) every millisecond on its own thread and keeps the highest value.</summary>
    private sealed class HeapSampler
    {
        private readonly Thread _thread;
        private volatile bool _stop;
        private long _peak;

        public HeapSampler()
        {
            _peak = GC.GetTotalMemory(forceFullCollection: false);
            _thread = new Thread(Sample) { IsBackground = true, Name = "heap sampler" };
            _thread.Start();
        }

        public long Stop()
        {
            _stop = true;
            _thread.Join();
            return Math.Max(_peak, GC.GetTotalMemory(forceFullCollection: false));
        }

        private void Sample()
        {
            while (!_stop)
            {
                _peak = Math.Max(_peak, GC.GetTotalMemory(forceFullCollection: false));
                Thread.Sleep(1);
            }
        }
    }
}

/// <summary>Everything one run measured, for the report.</summary>
internal sealed record ScalingRun(
    ScalingSettings Settings, ModelShape Shape, IReadOnlyList<SyntheticModel> Models, IReadOnlyList<ScalingCell> Cells,
    string LoadBefore, string LoadAfter, TimeSpan Elapsed)
{
    public IEnumerable<ScalingCell> CellsOf(string mixer) => Cells.Where(c => c.Mixer == mixer);

    public ScalingCell? Cell(string mixer, int length) => Cells.FirstOrDefault(c => c.Mixer == mixer && c.Length == length);
}

/// <summary>The machine and its load, as far as the process can tell.</summary>
internal static class MachineInfo
{
    /// <summary>The processor model name (Linux <c>/proc/cpuinfo</c>, as <c>lscpu</c> prints it), else the architecture.</summary>
    public static string Processor()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/cpuinfo"))
            {
                if (line.StartsWith("model name", StringComparison.Ordinal) && line.IndexOf(':') is int colon and >= 0)
                    return line[(colon + 1)..].Trim();
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString();
    }

    /// <summary>The 1, 5 and 15 minute load averages (Linux <c>/proc/loadavg</c>), or "unavailable".</summary>
    public static string LoadAverage()
    {
        try
        {
            string[] fields = File.ReadAllText("/proc/loadavg").Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return fields.Length >= 3 ? $"{fields[0]} {fields[1]} {fields[2]}" : "unavailable";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "unavailable";
        }
    }

    public static string Runtime() =>
        $"{System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription}, {(GCSettings.IsServerGC ? "server" : "workstation")} GC, " +
        $"{Environment.ProcessorCount} logical processors, {CpuKernels.MaxDegreeOfParallelism} kernel threads";
}
