using System.Runtime.InteropServices;

namespace Horizon.Cuda;

/// <summary>
/// A retained primary context (<c>cuDevicePrimaryCtxRetain</c>); released with <c>cuDevicePrimaryCtxRelease_v2</c>.
/// Every object made in the context holds a reference on this handle, so the context outlives them all, even when
/// they are finalized rather than disposed.
/// </summary>
internal sealed class CudaContextHandle : SafeHandle
{
    public CudaContextHandle(nint context, int device) : base(0, ownsHandle: true)
    {
        SetHandle(context);
        Device = device;
    }

    public int Device { get; }

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle()
    {
        CudaContext.ForgetCurrent(handle);
        return CudaDriver.cuDevicePrimaryCtxRelease_v2(Device) == 0;
    }
}

/// <summary>
/// Base of the handles of objects that live in a context (memory, streams, events, modules): holds a reference on the
/// context and makes it current on the releasing thread (a finalizer thread has none) before freeing.
/// </summary>
internal abstract class CudaContextChildHandle : SafeHandle
{
    private readonly CudaContextHandle _context;

    protected CudaContextChildHandle(CudaContextHandle context, nint value) : base(0, ownsHandle: true)
    {
        bool added = false;
        context.DangerousAddRef(ref added);
        _context = context;
        SetHandle(value);
    }

    public override bool IsInvalid => handle == 0;

    protected sealed override bool ReleaseHandle()
    {
        // Setting the current context is a thread-local store in the driver; the context is alive (we hold a reference).
        nint context = _context.DangerousGetHandle();
        bool freed = CudaDriver.cuCtxSetCurrent(context) == 0 && Free(handle);
        CudaContext.NoteCurrent(context);
        _context.DangerousRelease();
        return freed;
    }

    protected abstract bool Free(nint value);
}

internal sealed class CudaMemoryHandle(CudaContextHandle context, ulong pointer) : CudaContextChildHandle(context, (nint)pointer)
{
    protected override bool Free(nint value) => CudaDriver.cuMemFree_v2((ulong)value) == 0;
}

internal sealed class CudaStreamHandle(CudaContextHandle context, nint stream) : CudaContextChildHandle(context, stream)
{
    protected override bool Free(nint value) => CudaDriver.cuStreamDestroy_v2(value) == 0;
}

internal sealed class CudaEventHandle(CudaContextHandle context, nint cudaEvent) : CudaContextChildHandle(context, cudaEvent)
{
    protected override bool Free(nint value) => CudaDriver.cuEventDestroy_v2(value) == 0;
}

internal sealed class CudaModuleHandle(CudaContextHandle context, nint module) : CudaContextChildHandle(context, module)
{
    protected override bool Free(nint value) => CudaDriver.cuModuleUnload(value) == 0;
}

/// <summary>
/// The handle of a view into device memory another handle owns (<see cref="CudaDeviceVariable{T}.View{TView}"/>):
/// holds a reference on the owner, so the memory lives as long as any view, and frees nothing itself.
/// </summary>
internal sealed class CudaMemoryViewHandle : SafeHandle
{
    private readonly SafeHandle _owner;

    public CudaMemoryViewHandle(SafeHandle owner, ulong pointer) : base(-1, ownsHandle: true)
    {
        bool added = false;
        owner.DangerousAddRef(ref added);
        _owner = owner;
        SetHandle((nint)pointer);
    }

    // Never invalid (an empty view may sit at address 0): the owner's reference is always given back.
    public override bool IsInvalid => false;

    protected override bool ReleaseHandle()
    {
        _owner.DangerousRelease();
        return true;
    }
}
