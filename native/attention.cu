// Causal softmax attention on bf16 tensors: o = softmax(q kᵀ · scale + causal mask) v per head (Vaswani et al.
// 2017, eq. 1), grouped key/value heads (Ainslie et al. 2023; one key/value head is multi-query attention).
//
// attention_prefill_d{64,128}_bf16  many queries: FlashAttention-2 (Dao 2023, Algorithm 1) on tensor cores
//                                   (mma.sync m16n8k16, bf16 operands, float32 accumulation), online softmax;
//                                   with window > 0, sliding-window attention (Beltagy et al. 2020; Jiang et al.
//                                   2023): key tiles wholly outside every row's window are skipped.
// attention_decode_d{64,128}_bf16   one query per sequence against a long cache: split over the keys
// attention_decode_combine_bf16     (Flash-Decoding), then the splits merged by their log-sum-exp.
// attention_naive_bf16              the same function computed plainly in bf16 (scores and probabilities
//                                   rounded to bf16, as torch does in bf16): the test reference of the
//                                   flash-attention error rule, not a production kernel.
//
// Layouts (token-major, as on the CPU: src/Runtime/Cpu/FlashAttention.cs):
//   q, o   (batch, queries, heads, head_dim)        k, v   (batch, key_count, kv_heads, head_dim)
// Query r of a sequence sits at absolute position p = query_start + r and sees keys 0 … p, or, with a window
// w > 0 (prefill and the naive reference), the keys p − w < j ≤ p (docs/ops/sliding_window_attention.md, without
// global positions);
// query head h reads key/value head h / (heads / kv_heads). Launchers: src/Runtime/Cuda/CudaOps.cs.
#include "common.cuh"

#define HZ_LOG2E 1.4426950408889634f

static __device__ __forceinline__ float round_bf16(float v) { return to_float(float_to_bf16(v)); }

// ================================================================ prefill

namespace prefill
{
constexpr int BM = 64;        // query rows per block: 16 per warp, one m16 tile each
constexpr int BN = 64;        // keys per step of the online softmax
constexpr int THREADS = 128;  // 4 warps
}

// Copies rows [row0, row0 + ROWS) of a (rows, D) bf16 matrix with `row_stride` elements between rows into
// shared memory rows of D + 8 elements (the 16-byte pad staggers the rows over the banks, so ldmatrix
// reads conflict-free). Rows at or past `row_limit` are zero-filled. Asynchronous: cp_async_commit/wait.
template <int D, int ROWS>
static __device__ __forceinline__ void load_tile_async(bf16_t* dst, const bf16_t* src, size_t row_stride, int row0,
                                                       int row_limit)
{
    constexpr int CHUNKS = D / 8; // 16-byte pieces per row
    constexpr int STRIDE = D + 8;
    static_assert(ROWS * CHUNKS % prefill::THREADS == 0, "every thread copies the same number of pieces");
#pragma unroll
    for (int i = 0; i < ROWS * CHUNKS / prefill::THREADS; i++)
    {
        const int c = threadIdx.x + i * prefill::THREADS;
        const int r = c / CHUNKS, col = (c % CHUNKS) * 8;
        const bool valid = row0 + r < row_limit;
        const bf16_t* from = src + (size_t)(valid ? row0 + r : 0) * row_stride + col;
        cp_async_16(dst + r * STRIDE + col, from, valid);
    }
}

// One block: BM = 64 queries of one (batch, head); grid (CeilDiv(queries, 64), heads, batch), 128 threads,
// dynamic shared memory (BM + 4·BN)·(D + 8)·2 bytes: the Q tile and two K and two V tiles (double buffered:
// tile j+1 is copied while tile j is used). Each warp owns 16 query rows; S = Q Kᵀ (16 × 64 per warp) and
// O (16 × D) stay in registers, and P = exp(S − m) is fed to the P·V product straight from the S
// accumulators (the m16n8 float32 accumulator layout of two n-tiles is the m16k16 A-operand layout).
// Softmax runs in base 2 with log2(e) folded into the scale; the division by the row sum is deferred to
// the end (FlashAttention-2). With a window w > 0 the steps start at the tile holding key p_first − w + 1 (p_first
// the position of the block's first row), and the tiles reaching below p_last − w + 1 are masked per row too.
template <int D>
static __device__ void attention_prefill(const bf16_t* __restrict__ q, const bf16_t* __restrict__ k,
                                         const bf16_t* __restrict__ v, bf16_t* __restrict__ o, int queries,
                                         int key_count, int heads, int kv_heads, int query_start, int window, float scale)
{
    using namespace prefill;
    constexpr int STRIDE = D + 8;
    constexpr int KD = D / 16; // k-steps of Q Kᵀ over the head dimension
    constexpr int ND = D / 8;  // n-tiles of O over the head dimension
    constexpr int NK = BN / 8; // n-tiles of S over the keys of a step

    extern __shared__ __align__(16) unsigned char shared_bytes[];
    bf16_t* q_s = reinterpret_cast<bf16_t*>(shared_bytes); // BM × STRIDE
    bf16_t* k_s = q_s + BM * STRIDE;                        // 2 × BN × STRIDE
    bf16_t* v_s = k_s + 2 * BN * STRIDE;                    // 2 × BN × STRIDE

    // Causal work grows with the query tile: the longest tiles start first.
    const int tile = (int)gridDim.x - 1 - (int)blockIdx.x;
    const int head = blockIdx.y, batch = blockIdx.z;
    const int kv_head = head / (heads / kv_heads);
    const int m0 = tile * BM;
    const size_t q_stride = (size_t)heads * D, kv_stride = (size_t)kv_heads * D;
    const bf16_t* q_base = q + (size_t)batch * queries * q_stride + (size_t)head * D;
    const bf16_t* k_base = k + (size_t)batch * key_count * kv_stride + (size_t)kv_head * D;
    const bf16_t* v_base = v + (size_t)batch * key_count * kv_stride + (size_t)kv_head * D;
    bf16_t* o_base = o + (size_t)batch * queries * q_stride + (size_t)head * D;

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3; // mma fragment coordinates: row group, thread in group
    const int last_query = min(m0 + BM, queries) - 1;
    const int key_end = min(key_count, query_start + last_query + 1); // keys any row of this tile sees
    const int steps = ceil_div(key_end, BN);
    // The first key any row of the tile sees (window), and below which the last row's window starts.
    const int key_begin = window > 0 ? max(0, query_start + m0 - window + 1) : 0;
    const int window_floor = window > 0 ? query_start + last_query - window + 1 : 0;
    const int first_step = min(key_begin / BN, steps - 1);

    load_tile_async<D, BM>(q_s, q_base, q_stride, m0, queries);
    load_tile_async<D, BN>(k_s, k_base, kv_stride, first_step * BN, key_end);
    load_tile_async<D, BN>(v_s, v_base, kv_stride, first_step * BN, key_end);
    cp_async_commit();

    unsigned q_frag[KD][4];
    float acc[ND][4];
#pragma unroll
    for (int n = 0; n < ND; n++)
        acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    float row_max[2] = {-HZ_INF, -HZ_INF}; // rows g and g + 8 of this warp's 16, base-2 scaled scores
    float row_sum[2] = {0.0f, 0.0f};       // this thread's share; summed over the 4 threads of a row at the end
    const int row_lo = m0 + warp * 16 + g;  // query index of row g; row g + 8 is row_lo + 8
    const int pos_lo = query_start + row_lo, pos_hi = pos_lo + 8;
    const float scale_log2 = scale * HZ_LOG2E;

    for (int step = first_step; step < steps; step++)
    {
        const int buffer = (step - first_step) & 1;
        if (step + 1 < steps)
        {
            load_tile_async<D, BN>(k_s + (buffer ^ 1) * BN * STRIDE, k_base, kv_stride, (step + 1) * BN, key_end);
            load_tile_async<D, BN>(v_s + (buffer ^ 1) * BN * STRIDE, v_base, kv_stride, (step + 1) * BN, key_end);
        }
        cp_async_commit();  // an empty group on the last step keeps the count uniform
        cp_async_wait<1>(); // everything but the newest group: this step's tiles (and Q) have landed
        __syncthreads();

        if (step == first_step)
        {
#pragma unroll
            for (int kd = 0; kd < KD; kd++)
                ldmatrix_x4(q_frag[kd], q_s + (warp * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * STRIDE + kd * 16 + (lane >> 4) * 8);
        }
        const bf16_t* ks = k_s + buffer * BN * STRIDE;
        const bf16_t* vs = v_s + buffer * BN * STRIDE;

        // S = Q Kᵀ: (16 rows × 64 keys) per warp. B[d][key] = K[key][d], K rows in shared memory are the
        // "col" B layout; one ldmatrix.x4 gives the B fragments of two key n-tiles.
        float s[NK][4];
#pragma unroll
        for (int n = 0; n < NK; n++)
            s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
        for (int kd = 0; kd < KD; kd++)
        {
#pragma unroll
            for (int np = 0; np < NK / 2; np++)
            {
                unsigned b[4];
                ldmatrix_x4(b, ks + (np * 16 + (lane >> 4) * 8 + (lane & 7)) * STRIDE + kd * 16 + ((lane >> 3) & 1) * 8);
                mma_bf16_16816(s[2 * np], q_frag[kd], b[0], b[1]);
                mma_bf16_16816(s[2 * np + 1], q_frag[kd], b[2], b[3]);
            }
        }

        // Scale into base 2; mask keys after a row's position (and past the end) on the tiles that need it.
        const int n0 = step * BN;
        const bool masked = n0 + BN - 1 > query_start + m0 || n0 + BN > key_count || n0 < window_floor;
#pragma unroll
        for (int n = 0; n < NK; n++)
        {
#pragma unroll
            for (int i = 0; i < 4; i++)
            {
                float x = s[n][i] * scale_log2;
                if (masked)
                {
                    const int key = n0 + n * 8 + 2 * t + (i & 1);
                    const int pos = i < 2 ? pos_lo : pos_hi;
                    if (key > pos || key >= key_count || (window > 0 && key <= pos - window))
                        x = -HZ_INF;
                }
                s[n][i] = x;
            }
        }

        // Online softmax (Dao et al. 2022, Algorithm 1, lines 10-12): new row maxima over the 4 threads of a row,
        // rescale what was accumulated by 2^(m_old − m_new), p = 2^(s − m_new).
        float tile_max[2] = {row_max[0], row_max[1]};
#pragma unroll
        for (int n = 0; n < NK; n++)
        {
            tile_max[0] = fmaxf(tile_max[0], fmaxf(s[n][0], s[n][1]));
            tile_max[1] = fmaxf(tile_max[1], fmaxf(s[n][2], s[n][3]));
        }
        float base[2], alpha[2];
#pragma unroll
        for (int r = 0; r < 2; r++)
        {
            tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
            tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
            base[r] = tile_max[r] == -HZ_INF ? 0.0f : tile_max[r]; // a row with no visible key yet: p = 0, no NaN
            alpha[r] = exp2f(row_max[r] - base[r]);
            row_max[r] = tile_max[r];
            row_sum[r] *= alpha[r];
        }
#pragma unroll
        for (int n = 0; n < NK; n++)
        {
            s[n][0] = exp2f(s[n][0] - base[0]);
            s[n][1] = exp2f(s[n][1] - base[0]);
            s[n][2] = exp2f(s[n][2] - base[1]);
            s[n][3] = exp2f(s[n][3] - base[1]);
            row_sum[0] += s[n][0] + s[n][1];
            row_sum[1] += s[n][2] + s[n][3];
        }
#pragma unroll
        for (int n = 0; n < ND; n++)
        {
            acc[n][0] *= alpha[0];
            acc[n][1] *= alpha[0];
            acc[n][2] *= alpha[1];
            acc[n][3] *= alpha[1];
        }

        // O += P V: P (16 × 64, bf16) from the S accumulators, V (64 × D) via ldmatrix.trans (B[key][d] = V[key][d]
        // needs pairs adjacent in key, V rows are adjacent in d).
#pragma unroll
        for (int kt = 0; kt < BN / 16; kt++)
        {
            unsigned a[4];
            a[0] = pack_bf16x2(s[2 * kt][0], s[2 * kt][1]);
            a[1] = pack_bf16x2(s[2 * kt][2], s[2 * kt][3]);
            a[2] = pack_bf16x2(s[2 * kt + 1][0], s[2 * kt + 1][1]);
            a[3] = pack_bf16x2(s[2 * kt + 1][2], s[2 * kt + 1][3]);
#pragma unroll
            for (int dp = 0; dp < D / 16; dp++)
            {
                unsigned b[4];
                ldmatrix_x4_trans(b, vs + (kt * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * STRIDE + dp * 16 + (lane >> 4) * 8);
                mma_bf16_16816(acc[2 * dp], a, b[0], b[1]);
                mma_bf16_16816(acc[2 * dp + 1], a, b[2], b[3]);
            }
        }
        __syncthreads(); // every warp is done with this buffer before the next step's copy overwrites it
    }
    cp_async_wait<0>();

    // o = O / l, rows g and g + 8; 2 bf16 (4 bytes) per store.
    float inverse[2];
#pragma unroll
    for (int r = 0; r < 2; r++)
    {
        row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 1);
        row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 2);
        inverse[r] = row_sum[r] > 0.0f ? 1.0f / row_sum[r] : 0.0f;
    }
    const int row_hi = row_lo + 8;
#pragma unroll
    for (int n = 0; n < ND; n++)
    {
        const int col = n * 8 + 2 * t;
        if (row_lo < queries)
            *reinterpret_cast<unsigned*>(o_base + (size_t)row_lo * q_stride + col) = pack_bf16x2(acc[n][0] * inverse[0], acc[n][1] * inverse[0]);
        if (row_hi < queries)
            *reinterpret_cast<unsigned*>(o_base + (size_t)row_hi * q_stride + col) = pack_bf16x2(acc[n][2] * inverse[1], acc[n][3] * inverse[1]);
    }
}

extern "C" __global__ void __launch_bounds__(128) attention_prefill_d64_bf16(const bf16_t* q, const bf16_t* k, const bf16_t* v, bf16_t* o,
                                                                            int queries, int key_count, int heads, int kv_heads,
                                                                            int query_start, int window, float scale)
{
    attention_prefill<64>(q, k, v, o, queries, key_count, heads, kv_heads, query_start, window, scale);
}

extern "C" __global__ void __launch_bounds__(128) attention_prefill_d128_bf16(const bf16_t* q, const bf16_t* k, const bf16_t* v, bf16_t* o,
                                                                             int queries, int key_count, int heads, int kv_heads,
                                                                             int query_start, int window, float scale)
{
    attention_prefill<128>(q, k, v, o, queries, key_count, heads, kv_heads, query_start, window, scale);
}

// ================================================================ decode (split-KV)

namespace decode
{
constexpr int THREADS = 128; // 4 warps
constexpr int ROWS = 16;     // query heads of one key/value head a block serves: the 16 rows of the mma tiles
constexpr int BN = 64;       // keys per pipeline stage: 16 per warp
constexpr int STAGES = 3;    // K and V tiles in shared memory: two in flight while the third is used
static_assert(THREADS == prefill::THREADS, "load_tile_async spreads a tile over prefill::THREADS threads");
}

// One query per sequence (Flash-Decoding, Dao et al. 2023): q is (batch, heads, D); the cache k, v is
// (batch, capacity, kv_heads, D) with the first key_count rows valid. Grid (splits, kv_heads · CeilDiv(group, 16),
// batch), 128 threads, dynamic shared memory (16 + 2·STAGES·64)·(D + 8)·2 bytes (CudaOps.DecodeSharedBytes).
// A block takes keys [split · keys_per_split, +keys_per_split) of one key/value head and serves up to 16 of its
// query heads at once: they are the rows of a 16-row Q tile (rows past the group are zero), so each key and value
// row is read from memory once for the whole group. The keys stream through a STAGES-deep cp.async pipeline of
// 64-key K and V tiles (16-byte copies, zero-filled past the split's end), so two tiles per block are in flight
// while the third is used, whatever the registers; each warp takes 16 keys of every tile and runs prefill's
// tensor-core step on them: S = Q Kᵀ (16 × 16, mma.sync m16n8k16, float32 accumulation), online softmax in base 2,
// O += P V with P rounded to bf16 (FlashAttention-2). The 4 warps' states (m, l, O over their keys) are merged
// through shared memory at the end. Writes, per (batch, head, split): the normalised partial output o_part
// (D floats) and lse_part = m + log2 l (base 2; −inf for a split with no keys).
template <int D>
static __device__ void attention_decode(const bf16_t* __restrict__ q, const bf16_t* __restrict__ k,
                                        const bf16_t* __restrict__ v, float* __restrict__ o_part,
                                        float* __restrict__ lse_part, int heads, int kv_heads, int key_count,
                                        int capacity, int keys_per_split, float scale)
{
    using namespace decode;
    constexpr int STRIDE = D + 8;     // shared-memory row: 16-byte pad, conflict-free ldmatrix (as prefill)
    constexpr int TILE = BN * STRIDE; // elements of one K or V tile
    constexpr int KD = D / 16;        // k-steps of Q Kᵀ over the head dimension
    constexpr int ND = D / 8;         // n-tiles of O over the head dimension
    constexpr int WARPS = THREADS / 32;

    extern __shared__ __align__(16) unsigned char shared_bytes[];
    bf16_t* q_s = reinterpret_cast<bf16_t*>(shared_bytes); // ROWS × STRIDE
    bf16_t* kv_s = q_s + ROWS * STRIDE;                     // STAGES × (K tile, V tile)

    const int group_size = heads / kv_heads;
    const int chunks = ceil_div(group_size, ROWS);
    const int split = blockIdx.x, splits = gridDim.x;
    const int kv_head = blockIdx.y / chunks, chunk = blockIdx.y % chunks;
    const int batch = blockIdx.z;
    const int head0 = kv_head * group_size + chunk * ROWS;
    const int served = min(ROWS, group_size - chunk * ROWS);

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3; // mma fragment coordinates: row group, thread in group

    const int k_begin = split * keys_per_split;
    const int k_end = min(key_count, k_begin + keys_per_split);
    const int tiles = k_end > k_begin ? ceil_div(k_end - k_begin, BN) : 0;
    const size_t row_stride = (size_t)kv_heads * D;
    const bf16_t* k_base = k + (size_t)batch * capacity * row_stride + (size_t)kv_head * D;
    const bf16_t* v_base = v + (size_t)batch * capacity * row_stride + (size_t)kv_head * D;

    // Prologue: the Q tile and the first STAGES − 1 K/V tiles, one commit group per tile (Q rides with tile 0);
    // a group is committed even when empty, so that the count stays uniform.
    load_tile_async<D, ROWS>(q_s, q + ((size_t)batch * heads + head0) * D, D, 0, served);
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++)
    {
        if (s < tiles)
        {
            load_tile_async<D, BN>(kv_s + (2 * s) * TILE, k_base, row_stride, k_begin + s * BN, k_end);
            load_tile_async<D, BN>(kv_s + (2 * s + 1) * TILE, v_base, row_stride, k_begin + s * BN, k_end);
        }
        cp_async_commit();
    }

    unsigned q_frag[KD][4];
    float acc[ND][4];
#pragma unroll
    for (int n = 0; n < ND; n++)
        acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    float row_max[2] = {-HZ_INF, -HZ_INF}; // rows g and g + 8 (query heads head0 + g, head0 + g + 8), base 2
    float row_sum[2] = {0.0f, 0.0f};       // this thread's share; summed over the 4 threads of a row at the end
    const float scale_log2 = scale * HZ_LOG2E;

    for (int tile = 0; tile < tiles; tile++)
    {
        // Groups committed so far: STAGES − 1 + tile; all but the newest STAGES − 2 done = tile `tile` has landed.
        cp_async_wait<STAGES - 2>();
        __syncthreads(); // ... for every thread, and every warp is done with the buffer of tile − 1, refilled now
        const int next = tile + STAGES - 1;
        if (next < tiles)
        {
            const int buffer = next % STAGES;
            load_tile_async<D, BN>(kv_s + (2 * buffer) * TILE, k_base, row_stride, k_begin + next * BN, k_end);
            load_tile_async<D, BN>(kv_s + (2 * buffer + 1) * TILE, v_base, row_stride, k_begin + next * BN, k_end);
        }
        cp_async_commit();

        if (tile == 0)
        {
#pragma unroll
            for (int kd = 0; kd < KD; kd++)
                ldmatrix_x4(q_frag[kd], q_s + (((lane >> 3) & 1) * 8 + (lane & 7)) * STRIDE + kd * 16 + (lane >> 4) * 8);
        }
        const bf16_t* ks = kv_s + (2 * (tile % STAGES)) * TILE + warp * 16 * STRIDE; // this warp's 16 keys
        const bf16_t* vs = ks + TILE;

        // S = Q Kᵀ: 16 rows × this warp's 16 keys (two n-tiles); one ldmatrix.x4 gives the B fragments of both.
        float s[2][4];
#pragma unroll
        for (int n = 0; n < 2; n++)
            s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
        for (int kd = 0; kd < KD; kd++)
        {
            unsigned b[4];
            ldmatrix_x4(b, ks + ((lane >> 4) * 8 + (lane & 7)) * STRIDE + kd * 16 + ((lane >> 3) & 1) * 8);
            mma_bf16_16816(s[0], q_frag[kd], b[0], b[1]);
            mma_bf16_16816(s[1], q_frag[kd], b[2], b[3]);
        }

        // Scale into base 2; on the split's last tile, mask the keys past its end (zero-filled rows).
        const int key0 = k_begin + tile * BN + warp * 16;
        const bool masked = k_begin + (tile + 1) * BN > k_end;
#pragma unroll
        for (int n = 0; n < 2; n++)
        {
#pragma unroll
            for (int i = 0; i < 4; i++)
            {
                float x = s[n][i] * scale_log2;
                if (masked && key0 + n * 8 + 2 * t + (i & 1) >= k_end)
                    x = -HZ_INF;
                s[n][i] = x;
            }
        }

        // Online softmax (as prefill): row maxima over the 4 threads of a row, rescale by 2^(m_old − m_new).
        float tile_max[2] = {row_max[0], row_max[1]};
#pragma unroll
        for (int n = 0; n < 2; n++)
        {
            tile_max[0] = fmaxf(tile_max[0], fmaxf(s[n][0], s[n][1]));
            tile_max[1] = fmaxf(tile_max[1], fmaxf(s[n][2], s[n][3]));
        }
        float base[2], alpha[2];
#pragma unroll
        for (int r = 0; r < 2; r++)
        {
            tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
            tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
            base[r] = tile_max[r] == -HZ_INF ? 0.0f : tile_max[r]; // no visible key yet: p = 0, no NaN
            alpha[r] = exp2f(row_max[r] - base[r]);
            row_max[r] = tile_max[r];
            row_sum[r] *= alpha[r];
        }
#pragma unroll
        for (int n = 0; n < 2; n++)
        {
            s[n][0] = exp2f(s[n][0] - base[0]);
            s[n][1] = exp2f(s[n][1] - base[0]);
            s[n][2] = exp2f(s[n][2] - base[1]);
            s[n][3] = exp2f(s[n][3] - base[1]);
            row_sum[0] += s[n][0] + s[n][1];
            row_sum[1] += s[n][2] + s[n][3];
        }
#pragma unroll
        for (int n = 0; n < ND; n++)
        {
            acc[n][0] *= alpha[0];
            acc[n][1] *= alpha[0];
            acc[n][2] *= alpha[1];
            acc[n][3] *= alpha[1];
        }

        // O += P V: P (16 × 16 keys, bf16) from the S accumulators, V via ldmatrix.trans.
        unsigned a[4];
        a[0] = pack_bf16x2(s[0][0], s[0][1]);
        a[1] = pack_bf16x2(s[0][2], s[0][3]);
        a[2] = pack_bf16x2(s[1][0], s[1][1]);
        a[3] = pack_bf16x2(s[1][2], s[1][3]);
#pragma unroll
        for (int dp = 0; dp < D / 16; dp++)
        {
            unsigned b[4];
            ldmatrix_x4_trans(b, vs + (((lane >> 3) & 1) * 8 + (lane & 7)) * STRIDE + dp * 16 + (lane >> 4) * 8);
            mma_bf16_16816(acc[2 * dp], a, b[0], b[1]);
            mma_bf16_16816(acc[2 * dp + 1], a, b[2], b[3]);
        }
    }
    cp_async_wait<0>();
    __syncthreads(); // the tiles are free: the merge below reuses their shared memory

    // Merge the warps: M = max m_w, L = Σ l_w 2^(m_w − M), O = Σ O_w 2^(m_w − M) / L, per query head.
    float* m_s = reinterpret_cast<float*>(kv_s); // WARPS × ROWS
    float* l_s = m_s + WARPS * ROWS;             // WARPS × ROWS
    float* acc_s = l_s + WARPS * ROWS;           // WARPS × ROWS × D (rows < served)
#pragma unroll
    for (int r = 0; r < 2; r++)
    {
        row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 1);
        row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 2);
    }
    if (t == 0)
    {
        m_s[warp * ROWS + g] = row_max[0];
        m_s[warp * ROWS + g + 8] = row_max[1];
        l_s[warp * ROWS + g] = row_sum[0];
        l_s[warp * ROWS + g + 8] = row_sum[1];
    }
#pragma unroll
    for (int n = 0; n < ND; n++)
    {
        const int col = n * 8 + 2 * t;
        if (g < served)
        {
            acc_s[(warp * ROWS + g) * D + col] = acc[n][0];
            acc_s[(warp * ROWS + g) * D + col + 1] = acc[n][1];
        }
        if (g + 8 < served)
        {
            acc_s[(warp * ROWS + g + 8) * D + col] = acc[n][2];
            acc_s[(warp * ROWS + g + 8) * D + col + 1] = acc[n][3];
        }
    }
    __syncthreads();
    for (int index = threadIdx.x; index < served * D; index += THREADS)
    {
        const int h = index / D, d = index % D;
        float mx = -HZ_INF;
#pragma unroll
        for (int w = 0; w < WARPS; w++)
            mx = fmaxf(mx, m_s[w * ROWS + h]);
        float out = 0.0f, lse = -HZ_INF;
        if (mx != -HZ_INF)
        {
            float sum = 0.0f, num = 0.0f;
#pragma unroll
            for (int w = 0; w < WARPS; w++)
            {
                const float weight = exp2f(m_s[w * ROWS + h] - mx);
                sum += l_s[w * ROWS + h] * weight;
                num += acc_s[(w * ROWS + h) * D + d] * weight;
            }
            out = num / sum;
            lse = mx + log2f(sum);
        }
        const size_t row = (size_t)batch * heads + head0 + h;
        o_part[(row * splits + split) * D + d] = out;
        if (d == 0)
            lse_part[row * splits + split] = lse;
    }
}

extern "C" __global__ void __launch_bounds__(128) attention_decode_d64_bf16(const bf16_t* q, const bf16_t* k, const bf16_t* v, float* o_part,
                                                                           float* lse_part, int heads, int kv_heads, int key_count,
                                                                           int capacity, int keys_per_split, float scale)
{
    attention_decode<64>(q, k, v, o_part, lse_part, heads, kv_heads, key_count, capacity, keys_per_split, scale);
}

extern "C" __global__ void __launch_bounds__(128) attention_decode_d128_bf16(const bf16_t* q, const bf16_t* k, const bf16_t* v, float* o_part,
                                                                            float* lse_part, int heads, int kv_heads, int key_count,
                                                                            int capacity, int keys_per_split, float scale)
{
    attention_decode<128>(q, k, v, o_part, lse_part, heads, kv_heads, key_count, capacity, keys_per_split, scale);
}

// Merges the splits of attention_decode (Dao et al. 2023, Flash-Decoding): for each of the rows = batch·heads
// outputs, o = Σ_s w_s o_part[s] / Σ_s w_s with w_s = 2^(lse_s − max_s lse_s). o_part is (rows, splits, head_dim)
// float32, lse_part (rows, splits), o (rows, head_dim) bf16. Grid (rows), 256 threads (at most); head_dim a
// multiple of 4, at most 4·blockDim. Each thread sums a float4 of columns over every (blockDim / (head_dim/4))-th
// split, so the splits' loads are spread over the block; the slices are added up through shared memory.
extern "C" __global__ void __launch_bounds__(256) attention_decode_combine_bf16(const float* __restrict__ o_part, const float* __restrict__ lse_part,
                                                                               bf16_t* __restrict__ o, int rows, int splits, int head_dim)
{
    __shared__ float scratch[32];
    __shared__ float4 num_s[256];
    __shared__ float den_s[256];
    const int row = blockIdx.x;
    if (row >= rows)
        return; // the whole block
    const float* lse = lse_part + (size_t)row * splits;
    const float* part = o_part + (size_t)row * splits * head_dim;
    float mx = -HZ_INF;
    for (int s = threadIdx.x; s < splits; s += blockDim.x)
        mx = fmaxf(mx, lse[s]);
    mx = block_max(mx, scratch);

    const int quads = head_dim >> 2;
    const int slices = blockDim.x / quads;
    const int quad = threadIdx.x % quads, slice = threadIdx.x / quads;
    float4 num = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float den = 0.0f;
    if (slice < slices)
    {
#pragma unroll 4
        for (int s = slice; s < splits; s += slices)
        {
            const float l = lse[s];
            const float w = l == -HZ_INF ? 0.0f : exp2f(l - mx);
            const float4 p = *reinterpret_cast<const float4*>(part + (size_t)s * head_dim + 4 * quad);
            num.x += w * p.x;
            num.y += w * p.y;
            num.z += w * p.z;
            num.w += w * p.w;
            den += w;
        }
    }
    num_s[threadIdx.x] = num;
    den_s[threadIdx.x] = den;
    __syncthreads();
    if (threadIdx.x < quads)
    {
        for (int sl = 1; sl < slices; sl++)
        {
            const float4 p = num_s[sl * quads + threadIdx.x];
            num.x += p.x;
            num.y += p.y;
            num.z += p.z;
            num.w += p.w;
            den += den_s[sl * quads + threadIdx.x];
        }
        const float inverse = 1.0f / den;
        *reinterpret_cast<uint2*>(o + (size_t)row * head_dim + 4 * quad) =
            make_uint2(pack_bf16x2(num.x * inverse, num.y * inverse), pack_bf16x2(num.z * inverse, num.w * inverse));
    }
}

// ================================================================ naive reference (tests)

// The flash-attention error rule's "same precision" computation, as torch computes attention in bf16:
// s = bf16(bf16(q·k) · scale) (float32 dot, rounded), p = bf16(softmax(s)) (float32 softmax, rounded),
// o = bf16(Σ p v) (float32 sum). Layouts and window as prefill; grid (queries, heads, batch), 128 threads,
// head_dim ≤ 128.
// Every score is recomputed in each of its three passes: slow, simple, for tests only.
extern "C" __global__ void attention_naive_bf16(const bf16_t* __restrict__ q, const bf16_t* __restrict__ k,
                                                const bf16_t* __restrict__ v, bf16_t* __restrict__ o, int queries,
                                                int key_count, int heads, int kv_heads, int head_dim, int query_start,
                                                int window, float scale)
{
    __shared__ float scratch[32];
    __shared__ float q_s[128];
    __shared__ float p_s[128];
    const int r = blockIdx.x, head = blockIdx.y, batch = blockIdx.z;
    const int kv_head = head / (heads / kv_heads);
    const size_t q_stride = (size_t)heads * head_dim, kv_stride = (size_t)kv_heads * head_dim;
    const bf16_t* q_row = q + ((size_t)batch * queries + r) * q_stride + (size_t)head * head_dim;
    const bf16_t* k_base = k + (size_t)batch * key_count * kv_stride + (size_t)kv_head * head_dim;
    const bf16_t* v_base = v + (size_t)batch * key_count * kv_stride + (size_t)kv_head * head_dim;
    const int tid = threadIdx.x;
    if (tid < head_dim)
        q_s[tid] = to_float(q_row[tid]);
    __syncthreads();
    const int visible = min(key_count, query_start + r + 1);
    const int first = window > 0 ? max(0, query_start + r - window + 1) : 0;

    float mx = -HZ_INF;
    for (int j = first + tid; j < visible; j += blockDim.x)
    {
        float dot = 0.0f;
        for (int d = 0; d < head_dim; d++)
            dot += q_s[d] * to_float(k_base[(size_t)j * kv_stride + d]);
        mx = fmaxf(mx, round_bf16(round_bf16(dot) * scale));
    }
    mx = block_max(mx, scratch);
    float sum = 0.0f;
    for (int j = first + tid; j < visible; j += blockDim.x)
    {
        float dot = 0.0f;
        for (int d = 0; d < head_dim; d++)
            dot += q_s[d] * to_float(k_base[(size_t)j * kv_stride + d]);
        sum += expf(round_bf16(round_bf16(dot) * scale) - mx);
    }
    sum = block_sum(sum, scratch);
    float out = 0.0f;
    for (int j0 = first; j0 < visible; j0 += blockDim.x)
    {
        const int j = j0 + tid;
        float p = 0.0f;
        if (j < visible)
        {
            float dot = 0.0f;
            for (int d = 0; d < head_dim; d++)
                dot += q_s[d] * to_float(k_base[(size_t)j * kv_stride + d]);
            p = round_bf16(expf(round_bf16(round_bf16(dot) * scale) - mx) / sum);
        }
        __syncthreads(); // the previous chunk's p_s has been used
        p_s[tid] = p;
        __syncthreads();
        if (tid < head_dim)
        {
            const int count = min((int)blockDim.x, visible - j0);
            for (int jj = 0; jj < count; jj++)
                out += p_s[jj] * to_float(v_base[(size_t)(j0 + jj) * kv_stride + tid]);
        }
    }
    if (tid < head_dim)
        o[((size_t)batch * queries + r) * q_stride + (size_t)head * head_dim + tid] = float_to_bf16(out);
}
