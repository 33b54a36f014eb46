namespace Horizon.Cuda;

// Next-token sampling on the device (native/sampling.cu): greedy and temperature + top-p, the same choices as the CPU's
// Generation.Sampler for those steps given the same uniform draw, so a decode loop need not copy logits to the host.
public sealed partial class CudaOps
{
    /// <summary>Threads per block of the sampling kernels (sampling::THREADS): one block per logits row.</summary>
    private const int SamplingThreads = 1024;

    /// <summary>The largest vocabulary <see cref="SampleTopP"/> takes (its 64-bit fixed-point masses, p·2⁴⁴, stay under 2⁶³).</summary>
    public const int MaxSamplingVocab = 1 << 19;

    private CudaSamplingKernels? _sampling;

    /// <summary>The launchers of native/sampling.cu, loaded on first use.</summary>
    public CudaSamplingKernels Sampling => _sampling ?? Load(ref _sampling, CudaSamplingKernels.Load, null);

    /// <summary>
    /// Greedy choice per row: tokens[r] = the id of the largest logit of row r, the smallest id on a tie (the CPU's
    /// <see cref="Generation.Sampler.ArgMax"/>); NaN never wins; −1 when every logit of the row is −∞ or NaN (where
    /// the CPU throws). logits (rows, vocab) float32, tokens (rows) int32.
    /// </summary>
    public void SampleGreedy(CudaDeviceVariable<float> logits, int rows, int vocab, CudaDeviceVariable<int> tokens, CudaStream? stream = null)
    {
        const string op = "sample_greedy";
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(vocab);
        Require(logits, (long)rows * vocab, op, nameof(logits));
        Require(tokens, rows, op, nameof(tokens));
        if (rows == 0)
            return;
        // One block of 1024 threads (a multiple of 32) per row.
        Sampling.SampleArgmaxF32((uint)rows, SamplingThreads, 0, stream, logits, tokens, rows, vocab);
    }

    /// <summary>
    /// One draw per row from softmax(z / T) truncated to its top-p nucleus, the CPU <see cref="Generation.Sampler"/>'s
    /// rule with top-k, min-p and the repetition penalty off: p_i = exp((z_i − max z) / T) (float64, rounded to float32),
    /// the fewest most probable ids (ties by id) whose mass reaches <paramref name="topP"/> of the total (at least one;
    /// topP = 1 keeps every id), renormalised; tokens[r] is the first id whose running probability exceeds
    /// uniforms[r] ∈ [0, 1) (the value <see cref="Generation.SplitMix64.NextDouble"/> gives the CPU sampler).
    /// <paramref name="temperature"/> ≤ 0 is greedy (<see cref="SampleGreedy"/>), as on the CPU. −1 for a row whose
    /// logits are all −∞ or NaN. logits (rows, vocab) float32 (vocab ≤ <see cref="MaxSamplingVocab"/>), uniforms (rows)
    /// float64, tokens (rows) int32, workspace at least rows·vocab floats (left holding the unnormalised probabilities).
    /// </summary>
    public void SampleTopP(CudaDeviceVariable<float> logits, int rows, int vocab, float temperature, float topP,
        CudaDeviceVariable<double> uniforms, CudaDeviceVariable<int> tokens, CudaDeviceVariable<float> workspace, CudaStream? stream = null)
    {
        const string op = "sample_top_p";
        if (float.IsNaN(temperature))
            throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "temperature must be a number");
        if (!(topP is > 0 and <= 1))
            throw new ArgumentOutOfRangeException(nameof(topP), topP, "top-p must be in (0, 1]");
        if (temperature <= 0)
        {
            SampleGreedy(logits, rows, vocab, tokens, stream);
            return;
        }
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(vocab);
        if (vocab > MaxSamplingVocab)
            throw new ArgumentOutOfRangeException(nameof(vocab), vocab, $"{op}: vocab must be at most {MaxSamplingVocab}");
        Require(logits, (long)rows * vocab, op, nameof(logits));
        Require(uniforms, rows, op, nameof(uniforms));
        Require(tokens, rows, op, nameof(tokens));
        Require(workspace, (long)rows * vocab, op, nameof(workspace));
        if (rows == 0)
            return;
        // One block of exactly 1024 threads per row (the kernel's scan array is sized for it).
        Sampling.SampleTopPF32((uint)rows, SamplingThreads, 0, stream, logits, uniforms, tokens, workspace, rows, vocab, temperature, topP);
    }
}
