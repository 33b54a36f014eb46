// Causal softmax attention on bf16 and fp16 tensors: o = softmax(q kᵀ · scale + causal mask) v per head (Vaswani
// et al. 2017, eq. 1), grouped key/value heads (Ainslie et al. 2023; one key/value head is multi-query attention).
//
// attention_prefill_d{64,128}_{bf16,f16}  many queries: FlashAttention-2 (Dao 2023, Algorithm 1) on tensor cores
//                                   (mma.sync m16n8k16, bf16/fp16 operands, float32 accumulation), online softmax;
//                                   with window > 0, sliding-window attention (Beltagy et al. 2020; Jiang et al.
//                                   2023): key tiles wholly outside every row's window are skipped.
// attention_decode_d{64,128}_{bf16,f16}   one query per sequence against a long cache: split over the keys
// attention_decode_combine_{bf16,f16}     (Flash-Decoding), then the splits merged by their log-sum-exp.
// attention_naive_{bf16,f16}        the same function computed plainly in the element type (scores and
//                                   probabilities rounded to it, as torch does in bf16/fp16): the test reference of
//                                   the flash-attention error rule, not a production kernel.
//
// Layouts (token-major, as on the CPU: src/Runtime/Cpu/FlashAttention.cs):
//   q, o   (batch, queries, heads, head_dim)        k, v   (batch, key_count, kv_heads, head_dim)
// Query r of a sequence sits at absolute position p = query_start + r and sees keys 0 … p, or, with a window
// w > 0 (prefill and the naive reference), the keys p − w < j ≤ p (docs/ops/sliding_window_attention.md, without
// global positions);
// query head h reads key/value head h / (heads / kv_heads). Launchers: src/Runtime/Cuda/CudaOps.cs.
// Every kernel body is a template over the element type (HALF: fp16, else bf16), both carried as raw 16 bits.
#include "common.cuh"

typedef unsigned short half_t; // IEEE fp16, raw bits (System.Half on the C# side)

#define HZ_LOG2E 1.4426950408889634f

// 2^x on the special-function unit, denormal results flushed to zero (exp2f adds a denormal fix-up per call).
static __device__ __forceinline__ float fast_exp2(float x)
{
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
}

// The element type's conversions and its tensor-core product.
template <bool HALF> struct element;

template <> struct element<false> // bf16
{
    static __device__ __forceinline__ float widen(unsigned short v) { return to_float((bf16_t)v); }
    static __device__ __forceinline__ unsigned short narrow(float v) { return float_to_bf16(v); }
    static __device__ __forceinline__ unsigned pack(float lo, float hi) { return pack_bf16x2(lo, hi); }
    static __device__ __forceinline__ void mma(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1)
    {
        mma_bf16_16816(d, a, b0, b1);
    }
};

template <> struct element<true> // fp16
{
    static __device__ __forceinline__ float widen(unsigned short v)
    {
        float r;
        asm("cvt.f32.f16 %0, %1;" : "=f"(r) : "h"(v));
        return r;
    }
    static __device__ __forceinline__ unsigned short narrow(float v)
    {
        unsigned short r;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(v));
        return r;
    }
    static __device__ __forceinline__ unsigned pack(float lo, float hi)
    {
        unsigned r;
        asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
        return r;
    }
    // As mma_bf16_16816 (common.cuh), fp16 operands.
    static __device__ __forceinline__ void mma(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1)
    {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                     "{%0, %1, %2, %3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
};

template <bool HALF> static __device__ __forceinline__ float round_to_element(float v)
{
    return element<HALF>::widen(element<HALF>::narrow(v));
}

// ================================================================ prefill

namespace prefill
{
constexpr int WARPS = 4;
constexpr int THREADS = 32 * WARPS;
constexpr int BN = 64; // keys per step of the online softmax (CudaOps.PrefillKeyTile)
// m16 tiles (16 query rows each) per warp: 2, so a block takes BM = 128 queries (CudaOps.PrefillQueryTile) and every
// K/V fragment read from shared memory feeds two mma rows (half the shared-memory traffic per product of one tile).
constexpr int MT = 2;
}

// Copies rows [row0, row0 + ROWS) of a (rows, D) 16-bit matrix with `row_stride` elements between rows into
// shared memory rows of D + 8 elements (the 16-byte pad staggers the rows over the banks, so ldmatrix
// reads conflict-free). Rows at or past `row_limit` are zero-filled. Asynchronous: cp_async_commit/wait.
template <int D, int ROWS>
static __device__ __forceinline__ void load_tile_async(unsigned short* dst, const unsigned short* src, size_t row_stride, int row0,
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
        const unsigned short* from = src + (size_t)(valid ? row0 + r : 0) * row_stride + col;
        cp_async_16(dst + r * STRIDE + col, from, valid);
    }
}

// load_tile_async for the K and V tiles of prefill's loop, with the per-thread part of the addresses computed once
// (row r0 = tid / (D/8) of every group of THREADS/(D/8) rows, column (tid % (D/8))·8): each step costs one 64-bit
// multiply-add per tile and a running pointer, and keeps few registers live across the loop.
template <int D, int ROWS>
struct tile_stream
{
    static constexpr int CHUNKS = D / 8, STRIDE = D + 8, RSTEP = prefill::THREADS / CHUNKS, COPIES = ROWS / RSTEP;
    static_assert(prefill::THREADS % CHUNKS == 0 && ROWS % RSTEP == 0, "whole rows per pass");
    const unsigned short* src; // this thread's piece of row 0 (always mapped: the address of invalid copies too)
    unsigned dst;              // its shared-memory byte offset in a tile
    int r0;
    __device__ __forceinline__ tile_stream(const unsigned short* base, size_t row_stride)
    {
        r0 = threadIdx.x / CHUNKS;
        const int col = (threadIdx.x % CHUNKS) * 8;
        src = base + col;
        dst = (unsigned)(r0 * STRIDE + col) * 2u;
    }
    // Rows [row0, row0 + ROWS) into the tile at `tile` (shared), rows at or past row_limit zero-filled.
    __device__ __forceinline__ void load(unsigned short* tile, size_t row_stride, int row0, int row_limit) const
    {
        const unsigned short* from = src + (size_t)(row0 + r0) * row_stride;
        const unsigned to = shared_address(tile) + dst;
        const size_t step = (size_t)RSTEP * row_stride;
        const int left = row_limit - row0 - r0; // pieces i with i·RSTEP < left are valid
#pragma unroll
        for (int i = 0; i < COPIES; i++)
        {
            const bool valid = i * RSTEP < left;
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(to + i * RSTEP * STRIDE * 2), "l"(valid ? from : src),
                         "r"(valid ? 16 : 0)
                         : "memory");
            from += step;
        }
    }
};

// One block: BM = 128 queries of one (batch, head); a 1-D grid of CeilDiv(queries, 128) · heads · batch blocks,
// 128 threads, dynamic shared memory (BM + 4·BN)·(D + 8)·2 bytes: the Q tile and two K and two V tiles (double
// buffered: tile j+1 is copied while tile j is used; one barrier per step). Each warp owns 32 query rows (two m16 tiles); S = Q Kᵀ
// (32 × 64 per warp) and O (32 × D) stay in registers, and P = 2^(S·c − m) is fed to the P·V product straight from
// the S accumulators (the m16n8 float32 accumulator layout of two n-tiles is the m16k16 A-operand layout). Q
// fragments stay in registers for D = 64 and are re-read from shared memory on every step for D = 128 (64 more
// registers would not fit beside O and S).
// Softmax runs in base 2: c = scale·log2(e) is folded into the exponent's FMA, the row maxima are kept scaled; the
// division by the row sum is deferred to the end (FlashAttention-2), and O is rescaled only when some row maximum
// of the warp moved. A warp skips the steps whose keys are all after its rows (causal) or all before every row's
// window. With a window w > 0 the steps start at the tile holding key p_first − w + 1 (p_first the position of the
// block's first row), and the tiles reaching below p_last − w + 1 are masked per row too.
// Block order: blocks come in groups of `head_group` (batch, head) pairs, and inside a group the query tiles run
// longest first (causal work grows with the tile), every head of the group at that tile before the next shorter
// tile: the long tiles start early, the short ones fill the tail, and a group's K and V stay in the L2.
template <int D, bool HALF, int MT = prefill::MT>
static __device__ void attention_prefill(const unsigned short* __restrict__ q, const unsigned short* __restrict__ k,
                                         const unsigned short* __restrict__ v, unsigned short* __restrict__ o, int queries,
                                         int key_count, int heads, int kv_heads, int query_start, int window, int head_group,
                                         float scale)
{
    using prefill::BN;
    using prefill::THREADS;
    using prefill::WARPS;
    using E = element<HALF>;
    constexpr int BM = 16 * MT * WARPS;
    constexpr int STRIDE = D + 8;
    constexpr int KD = D / 16;                              // k-steps of Q Kᵀ over the head dimension
    constexpr int ND = D / 8;                               // n-tiles of O over the head dimension
    constexpr int NK = BN / 8;                              // n-tiles of S over the keys of a step
    constexpr bool Q_IN_REGISTERS = MT * KD * 4 <= 32;      // D = 64 (32 registers); not D = 128 with MT = 2

    extern __shared__ __align__(16) unsigned char shared_bytes[];
    unsigned short* q_s = reinterpret_cast<unsigned short*>(shared_bytes); // BM × STRIDE
    unsigned short* k_s = q_s + BM * STRIDE;                                // 2 × BN × STRIDE
    unsigned short* v_s = k_s + 2 * BN * STRIDE;                            // 2 × BN × STRIDE

    // Which (tile, head, batch): see "Block order" above.
    const int tiles = ceil_div(queries, BM);
    const int pairs = (int)gridDim.x / tiles; // batch · heads
    const int group = (int)blockIdx.x / (head_group * tiles);
    const int group_first = group * head_group;
    const int group_size = min(head_group, pairs - group_first);
    const int r_in_group = (int)blockIdx.x - group * head_group * tiles;
    const int tile = tiles - 1 - r_in_group / group_size;
    const int pair = group_first + r_in_group % group_size;
    const int head = pair % heads, batch = pair / heads;

    const int kv_head = head / (heads / kv_heads);
    const int m0 = tile * BM;
    const size_t q_stride = (size_t)heads * D, kv_stride = (size_t)kv_heads * D;
    const unsigned short* q_base = q + (size_t)batch * queries * q_stride + (size_t)head * D;
    const unsigned short* k_base = k + (size_t)batch * key_count * kv_stride + (size_t)kv_head * D;
    const unsigned short* v_base = v + (size_t)batch * key_count * kv_stride + (size_t)kv_head * D;
    unsigned short* o_base = o + (size_t)batch * queries * q_stride + (size_t)head * D;

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3; // mma fragment coordinates: row group, thread in group
    const int last_query = min(m0 + BM, queries) - 1;
    const int key_end = min(key_count, query_start + last_query + 1); // keys any row of this tile sees
    const int steps = ceil_div(key_end, BN);
    // The first key any row of the tile sees (window), and below which the last row's window starts.
    const int key_begin = window > 0 ? max(0, query_start + m0 - window + 1) : 0;
    const int window_floor = window > 0 ? query_start + last_query - window + 1 : 0;
    const int first_step = min(key_begin / BN, steps - 1);

    const tile_stream<D, BN> k_stream(k_base, kv_stride), v_stream(v_base, kv_stride);
    load_tile_async<D, BM>(q_s, q_base, q_stride, m0, queries);
    k_stream.load(k_s, kv_stride, first_step * BN, key_end);
    v_stream.load(v_s, kv_stride, first_step * BN, key_end);
    cp_async_commit();

    // This warp's rows: m0 + warp·32 + mt·16 + {g, g + 8}; positions query_start + those.
    const int warp_row0 = m0 + warp * 16 * MT;
    const int warp_pos_first = query_start + warp_row0;
    const int warp_pos_last = warp_pos_first + 16 * MT - 1;

    unsigned q_frag[Q_IN_REGISTERS ? MT : 1][Q_IN_REGISTERS ? KD : 1][4];
    float acc[MT][ND][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int n = 0; n < ND; n++)
            acc[mt][n][0] = acc[mt][n][1] = acc[mt][n][2] = acc[mt][n][3] = 0.0f;
    float row_max[MT][2], row_sum[MT][2]; // rows g and g + 8 of each m-tile; maxima of the scaled (base-2) scores
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
    {
        row_max[mt][0] = row_max[mt][1] = -HZ_INF;
        row_sum[mt][0] = row_sum[mt][1] = 0.0f; // this thread's share; summed over the 4 threads of a row at the end
    }
    const float c = scale * HZ_LOG2E; // scale > 0 (CudaOps checks): the maxima of raw and scaled scores coincide

    for (int step = first_step; step < steps; step++)
    {
        const int buffer = (step - first_step) & 1;
        // One barrier per step: this step's tiles (and Q), the only group in flight, have landed for every thread, and
        // every warp is done with the previous step's buffers, which the next step's copies now refill.
        cp_async_wait<0>();
        __syncthreads();
        if (step + 1 < steps)
        {
            k_stream.load(k_s + (buffer ^ 1) * BN * STRIDE, kv_stride, (step + 1) * BN, key_end);
            v_stream.load(v_s + (buffer ^ 1) * BN * STRIDE, kv_stride, (step + 1) * BN, key_end);
            cp_async_commit();
        }

        if constexpr (Q_IN_REGISTERS)
        {
            if (step == first_step)
            {
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
#pragma unroll
                    for (int kd = 0; kd < KD; kd++)
                        ldmatrix_x4(q_frag[mt][kd], q_s + (warp_row0 - m0 + mt * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * STRIDE + kd * 16 + (lane >> 4) * 8);
            }
        }
        const unsigned short* ks = k_s + buffer * BN * STRIDE;
        const unsigned short* vs = v_s + buffer * BN * STRIDE;
        const int n0 = step * BN;
        // Warp-uniform: every key of the step after each of the warp's rows, or before each row's window.
        const bool idle = n0 > warp_pos_last || warp_row0 >= queries || (window > 0 && n0 + BN - 1 <= warp_pos_first - window);
        if (!idle)
        {
            // S = Q Kᵀ: (32 rows × 64 keys) per warp. B[d][key] = K[key][d], K rows in shared memory are the
            // "col" B layout; one ldmatrix.x4 gives the B fragments of two key n-tiles, used by both m-tiles.
            float s[MT][NK][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int n = 0; n < NK; n++)
                    s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.0f;
#pragma unroll
            for (int kd = 0; kd < KD; kd++)
            {
                unsigned a[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
                {
                    if constexpr (Q_IN_REGISTERS)
                    {
#pragma unroll
                        for (int i = 0; i < 4; i++)
                            a[mt][i] = q_frag[mt][kd][i];
                    }
                    else
                        ldmatrix_x4(a[mt], q_s + (warp_row0 - m0 + mt * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * STRIDE + kd * 16 + (lane >> 4) * 8);
                }
#pragma unroll
                for (int np = 0; np < NK / 2; np++)
                {
                    unsigned b[4];
                    ldmatrix_x4(b, ks + (np * 16 + (lane >> 4) * 8 + (lane & 7)) * STRIDE + kd * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
                    for (int mt = 0; mt < MT; mt++)
                    {
                        E::mma(s[mt][2 * np], a[mt], b[0], b[1]);
                        E::mma(s[mt][2 * np + 1], a[mt], b[2], b[3]);
                    }
                }
            }

            // Mask keys after a row's position, past the end, or before its window, on the steps that need it.
            const bool masked = n0 + BN - 1 > warp_pos_first || n0 + BN > key_count || n0 < window_floor;
            if (masked)
            {
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
#pragma unroll
                    for (int n = 0; n < NK; n++)
#pragma unroll
                        for (int i = 0; i < 4; i++)
                        {
                            const int key = n0 + n * 8 + 2 * t + (i & 1);
                            const int pos = warp_pos_first + mt * 16 + g + (i < 2 ? 0 : 8);
                            if (key > pos || key >= key_count || (window > 0 && key <= pos - window))
                                s[mt][n][i] = -HZ_INF;
                        }
            }

            // Online softmax (Dao et al. 2022, Algorithm 1, lines 10-12): new row maxima over the 4 threads of a
            // row, rescale what was accumulated by 2^(m_old − m_new), p = 2^(s·c − m_new).
            float base[MT][2], alpha[MT][2];
            bool moved = false;
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
            {
                float tile_max[2] = {-HZ_INF, -HZ_INF};
#pragma unroll
                for (int n = 0; n < NK; n++)
                {
                    tile_max[0] = fmaxf(tile_max[0], fmaxf(s[mt][n][0], s[mt][n][1]));
                    tile_max[1] = fmaxf(tile_max[1], fmaxf(s[mt][n][2], s[mt][n][3]));
                }
#pragma unroll
                for (int r = 0; r < 2; r++)
                {
                    tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
                    tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
                    const float m_new = fmaxf(row_max[mt][r], tile_max[r] * c);
                    base[mt][r] = m_new == -HZ_INF ? 0.0f : m_new; // a row with no visible key yet: p = 0, no NaN
                    alpha[mt][r] = fast_exp2(row_max[mt][r] - base[mt][r]);
                    moved |= alpha[mt][r] != 1.0f;
                    row_max[mt][r] = m_new;
                    row_sum[mt][r] *= alpha[mt][r];
                }
#pragma unroll
                for (int n = 0; n < NK; n++)
                {
                    s[mt][n][0] = fast_exp2(fmaf(s[mt][n][0], c, -base[mt][0]));
                    s[mt][n][1] = fast_exp2(fmaf(s[mt][n][1], c, -base[mt][0]));
                    s[mt][n][2] = fast_exp2(fmaf(s[mt][n][2], c, -base[mt][1]));
                    s[mt][n][3] = fast_exp2(fmaf(s[mt][n][3], c, -base[mt][1]));
                    row_sum[mt][0] += s[mt][n][0] + s[mt][n][1];
                    row_sum[mt][1] += s[mt][n][2] + s[mt][n][3];
                }
            }
            if (__any_sync(0xffffffffu, moved)) // warp-uniform: most steps leave every maximum where it was
            {
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
#pragma unroll
                    for (int n = 0; n < ND; n++)
                    {
                        acc[mt][n][0] *= alpha[mt][0];
                        acc[mt][n][1] *= alpha[mt][0];
                        acc[mt][n][2] *= alpha[mt][1];
                        acc[mt][n][3] *= alpha[mt][1];
                    }
            }

            // O += P V: P (32 × 64) from the S accumulators, V (64 × D) via ldmatrix.trans (B[key][d] = V[key][d]
            // needs pairs adjacent in key, V rows are adjacent in d); each V fragment feeds both m-tiles.
#pragma unroll
            for (int kt = 0; kt < BN / 16; kt++)
            {
                unsigned a[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
                {
                    a[mt][0] = E::pack(s[mt][2 * kt][0], s[mt][2 * kt][1]);
                    a[mt][1] = E::pack(s[mt][2 * kt][2], s[mt][2 * kt][3]);
                    a[mt][2] = E::pack(s[mt][2 * kt + 1][0], s[mt][2 * kt + 1][1]);
                    a[mt][3] = E::pack(s[mt][2 * kt + 1][2], s[mt][2 * kt + 1][3]);
                }
#pragma unroll
                for (int dp = 0; dp < D / 16; dp++)
                {
                    unsigned b[4];
                    ldmatrix_x4_trans(b, vs + (kt * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * STRIDE + dp * 16 + (lane >> 4) * 8);
#pragma unroll
                    for (int mt = 0; mt < MT; mt++)
                    {
                        E::mma(acc[mt][2 * dp], a[mt], b[0], b[1]);
                        E::mma(acc[mt][2 * dp + 1], a[mt], b[2], b[3]);
                    }
                }
            }
        }
    }

    // o = O / l, rows g and g + 8 of each m-tile; 2 elements (4 bytes) per store.
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
    {
        float inverse[2];
#pragma unroll
        for (int r = 0; r < 2; r++)
        {
            row_sum[mt][r] += __shfl_xor_sync(0xffffffffu, row_sum[mt][r], 1);
            row_sum[mt][r] += __shfl_xor_sync(0xffffffffu, row_sum[mt][r], 2);
            inverse[r] = row_sum[mt][r] > 0.0f ? 1.0f / row_sum[mt][r] : 0.0f;
        }
        const int row_lo = warp_row0 + mt * 16 + g, row_hi = row_lo + 8;
#pragma unroll
        for (int n = 0; n < ND; n++)
        {
            const int col = n * 8 + 2 * t;
            if (row_lo < queries)
                *reinterpret_cast<unsigned*>(o_base + (size_t)row_lo * q_stride + col) = E::pack(acc[mt][n][0] * inverse[0], acc[mt][n][1] * inverse[0]);
            if (row_hi < queries)
                *reinterpret_cast<unsigned*>(o_base + (size_t)row_hi * q_stride + col) = E::pack(acc[mt][n][2] * inverse[1], acc[mt][n][3] * inverse[1]);
        }
    }
}

// The block count of a launch is CeilDiv(queries, 128) · heads · batch (1-D); head_group in 1 … heads · batch
// (CudaOps.PrefillHeadGroup). 128 threads may use 255 registers each: two blocks per multiprocessor.
extern "C" __global__ void __launch_bounds__(128) attention_prefill_d64_bf16(const bf16_t* q, const bf16_t* k, const bf16_t* v, bf16_t* o,
                                                                               int queries, int key_count, int heads, int kv_heads,
                                                                               int query_start, int window, int head_group, float scale)
{
    attention_prefill<64, false>(q, k, v, o, queries, key_count, heads, kv_heads, query_start, window, head_group, scale);
}

extern "C" __global__ void __launch_bounds__(128) attention_prefill_d128_bf16(const bf16_t* q, const bf16_t* k, const bf16_t* v, bf16_t* o,
                                                                                int queries, int key_count, int heads, int kv_heads,
                                                                                int query_start, int window, int head_group, float scale)
{
    attention_prefill<128, false>(q, k, v, o, queries, key_count, heads, kv_heads, query_start, window, head_group, scale);
}

extern "C" __global__ void __launch_bounds__(128) attention_prefill_d64_f16(const half_t* q, const half_t* k, const half_t* v, half_t* o,
                                                                              int queries, int key_count, int heads, int kv_heads,
                                                                              int query_start, int window, int head_group, float scale)
{
    attention_prefill<64, true>(q, k, v, o, queries, key_count, heads, kv_heads, query_start, window, head_group, scale);
}

extern "C" __global__ void __launch_bounds__(128) attention_prefill_d128_f16(const half_t* q, const half_t* k, const half_t* v, half_t* o,
                                                                               int queries, int key_count, int heads, int kv_heads,
                                                                               int query_start, int window, int head_group, float scale)
{
    attention_prefill<128, true>(q, k, v, o, queries, key_count, heads, kv_heads, query_start, window, head_group, scale);
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
// O += P V with P rounded to the element type (FlashAttention-2). The 4 warps' states (m, l, O over their keys) are merged
// through shared memory at the end. Writes, per (batch, head, split): the normalised partial output o_part
// (D floats) and lse_part = m + log2 l (base 2; −inf for a split with no keys).
template <int D, bool HALF>
static __device__ void attention_decode(const unsigned short* __restrict__ q, const unsigned short* __restrict__ k,
                                        const unsigned short* __restrict__ v, float* __restrict__ o_part,
                                        float* __restrict__ lse_part, int heads, int kv_heads, int key_count,
                                        int capacity, int keys_per_split, float scale)
{
    using namespace decode;
    using E = element<HALF>;
    constexpr int STRIDE = D + 8;     // shared-memory row: 16-byte pad, conflict-free ldmatrix (as prefill)
    constexpr int TILE = BN * STRIDE; // elements of one K or V tile
    constexpr int KD = D / 16;        // k-steps of Q Kᵀ over the head dimension
    constexpr int ND = D / 8;         // n-tiles of O over the head dimension
    constexpr int WARPS = THREADS / 32;

    extern __shared__ __align__(16) unsigned char shared_bytes[];
    unsigned short* q_s = reinterpret_cast<unsigned short*>(shared_bytes); // ROWS × STRIDE
    unsigned short* kv_s = q_s + ROWS * STRIDE;                   // STAGES × (K tile, V tile)

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
    const unsigned short* k_base = k + (size_t)batch * capacity * row_stride + (size_t)kv_head * D;
    const unsigned short* v_base = v + (size_t)batch * capacity * row_stride + (size_t)kv_head * D;

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
        const unsigned short* ks = kv_s + (2 * (tile % STAGES)) * TILE + warp * 16 * STRIDE; // this warp's 16 keys
        const unsigned short* vs = ks + TILE;

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
            E::mma(s[0], q_frag[kd], b[0], b[1]);
            E::mma(s[1], q_frag[kd], b[2], b[3]);
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
            alpha[r] = fast_exp2(row_max[r] - base[r]);
            row_max[r] = tile_max[r];
            row_sum[r] *= alpha[r];
        }
#pragma unroll
        for (int n = 0; n < 2; n++)
        {
            s[n][0] = fast_exp2(s[n][0] - base[0]);
            s[n][1] = fast_exp2(s[n][1] - base[0]);
            s[n][2] = fast_exp2(s[n][2] - base[1]);
            s[n][3] = fast_exp2(s[n][3] - base[1]);
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

        // O += P V: P (16 × 16 keys, bf16/fp16) from the S accumulators, V via ldmatrix.trans.
        unsigned a[4];
        a[0] = E::pack(s[0][0], s[0][1]);
        a[1] = E::pack(s[0][2], s[0][3]);
        a[2] = E::pack(s[1][0], s[1][1]);
        a[3] = E::pack(s[1][2], s[1][3]);
#pragma unroll
        for (int dp = 0; dp < D / 16; dp++)
        {
            unsigned b[4];
            ldmatrix_x4_trans(b, vs + (((lane >> 3) & 1) * 8 + (lane & 7)) * STRIDE + dp * 16 + (lane >> 4) * 8);
            E::mma(acc[2 * dp], a, b[0], b[1]);
            E::mma(acc[2 * dp + 1], a, b[2], b[3]);
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
    attention_decode<64, false>(q, k, v, o_part, lse_part, heads, kv_heads, key_count, capacity, keys_per_split, scale);
}

extern "C" __global__ void __launch_bounds__(128) attention_decode_d128_bf16(const bf16_t* q, const bf16_t* k, const bf16_t* v, float* o_part,
                                                                             float* lse_part, int heads, int kv_heads, int key_count,
                                                                             int capacity, int keys_per_split, float scale)
{
    attention_decode<128, false>(q, k, v, o_part, lse_part, heads, kv_heads, key_count, capacity, keys_per_split, scale);
}

extern "C" __global__ void __launch_bounds__(128) attention_decode_d64_f16(const half_t* q, const half_t* k, const half_t* v, float* o_part,
                                                                           float* lse_part, int heads, int kv_heads, int key_count,
                                                                           int capacity, int keys_per_split, float scale)
{
    attention_decode<64, true>(q, k, v, o_part, lse_part, heads, kv_heads, key_count, capacity, keys_per_split, scale);
}

extern "C" __global__ void __launch_bounds__(128) attention_decode_d128_f16(const half_t* q, const half_t* k, const half_t* v, float* o_part,
                                                                            float* lse_part, int heads, int kv_heads, int key_count,
                                                                            int capacity, int keys_per_split, float scale)
{
    attention_decode<128, true>(q, k, v, o_part, lse_part, heads, kv_heads, key_count, capacity, keys_per_split, scale);
}

// Merges the splits of attention_decode (Dao et al. 2023, Flash-Decoding): for each of the rows = batch·heads
// outputs, o = Σ_s w_s o_part[s] / Σ_s w_s with w_s = 2^(lse_s − max_s lse_s). o_part is (rows, splits, head_dim)
// float32, lse_part (rows, splits), o (rows, head_dim) bf16/fp16. Grid (rows), 256 threads (at most); head_dim a
// multiple of 4, at most 4·blockDim. Each thread sums a float4 of columns over every (blockDim / (head_dim/4))-th
// split, so the splits' loads are spread over the block; the slices are added up through shared memory.
template <bool HALF>
static __device__ void attention_decode_combine(const float* __restrict__ o_part, const float* __restrict__ lse_part,
                                                unsigned short* __restrict__ o, int rows, int splits, int head_dim)
{
    using E = element<HALF>;
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
            make_uint2(E::pack(num.x * inverse, num.y * inverse), E::pack(num.z * inverse, num.w * inverse));
    }
}

extern "C" __global__ void __launch_bounds__(256) attention_decode_combine_bf16(const float* __restrict__ o_part, const float* __restrict__ lse_part,
                                                                               bf16_t* __restrict__ o, int rows, int splits, int head_dim)
{
    attention_decode_combine<false>(o_part, lse_part, o, rows, splits, head_dim);
}

extern "C" __global__ void __launch_bounds__(256) attention_decode_combine_f16(const float* __restrict__ o_part, const float* __restrict__ lse_part,
                                                                              half_t* __restrict__ o, int rows, int splits, int head_dim)
{
    attention_decode_combine<true>(o_part, lse_part, o, rows, splits, head_dim);
}

// ================================================================ naive reference (tests)

// The flash-attention error rule's "same precision" computation, as torch computes attention in bf16 (fp16: the
// same with fp16 roundings): s = bf16(bf16(q·k) · scale) (float32 dot, rounded), p = bf16(softmax(s)) (float32
// softmax, rounded), o = bf16(Σ p v) (float32 sum). Layouts and window as prefill; grid (queries, heads, batch), 128 threads,
// head_dim ≤ 128.
// Every score is recomputed in each of its three passes: slow, simple, for tests only.
template <bool HALF>
static __device__ void attention_naive(const unsigned short* __restrict__ q, const unsigned short* __restrict__ k,
                                       const unsigned short* __restrict__ v, unsigned short* __restrict__ o, int queries,
                                       int key_count, int heads, int kv_heads, int head_dim, int query_start, int window,
                                       float scale)
{
    using E = element<HALF>;
    __shared__ float scratch[32];
    __shared__ float q_s[128];
    __shared__ float p_s[128];
    const int r = blockIdx.x, head = blockIdx.y, batch = blockIdx.z;
    const int kv_head = head / (heads / kv_heads);
    const size_t q_stride = (size_t)heads * head_dim, kv_stride = (size_t)kv_heads * head_dim;
    const unsigned short* q_row = q + ((size_t)batch * queries + r) * q_stride + (size_t)head * head_dim;
    const unsigned short* k_base = k + (size_t)batch * key_count * kv_stride + (size_t)kv_head * head_dim;
    const unsigned short* v_base = v + (size_t)batch * key_count * kv_stride + (size_t)kv_head * head_dim;
    const int tid = threadIdx.x;
    if (tid < head_dim)
        q_s[tid] = E::widen(q_row[tid]);
    __syncthreads();
    const int visible = min(key_count, query_start + r + 1);
    const int first = window > 0 ? max(0, query_start + r - window + 1) : 0;

    float mx = -HZ_INF;
    for (int j = first + tid; j < visible; j += blockDim.x)
    {
        float dot = 0.0f;
        for (int d = 0; d < head_dim; d++)
            dot += q_s[d] * E::widen(k_base[(size_t)j * kv_stride + d]);
        mx = fmaxf(mx, round_to_element<HALF>(round_to_element<HALF>(dot) * scale));
    }
    mx = block_max(mx, scratch);
    float sum = 0.0f;
    for (int j = first + tid; j < visible; j += blockDim.x)
    {
        float dot = 0.0f;
        for (int d = 0; d < head_dim; d++)
            dot += q_s[d] * E::widen(k_base[(size_t)j * kv_stride + d]);
        sum += expf(round_to_element<HALF>(round_to_element<HALF>(dot) * scale) - mx);
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
                dot += q_s[d] * E::widen(k_base[(size_t)j * kv_stride + d]);
            p = round_to_element<HALF>(expf(round_to_element<HALF>(round_to_element<HALF>(dot) * scale) - mx) / sum);
        }
        __syncthreads(); // the previous chunk's p_s has been used
        p_s[tid] = p;
        __syncthreads();
        if (tid < head_dim)
        {
            const int count = min((int)blockDim.x, visible - j0);
            for (int jj = 0; jj < count; jj++)
                out += p_s[jj] * E::widen(v_base[(size_t)(j0 + jj) * kv_stride + tid]);
        }
    }
    if (tid < head_dim)
        o[((size_t)batch * queries + r) * q_stride + (size_t)head * head_dim + tid] = E::narrow(out);
}

extern "C" __global__ void attention_naive_bf16(const bf16_t* __restrict__ q, const bf16_t* __restrict__ k,
                                                const bf16_t* __restrict__ v, bf16_t* __restrict__ o, int queries,
                                                int key_count, int heads, int kv_heads, int head_dim, int query_start,
                                                int window, float scale)
{
    attention_naive<false>(q, k, v, o, queries, key_count, heads, kv_heads, head_dim, query_start, window, scale);
}

extern "C" __global__ void attention_naive_f16(const half_t* __restrict__ q, const half_t* __restrict__ k,
                                               const half_t* __restrict__ v, half_t* __restrict__ o, int queries,
                                               int key_count, int heads, int kv_heads, int head_dim, int query_start,
                                               int window, float scale)
{
    attention_naive<true>(q, k, v, o, queries, key_count, heads, kv_heads, head_dim, query_start, window, scale);
}
