// Next-token sampling on the device, one block per logits row: greedy (argmax) and temperature + top-p (nucleus,
// Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration", § 3.1). The same function as the CPU's
// Sampler (src/Runtime/Generation/Sampler.cs) for these two steps, given the same uniform draw u ∈ [0, 1):
//   greedy:  the id of the largest logit, the smallest id on a tie; −1 when every logit is −∞ or NaN;
//   top-p:   p_i = (float) exp((z_i − max z) / T) in float64 (0 for NaN); sort by p descending, ties by id; keep the
//            fewest ids whose float64 sum reaches top_p · Σ p (at least one; top_p = 1 keeps all); q_i = (float)
//            (p_i / Σ_kept p); the token is the first id, in id order, whose running float64 sum of q exceeds u (the
//            last id with q > 0 when rounding leaves the sum at or under u).
// Nothing is sorted: the nucleus is {p > v*} plus the lowest-id ties at v*, where v* is the largest value whose
// mass Σ_{p ≥ v*} p reaches top_p · Σ p. v* is found by a radix select over the bits of p (non-negative floats order
// as their bits), 8 bits per pass from the top, with exact 64-bit fixed-point masses (p·2⁴⁴, truncated) per bin.
// The launchers are in src/Runtime/Cuda/CudaOps.Sampling.cs.
#include "common.cuh"

namespace sampling
{
constexpr int THREADS = 1024; // threads per block of both kernels (one block per row)
constexpr float FIXED_ONE = 17592186044416.0f; // 2⁴⁴: the fixed-point unit of the bin masses (vocab ≤ 2¹⁹ keeps sums < 2⁶³)
constexpr int NONE = 0x7fffffff;               // "no id yet" in the argmax reduction
} // namespace sampling

// ---------------------------------------------------------------- block reductions and scans

static __device__ __forceinline__ double warp_sum_f64(double v)
{
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// Sum over the block (blockDim.x a multiple of 32); every thread gets it. `scratch` is 32 doubles of shared memory.
static __device__ __forceinline__ double block_sum_f64(double v, double* scratch)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum_f64(v);
    __syncthreads();
    if (lane == 0)
        scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0;
    return warp_sum_f64(v);
}

static __device__ __forceinline__ int block_max_int(int v, int* scratch)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
        v = max(v, __shfl_xor_sync(0xffffffffu, v, offset));
    __syncthreads();
    if (lane == 0)
        scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : -1;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
        v = max(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// Inclusive prefix sum over the threads in thread order: thread t gets v_0 + … + v_t. `scratch` is 32 T of shared memory.
template <typename T>
static __device__ __forceinline__ T block_inclusive_scan(T v, T* scratch)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
    for (int offset = 1; offset < 32; offset <<= 1)
    {
        const T n = __shfl_up_sync(0xffffffffu, v, offset);
        if (lane >= offset)
            v += n;
    }
    __syncthreads(); // scratch may still be read by a previous reduction
    if (lane == 31)
        scratch[warp] = v;
    __syncthreads();
    if (warp == 0)
    {
        T w = lane < warps ? scratch[lane] : T(0);
#pragma unroll
        for (int offset = 1; offset < 32; offset <<= 1)
        {
            const T n = __shfl_up_sync(0xffffffffu, w, offset);
            if (lane >= offset)
                w += n;
        }
        if (lane < warps)
            scratch[lane] = w;
    }
    __syncthreads();
    return warp > 0 ? v + scratch[warp - 1] : v;
}

// (value, id) ← the better of the two: the larger value, the smaller id on a tie.
static __device__ __forceinline__ void take_better(float& value, int& id, float other_value, int other_id)
{
    if (other_value > value || (other_value == value && other_id < id))
    {
        value = other_value;
        id = other_id;
    }
}

// ---------------------------------------------------------------- greedy

// tokens[r] = argmax_i logits[r, i] (the smallest i on a tie; NaN never wins; −1 when every logit is −∞ or NaN),
// the CPU's Sampler.ArgMax. logits is (rows, vocab), tokens (rows) int32. Grid: (rows); block: a multiple of 32.
template <typename T>
static __device__ void sample_argmax(const T* __restrict__ logits, int* __restrict__ tokens, int rows, int vocab)
{
    __shared__ float values[32];
    __shared__ int ids[32];
    const int row = blockIdx.x;
    if (row >= rows)
        return;
    const T* z = logits + (size_t)row * vocab;
    float best = -HZ_INF;
    int id = sampling::NONE;
    // ids rise along a thread's loop (four loads in flight, then one at a time): strict > keeps the first of equal values.
    const int step = blockDim.x;
    int i = threadIdx.x;
    for (; i + 3 * step < vocab; i += 4 * step)
    {
        const float v[4] = {to_float(z[i]), to_float(z[i + step]), to_float(z[i + 2 * step]), to_float(z[i + 3 * step])};
#pragma unroll
        for (int u = 0; u < 4; u++)
        {
            if (v[u] > best)
            {
                best = v[u];
                id = i + u * step;
            }
        }
    }
    for (; i < vocab; i += step)
    {
        const float v = to_float(z[i]);
        if (v > best)
        {
            best = v;
            id = i;
        }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
        take_better(best, id, __shfl_xor_sync(0xffffffffu, best, offset), __shfl_xor_sync(0xffffffffu, id, offset));
    if (lane == 0)
    {
        values[warp] = best;
        ids[warp] = id;
    }
    __syncthreads();
    if (warp == 0)
    {
        best = lane < warps ? values[lane] : -HZ_INF;
        id = lane < warps ? ids[lane] : sampling::NONE;
#pragma unroll
        for (int offset = 16; offset > 0; offset >>= 1)
            take_better(best, id, __shfl_xor_sync(0xffffffffu, best, offset), __shfl_xor_sync(0xffffffffu, id, offset));
        if (lane == 0)
            tokens[row] = id == sampling::NONE ? -1 : id;
    }
}

extern "C" __global__ void __launch_bounds__(1024) sample_argmax_f32(const float* logits, int* tokens, int rows, int vocab)
{
    sample_argmax(logits, tokens, rows, vocab);
}

// ---------------------------------------------------------------- top-p with temperature

static __device__ __forceinline__ unsigned long long fixed_mass(float p)
{
    return (unsigned long long)(p * sampling::FIXED_ONE); // p ∈ [0, 1]: exact scaling, truncated (p < 2⁻⁴⁴ counts 0)
}

// Adds a fixed-point mass to a 64-bit counter kept as two 32-bit words in shared memory, with native 32-bit atomics
// (a 64-bit shared atomic add is a compare-and-swap loop): a wrap of the low word carries into the high word, so
// (high << 32) + low is the exact sum once every add is done.
static __device__ __forceinline__ void add_mass(unsigned* low, unsigned* high, unsigned long long mass)
{
    const unsigned lo = (unsigned)mass;
    unsigned hi = (unsigned)(mass >> 32);
    if (lo != 0u)
    {
        const unsigned old = atomicAdd(low, lo);
        hi += old > 0xffffffffu - lo ? 1u : 0u;
    }
    if (hi != 0u)
        atomicAdd(high, hi);
}

// f(i, x[i]) for the ids i ≡ threadIdx.x (mod blockDim.x), in rising order, with four loads in flight per thread
// (one block reads a whole row: latency, not bandwidth, bounds a pass with one load in flight).
template <typename T, typename F>
static __device__ __forceinline__ void for_each_strided(const T* x, int n, F&& f)
{
    const int step = blockDim.x;
    int i = threadIdx.x;
    for (; i + 3 * step < n; i += 4 * step)
    {
        const T a = x[i], b = x[i + step], c = x[i + 2 * step], d = x[i + 3 * step];
        f(i, a);
        f(i + step, b);
        f(i + 2 * step, c);
        f(i + 3 * step, d);
    }
    for (; i < n; i += step)
        f(i, x[i]);
}

// One draw per row from the temperature-scaled, top-p-truncated distribution (the equations at the top of the file).
// logits (rows, vocab) float32, uniforms (rows) float64 in [0, 1), tokens (rows) int32 (−1: every logit −∞ or NaN),
// work (rows, vocab) float32 scratch (left holding the unnormalised p). temperature > 0; top_p ∈ (0, 1];
// vocab ≤ 2¹⁹. Grid: (rows); block: sampling::THREADS (1024) threads.
// Passes over a row: the max; p and Σ p (written to work); 4 radix-select passes for v* (skipped for top_p = 1: all
// kept); then in id order, each thread a contiguous chunk of ids: the mass above v* and the ties at v* (a scan of the
// tie counts ranks them), then each chunk's Σ q and their scan; the thread whose [prefix, prefix + Σ q) holds u walks
// its chunk.
template <typename T>
static __device__ void sample_top_p(const T* __restrict__ logits, const double* __restrict__ uniforms, int* __restrict__ tokens,
                                    float* __restrict__ work, int rows, int vocab, float temperature, float top_p)
{
    __shared__ float float_scratch[32];
    __shared__ double double_scratch[32];
    __shared__ int int_scratch[32];
    __shared__ unsigned warp_low[32][64], warp_high[32][64]; // the first pass: one 64-bin histogram per warp
    __shared__ unsigned bin_low[256], bin_high[256];         // the later passes
    __shared__ unsigned long long histogram[256];            // the pass's bins, combined
    __shared__ double inclusive[sampling::THREADS];
    __shared__ unsigned chosen_prefix;
    __shared__ unsigned long long chosen_above;
    __shared__ int found;

    const int row = blockIdx.x;
    if (row >= rows)
        return;
    const T* z = logits + (size_t)row * vocab;
    float* p = work + (size_t)row * vocab;
    const int tid = threadIdx.x, threads = blockDim.x, lane = tid & 31, warp = tid >> 5, warps = threads >> 5;

    // 1. The largest logit; fmaxf skips NaN as the CPU's `z > max` does. Four loads in flight per thread.
    float top = -HZ_INF;
    for_each_strided(z, vocab, [&](int, T v) { top = fmaxf(top, to_float(v)); });
    top = block_max(top, float_scratch);
    if (!(top > -HZ_INF))
    {
        if (tid == 0)
            tokens[row] = -1;
        return;
    }

    // 2. p_i = (float) exp((z_i − max) / T), the subtraction in float32 and the rest in float64 as on the CPU; Σ p.
    const double temperature64 = (double)temperature;
    double local = 0.0;
    for_each_strided(z, vocab, [&](int i, T v) {
        const float zi = to_float(v);
        float pi = isnan(zi) ? 0.0f : (float)exp((double)(zi - top) / temperature64);
        if (isnan(pi)) // +∞ − +∞ (an infinite logit): not a distribution; counted as 0 so nothing below overflows
            pi = 0.0f;
        p[i] = pi;
        local += pi;
    });
    const double total = block_sum_f64(local, double_scratch);
    if (!(total > 0.0))
    {
        if (tid == 0)
            tokens[row] = -1;
        return;
    }

    // 3. v*: the largest p with Σ_{p_j ≥ v*} p_j ≥ top_p · total. Radix select over the bits, top byte first; at each
    // level `above` is the fixed-point mass of every id above the current prefix, and the chosen bin is the highest
    // whose cumulative mass from the top reaches the goal. Sums of integers are exact and order-free, so the bins of
    // a level add up to the chosen bin of the level before: only the first level can miss (fixed-point truncation at
    // a goal within 2⁻⁴⁴ · vocab of the total), and then every id is kept.
    bool keep_all = top_p >= 1.0f;
    const double goal = (double)top_p * total;
    unsigned threshold = 0;
    if (!keep_all)
    {
        const unsigned long long need = (unsigned long long)ceil(goal * (double)sampling::FIXED_ONE);
        unsigned prefix = 0;
        unsigned long long above = 0;
        for (int level = 0; level < 4; level++)
        {
            const int shift = 24 - 8 * level;
            if (level == 0)
            {
                // p ∈ [0, 1] has a top byte ≤ 0x3F: 64 bins, one histogram per warp (the first pass sees every id, and
                // most ids share a few exponents).
                for (int b = tid; b < 32 * 64; b += threads)
                {
                    (&warp_low[0][0])[b] = 0u;
                    (&warp_high[0][0])[b] = 0u;
                }
                __syncthreads();
                for_each_strided(p, vocab, [&](int, float pi) {
                    const unsigned bin = min(__float_as_uint(pi) >> 24, 63u);
                    add_mass(&warp_low[warp][bin], &warp_high[warp][bin], fixed_mass(pi));
                });
                __syncthreads();
                for (int b = tid; b < 256; b += threads)
                {
                    unsigned long long s = 0;
                    if (b < 64)
                        for (int w = 0; w < warps; w++)
                            s += ((unsigned long long)warp_high[w][b] << 32) + warp_low[w][b];
                    histogram[b] = s;
                }
                __syncthreads();
            }
            else
            {
                for (int b = tid; b < 256; b += threads)
                {
                    bin_low[b] = 0u;
                    bin_high[b] = 0u;
                }
                __syncthreads();
                for_each_strided(p, vocab, [&](int, float pi) {
                    const unsigned bits = __float_as_uint(pi);
                    if ((bits >> (shift + 8)) == prefix)
                    {
                        const unsigned bin = (bits >> shift) & 255u;
                        add_mass(&bin_low[bin], &bin_high[bin], fixed_mass(pi));
                    }
                });
                __syncthreads();
                for (int b = tid; b < 256; b += threads)
                    histogram[b] = ((unsigned long long)bin_high[b] << 32) + bin_low[b];
                __syncthreads();
            }
            if (warp == 0)
            {
                // Lane l holds bins 8l … 8l + 7; suffix sums over the lanes find the lane where the goal is crossed.
                unsigned long long bins[8], mine = 0;
#pragma unroll
                for (int j = 0; j < 8; j++)
                {
                    bins[j] = histogram[lane * 8 + j];
                    mine += bins[j];
                }
                unsigned long long suffix = mine; // Σ over lanes ≥ this one
#pragma unroll
                for (int offset = 1; offset < 32; offset <<= 1)
                {
                    const unsigned long long n = __shfl_down_sync(0xffffffffu, suffix, offset);
                    if (lane + offset < 32)
                        suffix += n;
                }
                const unsigned long long higher = above + (suffix - mine); // mass of every id above this lane's bins
                const bool here = higher < need && higher + mine >= need;
                const unsigned crossing = __ballot_sync(0xffffffffu, here);
                if (crossing == 0)
                {
                    if (lane == 0)
                        found = 0;
                }
                else if (here)
                {
                    unsigned long long acc = higher;
                    int bin = lane * 8;
#pragma unroll
                    for (int j = 7; j >= 0; j--)
                    {
                        if (acc + bins[j] >= need)
                        {
                            bin = lane * 8 + j;
                            break;
                        }
                        acc += bins[j];
                    }
                    chosen_prefix = (prefix << 8) | (unsigned)bin;
                    chosen_above = acc;
                    found = 1;
                }
            }
            __syncthreads();
            if (!found)
            {
                keep_all = true;
                break;
            }
            prefix = chosen_prefix;
            above = chosen_above;
            __syncthreads(); // everyone has read chosen_* and found before the next level writes them
        }
        threshold = prefix;
    }
    const float v_star = __uint_as_float(threshold);

    // 4. In id order: thread t owns the ids [t·chunk, (t + 1)·chunk). The float64 mass strictly above v* and the
    // number of ids at v*, per chunk; a scan of the tie counts ranks the ties by id. Of the ties, the `take` lowest ids
    // are kept: the fewest whose mass, added after everything above v*, reaches the goal. Σ_kept p normalises.
    const int chunk = ceil_div(vocab, threads);
    const int begin = min(vocab, tid * chunk), end = min(vocab, begin + chunk);
    int rank = 0, take = 0; // ties at v* before this chunk; ties kept in all
    double sum = total;     // Σ_kept p (top_p = 1: every id)
    if (!keep_all)
    {
        double strict_here = 0.0;
        int ties_here = 0;
#pragma unroll 4
        for (int i = begin; i < end; i++)
        {
            const float pi = p[i];
            if (pi > v_star)
                strict_here += pi;
            else if (pi == v_star)
                ties_here++;
        }
        const double strict = block_sum_f64(strict_here, double_scratch);
        const int ties_through = block_inclusive_scan(ties_here, int_scratch);
        rank = ties_through - ties_here;
        if (tid == threads - 1)
            found = ties_through; // every tie: the last thread's inclusive count (found was last read before a barrier)
        __syncthreads();
        const int tied = found;
        const double count = ceil((goal - strict) / (double)v_star);
        take = (int)fmin(fmax(count, 1.0), (double)tied);
        const int kept_ties = min(max(take - rank, 0), ties_here);
        sum = block_sum_f64(strict_here + (double)kept_ties * (double)v_star, double_scratch);
    }

    // 5. q_i = (float)(p_i / Σ_kept p) summed in id order: this chunk's share, then the block's prefix of the shares.
    double share = 0.0;
    int last = -1;
    {
        int r = rank;
#pragma unroll 4
        for (int i = begin; i < end; i++)
        {
            const float pi = p[i];
            if (keep_all || pi > v_star || (pi == v_star && r++ < take))
            {
                const float q = (float)(pi / sum);
                if (q > 0.0f)
                {
                    share += q;
                    last = i;
                }
            }
        }
    }
    const double through = block_inclusive_scan(share, double_scratch);
    inclusive[tid] = through;
    const int last_overall = block_max_int(last, int_scratch); // its barriers also publish inclusive[]
    const double before = tid > 0 ? inclusive[tid - 1] : 0.0;
    const double u = uniforms[row];
    if (before <= u && u < through)
    {
        // The running sum crosses u inside this chunk (exactly one thread: the intervals tile [0, Σ q)).
        double running = before;
        int choice = last, r = rank;
        for (int i = begin; i < end; i++)
        {
            const float pi = p[i];
            if (keep_all || pi > v_star || (pi == v_star && r++ < take))
            {
                const float q = (float)(pi / sum);
                if (q > 0.0f)
                {
                    running += q;
                    if (running > u)
                    {
                        choice = i;
                        break;
                    }
                }
            }
        }
        tokens[row] = choice;
    }
    if (tid == threads - 1 && !(u < through))
        tokens[row] = last_overall; // rounding left the sum at or under u: the last id with q > 0, as on the CPU
}

extern "C" __global__ void __launch_bounds__(1024) sample_top_p_f32(const float* logits, const double* uniforms, int* tokens,
                                                                    float* work, int rows, int vocab, float temperature, float top_p)
{
    sample_top_p(logits, uniforms, tokens, work, rows, vocab, temperature, top_p);
}
