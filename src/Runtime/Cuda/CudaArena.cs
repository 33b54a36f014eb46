namespace Horizon.Cuda;

/// <summary>
/// A bump allocator over a few large device allocations: a model's weights in one arena, a session's caches in
/// another, a forward pass's activations in a third that <see cref="Reset"/> recycles. Handing out a buffer is an
/// add and a <see cref="CudaDeviceVariable{T}.View{TView}"/>, not a <c>cuMemAlloc</c> (which synchronises the device
/// and fragments memory), and a long run's device memory stops growing once the largest step has been seen.
/// </summary>
/// <remarks>
/// Buffers start on 256-byte boundaries (what cuBLAS and the 16-byte vector loads want). A request larger than what is
/// left in the current block opens the next one (at least <see cref="BlockBytes"/>, or the request). Not thread-safe:
/// one arena serves one model or one session at a time.
/// </remarks>
public sealed class CudaArena : IDisposable
{
    private const long Alignment = 256;

    private readonly CudaContext _context;
    private readonly List<CudaDeviceVariable<byte>> _blocks = new();
    private int _block;
    private long _offset;
    private bool _disposed;

    /// <param name="context">The device the memory is on.</param>
    /// <param name="blockBytes">Size of each device allocation (more for a larger single request).</param>
    public CudaArena(CudaContext context, long blockBytes = 64L << 20)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockBytes);
        _context = context;
        BlockBytes = blockBytes;
    }

    public long BlockBytes { get; }

    /// <summary>Device bytes the arena holds (its blocks).</summary>
    public long ReservedBytes => _blocks.Sum(b => b.SizeInBytes);

    /// <summary>Bytes handed out since the last <see cref="Reset"/>, alignment included (full blocks skipped count whole).</summary>
    public long UsedBytes => _blocks.Take(_block).Sum(b => b.SizeInBytes) + _offset;

    /// <summary><paramref name="count"/> elements of <typeparamref name="T"/>, uninitialised, valid until <see cref="Reset"/> or <see cref="Dispose"/>.</summary>
    public unsafe CudaDeviceVariable<T> Allocate<T>(long count) where T : unmanaged
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        long bytes = checked(count * sizeof(T));
        long rounded = (bytes + Alignment - 1) / Alignment * Alignment;
        while (true)
        {
            if (_block < _blocks.Count)
            {
                var current = _blocks[_block];
                if (_offset + rounded <= current.SizeInBytes)
                {
                    var view = current.View<T>(_offset, count);
                    _offset += rounded;
                    return view;
                }
                if (_offset == 0 && rounded > current.SizeInBytes)
                {
                    // A recycled block too small for this request: replace it by one that fits.
                    current.Dispose();
                    _blocks[_block] = _context.Allocate<byte>(Math.Max(BlockBytes, rounded));
                    continue;
                }
                _block++;
                _offset = 0;
                continue;
            }
            _blocks.Add(_context.Allocate<byte>(Math.Max(BlockBytes, rounded)));
        }
    }

    /// <summary>Zeroed memory: <see cref="Allocate{T}"/> then a device memset.</summary>
    public CudaDeviceVariable<T> AllocateZeroed<T>(long count) where T : unmanaged
    {
        var variable = Allocate<T>(count);
        variable.Fill(0);
        return variable;
    }

    /// <summary>Copies <paramref name="values"/> into a new buffer of the arena.</summary>
    public CudaDeviceVariable<T> Upload<T>(ReadOnlySpan<T> values) where T : unmanaged
    {
        var variable = Allocate<T>(values.Length);
        variable.CopyToDevice(values);
        return variable;
    }

    /// <summary>
    /// Starts handing out from the first block again: every buffer given out before is dead (the caller's contract:
    /// a forward pass resets its scratch arena when it starts). Keeps the blocks.
    /// </summary>
    public void Reset()
    {
        _block = 0;
        _offset = 0;
    }

    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        foreach (var block in _blocks)
            block.Dispose();
        _blocks.Clear();
    }
}
