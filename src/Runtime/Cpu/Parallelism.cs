using System.Buffers;

namespace Horizon.Cpu;

/// <summary>
/// How the CPU kernels split work over threads. Every kernel cuts its work into a fixed number of chunks that
/// depends only on the problem size and <see cref="MaxDegreeOfParallelism"/>, and no output element is ever
/// summed across chunks, so results are bit-identical whichever thread runs which chunk.
/// </summary>
internal static class Parallelism
{
    /// <summary>
    /// Chunks per thread: more than one so that a thread delayed by the OS (or a chunk that costs more, like the
    /// late query tiles of causal attention) does not leave the others idle at the end.
    /// </summary>
    private const int ChunksPerThread = 4;

    private static volatile ParallelOptions options = new() { MaxDegreeOfParallelism = Environment.ProcessorCount };

    /// <summary>Threads the kernels use at most (default: the processor count).</summary>
    public static int MaxDegreeOfParallelism
    {
        get => options.MaxDegreeOfParallelism;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(value);
            // A fresh instance rather than a mutation, so a kernel running now keeps a consistent view.
            options = new ParallelOptions { MaxDegreeOfParallelism = value };
        }
    }

    /// <summary>
    /// The number of chunks to cut <paramref name="items"/> independent items into: one when the whole job is
    /// too small to pay for waking a thread, otherwise enough chunks of at least
    /// <paramref name="minWorkPerChunk"/> (multiply-adds, or any unit <paramref name="totalWork"/> is counted in),
    /// capped at a few per thread and at one item per chunk.
    /// </summary>
    public static int ChunkCount(int items, long totalWork, long minWorkPerChunk)
    {
        int threads = MaxDegreeOfParallelism;
        if (items <= 1 || threads == 1)
            return 1;
        long byWork = totalWork / Math.Max(1, minWorkPerChunk);
        long cap = Math.Min(items, (long)threads * ChunksPerThread);
        return (int)Math.Clamp(byWork, 1, cap);
    }

    /// <summary>Item range [Start, End) of chunk <paramref name="chunk"/> when <paramref name="count"/> items are cut into <paramref name="chunks"/> near-equal chunks.</summary>
    public static (int Start, int End) ChunkRange(int count, int chunks, int chunk) =>
        ((int)((long)count * chunk / chunks), (int)((long)count * (chunk + 1) / chunks));

    /// <summary>
    /// Runs <paramref name="body"/>(chunk, scratch) for every chunk in [0, <paramref name="chunks"/>): inline when
    /// there is one chunk, otherwise on the thread pool (the calling thread takes part). Each worker rents one
    /// scratch buffer of at least <paramref name="scratchLength"/> floats from the shared pool and reuses it for
    /// all the chunks it runs, so a call allocates no large arrays.
    /// </summary>
    public static void For(int chunks, int scratchLength, Action<int, float[]> body)
    {
        if (chunks <= 1)
        {
            float[] scratch = Rent(scratchLength);
            try
            {
                for (int chunk = 0; chunk < chunks; chunk++)
                    body(chunk, scratch);
            }
            finally
            {
                Return(scratch);
            }
            return;
        }

        Parallel.For(
            0,
            chunks,
            options,
            () => Rent(scratchLength),
            (chunk, _, scratch) =>
            {
                body(chunk, scratch);
                return scratch;
            },
            Return);
    }

    private static float[] Rent(int length) => length == 0 ? [] : ArrayPool<float>.Shared.Rent(length);

    private static void Return(float[] scratch)
    {
        if (scratch.Length != 0)
            ArrayPool<float>.Shared.Return(scratch);
    }
}
