using Horizon.Cpu;
using Horizon.Generation;
using Horizon.Models;
using Horizon.Ops;
using NUnit.Framework;

namespace Horizon.Tests;

/// <summary>
/// The paged <see cref="KvCache"/>: pages allocated as the length grows and freed when it shrinks, copy-on-write
/// forks that share full pages, and attention through the page table bit-identical to contiguous keys.
/// </summary>
public class KvCacheTests
{
    private const int KvHeads = 2, HeadDim = 8, TokenFloats = KvHeads * HeadDim;

    /// <summary>Every cached token's keys and values, contiguous (Length, kv_heads, head_dim) each.</summary>
    internal static (float[] Keys, float[] Values) Contents(KvCache cache)
    {
        var keys = new float[cache.Length * cache.TokenFloats];
        var values = new float[keys.Length];
        cache.CopyTo(0, cache.Length, keys, values);
        return (keys, values);
    }

    private static (float[] Keys, float[] Values) RandomTokens(int seed, int count, int tokenFloats = TokenFloats)
    {
        var random = new Random(seed);
        return (VariantTestSupport.RandomFloats(random, count * tokenFloats), VariantTestSupport.RandomFloats(random, count * tokenFloats));
    }

    private static KvCache Filled(int capacity, int length, int seed, int pageTokens = KvCache.DefaultPageTokens)
    {
        var cache = new KvCache(capacity, KvHeads, HeadDim, pageTokens);
        var (keys, values) = RandomTokens(seed, length);
        cache.Append(keys, values);
        return cache;
    }

    private static long PageBytes(KvCache cache) => 2L * 4 * cache.PageTokens * cache.TokenFloats;

    // ---------------------------------------------------------------- pages follow the length

    [Test]
    public void Pages_grow_with_the_length_not_the_capacity()
    {
        var cache = new KvCache(10_000, KvHeads, HeadDim);
        Assert.That(cache.PageTokens, Is.EqualTo(KvCache.DefaultPageTokens));
        Assert.That((cache.PagesHeld, cache.ByteSize), Is.EqualTo((0, 0L)), "nothing before the first token");
        Assert.That(cache.MaxByteSize, Is.EqualTo(2L * 10_000 * TokenFloats * 4));

        var (keys, values) = RandomTokens(1, 1000);
        int length = 0;
        foreach (int step in new[] { 1, 255, 1, 300, 443 })
        {
            cache.Append(keys.AsSpan(length * TokenFloats, step * TokenFloats), values.AsSpan(length * TokenFloats, step * TokenFloats));
            length += step;
            int pages = (length + 255) / 256;
            Assert.That(cache.Length, Is.EqualTo(length));
            Assert.That(cache.PagesHeld, Is.EqualTo(pages), $"pages at length {length}");
            Assert.That(cache.ByteSize, Is.EqualTo(pages * PageBytes(cache)), $"bytes at length {length}");
        }
        var (readKeys, readValues) = Contents(cache);
        Assert.That(readKeys, Is.EqualTo(keys));
        Assert.That(readValues, Is.EqualTo(values));
        Assert.That(cache.KeysAt(700).ToArray(), Is.EqualTo(keys.AsSpan(700 * TokenFloats, TokenFloats).ToArray()));
        Assert.That(cache.ValuesAt(255).ToArray(), Is.EqualTo(values.AsSpan(255 * TokenFloats, TokenFloats).ToArray()));
    }

    [Test]
    public void A_million_token_cache_costs_nothing_until_used()
    {
        // 8 × 128 floats per token: 8 GB of keys and values if allocated up front (the old cache needed 2 × 4 GB arrays).
        long before = GC.GetAllocatedBytesForCurrentThread();
        var cache = new KvCache(1_000_000, 8, 128);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(allocated, Is.LessThan(1024), "the constructor allocates no page and no page table");
        Assert.That((cache.PagesHeld, cache.ByteSize), Is.EqualTo((0, 0L)));
        Assert.That(cache.MaxByteSize, Is.EqualTo(8L * 1_000_000 * 8 * 128));

        var token = new float[8 * 128];
        cache.Append(token, token);
        Assert.That(cache.PagesHeld, Is.EqualTo(1));
        Assert.That(cache.ByteSize, Is.EqualTo(2L * 256 * 8 * 128 * 4), "one page of 256 tokens: 2 MiB");
        cache.Reset();
        Assert.That(cache.ByteSize, Is.Zero);
    }

    [Test]
    public void Truncate_and_Reset_free_the_pages_past_the_new_length()
    {
        var cache = Filled(4096, 1000, 2);
        var (keys, values) = Contents(cache);
        Assert.That(cache.PagesHeld, Is.EqualTo(4));

        cache.Truncate(300);
        Assert.That((cache.Length, cache.PagesHeld), Is.EqualTo((300, 2)));
        cache.Truncate(256);
        Assert.That((cache.Length, cache.PagesHeld), Is.EqualTo((256, 1)), "a length on a page boundary keeps no empty page");
        var (kept, _) = Contents(cache);
        Assert.That(kept, Is.EqualTo(keys.AsSpan(0, 256 * TokenFloats).ToArray()), "the tokens kept are untouched");

        // Writing again after a truncation overwrites the old tail.
        var (newKeys, newValues) = RandomTokens(3, 10);
        cache.Append(newKeys, newValues);
        Assert.That(cache.KeysAt(260).ToArray(), Is.EqualTo(newKeys.AsSpan(4 * TokenFloats, TokenFloats).ToArray()));
        Assert.That(cache.ValuesAt(255).ToArray(), Is.EqualTo(values.AsSpan(255 * TokenFloats, TokenFloats).ToArray()));

        cache.Reset();
        Assert.That((cache.Length, cache.PagesHeld, cache.ByteSize), Is.EqualTo((0, 0, 0L)));
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.Truncate(1));
    }

    [Test]
    public void Small_caches_are_one_page_of_their_capacity_and_the_last_page_is_trimmed()
    {
        var small = Filled(5, 3, 4);
        Assert.That((small.PageTokens, small.PagesHeld, small.ByteSize), Is.EqualTo((5, 1, 2L * 5 * TokenFloats * 4)));

        var odd = Filled(300, 300, 5);
        Assert.That((odd.PageTokens, odd.PagesHeld), Is.EqualTo((256, 2)));
        Assert.That(odd.ByteSize, Is.EqualTo(odd.MaxByteSize), "the second page holds the 44 tokens the capacity allows, no more");
        var ex = Assert.Throws<HorizonException>(() => odd.Append(new float[TokenFloats], new float[TokenFloats]));
        Assert.That(ex!.Message, Does.StartWith("KV cache full: capacity 300"));

        Assert.Throws<ArgumentException>(() => _ = new KvCache(1000, KvHeads, HeadDim, pageTokens: 100), "pages are whole key tiles");
        Assert.That(new KvCache(100, KvHeads, HeadDim, pageTokens: 100).PageTokens, Is.EqualTo(100), "one page of the whole capacity is fine");
    }

    [Test]
    public void An_append_that_is_not_committed_leaves_the_cache_as_it_was()
    {
        var cache = Filled(1000, 250, 6);
        var (keys, values) = Contents(cache);
        using (var append = cache.BeginAppend(20)) // crosses into a second page
        {
            Assert.That(cache.PagesHeld, Is.EqualTo(2));
            append.Keys.Fill(7);
            append.Values.Fill(7);
            append.Store();
            Assert.That(cache.Length, Is.EqualTo(250), "stored, not committed");
        }
        Assert.That((cache.Length, cache.PagesHeld), Is.EqualTo((250, 1)), "the page it added is freed");
        Assert.That(Contents(cache), Is.EqualTo((keys, values)));

        using (var append = cache.BeginAppend(20))
        {
            append.Keys.Fill(8);
            append.Values.Fill(9);
            append.Commit();
        }
        Assert.That(cache.Length, Is.EqualTo(270));
        Assert.That(cache.KeysAt(269).ToArray(), Is.All.EqualTo(8f));
        Assert.That(cache.ValuesAt(250).ToArray(), Is.All.EqualTo(9f));
    }

    // ---------------------------------------------------------------- copy-on-write fork

    [Test]
    public void A_fork_of_2000_tokens_shares_the_full_pages_and_copies_only_the_last()
    {
        var source = Filled(4096, 2000, 10);
        var (keys, values) = Contents(source);
        var fork = new KvCache(4096, KvHeads, HeadDim);

        long before = GC.GetAllocatedBytesForCurrentThread();
        fork.CopyFrom(source);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        // 2000 = 7 full pages of 256 + 208 tokens: pages 0 … 6 shared by reference, page 7 copied.
        Assert.That((fork.Length, fork.PagesHeld), Is.EqualTo((2000, 8)));
        for (int p = 0; p < 7; p++)
        {
            Assert.That(fork.KeyPage(p), Is.SameAs(source.KeyPage(p)), $"keys of page {p} shared");
            Assert.That(fork.ValuePage(p), Is.SameAs(source.ValuePage(p)), $"values of page {p} shared");
        }
        Assert.That(fork.KeyPage(7), Is.Not.SameAs(source.KeyPage(7)), "the partial page is copied");
        Assert.That((source.SharedPages, fork.SharedPages), Is.EqualTo((7, 7)));
        Assert.That(allocated, Is.LessThanOrEqualTo(PageBytes(fork) + 4096), "the fork allocates one page (and a page table) at most");
        Assert.That(Contents(fork), Is.EqualTo((keys, values)));

        var clone = source.Clone();
        Assert.That(clone.KeyPage(3), Is.SameAs(source.KeyPage(3)));
        Assert.That(source.SharedPages, Is.EqualTo(7));
        Assert.That(Contents(clone), Is.EqualTo((keys, values)));
    }

    [Test]
    public void Writing_on_one_branch_never_changes_the_other()
    {
        var source = Filled(4096, 600, 20);       // pages 0, 1 full; page 2 partial
        var (keys, values) = Contents(source);
        float[] sharedPage1 = source.KeyPage(1);
        var fork = source.Clone();

        // The fork goes back into shared page 1 and writes there: it gets its own copy of that page.
        fork.Truncate(300);
        var (forkKeys, forkValues) = RandomTokens(21, 400);
        fork.Append(forkKeys, forkValues);
        Assert.That(fork.KeyPage(1), Is.Not.SameAs(sharedPage1), "copied before it was written");
        Assert.That(fork.KeyPage(0), Is.SameAs(source.KeyPage(0)), "the page it did not write stays shared");
        Assert.That(source.KeyPage(1), Is.SameAs(sharedPage1));
        Assert.That(Contents(source), Is.EqualTo((keys, values)), "the source is untouched");
        Assert.That(fork.KeysAt(299).ToArray(), Is.EqualTo(keys.AsSpan(299 * TokenFloats, TokenFloats).ToArray()), "the fork keeps the tokens before its cut");
        Assert.That(fork.KeysAt(300).ToArray(), Is.EqualTo(forkKeys.AsSpan(0, TokenFloats).ToArray()));
        Assert.That((source.SharedPages, fork.SharedPages), Is.EqualTo((1, 1)));

        // The source writes on: the fork is untouched.
        var (forkAll, forkAllValues) = Contents(fork);
        var (more, moreValues) = RandomTokens(22, 500);
        source.Append(more, moreValues);
        Assert.That(Contents(fork), Is.EqualTo((forkAll, forkAllValues)));
        source.Reset();
        Assert.That(Contents(fork), Is.EqualTo((forkAll, forkAllValues)), "freeing the source's pages leaves the fork's");
        Assert.That(fork.SharedPages, Is.Zero);
    }

    [Test]
    public void Copies_between_caches_of_other_page_sizes_or_capacities_copy_the_tokens()
    {
        var source = Filled(1000, 700, 30, pageTokens: 128);
        var target = Filled(2000, 50, 31);
        target.CopyFrom(source);
        Assert.That((target.Length, target.PagesHeld, target.SharedPages), Is.EqualTo((700, 3, 0)));
        Assert.That(Contents(target), Is.EqualTo(Contents(source)));

        var same = new KvCache(2000, KvHeads, HeadDim, pageTokens: 128);
        same.CopyFrom(source);
        Assert.That(same.KeyPage(4), Is.SameAs(source.KeyPage(4)), "same page size, other capacity: still shared");

        Assert.Throws<ArgumentException>(() => new KvCache(600, KvHeads, HeadDim).CopyFrom(source), "700 tokens do not fit in 600");
        Assert.Throws<ArgumentException>(() => new KvCache(1000, 1, HeadDim).CopyFrom(source), "other heads");
    }

    /// <summary>A state the generic, reflection-based StateCopy walks: its KvCache field is copied copy-on-write.</summary>
    private sealed class LayerWithCache
    {
        public KvCache Cache = new(1000, KvHeads, HeadDim);
        public int[] Counters = new int[2];
    }

    [Test]
    public void StateCopy_copies_a_KvCache_field_copy_on_write()
    {
        var source = new LayerWithCache();
        var (keys, values) = RandomTokens(40, 520);
        source.Cache.Append(keys, values);
        source.Counters[1] = 5;
        var copy = new LayerWithCache();
        StateCopy.Copy(source, copy);
        Assert.That(copy.Cache, Is.Not.SameAs(source.Cache));
        Assert.That(copy.Cache.KeyPage(1), Is.SameAs(source.Cache.KeyPage(1)));
        Assert.That(Contents(copy.Cache), Is.EqualTo((keys, values)));
        Assert.That(copy.Counters[1], Is.EqualTo(5));

        var direct = new KvCache(1000, KvHeads, HeadDim);
        StateCopy.Copy<object>(source.Cache, direct);
        Assert.That(direct.SharedPages, Is.EqualTo(2), "a KvCache passed as an object is still copied by its own CopyFrom");
    }

    // ---------------------------------------------------------------- attention through the page table

    [TestCase(1, 299, 300, TestName = "Paged_CausalAttention_decode_after_299_is_bit_identical")]
    [TestCase(1, 127, 128, TestName = "Paged_CausalAttention_decode_at_a_page_end_is_bit_identical")]
    [TestCase(70, 230, 300, TestName = "Paged_CausalAttention_chunk_across_pages_is_bit_identical")]
    [TestCase(300, 0, 300, TestName = "Paged_CausalAttention_prefill_is_bit_identical")]
    public void Paged_CausalAttention_is_bit_identical_to_contiguous_keys(int queries, int queryStart, int keyCount)
    {
        const int heads = 6;
        var (keys, values) = RandomTokens(50 + queries, keyCount);
        var cache = new KvCache(1000, KvHeads, HeadDim, pageTokens: 64);
        cache.Append(keys, values);
        float[] q = VariantTestSupport.RandomFloats(new Random(60 + queries), queries * heads * HeadDim);

        var contiguous = new float[q.Length];
        CpuKernels.CausalAttention(q, queries, heads, keys, values, keyCount, KvHeads, HeadDim, queryStart, contiguous);
        var paged = new float[q.Length];
        CpuKernels.CausalAttention(q, queries, heads, cache, queryStart, paged);
        Assert.That(paged, Is.EqualTo(contiguous), "the same tiles with the same arithmetic");

        var ex = Assert.Throws<ArgumentException>(() => CpuKernels.CausalAttention(q, queries, heads, cache, keyCount - queries + 1, paged));
        Assert.That(ex!.Message, Does.Contain($"needs {keyCount + 1} keys"));
    }

    /// <summary>A small attention layer (grouped heads, RoPE, q/k/v biases) to run through caches of several page sizes.</summary>
    private static (AttentionWeights Weights, AttentionOptions Options) Layer(int seed)
    {
        const int hidden = 40, heads = 6;
        var random = new Random(seed);
        Matrix M(string name, int rows, int cols) => Matrix.FromFloats(name, rows, cols, VariantTestSupport.RandomFloats(random, rows * cols, 0.5f));
        var weights = new AttentionWeights(M("q", heads * HeadDim, hidden), M("k", TokenFloats, hidden), M("v", TokenFloats, hidden), M("o", hidden, heads * HeadDim),
            VariantTestSupport.RandomFloats(random, heads * HeadDim), VariantTestSupport.RandomFloats(random, TokenFloats), VariantTestSupport.RandomFloats(random, TokenFloats));
        return (weights, new AttentionOptions(hidden, heads, KvHeads, HeadDim, new RopeTable(HeadDim, 10000.0, RopeScaling.None)));
    }

    [Test]
    public void AttentionLayer_decode_across_page_boundaries_equals_prefill()
    {
        const int tokens = 150, hidden = 40; // pages of 64: boundaries at 64 and 128
        var (weights, options) = Layer(70);
        float[] x = VariantTestSupport.RandomFloats(new Random(71), tokens * hidden);

        float[] Run(int pageTokens, int[] chunks)
        {
            var cache = new KvCache(tokens, KvHeads, HeadDim, pageTokens);
            var y = new float[tokens * hidden];
            int done = 0;
            foreach (int rows in chunks)
            {
                CpuKernels.AttentionLayer(x.AsSpan(done * hidden, rows * hidden), rows, weights, options, cache, y.AsSpan(done * hidden, rows * hidden));
                done += rows;
            }
            Assert.That((cache.Length, cache.PagesHeld), Is.EqualTo((tokens, (tokens + cache.PageTokens - 1) / cache.PageTokens)));
            return y;
        }

        int[] whole = [tokens];
        int[] oneByOne = Enumerable.Repeat(1, tokens).ToArray();
        int[] uneven = [60, 10, 50, 30]; // 60 → 70 and 120 → 150 cross page boundaries
        float[] prefill = Run(256, whole); // one page: the whole capacity
        Assert.That(Run(64, whole), Is.EqualTo(prefill), "prefill over three pages, bit-identical");
        Assert.That(Run(64, uneven), Is.EqualTo(Run(256, uneven)), "chunks across page boundaries, bit-identical");
        float[] decode = Run(64, oneByOne);
        Assert.That(decode, Is.EqualTo(Run(256, oneByOne)), "decode through pages, bit-identical to one page");
        Assert.That(VariantTestSupport.MaxAbsDifference(decode, prefill), Is.LessThanOrEqualTo(1e-4), "decode vs prefill");
    }

    // ---------------------------------------------------------------- sessions

    [Test]
    public async Task A_session_fork_of_a_2000_token_prefix_shares_pages_and_both_branches_equal_recomputation()
    {
        using var model = GenerationTestModel.Load();
        const int capacity = 2304, prefixLength = 2000;
        var random = new Random(80);
        int[] prefix = Enumerable.Range(0, prefixLength).Select(_ => random.Next(model.Tokenizer.VocabSize)).ToArray();
        int[] suffixA = [5, 17, 29, 3], suffixB = [250, 1, 1, 99, 42, 7];

        using var shared = model.CreateSession(capacity);
        shared.Append(prefix);
        shared.Prefill();
        var state = (Qwen2Model.State)shared.State;
        var before = state.Layers.Select(layer => Contents(layer.SelfAttn)).ToArray();
        long fullCopyBytes = state.Layers.Sum(layer => 2L * 4 * prefixLength * layer.SelfAttn.TokenFloats);

        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        using var fork = shared.Fork();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;

        var forkState = (Qwen2Model.State)fork.State;
        for (int l = 0; l < state.Layers.Length; l++)
        {
            KvCache a = state.Layers[l].SelfAttn, b = forkState.Layers[l].SelfAttn;
            Assert.That((b.Length, b.PagesHeld, b.SharedPages), Is.EqualTo((prefixLength, 8, 7)), $"layer {l}: 7 full pages shared, the 8th copied");
            for (int p = 0; p < 7; p++)
                Assert.That(b.KeyPage(p), Is.SameAs(a.KeyPage(p)));
        }
        Assert.That(allocated, Is.LessThan(fullCopyBytes / 4), "a fork copies about one page per layer, not the prefix");

        // Both branches go on; each equals recomputing its whole sequence from scratch.
        shared.Append(suffixA);
        shared.Prefill();
        fork.Append(suffixB);
        fork.Prefill();
        foreach (var (session, suffix) in new[] { (shared, suffixA), (fork, suffixB) })
        {
            using var scratch = model.CreateSession(capacity);
            scratch.Append([.. prefix, .. suffix]);
            scratch.Prefill();
            Assert.That(session.NextTokenLogits.ToArray(), Is.EqualTo(scratch.NextTokenLogits.ToArray()).Within(1e-4));
        }
        var options = GenerationOptions.Greedy with { MaxTokens = 5, StopTokenIds = [] };
        var forked = await fork.GenerateTextAsync("", options);
        using var recomputed = model.CreateSession(capacity);
        recomputed.Append([.. prefix, .. suffixB]);
        var expected = await recomputed.GenerateTextAsync("", options);
        Assert.That(forked.Tokens, Is.EqualTo(expected.Tokens), "greedy continuation of the fork");

        // Neither branch's writes reached the other's copy of the prefix.
        for (int l = 0; l < state.Layers.Length; l++)
        {
            foreach (var cache in new[] { state.Layers[l].SelfAttn, forkState.Layers[l].SelfAttn })
            {
                var (keys, values) = Contents(cache);
                Assert.That(keys.AsSpan(0, before[l].Keys.Length).ToArray(), Is.EqualTo(before[l].Keys), $"layer {l} keys of the prefix");
                Assert.That(values.AsSpan(0, before[l].Values.Length).ToArray(), Is.EqualTo(before[l].Values), $"layer {l} values of the prefix");
            }
        }
    }
}
