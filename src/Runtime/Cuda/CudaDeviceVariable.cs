using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Horizon.Cuda;

/// <summary>
/// A block of device memory holding <see cref="Size"/> elements of <typeparamref name="T"/> (<c>cuMemAlloc_v2</c>,
/// freed by <see cref="Dispose"/> or, failing that, by the finalizer). Data moves only through the explicit
/// <see cref="CopyToDevice(ReadOnlySpan{T}, long)"/> / <see cref="CopyToHost"/> calls: there are no implicit conversions from or to arrays.
/// </summary>
/// <remarks>
/// The copies are the driver's synchronous ones: <see cref="CopyToHost"/> returns when the data is on the host and
/// first waits for the work queued on the legacy default stream and on streams made by
/// <see cref="CudaContext.CreateStream"/> (which are ordered with it), so a kernel's result can be read back
/// without an explicit synchronisation. A copy from pageable host memory is staged by the driver.
/// </remarks>
public sealed unsafe class CudaDeviceVariable<T> : IDisposable where T : unmanaged
{
    private readonly CudaContext _context;
    private readonly SafeHandle _handle;

    internal CudaDeviceVariable(CudaContext context, long count)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        _context = context;
        Size = count;
        SizeInBytes = checked(count * sizeof(T));
        context.EnsureCurrent();
        ulong pointer = 0;
        if (SizeInBytes > 0)
        {
            CudaDriver.Check(CudaDriver.cuMemAlloc_v2(&pointer, (nuint)SizeInBytes),
                static bytes => $"cuMemAlloc_v2 (allocating {bytes} bytes)", SizeInBytes);
        }
        _handle = new CudaMemoryHandle(context.Handle, pointer);
    }

    /// <summary>A view: <paramref name="count"/> elements at <paramref name="pointer"/> inside memory that <paramref name="owner"/> holds.</summary>
    private CudaDeviceVariable(CudaContext context, SafeHandle owner, ulong pointer, long count)
    {
        _context = context;
        Size = count;
        SizeInBytes = checked(count * sizeof(T));
        _handle = new CudaMemoryViewHandle(owner, pointer);
    }

    /// <summary>
    /// A variable of <paramref name="count"/> elements of <typeparamref name="TView"/> starting
    /// <paramref name="byteOffset"/> bytes into this one, sharing its memory (nothing is allocated or copied). The view
    /// keeps this variable's memory alive; disposing the view frees nothing. What <see cref="CudaArena"/> hands out.
    /// </summary>
    public CudaDeviceVariable<TView> View<TView>(long byteOffset, long count) where TView : unmanaged
    {
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(byteOffset);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (byteOffset % sizeof(TView) != 0)
            throw new ArgumentException($"View: byte offset {byteOffset} is not a multiple of {typeof(TView).Name}'s {sizeof(TView)} bytes", nameof(byteOffset));
        if (byteOffset + count * sizeof(TView) > SizeInBytes)
            throw new ArgumentOutOfRangeException(nameof(count), $"View: bytes [{byteOffset}, {byteOffset + count * sizeof(TView)}) are outside the variable's {SizeInBytes}");
        return CudaDeviceVariable<TView>.CreateView(_context, _handle, DevicePointer + (ulong)byteOffset, count);
    }

    internal static CudaDeviceVariable<T> CreateView(CudaContext context, SafeHandle owner, ulong pointer, long count) =>
        new(context, owner, pointer, count);

    /// <summary>Number of elements.</summary>
    public long Size { get; }

    public long SizeInBytes { get; }

    public CudaContext Context => _context;

    /// <summary>The device address (CUdeviceptr), for kernel arguments; 0 for an empty variable.</summary>
    public ulong DevicePointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
            return (ulong)_handle.DangerousGetHandle();
        }
    }

    /// <summary>
    /// The address of element <paramref name="offset"/> (0 … <see cref="Size"/>), for a kernel argument that points
    /// into the variable; the variable must outlive the launches that use it.
    /// </summary>
    public DevicePointer<T> At(long offset)
    {
        if (offset < 0 || offset > Size)
            throw new ArgumentOutOfRangeException(nameof(offset), $"element {offset} is outside the variable's {Size}");
        return new DevicePointer<T>(DevicePointer + (ulong)(offset * sizeof(T)));
    }

    /// <summary>Copies <paramref name="source"/> to elements [offset, offset + source.Length) on the device.</summary>
    public void CopyToDevice(ReadOnlySpan<T> source, long offset = 0)
    {
        CheckRange(offset, source.Length, nameof(source));
        if (source.IsEmpty)
            return;
        _context.EnsureCurrent();
        fixed (T* from = source)
        {
            CudaDriver.Check(CudaDriver.cuMemcpyHtoD_v2(DevicePointer + (ulong)(offset * sizeof(T)), from, (nuint)((long)source.Length * sizeof(T))),
                static length => $"cuMemcpyHtoD_v2 ({length} bytes to the device)", (long)source.Length * sizeof(T));
        }
    }

    /// <summary>Copies elements [offset, offset + destination.Length) of the device memory into <paramref name="destination"/>.</summary>
    public void CopyToHost(Span<T> destination, long offset = 0)
    {
        CheckRange(offset, destination.Length, nameof(destination));
        if (destination.IsEmpty)
            return;
        _context.EnsureCurrent();
        fixed (T* to = destination)
        {
            CudaDriver.Check(CudaDriver.cuMemcpyDtoH_v2(to, DevicePointer + (ulong)(offset * sizeof(T)), (nuint)((long)destination.Length * sizeof(T))),
                static length => $"cuMemcpyDtoH_v2 ({length} bytes to the host)", (long)destination.Length * sizeof(T));
        }
    }

    /// <summary>Copies all of <paramref name="source"/> (same size) into this variable, device to device.</summary>
    public void CopyToDevice(CudaDeviceVariable<T> source)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (source.Size != Size)
            throw new ArgumentException($"CopyToDevice: source has {source.Size} elements, this variable {Size}", nameof(source));
        if (Size == 0)
            return;
        _context.EnsureCurrent();
        CudaDriver.Check(CudaDriver.cuMemcpyDtoD_v2(DevicePointer, source.DevicePointer, (nuint)SizeInBytes), "cuMemcpyDtoD_v2");
    }

    /// <summary>A new host array with the whole content (an explicit copy).</summary>
    public T[] ToArray()
    {
        var result = new T[checked((int)Size)];
        CopyToHost(result);
        return result;
    }

    /// <summary>Sets every byte to <paramref name="value"/> (<c>cuMemsetD8_v2</c>): 0 clears, 0xFF poisons floats with NaN.</summary>
    public void Fill(byte value)
    {
        if (SizeInBytes == 0)
            return;
        _context.EnsureCurrent();
        CudaDriver.Check(CudaDriver.cuMemsetD8_v2(DevicePointer, value, (nuint)SizeInBytes), "cuMemsetD8_v2");
    }

    public void Dispose() => _handle.Dispose();

    public override string ToString() => $"CudaDeviceVariable<{typeof(T).Name}>[{Size}] at 0x{(ulong)_handle.DangerousGetHandle():x}";

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void CheckRange(long offset, int length, string parameter)
    {
        if (offset < 0 || offset + length > Size)
            throw new ArgumentOutOfRangeException(parameter, $"elements [{offset}, {offset + length}) are outside the variable's {Size}");
    }
}
