using System.Globalization;

namespace Horizon.Cli.Bench;

/// <summary>
/// How busy the whole machine is, from the Linux <c>/proc/stat</c> CPU counters, so that a benchmark on a shared
/// machine can wait for a quiet moment before a timed run and tell afterwards how much of the run other processes
/// took. Elsewhere (no <c>/proc/stat</c>) <see cref="Available"/> is false and nothing waits.
/// </summary>
internal static class MachineLoad
{
    private const string StatPath = "/proc/stat";

    /// <summary>Whether <c>/proc/stat</c> can be read here.</summary>
    public static bool Available { get; } = Read() is not null;

    /// <summary>
    /// The aggregate "cpu" line of /proc/stat: busy = user + nice + system + irq + softirq + steal, total = busy +
    /// idle + iowait, in clock ticks summed over all processors (steal counts as busy: the hypervisor gave the
    /// time to someone else). Null when the file cannot be read.
    /// </summary>
    public static CpuCounters? Read()
    {
        try
        {
            using var reader = new StreamReader(StatPath);
            string? line = reader.ReadLine();
            if (line is null || !line.StartsWith("cpu ", StringComparison.Ordinal))
                return null;
            long[] v = line[4..].Split(' ', StringSplitOptions.RemoveEmptyEntries).Take(8)
                .Select(f => long.Parse(f, NumberStyles.None, CultureInfo.InvariantCulture)).ToArray();
            if (v.Length < 8)
                return null;
            long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
            return new CpuCounters(busy, busy + v[3] + v[4]);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or OverflowException)
        {
            return null;
        }
    }

    /// <summary>
    /// Waits until the machine's processors were less than <paramref name="busyShare"/> busy over a
    /// <paramref name="window"/> (this process being idle meanwhile, what is measured is everyone else), or until
    /// <paramref name="maxWait"/> has passed. Returns the time waited and whether the machine was quiet at the end.
    /// </summary>
    public static (TimeSpan Waited, bool Quiet) WaitUntilQuiet(double busyShare, TimeSpan window, TimeSpan maxWait)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            var before = Read();
            Thread.Sleep(window);
            var after = Read();
            if (before is null || after is null)
                return (clock.Elapsed, true);
            double share = after.Value.BusyShareSince(before.Value);
            if (share < busyShare)
                return (clock.Elapsed, true);
            if (clock.Elapsed >= maxWait)
                return (clock.Elapsed, false);
        }
    }
}

/// <summary>Busy and total processor ticks (all processors) at one moment.</summary>
internal readonly record struct CpuCounters(long Busy, long Total)
{
    /// <summary>The share of all processors' time that was busy since <paramref name="earlier"/> (0 … 1).</summary>
    public double BusyShareSince(CpuCounters earlier)
    {
        long total = Total - earlier.Total;
        return total <= 0 ? 0 : Math.Clamp((Busy - earlier.Busy) / (double)total, 0, 1);
    }

    /// <summary>
    /// The share of all processors' time since <paramref name="earlier"/> that went to other processes: the busy
    /// share minus this process's own <paramref name="ownCpu"/> over <paramref name="wall"/> × processors. Coarse for
    /// short runs (the counters tick every 10 ms).
    /// </summary>
    public double OthersShareSince(CpuCounters earlier, TimeSpan ownCpu, TimeSpan wall)
    {
        double own = ownCpu.TotalSeconds / Math.Max(1e-9, wall.TotalSeconds * Environment.ProcessorCount);
        return Math.Clamp(BusyShareSince(earlier) - own, 0, 1);
    }
}
