using System.Runtime.InteropServices;

namespace Horizon.Cuda;

/// <summary>
/// cuBLAS (with cuBLASLt, which it loads for its matrix products), loaded on demand from the CUDA toolkit or the
/// driver's folders: nothing is loaded until <see cref="CudaGemm"/> (or <see cref="Probe"/>) asks, so a machine
/// without it runs the rest of Horizon unchanged and gets one clear <see cref="HorizonException"/> saying where
/// cuBLAS was looked for. Entry points are function pointers from <see cref="NativeLibrary.GetExport"/>: the
/// assembly's one DllImportResolver stays the driver's.
/// </summary>
/// <remarks>
/// Search order: <c>HORIZON_CUBLAS_DIR</c> when set; the loader's own search (LD_LIBRARY_PATH, the ld.so cache) for
/// <c>libcublas.so.13</c>, <c>.so.12</c>, <c>.so</c>; then the folders <c>$CUDA_HOME/lib64</c>, <c>$CUDA_PATH/lib64</c>,
/// <c>/usr/local/cuda/lib64</c>, <c>/usr/local/cuda/targets/{x86_64,sbsa}-linux/lib</c>, <c>/usr/lib/x86_64-linux-gnu</c>,
/// <c>/usr/local/nvidia/lib64</c> and the folder the CUDA driver was loaded from. In a folder, cuBLASLt of the same
/// version is loaded first, so that cuBLAS finds its dependency already loaded.
/// </remarks>
public static unsafe class CudaBlas
{
    private static readonly object Gate = new();
    private static CudaBlasLibrary? s_library;
    private static string? s_failure;

    /// <summary>File names tried, in order (Windows: cublas64_13.dll, cublas64_12.dll).</summary>
    public static IReadOnlyList<string> LibraryNames { get; } = OperatingSystem.IsWindows()
        ? ["cublas64_13.dll", "cublas64_12.dll"]
        : ["libcublas.so.13", "libcublas.so.12", "libcublas.so"];

    /// <summary>The folders tried after the loader's own search, in order (those that do not exist are skipped).</summary>
    public static IReadOnlyList<string> SearchFolders()
    {
        var folders = new List<string>();
        void Add(string? folder)
        {
            if (!string.IsNullOrEmpty(folder) && !folders.Contains(folder, StringComparer.Ordinal))
                folders.Add(folder);
        }
        foreach (string variable in (string[])["CUDA_HOME", "CUDA_PATH"])
        {
            if (Environment.GetEnvironmentVariable(variable) is { Length: > 0 } root)
                Add(Path.Combine(root, OperatingSystem.IsWindows() ? "bin" : "lib64"));
        }
        if (!OperatingSystem.IsWindows())
        {
            Add("/usr/local/cuda/lib64");
            Add("/usr/local/cuda/targets/x86_64-linux/lib");
            Add("/usr/local/cuda/targets/sbsa-linux/lib");
            Add("/usr/lib/x86_64-linux-gnu");
            Add("/usr/local/nvidia/lib64");
        }
        if (CudaDriver.LoadedPath is { } driver)
            Add(Path.GetDirectoryName(driver));
        return folders;
    }

    /// <summary>
    /// Finds cuBLAS as <see cref="Load"/> does (in <paramref name="folders"/> when given, otherwise the usual places)
    /// without keeping it: the file found and its version, or why none was found. For <c>horizon doctor</c>.
    /// </summary>
    public static CudaBlasProbe Probe(IReadOnlyList<string>? folders = null)
    {
        var found = TryOpen(folders, out string? failure);
        if (found is null)
            return new CudaBlasProbe(false, null, null, failure!);
        string? version = found.Version;
        string path = found.Path;
        found.Free();
        return new CudaBlasProbe(true, path, version, $"{path}{(version is null ? "" : $" (cuBLAS {version})")}");
    }

    /// <summary>The loaded library (loaded once per process on the first call).</summary>
    /// <exception cref="HorizonException">cuBLAS was not found; the message lists where it was looked for.</exception>
    internal static CudaBlasLibrary Load()
    {
        if (Volatile.Read(ref s_library) is { } library)
            return library;
        lock (Gate)
        {
            if (s_library is not null)
                return s_library;
            if (s_failure is not null)
                throw new HorizonException(s_failure);
            var found = TryOpen(null, out string? failure);
            if (found is null)
            {
                s_failure = failure;
                throw new HorizonException(failure!);
            }
            Volatile.Write(ref s_library, found);
            return found;
        }
    }

    private static CudaBlasLibrary? TryOpen(IReadOnlyList<string>? folders, out string? failure)
    {
        var tried = new List<string>();
        if (folders is null && Environment.GetEnvironmentVariable("HORIZON_CUBLAS_DIR") is { Length: > 0 } overridden)
        {
            if (TryFolder(overridden, tried) is { } fromOverride)
            {
                failure = null;
                return fromOverride;
            }
        }
        if (folders is null)
        {
            foreach (string name in LibraryNames)
            {
                tried.Add(name);
                nint lt = 0;
                if (LtName(name) is { } ltName)
                    NativeLibrary.TryLoad(ltName, out lt);
                if (NativeLibrary.TryLoad(name, out nint handle))
                {
                    failure = null;
                    return Open(handle, lt, name);
                }
                if (lt != 0)
                    NativeLibrary.Free(lt);
            }
        }
        foreach (string folder in folders ?? SearchFolders())
        {
            if (TryFolder(folder, tried) is { } library)
            {
                failure = null;
                return library;
            }
        }
        failure = $"cuBLAS not found (tried {string.Join(", ", tried)}); install the CUDA toolkit's cuBLAS, or set HORIZON_CUBLAS_DIR to the folder holding {LibraryNames[0]}";
        return null;
    }

    private static CudaBlasLibrary? TryFolder(string folder, List<string> tried)
    {
        if (!Directory.Exists(folder))
        {
            tried.Add($"{folder} (no such folder)");
            return null;
        }
        foreach (string name in LibraryNames)
        {
            string path = Path.Combine(folder, name);
            tried.Add(path);
            if (!File.Exists(path))
                continue;
            nint lt = 0;
            if (LtName(name) is { } ltName && File.Exists(Path.Combine(folder, ltName)))
                NativeLibrary.TryLoad(Path.Combine(folder, ltName), out lt);
            if (NativeLibrary.TryLoad(path, out nint handle))
                return Open(handle, lt, path);
            if (lt != 0)
                NativeLibrary.Free(lt);
        }
        return null;
    }

    /// <summary>libcublas.so.13 → libcublasLt.so.13 (cublas64_13.dll → cublasLt64_13.dll).</summary>
    private static string? LtName(string name) =>
        name.StartsWith("libcublas.", StringComparison.Ordinal) ? "libcublasLt." + name["libcublas.".Length..]
        : name.StartsWith("cublas64_", StringComparison.Ordinal) ? "cublasLt64_" + name["cublas64_".Length..]
        : null;

    private static CudaBlasLibrary? Open(nint handle, nint lt, string name)
    {
        string path = name;
        if (OperatingSystem.IsLinux() && !name.Contains('/'))
        {
            try
            {
                foreach (string line in File.ReadLines("/proc/self/maps"))
                {
                    int slash = line.IndexOf('/');
                    if (slash >= 0 && line.Contains("/libcublas.so", StringComparison.Ordinal))
                    {
                        path = line[slash..];
                        break;
                    }
                }
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return new CudaBlasLibrary(handle, lt, path);
    }
}

/// <summary>What <see cref="CudaBlas.Probe"/> found: whether cuBLAS loads, from where, its version, and a one-line description.</summary>
public sealed record CudaBlasProbe(bool Found, string? Path, string? Version, string Description);

/// <summary>A loaded cuBLAS: the library handles and the entry points the backend calls.</summary>
internal sealed unsafe class CudaBlasLibrary
{
    // cublas_api.h
    internal const int CUBLAS_OP_N = 0;
    internal const int CUBLAS_OP_T = 1;
    internal const int CUDA_R_32F = 0;
    internal const int CUDA_R_16F = 2;
    internal const int CUDA_R_16BF = 14;
    internal const int CUBLAS_COMPUTE_32F = 68;
    internal const int CUBLAS_GEMM_DEFAULT = -1;

    private readonly nint _blas, _lt;

    public CudaBlasLibrary(nint blas, nint lt, string path)
    {
        _blas = blas;
        _lt = lt;
        Path = path;
        Create = (delegate* unmanaged<nint*, int>)Export("cublasCreate_v2");
        Destroy = (delegate* unmanaged<nint, int>)Export("cublasDestroy_v2");
        SetStream = (delegate* unmanaged<nint, nint, int>)Export("cublasSetStream_v2");
        GemmEx = (delegate* unmanaged<nint, int, int, int, int, int, void*, void*, int, int, void*, int, int, void*, void*, int, int, int, int, int>)Export("cublasGemmEx");
        NativeLibrary.TryGetExport(blas, "cublasGetStatusName", out nint statusName);
        StatusName = (delegate* unmanaged<int, byte*>)statusName;
        NativeLibrary.TryGetExport(blas, "cublasGetProperty", out nint property);
        GetProperty = (delegate* unmanaged<int, int*, int>)property;
    }

    public string Path { get; }

    public delegate* unmanaged<nint*, int> Create { get; }
    public delegate* unmanaged<nint, int> Destroy { get; }
    public delegate* unmanaged<nint, nint, int> SetStream { get; }

    /// <summary>cublasGemmEx(handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C, Ctype, ldc, computeType, algo).</summary>
    public delegate* unmanaged<nint, int, int, int, int, int, void*, void*, int, int, void*, int, int, void*, void*, int, int, int, int, int> GemmEx { get; }

    private delegate* unmanaged<int, byte*> StatusName { get; }
    private delegate* unmanaged<int, int*, int> GetProperty { get; }

    /// <summary>"13.0.2" from cublasGetProperty (major, minor, patch level), or null.</summary>
    public string? Version
    {
        get
        {
            if (GetProperty == null)
                return null;
            int major, minor, patch;
            return GetProperty(0, &major) == 0 && GetProperty(1, &minor) == 0 && GetProperty(2, &patch) == 0 ? $"{major}.{minor}.{patch}" : null;
        }
    }

    /// <summary>The status's name (CUBLAS_STATUS_INVALID_VALUE, ...).</summary>
    public string Name(int status)
    {
        byte* text = StatusName != null ? StatusName(status) : null;
        if (text != null)
            return Marshal.PtrToStringUTF8((nint)text) ?? $"cublasStatus {status}";
        return status switch
        {
            1 => "CUBLAS_STATUS_NOT_INITIALIZED",
            3 => "CUBLAS_STATUS_ALLOC_FAILED",
            7 => "CUBLAS_STATUS_INVALID_VALUE",
            8 => "CUBLAS_STATUS_ARCH_MISMATCH",
            11 => "CUBLAS_STATUS_MAPPING_ERROR",
            13 => "CUBLAS_STATUS_EXECUTION_FAILED",
            14 => "CUBLAS_STATUS_INTERNAL_ERROR",
            15 => "CUBLAS_STATUS_NOT_SUPPORTED",
            _ => $"cublasStatus {status}",
        };
    }

    /// <summary>Throws <see cref="CudaException"/> (with the cuBLAS status's name) when <paramref name="status"/> is not CUBLAS_STATUS_SUCCESS.</summary>
    public void Check(int status, string operation)
    {
        if (status != 0)
            throw new CudaException(operation, status, Name(status), "cuBLAS call failed");
    }

    public void Free()
    {
        NativeLibrary.Free(_blas);
        if (_lt != 0)
            NativeLibrary.Free(_lt);
    }

    private nint Export(string name)
    {
        if (!NativeLibrary.TryGetExport(_blas, name, out nint address))
            throw new HorizonException($"cuBLAS at {Path} lacks {name}: it is too old (cuBLAS 12 or later is needed)");
        return address;
    }
}
