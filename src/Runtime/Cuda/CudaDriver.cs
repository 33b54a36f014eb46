using System.Reflection;
using System.Runtime.InteropServices;

namespace Horizon.Cuda;

/// <summary>
/// The CUDA driver API (<c>libcuda.so.1</c>, <c>nvcuda.dll</c> on Windows) as <c>[LibraryImport]</c> declarations,
/// loaded on demand: nothing touches the library until <see cref="EnsureInitialized"/> runs, so a machine without
/// a GPU loads and runs the rest of Horizon unchanged and gets one clear <see cref="HorizonException"/> the first
/// time CUDA is asked for.
/// </summary>
/// <remarks>
/// The declarations name the logical library <see cref="LibraryName"/>; the assembly's DllImportResolver (the one
/// an assembly may have, registered here) maps it to the handle <see cref="NativeLibrary.TryLoad(string, out IntPtr)"/>
/// returned. Handles are <c>nint</c> (CUcontext, CUmodule, CUfunction, CUstream, CUevent), device pointers are
/// <c>ulong</c> (CUdeviceptr), results are <c>int</c> (CUresult). Versioned entry points (<c>_v2</c>) are named
/// as the CUDA headers map them. Every call goes through <see cref="Check"/>.
/// </remarks>
internal static unsafe partial class CudaDriver
{
    /// <summary>The name the declarations use; resolved to the driver by <see cref="Resolve"/>.</summary>
    internal const string LibraryName = "libcuda.so.1";

    private static readonly object Gate = new();
    private static nint s_library;
    private static string? s_failure;   // why the driver is unusable; null while it has not been tried or is fine
    private static bool s_initialized;

    static CudaDriver()
    {
        // An assembly has one resolver, the driver's; cuBLAS (CudaBlas) takes its entry points as function pointers instead.
        NativeLibrary.SetDllImportResolver(typeof(CudaDriver).Assembly, Resolve);
    }

    /// <summary>The file names tried, in order, on this operating system.</summary>
    internal static IReadOnlyList<string> Candidates { get; } = OperatingSystem.IsWindows()
        ? ["nvcuda.dll"]
        : ["libcuda.so.1", "libcuda.so"];

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? path) =>
        name == LibraryName ? s_library : 0;

    /// <summary>
    /// Loads the driver and calls <c>cuInit</c> once per process. Returns null when CUDA is usable, otherwise why not
    /// ("CUDA driver not found (libcuda.so.1): …", or the error of cuInit); the answer is remembered.
    /// </summary>
    internal static string? TryInitialize()
    {
        lock (Gate)
        {
            if (s_initialized || s_failure is not null)
                return s_failure;
            if (s_library == 0)
            {
                foreach (string candidate in Candidates)
                {
                    if (NativeLibrary.TryLoad(candidate, out s_library))
                        break;
                }
                if (s_library == 0)
                {
                    s_failure = $"CUDA driver not found ({Candidates[0]}): {LoadError(Candidates[0])}";
                    return s_failure;
                }
            }
            int result;
            try
            {
                result = cuInit(0);
            }
            catch (EntryPointNotFoundException e)
            {
                s_failure = $"CUDA driver {LoadedPath ?? LibraryName} lacks cuInit: {e.Message}";
                return s_failure;
            }
            if (result != 0)
            {
                s_failure = $"CUDA driver found but cuInit failed: {ErrorName(result)} ({result}): {ErrorString(result)}";
                return s_failure;
            }
            s_initialized = true;
            return null;
        }
    }

    /// <summary>Throws the reason of <see cref="TryInitialize"/> as a <see cref="HorizonException"/> when CUDA is unusable.</summary>
    internal static void EnsureInitialized()
    {
        if (Volatile.Read(ref s_initialized))
            return;
        if (TryInitialize() is { } failure)
            throw new HorizonException(failure);
    }

    /// <summary>The file the driver was loaded from, when the OS says (Linux: from /proc/self/maps); null otherwise.</summary>
    internal static string? LoadedPath
    {
        get
        {
            if (s_library == 0 || !OperatingSystem.IsLinux())
                return null;
            try
            {
                foreach (string line in File.ReadLines("/proc/self/maps"))
                {
                    int slash = line.IndexOf('/');
                    if (slash >= 0 && line.Contains("libcuda.so", StringComparison.Ordinal))
                        return line[slash..];
                }
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
            return null;
        }
    }

    // TryLoad says only whether; Load's exception carries the loader's own words (dlerror).
    private static string LoadError(string name)
    {
        try
        {
            NativeLibrary.Free(NativeLibrary.Load(name));
            return "loaded on the second try";
        }
        catch (DllNotFoundException e)
        {
            // .NET wraps dlerror's line in advice about strace and LD_DEBUG; the loader's own words come last.
            string message = e.Message.ReplaceLineEndings(" ").Trim();
            const string advice = "LD_DEBUG environment variable:";
            int at = message.LastIndexOf(advice, StringComparison.Ordinal);
            return at >= 0 ? message[(at + advice.Length)..].Trim() : message;
        }
        catch (BadImageFormatException e)
        {
            return e.Message.ReplaceLineEndings(" ").Trim();
        }
    }

    /// <summary>Throws <see cref="CudaException"/> when <paramref name="result"/> is not CUDA_SUCCESS.</summary>
    internal static void Check(int result, string operation)
    {
        if (result != 0)
            throw new CudaException(operation, result, ErrorName(result), ErrorString(result));
    }

    /// <summary>As <see cref="Check(int, string)"/>, for operations whose description is built only on failure.</summary>
    internal static void Check<TState>(int result, Func<TState, string> describe, TState state)
    {
        if (result != 0)
            throw new CudaException(describe(state), result, ErrorName(result), ErrorString(result));
    }

    internal static string ErrorName(int result)
    {
        byte* text = null;
        return s_library != 0 && cuGetErrorName(result, &text) == 0 && text != null
            ? Marshal.PtrToStringUTF8((nint)text) ?? $"CUresult {result}"
            : $"CUresult {result}";
    }

    internal static string ErrorString(int result)
    {
        byte* text = null;
        return s_library != 0 && cuGetErrorString(result, &text) == 0 && text != null
            ? Marshal.PtrToStringUTF8((nint)text) ?? "unknown error"
            : "unknown error";
    }

    // ---------------------------------------------------------------- constants (cuda.h)

    internal const int CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 1;
    internal const int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
    internal const int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
    internal const int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
    internal const int CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;

    internal const int CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 0;
    internal const int CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES = 1;
    internal const int CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES = 3;
    internal const int CU_FUNC_ATTRIBUTE_NUM_REGS = 4;
    internal const int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;

    internal const int CU_JIT_INFO_LOG_BUFFER = 3;
    internal const int CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES = 4;
    internal const int CU_JIT_ERROR_LOG_BUFFER = 5;
    internal const int CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6;

    internal const uint CU_EVENT_DEFAULT = 0;
    internal const uint CU_EVENT_DISABLE_TIMING = 2;
    internal const uint CU_STREAM_DEFAULT = 0;

    internal const int CUDA_ERROR_NOT_FOUND = 500;

    // ---------------------------------------------------------------- entry points

    [LibraryImport(LibraryName)] internal static partial int cuInit(uint flags);
    [LibraryImport(LibraryName)] internal static partial int cuDriverGetVersion(int* version);
    [LibraryImport(LibraryName)] internal static partial int cuGetErrorName(int error, byte** name);
    [LibraryImport(LibraryName)] internal static partial int cuGetErrorString(int error, byte** text);

    [LibraryImport(LibraryName)] internal static partial int cuDeviceGetCount(int* count);
    [LibraryImport(LibraryName)] internal static partial int cuDeviceGet(int* device, int ordinal);
    [LibraryImport(LibraryName)] internal static partial int cuDeviceGetName(byte* name, int length, int device);
    [LibraryImport(LibraryName)] internal static partial int cuDeviceGetAttribute(int* value, int attribute, int device);
    [LibraryImport(LibraryName)] internal static partial int cuDeviceTotalMem_v2(nuint* bytes, int device);

    [LibraryImport(LibraryName)] internal static partial int cuDevicePrimaryCtxRetain(nint* context, int device);
    [LibraryImport(LibraryName)] internal static partial int cuDevicePrimaryCtxRelease_v2(int device);
    [LibraryImport(LibraryName)] internal static partial int cuCtxSetCurrent(nint context);
    [LibraryImport(LibraryName)] internal static partial int cuCtxSynchronize();

    [LibraryImport(LibraryName)] internal static partial int cuMemGetInfo_v2(nuint* free, nuint* total);
    [LibraryImport(LibraryName)] internal static partial int cuMemAlloc_v2(ulong* pointer, nuint bytes);
    [LibraryImport(LibraryName)] internal static partial int cuMemFree_v2(ulong pointer);
    [LibraryImport(LibraryName)] internal static partial int cuMemcpyHtoD_v2(ulong destination, void* source, nuint bytes);
    [LibraryImport(LibraryName)] internal static partial int cuMemcpyDtoH_v2(void* destination, ulong source, nuint bytes);
    [LibraryImport(LibraryName)] internal static partial int cuMemcpyDtoD_v2(ulong destination, ulong source, nuint bytes);
    [LibraryImport(LibraryName)] internal static partial int cuMemsetD8_v2(ulong destination, byte value, nuint count);

    [LibraryImport(LibraryName)] internal static partial int cuStreamCreate(nint* stream, uint flags);
    [LibraryImport(LibraryName)] internal static partial int cuStreamDestroy_v2(nint stream);
    [LibraryImport(LibraryName)] internal static partial int cuStreamSynchronize(nint stream);

    [LibraryImport(LibraryName)] internal static partial int cuEventCreate(nint* cudaEvent, uint flags);
    [LibraryImport(LibraryName)] internal static partial int cuEventDestroy_v2(nint cudaEvent);
    [LibraryImport(LibraryName)] internal static partial int cuEventRecord(nint cudaEvent, nint stream);
    [LibraryImport(LibraryName)] internal static partial int cuEventSynchronize(nint cudaEvent);
    [LibraryImport(LibraryName)] internal static partial int cuEventElapsedTime(float* milliseconds, nint start, nint end);

    [LibraryImport(LibraryName)] internal static partial int cuModuleLoadDataEx(nint* module, void* image, uint optionCount, int* options, void** optionValues);
    [LibraryImport(LibraryName)] internal static partial int cuModuleUnload(nint module);
    [LibraryImport(LibraryName)] internal static partial int cuModuleGetFunction(nint* function, nint module, byte* name);

    [LibraryImport(LibraryName)] internal static partial int cuFuncGetAttribute(int* value, int attribute, nint function);
    [LibraryImport(LibraryName)] internal static partial int cuFuncSetAttribute(nint function, int attribute, int value);
    [LibraryImport(LibraryName)] internal static partial int cuOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, nint function, int blockSize, nuint dynamicSharedBytes);
    [LibraryImport(LibraryName)]
    internal static partial int cuLaunchKernel(
        nint function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ,
        uint sharedMemoryBytes, nint stream, void** kernelParameters, void** extra);
}
