using System.Buffers;
using System.Runtime.InteropServices;

namespace Horizon.Cuda;

/// <summary>
/// One forward call as the CUDA layers see it: the backend, the rows (tokens) of the call, the position of the first,
/// and the scratch arena the call's activations come from (reset when the call starts).
/// </summary>
public sealed class CudaStep
{
    internal CudaStep(CudaBackend backend, CudaArena scratch, int rows, int position)
    {
        Backend = backend;
        Scratch = scratch;
        Rows = rows;
        Position = position;
    }

    public CudaBackend Backend { get; }

    public CudaOps Ops => Backend.Ops;

    public CudaStream Stream => Backend.Stream;

    public CudaArena Scratch { get; }

    /// <summary>Tokens in this call.</summary>
    public int Rows { get; }

    /// <summary>Position of the call's first token (tokens already in the state).</summary>
    public int Position { get; }

    /// <summary>A scratch buffer of <paramref name="count"/> elements, valid until the call ends.</summary>
    public CudaDeviceVariable<T> Allocate<T>(long count) where T : unmanaged => Scratch.Allocate<T>(count);
}

/// <summary>What a stateful CUDA layer keeps per session (a KV cache, a recurrent state), in the session's arena.</summary>
public abstract class CudaLayerState
{
    /// <summary>Back to the state before the first token.</summary>
    public abstract void Reset();

    /// <summary>Makes this state a copy of <paramref name="source"/> (same layer) holding <paramref name="tokens"/> tokens.</summary>
    public abstract void CopyFrom(CudaLayerState source, int tokens);
}

/// <summary>A mixer or MLP on CUDA: bf16 input (rows, width) → float32 output (rows, width), the branch added to the residual stream.</summary>
public abstract class CudaLayer
{
    /// <summary>The layer's state for a session of <paramref name="capacity"/> tokens, from <paramref name="arena"/>; null when stateless.</summary>
    public virtual CudaLayerState? CreateState(int capacity, CudaArena arena) => null;

    public abstract void Forward(CudaStep step, CudaDeviceVariable<BFloat16> input, CudaDeviceVariable<float> output, CudaLayerState? state);
}

/// <summary>A norm on CUDA: the float32 residual stream (rows, width) → the bf16 input of the next layer.</summary>
public abstract class CudaNorm
{
    public abstract void Forward(CudaStep step, CudaDeviceVariable<float> input, CudaDeviceVariable<BFloat16> output);
}

/// <summary>y = x·Wᵀ + b on the device: W (out, in) bf16, b (out) float32 or none; x (rows, in) bf16, y (rows, out) float32.</summary>
public sealed class CudaLinear
{
    public CudaLinear(CudaDeviceVariable<BFloat16> weight, int outFeatures, int inFeatures, CudaDeviceVariable<float>? bias = null)
    {
        Weight = weight;
        OutFeatures = outFeatures;
        InFeatures = inFeatures;
        Bias = bias;
    }

    public CudaDeviceVariable<BFloat16> Weight { get; }
    public int OutFeatures { get; }
    public int InFeatures { get; }
    public CudaDeviceVariable<float>? Bias { get; }

    /// <summary>y = x·Wᵀ + b over the step's rows, or <paramref name="rows"/> of them when given (the output head on the last row).</summary>
    public void Forward(CudaStep step, CudaDeviceVariable<BFloat16> x, CudaDeviceVariable<float> y, int? rows = null)
    {
        int n = rows ?? step.Rows;
        step.Backend.Gemm.Linear(x, n, Weight, OutFeatures, InFeatures, y, step.Stream);
        if (Bias is not null)
            step.Ops.BiasAdd(y, Bias, n, OutFeatures, step.Stream);
    }
}

/// <summary>
/// Uploads a model's host weights into one device arena: matrices as bf16 (a bf16 checkpoint's bytes as they are,
/// float32 and float16 rounded to nearest even), vectors as float32. The same host object uploads once (a tied
/// head and the embedding share one copy; layers share one rotary table).
/// </summary>
public sealed class CudaWeightUploader
{
    private readonly CudaArena _arena;
    private readonly Dictionary<object, object> _uploaded = new(ReferenceEqualityComparer.Instance);

    public CudaWeightUploader(CudaArena arena) => _arena = arena;

    /// <summary>Device bytes uploaded so far.</summary>
    public long Bytes { get; private set; }

    public CudaDeviceVariable<BFloat16> Matrix(Matrix matrix)
    {
        ArgumentNullException.ThrowIfNull(matrix);
        if (_uploaded.TryGetValue(matrix, out var done))
            return (CudaDeviceVariable<BFloat16>)done;
        var device = _arena.Allocate<BFloat16>(matrix.ElementCount);
        if (matrix.DType == WeightDType.BF16)
        {
            device.CopyToDevice(MemoryMarshal.Cast<byte, BFloat16>(matrix.Data.Span));
        }
        else
        {
            // Row blocks of at most 1M elements through one pooled buffer: no host copy of the whole matrix.
            int rowsPerBlock = Math.Max(1, (1 << 20) / matrix.Cols);
            var floats = ArrayPool<float>.Shared.Rent(matrix.Cols);
            var bf16 = ArrayPool<BFloat16>.Shared.Rent(rowsPerBlock * matrix.Cols);
            try
            {
                for (int start = 0; start < matrix.Rows; start += rowsPerBlock)
                {
                    int rows = Math.Min(rowsPerBlock, matrix.Rows - start);
                    for (int r = 0; r < rows; r++)
                    {
                        matrix.ReadRow(start + r, floats);
                        BFloat16.FromSingle(floats.AsSpan(0, matrix.Cols), bf16.AsSpan(r * matrix.Cols, matrix.Cols));
                    }
                    device.CopyToDevice(bf16.AsSpan(0, rows * matrix.Cols), (long)start * matrix.Cols);
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(floats);
                ArrayPool<BFloat16>.Shared.Return(bf16);
            }
        }
        Bytes += device.SizeInBytes;
        _uploaded[matrix] = device;
        return device;
    }

    public CudaDeviceVariable<float> Vector(float[] values) => Upload(values);

    public CudaDeviceVariable<double> Vector(double[] values) => Upload(values);

    public CudaDeviceVariable<float>? OptionalVector(float[]? values) => values is null ? null : Upload(values);

    public CudaLinear Linear(Matrix weight, float[]? bias = null) =>
        new(Matrix(weight), weight.Rows, weight.Cols, OptionalVector(bias));

    private CudaDeviceVariable<T> Upload<T>(T[] values) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(values);
        if (_uploaded.TryGetValue(values, out var done))
            return (CudaDeviceVariable<T>)done;
        var device = _arena.Upload<T>(values);
        Bytes += device.SizeInBytes;
        _uploaded[values] = device;
        return device;
    }
}
