using System.Runtime.InteropServices;

namespace Horizon.Cuda;

/// <summary>Compute capability of a device, for example 9.0 for Hopper (H100, H200), 8.0 for the A100.</summary>
public readonly record struct ComputeCapability(int Major, int Minor) : IComparable<ComputeCapability>
{
    public int CompareTo(ComputeCapability other) => (Major, Minor).CompareTo((other.Major, other.Minor));

    /// <summary>10·major + minor: 90 for 9.0, the number in <c>compute_90</c>.</summary>
    public int Number => 10 * Major + Minor;

    public override string ToString() => $"{Major}.{Minor}";
}

/// <summary>
/// The primary context of one device (the context the CUDA runtime and every library on the device share), retained
/// while this object lives. Allocations, streams, events and modules are made through it; each holds a reference on
/// the context, so disposing the context first is safe.
/// </summary>
/// <remarks>
/// A CUDA context is current per thread. Methods of this class and of the objects made through it make the context
/// current on the calling thread first (a thread-local check, no driver call when it already is), so objects may be
/// used from any thread, one thread at a time.
/// </remarks>
public sealed unsafe class CudaContext : IDisposable
{
    [ThreadStatic] private static nint t_current;
    [ThreadStatic] private static int t_generation;
    private static int s_generation = 1; // bumped when a context is released: every thread's cache is stale then

    private readonly CudaContextHandle _handle;

    private CudaContext(CudaContextHandle handle, int device)
    {
        _handle = handle;
        DeviceOrdinal = device;
        DeviceName = QueryName(device);
        ComputeCapability = new ComputeCapability(
            Attribute(CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device),
            Attribute(CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device));
        MultiprocessorCount = Attribute(CudaDriver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device);
        MaxSharedMemoryPerBlockOptIn = Attribute(CudaDriver.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, device);
        nuint total;
        CudaDriver.Check(CudaDriver.cuDeviceTotalMem_v2(&total, device), "cuDeviceTotalMem_v2");
        TotalMemoryBytes = (long)total;
    }

    /// <summary>
    /// Retains the primary context of device <paramref name="deviceOrdinal"/> and makes it current on this thread.
    /// </summary>
    /// <exception cref="HorizonException">No CUDA driver (the message says why), or no such device.</exception>
    /// <exception cref="CudaException">A driver call failed.</exception>
    public static CudaContext CreatePrimary(int deviceOrdinal = 0)
    {
        CudaDriver.EnsureInitialized();
        int count = DeviceCount();
        if ((uint)deviceOrdinal >= (uint)count)
            throw new HorizonException($"CUDA device {deviceOrdinal} does not exist: the driver sees {count} device(s)");
        int device;
        CudaDriver.Check(CudaDriver.cuDeviceGet(&device, deviceOrdinal), "cuDeviceGet");
        nint context;
        CudaDriver.Check(CudaDriver.cuDevicePrimaryCtxRetain(&context, device), "cuDevicePrimaryCtxRetain");
        var handle = new CudaContextHandle(context, device);
        var result = new CudaContext(handle, device);
        result.MakeCurrent();
        return result;
    }

    /// <summary>Number of CUDA devices the driver sees.</summary>
    /// <exception cref="HorizonException">No CUDA driver.</exception>
    public static int DeviceCount()
    {
        CudaDriver.EnsureInitialized();
        int count;
        CudaDriver.Check(CudaDriver.cuDeviceGetCount(&count), "cuDeviceGetCount");
        return count;
    }

    public int DeviceOrdinal { get; }

    /// <summary>The device's marketing name, for example "NVIDIA H200".</summary>
    public string DeviceName { get; }

    public ComputeCapability ComputeCapability { get; }

    public int MultiprocessorCount { get; }

    /// <summary>Shared memory one block may use after opting in (<c>cuFuncSetAttribute</c>), in bytes.</summary>
    public int MaxSharedMemoryPerBlockOptIn { get; }

    public long TotalMemoryBytes { get; }

    internal CudaContextHandle Handle => _handle;

    /// <summary>Makes this context current on the calling thread (<c>cuCtxSetCurrent</c>).</summary>
    public void MakeCurrent()
    {
        nint value = _handle.DangerousGetHandle();
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        CudaDriver.Check(CudaDriver.cuCtxSetCurrent(value), "cuCtxSetCurrent");
        NoteCurrent(value);
    }

    /// <summary>Makes the context current unless this thread already has it (a thread-local compare).</summary>
    internal void EnsureCurrent()
    {
        if (t_current != _handle.DangerousGetHandle() || t_generation != Volatile.Read(ref s_generation))
            MakeCurrent();
    }

    internal static void NoteCurrent(nint context)
    {
        t_current = context;
        t_generation = Volatile.Read(ref s_generation);
    }

    internal static void ForgetCurrent(nint context)
    {
        Interlocked.Increment(ref s_generation);
        if (t_current == context)
            t_current = 0;
    }

    /// <summary>Free and total device memory in bytes (<c>cuMemGetInfo_v2</c>).</summary>
    public (long Free, long Total) GetMemoryInfo()
    {
        EnsureCurrent();
        nuint free, total;
        CudaDriver.Check(CudaDriver.cuMemGetInfo_v2(&free, &total), "cuMemGetInfo_v2");
        return ((long)free, (long)total);
    }

    /// <summary>Waits for all work queued in the context (<c>cuCtxSynchronize</c>); raises an asynchronous kernel error here.</summary>
    public void Synchronize()
    {
        EnsureCurrent();
        CudaDriver.Check(CudaDriver.cuCtxSynchronize(), "cuCtxSynchronize");
    }

    /// <summary>Allocates <paramref name="count"/> elements of device memory (uninitialised).</summary>
    public CudaDeviceVariable<T> Allocate<T>(long count) where T : unmanaged => new(this, count);

    /// <summary>Allocates device memory for <paramref name="source"/> and copies it there.</summary>
    public CudaDeviceVariable<T> Upload<T>(ReadOnlySpan<T> source) where T : unmanaged
    {
        var variable = new CudaDeviceVariable<T>(this, source.Length);
        variable.CopyToDevice(source);
        return variable;
    }

    /// <summary>A new stream (<c>cuStreamCreate</c>, default flags: ordered with the legacy default stream).</summary>
    public CudaStream CreateStream() => new(this);

    /// <summary>A new event; <paramref name="timing"/> false makes a lighter event that cannot be timed.</summary>
    public CudaEvent CreateEvent(bool timing = true) => new(this, timing);

    /// <summary>Loads a PTX module (text, with or without a trailing NUL); the driver compiles it for this device.</summary>
    public CudaModule LoadModule(string name, ReadOnlySpan<byte> ptx) => new(this, name, ptx);

    /// <summary>Loads the embedded PTX of <paramref name="module"/> that best fits this device (<see cref="CudaPtx.Select(string, ComputeCapability)"/>).</summary>
    public CudaModule LoadEmbeddedModule(string module)
    {
        var ptx = CudaPtx.Select(module, ComputeCapability);
        return LoadModule($"{module} ({ptx.Target}, {ptx.Origin})", ptx.Read());
    }

    public void Dispose() => _handle.Dispose();

    public override string ToString() =>
        $"device {DeviceOrdinal}: {DeviceName}, compute capability {ComputeCapability}, {MultiprocessorCount} multiprocessors, {TotalMemoryBytes / (1024.0 * 1024 * 1024):F1} GiB";

    private static int Attribute(int attribute, int device)
    {
        int value;
        CudaDriver.Check(CudaDriver.cuDeviceGetAttribute(&value, attribute, device), "cuDeviceGetAttribute");
        return value;
    }

    private static string QueryName(int device)
    {
        byte* buffer = stackalloc byte[256];
        CudaDriver.Check(CudaDriver.cuDeviceGetName(buffer, 256, device), "cuDeviceGetName");
        return Marshal.PtrToStringUTF8((nint)buffer) ?? $"device {device}";
    }
}
