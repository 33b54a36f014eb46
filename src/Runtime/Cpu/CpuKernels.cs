using Horizon.Ops;

namespace Horizon.Cpu;

// PLACEHOLDER (being implemented): signatures are the contract the generated code and ops rely on.
public static class CpuKernels
{
    /// <summary>y (rows, out) = x (rows, in) · Wᵀ + bias; W is (out, in). Multithreaded over output columns.</summary>
    public static void Linear(ReadOnlySpan<float> x, int rows, Matrix weight, ReadOnlySpan<float> bias, Span<float> y) => throw new NotImplementedException();

    public static void RmsNorm(ReadOnlySpan<float> x, int rows, ReadOnlySpan<float> gamma, float eps, Span<float> y) => throw new NotImplementedException();

    /// <summary>y (tokens, dim) = rows of the table (vocab, dim) at the token ids.</summary>
    public static void Embedding(Matrix table, ReadOnlySpan<int> tokens, Span<float> y) => throw new NotImplementedException();

    public static void SwiGluMlp(ReadOnlySpan<float> x, int rows, SwiGluMlpWeights weights, Span<float> y) => throw new NotImplementedException();

    public static void AttentionLayer(ReadOnlySpan<float> x, int rows, AttentionWeights weights, AttentionOptions options, KvCache cache, Span<float> y) => throw new NotImplementedException();

    /// <summary>acc += x elementwise (residual add).</summary>
    public static void Add(Span<float> acc, ReadOnlySpan<float> x) => throw new NotImplementedException();
}
