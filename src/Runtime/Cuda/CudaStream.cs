namespace Horizon.Cuda;

/// <summary>
/// A CUDA stream (<c>cuStreamCreate</c>): work queued on it runs in order. Made with default flags, so it is also
/// ordered with the legacy default stream (synchronous copies wait for it). Launches never synchronise it
/// implicitly; call <see cref="Synchronize"/> or read results with a synchronous copy.
/// </summary>
public sealed unsafe class CudaStream : IDisposable
{
    private readonly CudaContext _context;
    private readonly CudaStreamHandle _handle;

    internal CudaStream(CudaContext context)
    {
        _context = context;
        context.EnsureCurrent();
        nint stream;
        CudaDriver.Check(CudaDriver.cuStreamCreate(&stream, CudaDriver.CU_STREAM_DEFAULT), "cuStreamCreate");
        _handle = new CudaStreamHandle(context.Handle, stream);
    }

    public CudaContext Context => _context;

    /// <summary>The CUstream, for launches.</summary>
    internal nint Value
    {
        get
        {
            ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
            return _handle.DangerousGetHandle();
        }
    }

    /// <summary>Waits until all work queued on the stream is done; raises an asynchronous kernel error here.</summary>
    public void Synchronize()
    {
        _context.EnsureCurrent();
        CudaDriver.Check(CudaDriver.cuStreamSynchronize(Value), "cuStreamSynchronize");
    }

    public void Dispose() => _handle.Dispose();
}

/// <summary>
/// A CUDA event (<c>cuEventCreate</c>): a marker in a stream, for timing device work (<see cref="ElapsedMilliseconds"/>)
/// and for waiting on part of a stream.
/// </summary>
public sealed unsafe class CudaEvent : IDisposable
{
    private readonly CudaContext _context;
    private readonly CudaEventHandle _handle;

    internal CudaEvent(CudaContext context, bool timing)
    {
        _context = context;
        context.EnsureCurrent();
        nint value;
        CudaDriver.Check(CudaDriver.cuEventCreate(&value, timing ? CudaDriver.CU_EVENT_DEFAULT : CudaDriver.CU_EVENT_DISABLE_TIMING), "cuEventCreate");
        _handle = new CudaEventHandle(context.Handle, value);
    }

    private nint Value
    {
        get
        {
            ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
            return _handle.DangerousGetHandle();
        }
    }

    /// <summary>Records the event in <paramref name="stream"/> (null: the legacy default stream).</summary>
    public void Record(CudaStream? stream = null)
    {
        _context.EnsureCurrent();
        CudaDriver.Check(CudaDriver.cuEventRecord(Value, stream?.Value ?? 0), "cuEventRecord");
    }

    /// <summary>Waits until the work before the recorded event is done.</summary>
    public void Synchronize()
    {
        _context.EnsureCurrent();
        CudaDriver.Check(CudaDriver.cuEventSynchronize(Value), "cuEventSynchronize");
    }

    /// <summary>
    /// Milliseconds of device time between two recorded events (<c>cuEventElapsedTime</c>, about 0.5 µs resolution);
    /// waits for <paramref name="end"/> first.
    /// </summary>
    public static float ElapsedMilliseconds(CudaEvent start, CudaEvent end)
    {
        ArgumentNullException.ThrowIfNull(start);
        ArgumentNullException.ThrowIfNull(end);
        end.Synchronize();
        float milliseconds;
        CudaDriver.Check(CudaDriver.cuEventElapsedTime(&milliseconds, start.Value, end.Value), "cuEventElapsedTime");
        return milliseconds;
    }

    public void Dispose() => _handle.Dispose();
}
