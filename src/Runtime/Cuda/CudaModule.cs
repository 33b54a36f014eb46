using System.Runtime.InteropServices;
using System.Text;

namespace Horizon.Cuda;

/// <summary>
/// A module loaded from PTX (<c>cuModuleLoadDataEx</c>: the driver compiles the PTX for the device at load time).
/// Kernels are looked up by name once (<see cref="GetKernel"/>) and cached.
/// </summary>
public sealed unsafe class CudaModule : IDisposable
{
    private const int LogBytes = 16 * 1024;

    private readonly CudaContext _context;
    private readonly CudaModuleHandle _handle;
    private readonly Dictionary<string, CudaKernel> _kernels = new(StringComparer.Ordinal);

    internal CudaModule(CudaContext context, string name, ReadOnlySpan<byte> ptx)
    {
        ArgumentNullException.ThrowIfNull(context);
        Name = name;
        _context = context;
        context.EnsureCurrent();

        // cuModuleLoadData reads a C string: the image must end with a NUL, which a .ptx file or resource lacks.
        int length = ptx.Length;
        bool terminated = length > 0 && ptx[length - 1] == 0;
        byte* image = (byte*)NativeMemory.Alloc((nuint)(length + (terminated ? 0 : 1)));
        byte* errorLog = (byte*)NativeMemory.AllocZeroed(LogBytes);
        byte* infoLog = (byte*)NativeMemory.AllocZeroed(LogBytes);
        try
        {
            ptx.CopyTo(new Span<byte>(image, length));
            if (!terminated)
                image[length] = 0;
            int* options = stackalloc int[4]
            {
                CudaDriver.CU_JIT_ERROR_LOG_BUFFER, CudaDriver.CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
                CudaDriver.CU_JIT_INFO_LOG_BUFFER, CudaDriver.CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES,
            };
            // Option values are pointer-sized; sizes are passed by value in the pointer.
            void** values = stackalloc void*[4] { errorLog, (void*)LogBytes, infoLog, (void*)LogBytes };
            nint module;
            int result = CudaDriver.cuModuleLoadDataEx(&module, image, 4, options, values);
            if (result != 0)
            {
                string log = Marshal.PtrToStringUTF8((nint)errorLog) ?? "";
                throw new CudaException($"cuModuleLoadDataEx (module '{name}', {length} bytes of PTX)", result,
                    CudaDriver.ErrorName(result), CudaDriver.ErrorString(result),
                    log.Length == 0 ? "the JIT compiler left no log" : $"JIT log: {log}");
            }
            _handle = new CudaModuleHandle(context.Handle, module);
        }
        finally
        {
            NativeMemory.Free(image);
            NativeMemory.Free(errorLog);
            NativeMemory.Free(infoLog);
        }
    }

    /// <summary>The name given at load (for messages).</summary>
    public string Name { get; }

    public CudaContext Context => _context;

    /// <summary>
    /// The kernel <paramref name="name"/> (an <c>extern "C" __global__</c> function of the module).
    /// </summary>
    /// <exception cref="CudaException">No such kernel (CUDA_ERROR_NOT_FOUND, with the module and kernel names).</exception>
    public CudaKernel GetKernel(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        lock (_kernels)
        {
            if (_kernels.TryGetValue(name, out var cached))
                return cached;
            ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
            _context.EnsureCurrent();
            byte[] utf8 = Encoding.UTF8.GetBytes(name + "\0");
            nint function;
            fixed (byte* text = utf8)
            {
                CudaDriver.Check(CudaDriver.cuModuleGetFunction(&function, _handle.DangerousGetHandle(), text),
                    static state => $"cuModuleGetFunction (kernel '{state.name}' in module '{state.Name}')", (name, Name));
            }
            var kernel = new CudaKernel(this, name, function);
            _kernels.Add(name, kernel);
            return kernel;
        }
    }

    public void Dispose() => _handle.Dispose();
}
