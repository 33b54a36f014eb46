namespace Horizon.Cuda;

/// <summary>Grid or block dimensions of a launch (CUDA's dim3).</summary>
public readonly record struct Dim3(uint X, uint Y = 1, uint Z = 1)
{
    public static implicit operator Dim3(uint x) => new(x);

    public override string ToString() => $"({X}, {Y}, {Z})";
}

/// <summary>
/// A kernel of a loaded <see cref="CudaModule"/> (a CUfunction). <see cref="Launch"/> queues it on a stream with
/// an argument array the caller builds on its own stack: no boxing, no allocation and no synchronisation per
/// launch. The typed launchers of <see cref="CudaOps"/> are the usual way to call one.
/// </summary>
public sealed unsafe class CudaKernel
{
    private readonly CudaModule _module; // keeps the module (and so the function) alive
    private readonly nint _function;

    internal CudaKernel(CudaModule module, string name, nint function)
    {
        _module = module;
        _function = function;
        Name = name;
    }

    public string Name { get; }

    public CudaModule Module => _module;

    /// <summary>Registers per thread the driver's compiler gave the kernel.</summary>
    public int Registers => Attribute(CudaDriver.CU_FUNC_ATTRIBUTE_NUM_REGS);

    /// <summary>Local memory per thread, bytes: register spills and arrays the compiler could not keep in registers.</summary>
    public int LocalBytes => Attribute(CudaDriver.CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES);

    /// <summary>Statically declared shared memory per block, bytes.</summary>
    public int StaticSharedBytes => Attribute(CudaDriver.CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES);

    /// <summary>Largest block the kernel can be launched with (limited by its registers).</summary>
    public int MaxThreadsPerBlock => Attribute(CudaDriver.CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK);

    /// <summary>
    /// Blocks of <paramref name="blockThreads"/> threads with <paramref name="dynamicSharedBytes"/> of dynamic shared
    /// memory that one multiprocessor holds at once, by the kernel's registers and shared memory (the driver's
    /// occupancy calculator, <c>cuOccupancyMaxActiveBlocksPerMultiprocessor</c>).
    /// </summary>
    public int MaxActiveBlocksPerMultiprocessor(int blockThreads, int dynamicSharedBytes)
    {
        _module.Context.EnsureCurrent();
        int blocks;
        CudaDriver.Check(CudaDriver.cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, _function, blockThreads, (nuint)dynamicSharedBytes),
            static state => $"cuOccupancyMaxActiveBlocksPerMultiprocessor ({state.Name}: {state.blockThreads} threads, {state.dynamicSharedBytes} bytes of dynamic shared memory)",
            (Name, blockThreads, dynamicSharedBytes));
        return blocks;
    }

    /// <summary>
    /// Allows launches with up to <paramref name="bytes"/> of dynamic shared memory; above 48 KiB a kernel must opt
    /// in (<c>cuFuncSetAttribute</c>, MAX_DYNAMIC_SHARED_SIZE_BYTES), up to the device's opt-in limit.
    /// </summary>
    public void SetMaxDynamicSharedMemory(int bytes)
    {
        _module.Context.EnsureCurrent();
        CudaDriver.Check(CudaDriver.cuFuncSetAttribute(_function, CudaDriver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes),
            static state => $"cuFuncSetAttribute ({state.Name}: {state.bytes} bytes of dynamic shared memory)", (Name, bytes));
    }

    /// <summary>
    /// Queues the kernel: <paramref name="grid"/> blocks of <paramref name="block"/> threads,
    /// <paramref name="sharedBytes"/> of dynamic shared memory, on <paramref name="stream"/> (null: the legacy
    /// default stream). <paramref name="arguments"/> holds one pointer per kernel parameter, each to a value of the
    /// parameter's exact C type (the driver copies them during this call, so stack locals are fine).
    /// </summary>
    /// <exception cref="CudaException">The launch was refused (bad configuration, too many resources). Errors of the
    /// running kernel surface at the next synchronising call.</exception>
    public void Launch(Dim3 grid, Dim3 block, int sharedBytes, CudaStream? stream, void** arguments)
    {
        _module.Context.EnsureCurrent();
        int result = CudaDriver.cuLaunchKernel(_function, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z,
            (uint)sharedBytes, stream?.Value ?? 0, arguments, null);
        if (result != 0)
            ThrowLaunchFailure(result, grid, block, sharedBytes);
    }

    private void ThrowLaunchFailure(int result, Dim3 grid, Dim3 block, int sharedBytes) =>
        throw new CudaException($"cuLaunchKernel ({Name}, grid {grid}, block {block}, {sharedBytes} bytes of shared memory)",
            result, CudaDriver.ErrorName(result), CudaDriver.ErrorString(result));

    private int Attribute(int attribute)
    {
        _module.Context.EnsureCurrent();
        int value;
        CudaDriver.Check(CudaDriver.cuFuncGetAttribute(&value, attribute, _function), "cuFuncGetAttribute");
        return value;
    }

    public override string ToString() => $"{Name} ({_module.Name})";
}
