using System.Buffers;

namespace Horizon.Ops;

/// <summary>
/// The key/value cache of one attention layer, paged: keys (after RoPE) and values of tokens 0 … Length − 1, each
/// token (kv_heads, head_dim) floats, stored in pages of <see cref="PageTokens"/> tokens that are allocated as
/// <see cref="Length"/> grows. Memory held is ⌈Length / PageTokens⌉ pages whatever the <see cref="Capacity"/>,
/// which is only the hard maximum.
/// </summary>
/// <remarks>
/// <para>
/// A page is a multiple of the attention kernel's key tile (64 tokens), so every key tile lies inside one page
/// and the kernel looks the page up once per tile (see <see cref="Cpu.CpuKernels.CausalAttention(ReadOnlySpan{float}, int, int, KvCache, int, Span{float})"/>).
/// A cache smaller than one page is a single page of exactly <see cref="Capacity"/> tokens; the last page of a
/// capacity that is not a multiple of the page size is trimmed to what the capacity needs.
/// </para>
/// <para>
/// Fork (<see cref="CopyFrom"/>, <see cref="Clone"/>) is copy-on-write: a full page is never written again
/// (tokens are only appended), so a copy shares the source's full pages by reference (reference-counted) and
/// copies only the partial last page. A page is copied when a cache must write into a page it shares, which
/// happens only after <see cref="Truncate"/> moved its end back into a shared page.
/// </para>
/// <para>
/// Freed pages (<see cref="Reset"/>, <see cref="Truncate"/>, a copy overwriting a cache) go back to a
/// process-wide pool of free pages (at most 64 MiB) that later caches rent from. A cache that is simply dropped
/// needs no disposal: its pages are garbage-collected, and the pages it shared stay with the other caches.
/// </para>
/// <para>
/// One thread at a time may use a cache; caches that share pages may be used from different threads.
/// </para>
/// </remarks>
public sealed class KvCache
{
    /// <summary>Tokens per page unless told otherwise: 256 (four key tiles).</summary>
    public const int DefaultPageTokens = 256;

    /// <summary>The page table: entries [0, <see cref="_pageCount"/>) are held, the rest null.</summary>
    private KvPage?[] _pages = [];
    private int _pageCount;

    /// <summary>Tokens the attention kernel may read: <see cref="Length"/>, or the end of a stored, uncommitted append.</summary>
    private int _readable;

    /// <summary>The end of the open append (−1: none) and its number, so a stale handle cannot close a newer one.</summary>
    private int _appendEnd = -1;
    private int _appendId;
    private bool _appendStored;

    /// <summary>
    /// A cache for up to <paramref name="capacity"/> tokens of (<paramref name="kvHeads"/>, <paramref name="headDim"/>)
    /// keys and as many values: 2 × kv_heads × head_dim × 4 bytes per token once used, nothing before.
    /// </summary>
    /// <param name="capacity">Most tokens the cache can hold.</param>
    /// <param name="kvHeads">Key/value heads per token.</param>
    /// <param name="headDim">Floats per head.</param>
    /// <param name="pageTokens">
    /// Tokens per page, a multiple of 64 (the attention key tile); a value at or above the capacity makes one page
    /// of exactly the capacity.
    /// </param>
    /// <exception cref="HorizonException">One page would exceed the largest .NET array.</exception>
    public KvCache(int capacity, int kvHeads, int headDim, int pageTokens = DefaultPageTokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(kvHeads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headDim);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(pageTokens);
        if (pageTokens < capacity && pageTokens % Cpu.CpuKernels.KeyTileSize != 0)
            throw new ArgumentException($"KV cache: {pageTokens} tokens per page is not a multiple of the attention key tile ({Cpu.CpuKernels.KeyTileSize})", nameof(pageTokens));
        long tokenFloats = (long)kvHeads * headDim;
        int tokensPerPage = Math.Min(pageTokens, capacity);
        // Checked here so a too-large head fails with a message rather than an OverflowException later.
        if (tokenFloats * tokensPerPage > Array.MaxLength)
            throw new HorizonException($"KV cache page too large: {tokensPerPage} tokens × kv_heads {kvHeads} × head_dim {headDim} = {tokenFloats * tokensPerPage} floats, above the {Array.MaxLength} an array can hold");
        Capacity = capacity;
        KvHeads = kvHeads;
        HeadDim = headDim;
        PageTokens = tokensPerPage;
        TokenFloats = (int)tokenFloats;
    }

    /// <summary>Tokens the cache can hold at most.</summary>
    public int Capacity { get; }

    /// <summary>Key/value heads per token.</summary>
    public int KvHeads { get; }

    /// <summary>Floats per head.</summary>
    public int HeadDim { get; }

    /// <summary>Tokens per page (the last page may be shorter when the capacity ends inside it).</summary>
    public int PageTokens { get; }

    /// <summary>Floats of keys (and as many of values) per token: kv_heads × head_dim.</summary>
    public int TokenFloats { get; }

    /// <summary>Tokens cached so far (positions 0 … Length − 1); the attention kernel advances it.</summary>
    public int Length { get; private set; }

    /// <summary>Pages held now: ⌈<see cref="Length"/> / <see cref="PageTokens"/>⌉ (one more only while an append is open).</summary>
    public int PagesHeld => _pageCount;

    /// <summary>Pages held now that another cache holds too (shared by a fork; copied before they are written).</summary>
    public int SharedPages
    {
        get
        {
            int shared = 0;
            for (int p = 0; p < _pageCount; p++)
                shared += _pages[p]!.IsShared ? 1 : 0;
            return shared;
        }
    }

    /// <summary>Bytes of keys and values in the pages held now (shared pages counted in full by every holder).</summary>
    public long ByteSize
    {
        get
        {
            long floats = 0;
            for (int p = 0; p < _pageCount; p++)
                floats += 2L * _pages[p]!.Keys.Length;
            return 4 * floats;
        }
    }

    /// <summary>Bytes the cache holds when full: 2 × Capacity × kv_heads × head_dim × 4.</summary>
    public long MaxByteSize => 8L * Capacity * TokenFloats;

    /// <summary>The keys of the token at <paramref name="position"/> (&lt; Length): (kv_heads, head_dim).</summary>
    public ReadOnlySpan<float> KeysAt(int position)
    {
        var (page, offset) = Locate(position);
        return page.Keys.AsSpan(offset, TokenFloats);
    }

    /// <summary>The values of the token at <paramref name="position"/> (&lt; Length): (kv_heads, head_dim).</summary>
    public ReadOnlySpan<float> ValuesAt(int position)
    {
        var (page, offset) = Locate(position);
        return page.Values.AsSpan(offset, TokenFloats);
    }

    /// <summary>
    /// Copies the keys and values of tokens [<paramref name="start"/>, start + <paramref name="count"/>) (within
    /// Length) into contiguous (count, kv_heads, head_dim) spans.
    /// </summary>
    public void CopyTo(int start, int count, Span<float> keys, Span<float> values)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(start);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if ((long)start + count > Length)
            throw new ArgumentOutOfRangeException(nameof(count), $"tokens [{start}, {(long)start + count}) are not all in the cache ({Length} tokens)");
        long floats = (long)count * TokenFloats;
        if (keys.Length < floats || values.Length < floats)
            throw new ArgumentException($"KV cache: {count} tokens need {floats} floats of keys and of values, got {keys.Length} and {values.Length}");
        int done = 0;
        while (done < count)
        {
            int position = start + done;
            int page = position / PageTokens;
            int inPage = position - page * PageTokens;
            int run = Math.Min(count - done, PageTokens - inPage);
            var source = _pages[page]!;
            source.Keys.AsSpan(inPage * TokenFloats, run * TokenFloats).CopyTo(keys[(done * TokenFloats)..]);
            source.Values.AsSpan(inPage * TokenFloats, run * TokenFloats).CopyTo(values[(done * TokenFloats)..]);
            done += run;
        }
    }

    /// <summary>
    /// Appends tokens: keys and values (n, kv_heads, head_dim) each. A layer that computes keys in place uses
    /// <see cref="BeginAppend"/> instead.
    /// </summary>
    /// <exception cref="HorizonException">The cache has no room for them; it is left unchanged.</exception>
    public void Append(ReadOnlySpan<float> keys, ReadOnlySpan<float> values)
    {
        if (keys.Length != values.Length || keys.Length % TokenFloats != 0)
            throw new ArgumentException($"KV cache: keys ({keys.Length} floats) and values ({values.Length}) must both be whole tokens of {TokenFloats} floats");
        int rows = keys.Length / TokenFloats;
        if (rows == 0)
            return;
        ThrowIfAppending();
        CheckRoom(rows);
        MakeWritable(Length, Length + rows);
        Write(Length, keys, values);
        Length += rows;
        _readable = Length;
    }

    /// <summary>
    /// Opens an append of <paramref name="rows"/> tokens at positions Length … Length + rows − 1: the returned
    /// <see cref="KvAppend"/> gives spans to compute their keys and values into (straight into the page when they
    /// fit in one), <see cref="KvAppend.Store"/> makes them readable by the attention kernel, and
    /// <see cref="KvAppend.Commit"/> advances <see cref="Length"/>. Disposing it without a commit leaves the cache as
    /// it was (pages it added are freed). One append at a time.
    /// </summary>
    /// <exception cref="HorizonException">The cache has no room for the rows.</exception>
    public KvAppend BeginAppend(int rows)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ThrowIfAppending();
        CheckRoom(rows);
        int start = Length, end = Length + rows;
        if (rows > 0)
            MakeWritable(start, end);
        _appendEnd = end;
        _appendStored = false;
        int id = ++_appendId;
        if (rows == 0)
            return new KvAppend(this, id, start, 0, null, default, default);
        int floats = rows * TokenFloats;
        int first = start / PageTokens;
        if ((end - 1) / PageTokens == first)
        {
            // Inside one page (always so in decode): the caller writes straight into the page.
            var page = _pages[first]!;
            int offset = (start - first * PageTokens) * TokenFloats;
            return new KvAppend(this, id, start, rows, null, page.Keys.AsSpan(offset, floats), page.Values.AsSpan(offset, floats));
        }
        // Across pages: contiguous staging, copied into the pages by Store.
        float[] staging = ArrayPool<float>.Shared.Rent(2 * floats);
        return new KvAppend(this, id, start, rows, staging, staging.AsSpan(0, floats), staging.AsSpan(floats, floats));
    }

    /// <summary>Forgets every cached token and frees every page.</summary>
    public void Reset()
    {
        ThrowIfAppending();
        ReleasePagesFrom(0);
        Length = 0;
        _readable = 0;
    }

    /// <summary>Keeps the first <paramref name="length"/> tokens (used when a session is truncated or restored) and frees the pages past them.</summary>
    public void Truncate(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, Length);
        ThrowIfAppending();
        Length = length;
        _readable = length;
        ReleasePagesFrom(PagesFor(length));
    }

    /// <summary>
    /// Makes this cache a copy of <paramref name="source"/> (fork/snapshot): the same tokens. With the same page
    /// size the source's full pages are shared (copy-on-write) and only its partial last page is copied, so the
    /// cost is one page whatever the length; otherwise the tokens are copied.
    /// </summary>
    /// <exception cref="ArgumentException">The head shapes differ or the source holds more tokens than this capacity.</exception>
    public void CopyFrom(KvCache source)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (ReferenceEquals(source, this))
            return;
        if (source.KvHeads != KvHeads || source.HeadDim != HeadDim || source.Length > Capacity)
            throw new ArgumentException($"KV caches differ: {source.Length} tokens of {source.KvHeads}×{source.HeadDim} into capacity {Capacity} of {KvHeads}×{HeadDim}", nameof(source));
        ThrowIfAppending();
        source.ThrowIfAppending();
        if (source.PageTokens != PageTokens)
        {
            CopyTokensFrom(source);
            return;
        }

        int full = source.Length / PageTokens;
        int partial = source.Length - full * PageTokens;
        // Take the references before releasing our own pages: some may be the very same pages.
        for (int p = 0; p < full; p++)
            source._pages[p]!.AddReference();
        ReleasePagesFrom(0);
        EnsureTable(full + (partial > 0 ? 1 : 0));
        Array.Copy(source._pages, _pages, full);
        _pageCount = full;
        if (partial > 0)
        {
            var copy = NewPage(full);
            var from = source._pages[full]!;
            from.Keys.AsSpan(0, partial * TokenFloats).CopyTo(copy.Keys);
            from.Values.AsSpan(0, partial * TokenFloats).CopyTo(copy.Values);
            _pages[full] = copy;
            _pageCount = full + 1;
        }
        Length = source.Length;
        _readable = Length;
    }

    /// <summary>A new cache of the same shape, capacity and page size holding the same tokens (see <see cref="CopyFrom"/>).</summary>
    public KvCache Clone()
    {
        var copy = new KvCache(Capacity, KvHeads, HeadDim, PageTokens);
        copy.CopyFrom(this);
        return copy;
    }

    /// <summary>Tokens the attention kernel may read: Length, plus the rows of an append once stored.</summary>
    internal int ReadableLength => _readable;

    /// <summary>The page table as it is now (entries past <see cref="PagesHeld"/> are null); the kernel reads tiles through it.</summary>
    internal KvPage?[] PageTable => _pages;

    /// <summary>The keys array of page <paramref name="index"/> (tests check sharing by reference).</summary>
    internal float[] KeyPage(int index) => Page(index).Keys;

    /// <summary>The values array of page <paramref name="index"/>.</summary>
    internal float[] ValuePage(int index) => Page(index).Values;

    private KvPage Page(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, _pageCount);
        return _pages[index]!;
    }

    /// <summary>Tokens page <paramref name="index"/> holds when full: PageTokens, or less for the last page of the capacity.</summary>
    private int TokensInPage(int index) => Math.Min(PageTokens, Capacity - index * PageTokens);

    private int PagesFor(int tokens) => (int)(((long)tokens + PageTokens - 1) / PageTokens);

    private (KvPage Page, int Offset) Locate(int position)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(position);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(position, Length);
        int page = position / PageTokens;
        return (_pages[page]!, (position - page * PageTokens) * TokenFloats);
    }

    private KvPage NewPage(int index) => new(TokensInPage(index) * TokenFloats);

    private void CheckRoom(int rows)
    {
        if ((long)Length + rows > Capacity)
            throw new HorizonException($"KV cache full: capacity {Capacity}, {Length} tokens cached, cannot append {rows} more");
    }

    private void ThrowIfAppending()
    {
        if (_appendEnd >= 0)
            throw new InvalidOperationException("KV cache: an append is open (commit or dispose it first)");
    }

    private void EnsureTable(int pages)
    {
        if (pages <= _pages.Length)
            return;
        int most = PagesFor(Capacity);
        int size = Math.Min(most, Math.Max(pages, Math.Max(4, 2 * _pages.Length)));
        Array.Resize(ref _pages, size);
    }

    /// <summary>
    /// Pages for tokens [start, end) exist and belong to this cache alone; tokens below start keep their values
    /// (a shared page is copied before it is written: copy-on-write).
    /// </summary>
    private void MakeWritable(int start, int end)
    {
        int first = start / PageTokens, last = (end - 1) / PageTokens;
        EnsureTable(last + 1);
        for (int p = first; p <= last; p++)
        {
            if (p >= _pageCount)
            {
                System.Diagnostics.Debug.Assert(p == _pageCount, "pages are held from 0 without gaps");
                _pages[p] = NewPage(p);
                _pageCount = p + 1;
                continue;
            }
            var page = _pages[p]!;
            if (!page.IsShared)
                continue;
            var copy = NewPage(p);
            int keep = Math.Clamp(start - p * PageTokens, 0, PageTokens) * TokenFloats;
            page.Keys.AsSpan(0, keep).CopyTo(copy.Keys);
            page.Values.AsSpan(0, keep).CopyTo(copy.Values);
            _pages[p] = copy;
            page.Release();
        }
    }

    /// <summary>Copies (n, kv_heads, head_dim) keys and values into the (writable) pages from token <paramref name="start"/> on.</summary>
    private void Write(int start, ReadOnlySpan<float> keys, ReadOnlySpan<float> values)
    {
        int rows = keys.Length / TokenFloats;
        int done = 0;
        while (done < rows)
        {
            int position = start + done;
            int page = position / PageTokens;
            int inPage = position - page * PageTokens;
            int run = Math.Min(rows - done, PageTokens - inPage);
            var target = _pages[page]!;
            keys.Slice(done * TokenFloats, run * TokenFloats).CopyTo(target.Keys.AsSpan(inPage * TokenFloats));
            values.Slice(done * TokenFloats, run * TokenFloats).CopyTo(target.Values.AsSpan(inPage * TokenFloats));
            done += run;
        }
    }

    private void ReleasePagesFrom(int first)
    {
        for (int p = first; p < _pageCount; p++)
        {
            _pages[p]!.Release();
            _pages[p] = null;
        }
        _pageCount = Math.Min(_pageCount, first);
    }

    /// <summary>Copies the tokens of a cache with another page size (nothing can be shared).</summary>
    private void CopyTokensFrom(KvCache source)
    {
        ReleasePagesFrom(0);
        Length = 0;
        _readable = 0;
        int length = source.Length;
        if (length == 0)
            return;
        MakeWritable(0, length);
        int done = 0;
        while (done < length)
        {
            int page = done / source.PageTokens;
            int run = Math.Min(length - done, source.PageTokens);
            var from = source._pages[page]!;
            Write(done, from.Keys.AsSpan(0, run * TokenFloats), from.Values.AsSpan(0, run * TokenFloats));
            done += run;
        }
        Length = length;
        _readable = length;
    }

    // ---- KvAppend's side

    internal void StoreAppend(int id, int start, float[]? staging, int rows)
    {
        CheckAppend(id);
        if (staging is not null && !_appendStored)
        {
            int floats = rows * TokenFloats;
            Write(start, staging.AsSpan(0, floats), staging.AsSpan(floats, floats));
        }
        _readable = _appendEnd;
        _appendStored = true;
    }

    internal void CommitAppend(int id, int start, float[]? staging, int rows)
    {
        StoreAppend(id, start, staging, rows);
        Length = _appendEnd;
        _readable = Length;
        _appendEnd = -1;
    }

    /// <summary>Closes append <paramref name="id"/> if still open: the cache is as before it (its new pages freed).</summary>
    internal void AbandonAppend(int id)
    {
        if (_appendEnd < 0 || id != _appendId)
            return;
        _appendEnd = -1;
        _readable = Length;
        ReleasePagesFrom(PagesFor(Length));
    }

    private void CheckAppend(int id)
    {
        if (_appendEnd < 0 || id != _appendId)
            throw new InvalidOperationException("KV cache: this append was already committed or abandoned");
    }
}

/// <summary>
/// An open append to a <see cref="KvCache"/> (<see cref="KvCache.BeginAppend"/>): write the new tokens' keys and
/// values into <see cref="Keys"/> and <see cref="Values"/>, call <see cref="Store"/> before attending over them,
/// then <see cref="Commit"/>. Dispose it in every case (a <c>using</c>): without a commit the cache is left as it was.
/// The spans are valid until the commit or the disposal.
/// </summary>
public readonly ref struct KvAppend
{
    private readonly KvCache _cache;
    private readonly int _id;
    private readonly float[]? _staging;

    internal KvAppend(KvCache cache, int id, int start, int rows, float[]? staging, Span<float> keys, Span<float> values)
    {
        _cache = cache;
        _id = id;
        _staging = staging;
        Start = start;
        Rows = rows;
        Keys = keys;
        Values = values;
    }

    /// <summary>Position of the first new token (the cache's Length when the append began).</summary>
    public int Start { get; }

    /// <summary>New tokens.</summary>
    public int Rows { get; }

    /// <summary>(rows, kv_heads, head_dim): the new tokens' keys, to be written by the caller.</summary>
    public Span<float> Keys { get; }

    /// <summary>(rows, kv_heads, head_dim): the new tokens' values, to be written by the caller.</summary>
    public Span<float> Values { get; }

    /// <summary>Makes the written rows readable by the attention kernel (copies them into their pages when they span two).</summary>
    public void Store() => _cache.StoreAppend(_id, Start, _staging, Rows);

    /// <summary>Stores the rows if not done yet and advances the cache's Length past them.</summary>
    public void Commit() => _cache.CommitAppend(_id, Start, _staging, Rows);

    /// <summary>Frees the staging buffer; without a commit, undoes the append.</summary>
    public void Dispose()
    {
        if (_cache is null)
            return;
        _cache.AbandonAppend(_id);
        if (_staging is not null)
            ArrayPool<float>.Shared.Return(_staging);
    }
}

/// <summary>
/// One page of a <see cref="KvCache"/>: keys and values of up to a page of tokens, with a count of the caches
/// holding it (a fork shares full pages). The last release returns the arrays to <see cref="KvPagePool"/>.
/// </summary>
internal sealed class KvPage
{
    private int _references = 1;

    public KvPage(int floats)
    {
        Keys = KvPagePool.Rent(floats);
        Values = KvPagePool.Rent(floats);
    }

    /// <summary>(tokens, kv_heads, head_dim) keys.</summary>
    public float[] Keys { get; }

    /// <summary>(tokens, kv_heads, head_dim) values.</summary>
    public float[] Values { get; }

    /// <summary>More than one cache holds the page: it must be copied before it is written.</summary>
    public bool IsShared => Volatile.Read(ref _references) > 1;

    public void AddReference() => Interlocked.Increment(ref _references);

    public void Release()
    {
        if (Interlocked.Decrement(ref _references) != 0)
            return;
        KvPagePool.Return(Keys);
        KvPagePool.Return(Values);
    }
}

/// <summary>
/// Free page arrays kept for reuse by every <see cref="KvCache"/> of the process, by exact length, at most
/// <see cref="MaxFreeFloats"/> floats in all (beyond that a freed page is left to the garbage collector).
/// </summary>
internal static class KvPagePool
{
    /// <summary>16M floats: 64 MiB of free pages at most.</summary>
    public const long MaxFreeFloats = 16L << 20;

    private static readonly Lock Gate = new();
    private static readonly Dictionary<int, Stack<float[]>> Free = [];
    private static long _freeFloats;

    /// <summary>Floats held in free pages now.</summary>
    public static long FreeFloats
    {
        get
        {
            lock (Gate)
                return _freeFloats;
        }
    }

    /// <summary>An array of exactly <paramref name="floats"/> floats with unspecified contents.</summary>
    public static float[] Rent(int floats)
    {
        lock (Gate)
        {
            if (Free.TryGetValue(floats, out var stack) && stack.TryPop(out var page))
            {
                _freeFloats -= floats;
                return page;
            }
        }
        return GC.AllocateUninitializedArray<float>(floats);
    }

    public static void Return(float[] page)
    {
        lock (Gate)
        {
            if (_freeFloats + page.Length > MaxFreeFloats)
                return;
            if (!Free.TryGetValue(page.Length, out var stack))
                Free[page.Length] = stack = new Stack<float[]>();
            stack.Push(page);
            _freeFloats += page.Length;
        }
    }
}
