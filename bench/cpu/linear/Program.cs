using System.Diagnostics;
using System.Runtime.InteropServices;
using Horizon;
// Roofline anchor: the machine's copy bandwidth (2 threads, 256 MiB, read + write counted), and Linear's achieved read
// rate of a BF16 W too large for the caches, rows = 1, same run.
long n = 256L << 20;
var src = new byte[n]; var dst = new byte[n]; new Random(1).NextBytes(src);
double best = 0;
for (int rep = 0; rep < 5; rep++)
{
    var sw = Stopwatch.StartNew();
    Parallel.For(0, 2, t => { long half = n / 2; src.AsSpan((int)(t * half), (int)half).CopyTo(dst.AsSpan((int)(t * half), (int)half)); });
    best = Math.Max(best, 2.0 * n / sw.Elapsed.TotalSeconds / 1e9);
}
Console.WriteLine($"copy (2 threads, 256 MiB, read + write): {best:F2} GB/s");
var rnd = new Random(2);
foreach (var (o, iN) in new[] { (8192, 4096), (4096, 384), (1536, 1536) })
{
    var bytes = new byte[(long)o * iN * 2];
    for (long k = 0; k < bytes.Length; k += 2) { bytes[k] = 0; bytes[k + 1] = (byte)(0x3C + rnd.Next(4)); }
    var m = new Matrix("w", o, iN, WeightDType.BF16, bytes);
    var x = new float[iN]; for (int k = 0; k < iN; k++) x[k] = (float)rnd.NextDouble();
    var y = new float[o];
    for (int r = 0; r < 20; r++) Horizon.Cpu.CpuKernels.Linear(x, 1, m, default, y);
    int reps = o * iN > 10_000_000 ? 40 : 2000;
    var times = new double[reps];
    for (int r = 0; r < reps; r++) { var sw = Stopwatch.StartNew(); Horizon.Cpu.CpuKernels.Linear(x, 1, m, default, y); times[r] = sw.Elapsed.TotalSeconds; }
    Array.Sort(times);
    double med = times[reps / 2];
    Console.WriteLine($"Linear bf16 rows 1, {o}×{iN} ({bytes.Length / 1e6:F1} MB): {med * 1e6:F1} µs, {bytes.Length / med / 1e9:F2} GB/s of W");
}
