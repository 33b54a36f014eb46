// Gated linear attention, the recurrence at the core of the `gla` token mixer (Yang, Wang, Shen, Panda, Kim 2024,
// "Gated Linear Attention Transformers with Hardware-Efficient Training", arXiv 2312.06635; docs/ops/gla.md), for
// one key/value head h and its query heads:
//
//     S_t = Diag(α_t) S_{t−1} + k_tᵀ v_t        S ∈ ℝ^{d_k×d_v}, α_t = exp(g_t), g_t = log α_t ≤ 0
//     o_t = (scale · q_t) S_t                   scale = d_k^{−½} by default
//
// the same function as the CPU's GlaKernels.Mix (src/Runtime/Cpu/GlaKernels.cs), with the same state layout as
// GlaState.S (per sequence: (kv_heads, d_k, d_v) float32, key-major), so a state moves between the backends as is.
//
// gla_chunk_state_{f32,bf16}   prefill, pass 1 (§4.2, the chunkwise form): for every chunk of 64 tokens, what it
//                              adds to the state, U_c = Σ_s (k_s ⊙ exp(b_last − b_s))ᵀ v_s, and its decay exp(b_last),
//                              b_t = Σ_{c ≤ j ≤ t} g_j; every chunk in parallel.
// gla_state_scan_f32           pass 2: S_{c+1} = Diag(exp(b_last,c)) S_c + U_c over the chunks, in place: each U_c is
//                              replaced by the state before chunk c, and the final state is written back.
// gla_chunk_output_{f32,bf16}  pass 3: o_t = (scale·q_t ⊙ exp(b_t)) S_c + Σ_{s ≤ t} A_ts v_s for every chunk in
//                              parallel, with the intra-chunk weights A built by sub-chunks of 16 (§4.3, the CPU's
//                              GlaKernels.SubChunk) so that every exponent is ≤ 0 (nothing overflows).
// gla_recurrent_decode_f32     the recurrent form (§4.1), token by token: decode, and the reference of the prefill.
//
// Layouts (token-major, as on the CPU), per sequence b of the batch:
//   q (batch, rows, heads, d_k)   k, g (batch, rows, kv_heads, d_k)   v (batch, rows, kv_heads, d_v)
//   o (batch, rows, heads, d_v)   state (batch, kv_heads, d_k, d_v) float32
// g is float32 for every element type (log-gates need more than bf16's 8 bits); g = nullptr means α ≡ 1 (plain
// linear attention). Query head h reads key/value head h / (heads / kv_heads). The cumulative log-gates are summed
// in float64, as on the CPU, so that b_t − b_s keeps float32 precision when b reaches −10³ inside a chunk.
// Launchers: src/Runtime/Cuda/CudaOps.Gla.cs.
#include "common.cuh"
#include <mma.h>
#include <type_traits>

namespace gla
{
constexpr int C = 64;          // tokens per chunk (fla's BT; the CPU's default GlaOptions.ChunkSize)
constexpr int SUB = 16;        // tokens per sub-chunk (GlaKernels.SubChunk, fla's BC)
constexpr int NSUB = C / SUB;  // sub-chunks per chunk
constexpr int THREADS = 256;
constexpr int TILE = 64;       // gla_chunk_state: a TILE × TILE block of the (d_k, d_v) state per block
constexpr int BK = 32;         // gla_chunk_output: key dimensions per step
constexpr int BV = 64;         // gla_chunk_output: value dimensions per step
constexpr int PAD = BK + 1;    // row stride of the per-step tiles, float32 (staggers the rows over the banks)
constexpr int APAD = BK + 4;   // row stride of the per-step tiles, bf16: 16-byte rows for float4 loads, and the mma
                               // fragments' (row g, column t) reads land on 32 distinct banks
constexpr int PAIRS = NSUB * (NSUB - 1) / 2; // (later sub-chunk, earlier sub-chunk) pairs
}

// ================================================================ pass 1: what each chunk adds to the state

// Grid (chunks, CeilDiv(d_k, 64) · CeilDiv(d_v, 256), batch · kv_heads), 256 threads, dynamic shared memory
// gla::STATE_SHARED (CudaOps.GlaStateSharedBytes). A block takes one 64 × 256 tile (rows i of the key dimension,
// columns j of the value dimension) of one chunk's U_c:
//   U_c[i][j] = Σ_{s in chunk} k_s[i] exp(b_last[i] − b_s[i]) v_s[j]
// and the blocks of the first column tile write the chunk's decay exp(b_last[i]). chunk_states is
// (batch, kv_heads, chunks, d_k, d_v), chunk_decay (batch, kv_heads, chunks, d_k). The tile spans the whole d_v of
// the gla-340M shapes (256), so the log-gate sums are done once per 64 key rows, not once per 64 × 64 tile; every
// thread's global loads are issued in batches before their values are used (16-byte loads where d_v allows).
namespace gla
{
constexpr int STATE_TJ = 256;                                                     // value columns per block
constexpr int STATE_SHARED = NSUB * TILE * 8 + C * TILE * 4 + C * STATE_TJ * 4;   // 83968 bytes
}

template <typename T>
static __device__ void gla_chunk_state(const T* __restrict__ k, const T* __restrict__ v, const float* __restrict__ g,
                                       float* __restrict__ chunk_states, float* __restrict__ chunk_decay, int rows,
                                       int kv_heads, int dk, int dv)
{
    using namespace gla;
    extern __shared__ __align__(16) unsigned char state_shared[];
    double(*part_s)[TILE] = reinterpret_cast<double(*)[TILE]>(state_shared);
    float(*kd_s)[TILE] = reinterpret_cast<float(*)[TILE]>(state_shared + NSUB * TILE * 8);            // k_s[i] exp(b_last[i] − b_s[i])
    float(*v_s)[STATE_TJ] = reinterpret_cast<float(*)[STATE_TJ]>(state_shared + NSUB * TILE * 8 + C * TILE * 4);

    const int chunk = blockIdx.x, chunks = gridDim.x;
    const int tiles_v = ceil_div(dv, STATE_TJ);
    const int i0 = (blockIdx.y / tiles_v) * TILE, j0 = (blockIdx.y % tiles_v) * STATE_TJ;
    const int bh = blockIdx.z, batch = bh / kv_heads, kh = bh % kv_heads;
    const int t0 = chunk * C, len = min(C, rows - t0);
    const size_t k_stride = (size_t)kv_heads * dk, v_stride = (size_t)kv_heads * dv;
    const T* k_base = k + ((size_t)batch * rows + t0) * k_stride + (size_t)kh * dk;
    const T* v_base = v + ((size_t)batch * rows + t0) * v_stride + (size_t)kh * dv;
    const float* g_base = g == nullptr ? nullptr : g + ((size_t)batch * rows + t0) * k_stride + (size_t)kh * dk;

    // Thread (sub, ii): key dimension i0 + ii, tokens of sub-chunk sub: its 16 log-gates and keys, loaded together.
    const int ii = threadIdx.x % TILE, sub = threadIdx.x / TILE, i = i0 + ii;
    float gl[SUB], kl[SUB];
#pragma unroll
    for (int tt = 0; tt < SUB; tt++)
    {
        const int t = sub * SUB + tt;
        const bool ok = t < len && i < dk;
        gl[tt] = ok && g_base != nullptr ? g_base[(size_t)t * k_stride + i] : 0.0f;
        kl[tt] = ok ? to_float(k_base[(size_t)t * k_stride + i]) : 0.0f;
    }
    // The sub-chunk sums of the log-gates (a missing token adds 0.0: the same sum).
    double part = 0.0;
#pragma unroll
    for (int tt = 0; tt < SUB; tt++)
        part += gl[tt];
    part_s[sub][ii] = part;

    // The v tile (C × STATE_TJ, zero outside the chunk and d_v), in batches of loads.
    constexpr bool is_bf16 = std::is_same<T, bf16_t>::value;
    constexpr int VEC = is_bf16 ? 8 : 4; // elements per 16-byte load
    const bool vector = dv % VEC == 0 && v_stride % VEC == 0 && (reinterpret_cast<size_t>(v) & 15) == 0;
    if (vector)
    {
        constexpr int PER_ROW = STATE_TJ / VEC, COUNT = C * PER_ROW / THREADS, BATCH = 8;
#pragma unroll
        for (int x0 = 0; x0 < COUNT; x0 += BATCH)
        {
            uint4 raw[BATCH];
#pragma unroll
            for (int x = 0; x < BATCH; x++)
            {
                const int e = threadIdx.x + (x0 + x) * THREADS, t = e / PER_ROW, col = j0 + (e % PER_ROW) * VEC;
                raw[x] = t < len && col < dv ? *reinterpret_cast<const uint4*>(v_base + (size_t)t * v_stride + col) : make_uint4(0, 0, 0, 0);
            }
#pragma unroll
            for (int x = 0; x < BATCH; x++)
            {
                const int e = threadIdx.x + (x0 + x) * THREADS, t = e / PER_ROW, c = (e % PER_ROW) * VEC;
                float4* dst = reinterpret_cast<float4*>(&v_s[t][c]);
                if constexpr (is_bf16)
                {
                    const unsigned w[4] = {raw[x].x, raw[x].y, raw[x].z, raw[x].w};
                    float f[8];
#pragma unroll
                    for (int h = 0; h < 4; h++)
                    {
                        f[2 * h] = __uint_as_float(w[h] << 16);          // bf16 → float is exact: the bits on top
                        f[2 * h + 1] = __uint_as_float(w[h] & 0xffff0000u);
                    }
                    dst[0] = make_float4(f[0], f[1], f[2], f[3]);
                    dst[1] = make_float4(f[4], f[5], f[6], f[7]);
                }
                else
                    dst[0] = make_float4(__uint_as_float(raw[x].x), __uint_as_float(raw[x].y), __uint_as_float(raw[x].z),
                                         __uint_as_float(raw[x].w));
            }
        }
    }
    else
    {
        constexpr int COUNT = C * STATE_TJ / THREADS, BATCH = 16;
#pragma unroll 1
        for (int x0 = 0; x0 < COUNT; x0 += BATCH)
        {
            float vl[BATCH];
#pragma unroll
            for (int x = 0; x < BATCH; x++)
            {
                const int e = threadIdx.x + (x0 + x) * THREADS, t = e / STATE_TJ, col = j0 + e % STATE_TJ;
                vl[x] = t < len && col < dv ? to_float(v_base[(size_t)t * v_stride + col]) : 0.0f;
            }
#pragma unroll
            for (int x = 0; x < BATCH; x++)
            {
                const int e = threadIdx.x + (x0 + x) * THREADS;
                v_s[e / STATE_TJ][e % STATE_TJ] = vl[x];
            }
        }
    }
    __syncthreads();
    double b = 0.0, total = 0.0; // b: the cumulative sum before this sub-chunk; total: b_last
#pragma unroll
    for (int s2 = 0; s2 < NSUB; s2++)
    {
        const double p = part_s[s2][ii];
        if (s2 < sub)
            b += p;
        total += p;
    }
#pragma unroll
    for (int tt = 0; tt < SUB; tt++)
    {
        const int t = sub * SUB + tt;
        float weighted = 0.0f;
        if (t < len && i < dk)
        {
            if (g_base != nullptr)
                b += gl[tt];
            weighted = kl[tt] * expf((float)(total - b)); // exponent ≤ 0
        }
        kd_s[t][ii] = weighted;
    }
    if (sub == 0 && j0 == 0 && i < dk)
        chunk_decay[((size_t)bh * chunks + chunk) * dk + i] = expf((float)total);
    __syncthreads();

    // U tile: thread (ty, tx) owns rows i0 + 4ty … +3 and the columns j0 + 4tx + 64c … +3, c = 0 … 3 (each 16-byte
    // shared load of a warp's 16 tx covers 256 contiguous bytes).
    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    float acc[4][16] = {};
#pragma unroll 4
    for (int t = 0; t < C; t++)
    {
        const float4 kq = *reinterpret_cast<const float4*>(&kd_s[t][ty * 4]);
        const float ka[4] = {kq.x, kq.y, kq.z, kq.w};
#pragma unroll
        for (int c = 0; c < 4; c++)
        {
            const float4 vq = *reinterpret_cast<const float4*>(&v_s[t][tx * 4 + 64 * c]);
            const float va[4] = {vq.x, vq.y, vq.z, vq.w};
#pragma unroll
            for (int a = 0; a < 4; a++)
#pragma unroll
                for (int y = 0; y < 4; y++)
                    acc[a][4 * c + y] = fmaf(ka[a], va[y], acc[a][4 * c + y]);
        }
    }
    float* out = chunk_states + ((size_t)bh * chunks + chunk) * dk * dv;
    const bool vector_out = dv % 4 == 0;
#pragma unroll
    for (int a = 0; a < 4; a++)
    {
        const int row = i0 + ty * 4 + a;
        if (row >= dk)
            continue;
#pragma unroll
        for (int c = 0; c < 4; c++)
        {
            const int col = j0 + tx * 4 + 64 * c;
            if (vector_out)
            {
                if (col < dv)
                    *reinterpret_cast<float4*>(out + (size_t)row * dv + col) =
                        make_float4(acc[a][4 * c], acc[a][4 * c + 1], acc[a][4 * c + 2], acc[a][4 * c + 3]);
            }
            else
            {
#pragma unroll
                for (int y = 0; y < 4; y++)
                    if (col + y < dv)
                        out[(size_t)row * dv + col + y] = acc[a][4 * c + y];
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(256, 2) gla_chunk_state_f32(const float* k, const float* v, const float* g, float* chunk_states,
                                                                     float* chunk_decay, int rows, int kv_heads, int head_k_dim,
                                                                     int head_v_dim)
{
    gla_chunk_state(k, v, g, chunk_states, chunk_decay, rows, kv_heads, head_k_dim, head_v_dim);
}

extern "C" __global__ void __launch_bounds__(256, 2) gla_chunk_state_bf16(const bf16_t* k, const bf16_t* v, const float* g, float* chunk_states,
                                                                      float* chunk_decay, int rows, int kv_heads, int head_k_dim,
                                                                      int head_v_dim)
{
    gla_chunk_state(k, v, g, chunk_states, chunk_decay, rows, kv_heads, head_k_dim, head_v_dim);
}

// ================================================================ pass 2: the states at the chunk starts

// Grid (CeilDiv(d_k · d_v, 256), batch · kv_heads), 256 threads; thread e owns state element (i, j) = (e / d_v, e % d_v)
// of one (batch, kv head) and walks the chunks in order: S_{c+1} = exp(b_last,c)[i] · S_c + U_c, replacing U_c in
// chunk_states by S_c (the state before chunk c, what pass 3 reads) and writing the state after the last chunk back
// to `state`. Sixteen chunks' loads are issued before their dependent updates.
extern "C" __global__ void __launch_bounds__(256, 4) gla_state_scan_f32(float* chunk_states, const float* chunk_decay, float* state, int chunks,
                                                                    int head_k_dim, int head_v_dim)
{
    constexpr int BATCH = 16;
    const long long elements = (long long)head_k_dim * head_v_dim;
    const long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= elements)
        return;
    const int bh = blockIdx.y, i = (int)(e / head_v_dim);
    float* u = chunk_states + (size_t)bh * chunks * elements + e;
    const float* d = chunk_decay + (size_t)bh * chunks * head_k_dim + i;
    float* s_out = state + (size_t)bh * elements + e;
    float s = *s_out;
    for (int c0 = 0; c0 < chunks; c0 += BATCH)
    {
        float uc[BATCH], dc[BATCH];
#pragma unroll
        for (int c = 0; c < BATCH; c++)
        {
            uc[c] = c0 + c < chunks ? u[(size_t)(c0 + c) * elements] : 0.0f;
            dc[c] = c0 + c < chunks ? d[(size_t)(c0 + c) * head_k_dim] : 1.0f;
        }
#pragma unroll
        for (int c = 0; c < BATCH; c++)
        {
            if (c0 + c < chunks)
            {
                u[(size_t)(c0 + c) * elements] = s;
                s = dc[c] * s + uc[c];
            }
        }
    }
    *s_out = s;
}

// ================================================================ pass 3: the outputs of every chunk

// tf32 helpers of gla_chunk_output's bf16 path: x rounded to tf32 (its bits), and D += A·B on one m16n8k8 tile (PTX ISA
// fragment layout, g = lane / 4, t = lane % 4: a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4); b0 (k t, n g),
// b1 (k t + 4, n g); d0, d1 (g, 2t, 2t + 1), d2, d3 (g + 8, …)).
static __device__ __forceinline__ unsigned gla_tf32(float x)
{
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return r;
}

static __device__ __forceinline__ void gla_mma_tf32(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2])
{
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Byte offsets of gla_chunk_output's dynamic shared memory for a (padded) key dimension dkp, a multiple of BK:
//   bend  double [NSUB][dkp]   b at the end of each sub-chunk, b_{16j+15} (cumulative from the chunk start)
//   bsub  double [NSUB][dkp]   the log-gate sum of each sub-chunk
//   qd    float  [C][dkp + 1]  scale · q_t ⊙ exp(b_t), the inter-chunk query
//   a     float  [C][C + 1]    (the kernel lays qd out with row stride dkp + 4 over the qd and a regions)
//   work  float  [max(5·C·APAD + PAIRS·BK, C·(C + 4) + (BK + C)·(BV + 4))]  the per-step tiles of the A phase, then
//                              the intra-chunk weights A ([C][C + 4], zero above the diagonal) and the output phase's
//                              tiles (rows padded to BV + 4), then one more S_c tile ([BK][BV + 4]): S_c streams
//                              through three such slots (cp.async, two tiles ahead), the third being the a region's
//                              62·C floats that qd leaves free
// CudaOps.GlaOutputSharedBytes computes the same total.
struct gla_output_layout
{
    int bsub, qd, a, work, total;
    __device__ explicit gla_output_layout(int dkp)
    {
        using namespace gla;
        bsub = NSUB * dkp * 8;
        qd = bsub + NSUB * dkp * 8;
        a = qd + C * (dkp + 1) * 4;
        a = (a + 15) / 16 * 16;
        work = a + C * (C + 1) * 4;
        work = (work + 15) / 16 * 16;
        total = work + (max(5 * C * APAD + PAIRS * BK, C * (C + 4) + (BK + C) * (BV + 4)) + BK * (BV + 4)) * 4;
    }
};

// Grid (chunks, heads, batch), 256 threads, dynamic shared memory CudaOps.GlaOutputSharedBytes(d_k) (≤ 139 KB for
// d_k 256). For the chunk of tokens c … c + len − 1 and query head h (key/value head kh), S_c the state before the
// chunk (pass 2) and b_t = Σ_{c ≤ j ≤ t} g_j:
//   o_t = (scale · q_t ⊙ exp(b_t)) S_c + Σ_{s ≤ t} A_ts v_s,   A_ts = scale Σ_i q_t[i] k_s[i] exp(b_t[i] − b_s[i]).
// A is built by sub-chunks of 16 (tokens 16j … 16j + 15; B_j = b_{16j+15}, r_t = b_t − B_{j(t)−1}):
//   s, t in one sub-chunk:      exp(b_t − b_s) = exp(r_t − r_s), per element in log space;
//   s in an earlier sub-chunk:  exp(b_t − b_s) = exp(r_t) · exp(B_{j(t)−1} − B_{j(s)}) · exp(B_{j(s)} − r_s − B_{j(s)−1}),
// three factors ≤ 1 (the CPU splits the same product at B_{j(t)−1}; equal in exact arithmetic): one exponential
// per element of q_t, of k_s and per sub-chunk pair, instead of one per (t, s, i).
// bf16 computes o = qd S_c + A v on the tensor cores (wmma, tf32 inputs, float32 accumulation: the output is rounded
// to bf16 anyway); float32 keeps the exact float32 FMA loop.
template <typename T>
static __device__ void gla_chunk_output(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                                        const float* __restrict__ g, const float* __restrict__ chunk_states, T* __restrict__ o,
                                        int rows, int heads, int kv_heads, int dk, int dv, float scale)
{
    using namespace gla;
    extern __shared__ __align__(128) unsigned char shared_bytes[];
    const int dkp = ceil_div(dk, BK) * BK;
    const gla_output_layout layout(dkp);
    double* bend = reinterpret_cast<double*>(shared_bytes);
    double* bsub = reinterpret_cast<double*>(shared_bytes + layout.bsub);
    float* qd = reinterpret_cast<float*>(shared_bytes + layout.qd);
    float* a_s = reinterpret_cast<float*>(shared_bytes + layout.work);
    float* work = reinterpret_cast<float*>(shared_bytes + layout.work);
    // qd and A have row strides that are multiples of 4 floats (wmma's ldm) and rows 32-byte aligned; qd spreads
    // over the layout's qd and a regions (3 more floats per row fit in the a region), A lives in the work region
    // once the A phase is done, in front of the output phase's tiles (the total stays gla_output_layout's).
    const int qd_stride = dkp + 4;
    constexpr int A_STRIDE = C + 4;
    constexpr bool is_bf16 = std::is_same<T, bf16_t>::value;
    constexpr int PADT = is_bf16 ? APAD : PAD; // row stride of the A phase's tiles
    // The A phase's tiles (C × PADT each) and the sub-chunk pair factors:
    float* q_raw = work;               // q_t[i]
    float* k_raw = q_raw + C * PADT;   // k_s[i]
    float* r_t = k_raw + C * PADT;     // r_t[i] = b_t[i] − B_{j(t)−1}[i]
    float* q_dec = r_t + C * PADT;     // q_t[i] exp(r_t[i])
    float* k_dec = q_dec + C * PADT;   // k_s[i] exp(B_{j(s)}[i] − b_s[i])
    float* pair_f = k_dec + C * PADT;  // [PAIRS][BK]: exp(B_{jt−1}[i] − B_{js}[i]) for js < jt
    // The output phase's tiles, over the same memory:
    constexpr int T_LD = BV + 4;          // row stride of the output phase's tiles (staggers wmma's row loads over the banks)
    float* s_tile = work + C * A_STRIDE;  // [BK][T_LD] rows of S_c (slot 2; overlays the A phase's tiles)
    float* v_tile = s_tile + BK * T_LD;   // [C][T_LD] rows of v
    float* o_tile = v_tile;               // [C][T_LD] the output block before it is stored (bf16: tensor cores)
    // S_c tiles n = 0, 1, 2, … stream through slots n % 3: slot 0 behind qd in the a region, slot 1 after the work
    // region, slot 2 s_tile. Slots 0 and 1 are free during the A phase, so the first two tiles load under it.
    float* const slot0 = qd + C * qd_stride;
    float* const slot1 = work + max(C * A_STRIDE + (BK + C) * T_LD, 5 * C * APAD + PAIRS * BK);
    auto s_slot = [&](int n) { const int m = n % 3; return m == 0 ? slot0 : m == 1 ? slot1 : s_tile; };

    // blockIdx.y = head · splits + part: the value columns are cut into `splits` ranges of whole BV steps, one per block
    // (each block rebuilds A for its chunk; splits = gridDim.y / heads, 1 when the grid has one block per head).
    const int splits = gridDim.y / heads;
    const int chunk = blockIdx.x, chunks = gridDim.x, head = blockIdx.y / splits, part = blockIdx.y % splits, batch = blockIdx.z;
    const int kh = head / (heads / kv_heads);
    const int col_steps = ceil_div(ceil_div(dv, BV), splits);
    const int j_begin = part * col_steps * BV, j_end = min(dv, j_begin + col_steps * BV);
    const int t0 = chunk * C, len = min(C, rows - t0);
    const size_t q_stride = (size_t)heads * dk, k_stride = (size_t)kv_heads * dk, v_stride = (size_t)kv_heads * dv,
                 o_stride = (size_t)heads * dv;
    const T* q_base = q + ((size_t)batch * rows + t0) * q_stride + (size_t)head * dk;
    const T* k_base = k + ((size_t)batch * rows + t0) * k_stride + (size_t)kh * dk;
    const T* v_base = v + ((size_t)batch * rows + t0) * v_stride + (size_t)kh * dv;
    const float* g_base = g == nullptr ? nullptr : g + ((size_t)batch * rows + t0) * k_stride + (size_t)kh * dk;
    const float* s_c = chunk_states + (((size_t)batch * kv_heads + kh) * chunks + chunk) * dk * dv;
    T* o_base = o + ((size_t)batch * rows + t0) * o_stride + (size_t)head * dv;

    // S_c tile n (column step n / steps_i, key rows (n % steps_i)·BK …) → slot n % 3, by cp.async (zero-filled outside
    // d_k × d_v; 16-byte copies when d_v allows). One commit group per tile, empty past the last.
    const int steps_i = dkp / BK, n_tiles = ceil_div(j_end - j_begin, BV) * steps_i;
    const bool s_vector = dv % 4 == 0;
    auto issue_s = [&](int n) {
        if (n < n_tiles)
        {
            const int j0 = j_begin + (n / steps_i) * BV, i0 = (n % steps_i) * BK;
            float* slot = s_slot(n);
            if (s_vector)
            {
#pragma unroll
                for (int x = 0; x < BK * BV / 4 / THREADS; x++)
                {
                    const int e = threadIdx.x + x * THREADS, ii = e / (BV / 4), jj = (e % (BV / 4)) * 4;
                    const bool ok = i0 + ii < dk && j0 + jj < dv;
                    cp_async_16(slot + ii * T_LD + jj, ok ? s_c + (size_t)(i0 + ii) * dv + j0 + jj : s_c, ok);
                }
            }
            else
            {
#pragma unroll
                for (int x = 0; x < BK * BV / THREADS; x++)
                {
                    const int e = threadIdx.x + x * THREADS, ii = e / BV, jj = e % BV;
                    const bool ok = i0 + ii < dk && j0 + jj < dv;
                    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(shared_address(slot + ii * T_LD + jj)),
                                 "l"(ok ? s_c + (size_t)(i0 + ii) * dv + j0 + jj : s_c), "r"(ok ? 4 : 0)
                                 : "memory");
                }
            }
        }
        cp_async_commit();
    };
    issue_s(0);
    issue_s(1);

    // Sub-chunk sums of the log-gates (float64; the 16 loads first, a missing token adds 0.0: the same sum), then
    // their running sums B_j.
    for (int p = threadIdx.x; p < NSUB * dkp; p += THREADS)
    {
        const int j = p / dkp, i = p % dkp;
        float gv[SUB];
#pragma unroll
        for (int tt = 0; tt < SUB; tt++)
        {
            const int t = j * SUB + tt;
            gv[tt] = g_base != nullptr && i < dk && t < len ? g_base[(size_t)t * k_stride + i] : 0.0f;
        }
        double sum = 0.0;
#pragma unroll
        for (int tt = 0; tt < SUB; tt++)
            sum += gv[tt];
        bsub[j * dkp + i] = sum;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < dkp; i += THREADS)
    {
        double running = 0.0;
#pragma unroll
        for (int j = 0; j < NSUB; j++)
        {
            running += bsub[j * dkp + i];
            bend[j * dkp + i] = running;
        }
    }
    __syncthreads();

    // ---- A: accumulated over the key dimension in steps of BK, the work spread evenly over the 256 threads. Thread x
    // owns four elements of one diagonal 16 × 16 block (sub-chunk x / 64: row (x % 64) / 4, columns 4 (x % 4) … +3;
    // per-element expf, none above the diagonal) and element (r, c) = (x / 16, x % 16) of each of the six blocks below
    // the diagonal (sub-chunk pairs jt > js, factored exponentials).
    const int drow = (threadIdx.x / 64) * SUB + (threadIdx.x % 64) / 4;
    const int dcol = (threadIdx.x / 64) * SUB + (threadIdx.x % 4) * 4;
    const int orow = threadIdx.x / 16, ocol = threadIdx.x % 16;
    float dacc[4] = {}, oacc[PAIRS] = {};
    // bf16: warp aw < PAIRS owns the off-diagonal block of pair aw = (apt, aps) on the tensor cores (3×tf32: near
    // float32), its two 16 × 8 halves in pacc; the diagonal blocks stay per element on the CUDA cores, thread x taking
    // row dr = (x % 64) / 4 of sub-chunk dsub = x / 64 and the columns dc + 4y, dc = x % 4 (rows 0 … 7 of a sub-chunk,
    // a whole warp, need no column ≥ 8).
    const int aw = threadIdx.x / 32, gq = (threadIdx.x % 32) / 4, tq = threadIdx.x % 4;
    const int apt = aw < 1 ? 1 : aw < 3 ? 2 : 3, aps = aw - apt * (apt - 1) / 2;
    const int dsub = threadIdx.x / 64, dr = (threadIdx.x % 64) / 4, dc = threadIdx.x % 4;
    float pacc[2][4] = {};
    for (int i0 = 0; i0 < dkp; i0 += BK)
    {
        {
            // Thread (h, j, ii): key dimension i = i0 + ii, tokens 16j + 8h … + 7 of sub-chunk j in order (h = 1 first
            // sums the sub-chunk's first 8 log-gates, in the same order as h = 0, for its starting r: the same bits).
            constexpr int HALF = SUB / 2;
            static_assert(THREADS == 2 * NSUB * BK, "the prologue takes one thread per (half, sub-chunk, key dimension)");
            const int h = threadIdx.x / (NSUB * BK), j = (threadIdx.x / BK) % NSUB, ii = threadIdx.x % BK, i = i0 + ii;
            const bool in_dk = i < dk;
            const double before = j > 0 ? bend[(j - 1) * dkp + i] : 0.0;
            const double sub_total = bsub[j * dkp + i];
            // the loads first (one memory latency per step, not one per token)
            float ql[HALF], kl[HALF], gl[HALF], gp[HALF];
#pragma unroll
            for (int tt = 0; tt < HALF; tt++)
            {
                const int t = j * SUB + h * HALF + tt, tp = j * SUB + tt;
                const bool valid = in_dk && t < len;
                ql[tt] = valid ? to_float(q_base[(size_t)t * q_stride + i]) : 0.0f;
                kl[tt] = valid ? to_float(k_base[(size_t)t * k_stride + i]) : 0.0f;
                gl[tt] = valid && g_base != nullptr ? g_base[(size_t)t * k_stride + i] : 0.0f;
                gp[tt] = h == 1 && in_dk && tp < len && g_base != nullptr ? g_base[(size_t)tp * k_stride + i] : 0.0f;
            }
            double r = 0.0;
            if (h == 1)
            {
#pragma unroll
                for (int tt = 0; tt < HALF; tt++)
                    if (in_dk && j * SUB + tt < len && g_base != nullptr)
                        r += gp[tt];
            }
#pragma unroll
            for (int tt = 0; tt < HALF; tt++)
            {
                const int t = j * SUB + h * HALF + tt;
                const bool valid = in_dk && t < len;
                const float qv = ql[tt], kv = kl[tt];
                if (valid && g_base != nullptr)
                    r += gl[tt];
                const float rf = (float)r;
                q_raw[t * PADT + ii] = qv;
                k_raw[t * PADT + ii] = kv;
                r_t[t * PADT + ii] = rf;
                q_dec[t * PADT + ii] = qv * expf(rf);                       // exp(b_t − B_{j−1}) ≤ 1
                k_dec[t * PADT + ii] = kv * expf((float)(sub_total - r));   // exp(B_j − b_t) ≤ 1
                qd[t * qd_stride + i] = qv * expf((float)(before + r)) * scale; // exp(b_t) ≤ 1
            }
        }
        for (int p = threadIdx.x; p < PAIRS * BK; p += THREADS)
        {
            const int pair = p / BK, ii = p % BK, i = i0 + ii;
            // pair = jt (jt − 1) / 2 + js with 0 ≤ js < jt < NSUB
            int pt = 1;
            while ((pt + 1) * pt / 2 <= pair)
                pt++;
            const int ps = pair - pt * (pt - 1) / 2;
            pair_f[pair * BK + ii] = i < dk ? expf((float)(bend[(pt - 1) * dkp + i] - bend[ps * dkp + i])) : 0.0f;
        }
        __syncthreads();

        if constexpr (is_bf16)
        {
            if (aw < PAIRS)
            {
                // A[16 apt + r][16 aps + c] += Σ_i (q_dec[16 apt + r][i] pair_f[aw][i]) k_dec[16 aps + c][i]
                const float* qa = q_dec + (apt * SUB + gq) * PADT + tq;
                const float* kb = k_dec + (aps * SUB + gq) * PADT + tq;
                const float* pf = pair_f + aw * BK + tq;
#pragma unroll
                for (int kk = 0; kk < BK; kk += 8)
                {
                    const float f0 = pf[kk], f1 = pf[kk + 4];
                    const float av[4] = {qa[kk] * f0, qa[8 * PADT + kk] * f0, qa[kk + 4] * f1, qa[8 * PADT + kk + 4] * f1};
                    unsigned a_hi[4], a_lo[4];
#pragma unroll
                    for (int x = 0; x < 4; x++)
                    {
                        a_hi[x] = gla_tf32(av[x]);
                        a_lo[x] = gla_tf32(av[x] - __uint_as_float(a_hi[x]));
                    }
#pragma unroll
                    for (int nt = 0; nt < 2; nt++)
                    {
                        const float bv[2] = {kb[nt * 8 * PADT + kk], kb[nt * 8 * PADT + kk + 4]};
                        unsigned b_hi[2], b_lo[2];
#pragma unroll
                        for (int x = 0; x < 2; x++)
                        {
                            b_hi[x] = gla_tf32(bv[x]);
                            b_lo[x] = gla_tf32(bv[x] - __uint_as_float(b_hi[x]));
                        }
                        gla_mma_tf32(pacc[nt], a_lo, b_hi);
                        gla_mma_tf32(pacc[nt], a_hi, b_lo);
                        gla_mma_tf32(pacc[nt], a_hi, b_hi);
                    }
                }
            }
            // the diagonal blocks, four key dimensions per shared load
            const float* qrow = q_raw + (dsub * SUB + dr) * PADT;
            const float* rrow = r_t + (dsub * SUB + dr) * PADT;
            const int ny = dr < SUB / 2 ? 2 : 4; // the same in the whole warp
#pragma unroll 2
            for (int ii = 0; ii < BK; ii += 4)
            {
                const float4 q4 = *reinterpret_cast<const float4*>(qrow + ii), r4 = *reinterpret_cast<const float4*>(rrow + ii);
#pragma unroll
                for (int y = 0; y < 4; y++)
                {
                    if (y < ny)
                    {
                        const int s = dsub * SUB + dc + 4 * y;
                        const float4 k4 = *reinterpret_cast<const float4*>(k_raw + s * PADT + ii);
                        const float4 s4 = *reinterpret_cast<const float4*>(r_t + s * PADT + ii);
                        if (dc + 4 * y <= dr) // r_t ≤ r_s
                        {
                            dacc[y] = fmaf(q4.x * k4.x, expf(r4.x - s4.x), dacc[y]);
                            dacc[y] = fmaf(q4.y * k4.y, expf(r4.y - s4.y), dacc[y]);
                            dacc[y] = fmaf(q4.z * k4.z, expf(r4.z - s4.z), dacc[y]);
                            dacc[y] = fmaf(q4.w * k4.w, expf(r4.w - s4.w), dacc[y]);
                        }
                    }
                }
            }
        }
        else
        for (int ii = 0; ii < BK; ii++)
        {
            // below the diagonal: pairs (1,0) (2,0) (2,1) (3,0) (3,1) (3,2), pair_f's order
            const float q1 = q_dec[(SUB + orow) * PADT + ii], q2 = q_dec[(2 * SUB + orow) * PADT + ii],
                        q3 = q_dec[(3 * SUB + orow) * PADT + ii];
            const float k0 = k_dec[ocol * PADT + ii], k1 = k_dec[(SUB + ocol) * PADT + ii], k2 = k_dec[(2 * SUB + ocol) * PADT + ii];
            oacc[0] = fmaf(q1 * pair_f[0 * BK + ii], k0, oacc[0]);
            oacc[1] = fmaf(q2 * pair_f[1 * BK + ii], k0, oacc[1]);
            oacc[2] = fmaf(q2 * pair_f[2 * BK + ii], k1, oacc[2]);
            oacc[3] = fmaf(q3 * pair_f[3 * BK + ii], k0, oacc[3]);
            oacc[4] = fmaf(q3 * pair_f[4 * BK + ii], k1, oacc[4]);
            oacc[5] = fmaf(q3 * pair_f[5 * BK + ii], k2, oacc[5]);
            // the diagonal block
            const float qv = q_raw[drow * PADT + ii], rt = r_t[drow * PADT + ii];
#pragma unroll
            for (int y = 0; y < 4; y++)
            {
                const int s = dcol + y;
                if (s <= drow)
                    dacc[y] = fmaf(qv * k_raw[s * PADT + ii], expf(rt - r_t[s * PADT + ii]), dacc[y]); // r_t ≤ r_s
            }
        }
        __syncthreads(); // the tiles are rewritten by the next step
    }
    if constexpr (is_bf16)
    {
#pragma unroll
        for (int y = 0; y < 4; y++)
            a_s[(dsub * SUB + dr) * A_STRIDE + dsub * SUB + dc + 4 * y] = dc + 4 * y <= dr ? dacc[y] * scale : 0.0f;
        if (aw < PAIRS)
        {
#pragma unroll
            for (int nt = 0; nt < 2; nt++)
            {
                float* dst = a_s + (apt * SUB + gq) * A_STRIDE + aps * SUB + nt * 8 + 2 * tq;
                dst[0] = pacc[nt][0] * scale;
                dst[1] = pacc[nt][1] * scale;
                dst[8 * A_STRIDE] = pacc[nt][2] * scale;
                dst[8 * A_STRIDE + 1] = pacc[nt][3] * scale;
            }
        }
    }
    else
    {
#pragma unroll
        for (int y = 0; y < 4; y++)
            a_s[drow * A_STRIDE + dcol + y] = dcol + y <= drow ? dacc[y] * scale : 0.0f;
    }
    {
        constexpr int below_t[PAIRS] = {1, 2, 2, 3, 3, 3}, below_s[PAIRS] = {0, 0, 1, 0, 1, 2};
#pragma unroll
        for (int p = 0; p < PAIRS; p++)
        {
            if constexpr (!is_bf16)
                a_s[(below_t[p] * SUB + orow) * A_STRIDE + below_s[p] * SUB + ocol] = oacc[p] * scale;
            a_s[(below_s[p] * SUB + orow) * A_STRIDE + below_t[p] * SUB + ocol] = 0.0f; // the mirror block, above the diagonal
        }
    }
    __syncthreads();

    // ---- o = qd S_c + A v, by BV value dimensions at a time (this block's columns j_begin … j_end − 1). The S_c tiles
    // arrive by cp.async two tiles ahead of the products (issue_s above); the v tile in one batch of loads.
    constexpr int V_PER = C * BV / THREADS;
    auto fill_v = [&](int j0) {
        float vl[V_PER];
#pragma unroll
        for (int x = 0; x < V_PER; x++)
        {
            const int e = threadIdx.x + x * THREADS, s = e / BV, jj = e % BV;
            vl[x] = s < len && j0 + jj < dv ? to_float(v_base[(size_t)s * v_stride + j0 + jj]) : 0.0f;
        }
#pragma unroll
        for (int x = 0; x < V_PER; x++)
        {
            const int e = threadIdx.x + x * THREADS;
            v_tile[(e / BV) * T_LD + e % BV] = vl[x];
        }
    };

    if constexpr (std::is_same<T, bf16_t>::value)
    {
        // bf16: o = qd S_c + A v on the tensor cores (tf32 inputs, float32 accumulation). Warp w owns the 16-token rows
        // 16(w / 2) … and two 16-column tiles of each BV-wide column step; A v stops at the diagonal block.
        using namespace nvcuda;
        const int warp = threadIdx.x / 32, rt = warp / 2, ct0 = (warp % 2) * 2;
        // v and o by 16 bytes (8 values) where d_v allows: the v tile's loads are issued before the S_c products and
        // land in shared memory after them; o leaves 8 values per store.
        const bool v_vec = dv % 8 == 0 && (reinterpret_cast<size_t>(v) & 15) == 0;
        const bool o_vec = dv % 8 == 0 && (reinterpret_cast<size_t>(o) & 15) == 0;
        constexpr int V_VEC = C * BV / 8 / THREADS;
        uint4 vraw[V_VEC];
        int n = 0; // the S_c tile
        for (int j0 = j_begin; j0 < j_end; j0 += BV)
        {
            if (v_vec)
            {
#pragma unroll
                for (int x = 0; x < V_VEC; x++)
                {
                    const int e = threadIdx.x + x * THREADS, s = e / (BV / 8), jj = (e % (BV / 8)) * 8;
                    vraw[x] = s < len && j0 + jj < dv ? *reinterpret_cast<const uint4*>(v_base + (size_t)s * v_stride + j0 + jj)
                                                      : make_uint4(0, 0, 0, 0);
                }
            }
            wmma::fragment<wmma::accumulator, 16, 16, 8, float> out[2];
            wmma::fill_fragment(out[0], 0.0f);
            wmma::fill_fragment(out[1], 0.0f);
            wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
            wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
            for (int i0 = 0; i0 < dkp; i0 += BK, n++)
            {
                cp_async_wait<1>(); // tile n has landed (only tile n + 1 may still be in flight)
                __syncthreads();
                issue_s(n + 2);     // into the slot of tile n − 1, which every warp has finished with
                const float* s_cur = s_slot(n);
#pragma unroll
                for (int kk = 0; kk < BK; kk += 8)
                {
                    wmma::load_matrix_sync(fa, qd + rt * 16 * qd_stride + i0 + kk, qd_stride);
#pragma unroll
                    for (int x = 0; x < fa.num_elements; x++)
                        fa.x[x] = wmma::__float_to_tf32(fa.x[x]);
#pragma unroll
                    for (int c = 0; c < 2; c++)
                    {
                        wmma::load_matrix_sync(fb, s_cur + kk * T_LD + (ct0 + c) * 16, T_LD);
#pragma unroll
                        for (int x = 0; x < fb.num_elements; x++)
                            fb.x[x] = wmma::__float_to_tf32(fb.x[x]);
                        wmma::mma_sync(out[c], fa, fb, out[c]);
                    }
                }
            }
            if (v_vec)
            {
#pragma unroll
                for (int x = 0; x < V_VEC; x++)
                {
                    const int e = threadIdx.x + x * THREADS, s = e / (BV / 8), jj = (e % (BV / 8)) * 8;
                    const unsigned w[4] = {vraw[x].x, vraw[x].y, vraw[x].z, vraw[x].w};
                    float f[8];
#pragma unroll
                    for (int hh = 0; hh < 4; hh++)
                    {
                        f[2 * hh] = __uint_as_float(w[hh] << 16); // bf16 → float is exact: the bits on top
                        f[2 * hh + 1] = __uint_as_float(w[hh] & 0xffff0000u);
                    }
                    float4* dst = reinterpret_cast<float4*>(v_tile + s * T_LD + jj);
                    dst[0] = make_float4(f[0], f[1], f[2], f[3]);
                    dst[1] = make_float4(f[4], f[5], f[6], f[7]);
                }
            }
            else
                fill_v(j0);
            __syncthreads();
            for (int kk = 0; kk < (rt + 1) * 16; kk += 8) // A is zero past the diagonal block
            {
                wmma::load_matrix_sync(fa, a_s + rt * 16 * A_STRIDE + kk, A_STRIDE);
#pragma unroll
                for (int x = 0; x < fa.num_elements; x++)
                    fa.x[x] = wmma::__float_to_tf32(fa.x[x]);
#pragma unroll
                for (int c = 0; c < 2; c++)
                {
                    wmma::load_matrix_sync(fb, v_tile + kk * T_LD + (ct0 + c) * 16, T_LD);
#pragma unroll
                    for (int x = 0; x < fb.num_elements; x++)
                        fb.x[x] = wmma::__float_to_tf32(fb.x[x]);
                    wmma::mma_sync(out[c], fa, fb, out[c]);
                }
            }
            __syncthreads(); // o_tile overlays v_tile
#pragma unroll
            for (int c = 0; c < 2; c++)
                wmma::store_matrix_sync(o_tile + rt * 16 * T_LD + (ct0 + c) * 16, out[c], T_LD, wmma::mem_row_major);
            __syncthreads();
            if (o_vec)
            {
#pragma unroll
                for (int x = 0; x < V_VEC; x++)
                {
                    const int e = threadIdx.x + x * THREADS, t = e / (BV / 8), jj = (e % (BV / 8)) * 8;
                    if (t < len && j0 + jj < dv)
                    {
                        const float4 a = *reinterpret_cast<const float4*>(o_tile + t * T_LD + jj);
                        const float4 b = *reinterpret_cast<const float4*>(o_tile + t * T_LD + jj + 4);
                        uint4 packed;
                        packed.x = (unsigned)from_float<T>(a.x) | ((unsigned)from_float<T>(a.y) << 16);
                        packed.y = (unsigned)from_float<T>(a.z) | ((unsigned)from_float<T>(a.w) << 16);
                        packed.z = (unsigned)from_float<T>(b.x) | ((unsigned)from_float<T>(b.y) << 16);
                        packed.w = (unsigned)from_float<T>(b.z) | ((unsigned)from_float<T>(b.w) << 16);
                        *reinterpret_cast<uint4*>(o_base + (size_t)t * o_stride + j0 + jj) = packed;
                    }
                }
            }
            else
            {
                for (int e = threadIdx.x; e < C * BV; e += THREADS)
                {
                    const int t = e / BV, jj = e % BV;
                    if (t < len && j0 + jj < dv)
                        o_base[(size_t)t * o_stride + j0 + jj] = from_float<T>(o_tile[t * T_LD + jj]);
                }
            }
            __syncthreads(); // v_tile is rewritten by the next column step
        }
        cp_async_wait<0>();
        return;
    }

    // ---- float32: the exact FMA loop; thread (ty, tx) owns tokens 4ty … +3, columns 4tx … +3.
    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    int n = 0; // the S_c tile
    for (int j0 = j_begin; j0 < j_end; j0 += BV)
    {
        float out[4][4] = {};
        for (int i0 = 0; i0 < dkp; i0 += BK, n++)
        {
            cp_async_wait<1>();
            __syncthreads();
            issue_s(n + 2);
            const float* s_cur = s_slot(n);
            for (int ii = 0; ii < BK; ii++)
            {
                const float4 sq = *reinterpret_cast<const float4*>(&s_cur[ii * T_LD + tx * 4]);
                const float sv[4] = {sq.x, sq.y, sq.z, sq.w};
#pragma unroll
                for (int x = 0; x < 4; x++)
                {
                    const float qv = qd[(ty * 4 + x) * qd_stride + i0 + ii];
#pragma unroll
                    for (int y = 0; y < 4; y++)
                        out[x][y] = fmaf(qv, sv[y], out[x][y]);
                }
            }
        }
        fill_v(j0);
        __syncthreads();
        const int s_end = ty * 4 + 4; // A is zero past the diagonal
        for (int s = 0; s < s_end; s++)
        {
            const float4 vq = *reinterpret_cast<const float4*>(&v_tile[s * T_LD + tx * 4]);
            const float vv[4] = {vq.x, vq.y, vq.z, vq.w};
#pragma unroll
            for (int x = 0; x < 4; x++)
            {
                const float av = a_s[(ty * 4 + x) * A_STRIDE + s];
#pragma unroll
                for (int y = 0; y < 4; y++)
                    out[x][y] = fmaf(av, vv[y], out[x][y]);
            }
        }
#pragma unroll
        for (int x = 0; x < 4; x++)
        {
            const int t = ty * 4 + x;
            if (t >= len)
                continue;
#pragma unroll
            for (int y = 0; y < 4; y++)
            {
                const int col = j0 + tx * 4 + y;
                if (col < dv)
                    o_base[(size_t)t * o_stride + col] = from_float<T>(out[x][y]);
            }
        }
        __syncthreads(); // v_tile is rewritten by the next column step
    }
    cp_async_wait<0>();
}

extern "C" __global__ void __launch_bounds__(256, 2) gla_chunk_output_f32(const float* q, const float* k, const float* v, const float* g,
                                                                      const float* chunk_states, float* o, int rows, int heads,
                                                                      int kv_heads, int head_k_dim, int head_v_dim, float scale)
{
    gla_chunk_output(q, k, v, g, chunk_states, o, rows, heads, kv_heads, head_k_dim, head_v_dim, scale);
}

extern "C" __global__ void __launch_bounds__(256, 2) gla_chunk_output_bf16(const bf16_t* q, const bf16_t* k, const bf16_t* v, const float* g,
                                                                       const float* chunk_states, bf16_t* o, int rows, int heads,
                                                                       int kv_heads, int head_k_dim, int head_v_dim, float scale)
{
    gla_chunk_output(q, k, v, g, chunk_states, o, rows, heads, kv_heads, head_k_dim, head_v_dim, scale);
}

// ================================================================ recurrent form (decode)

// Grid (CeilDiv(d_v, 32), batch · kv_heads), 256 threads = 8 groups of key dimensions × 32 value dimensions. For each
// of the `rows` tokens in order: S[i][j] ← α_t[i] S[i][j] + k_t[i] v_t[j] (α = exp(g), 1 without gates), then for each
// query head of the group o_t[j] = Σ_i (scale q_t[i]) S[i][j], the 8 partial sums added through shared memory.
// The state is read and written in place (global memory; it is the whole of decode's traffic).
extern "C" __global__ void __launch_bounds__(256) gla_recurrent_decode_f32(const float* q, const float* k, const float* v, const float* g,
                                                                          float* state, float* o, int rows, int heads, int kv_heads,
                                                                          int head_k_dim, int head_v_dim, float scale)
{
    __shared__ float partial[8][32];
    const int dk = head_k_dim, dv = head_v_dim;
    const int lane = threadIdx.x % 32, group_row = threadIdx.x / 32;
    const int j = blockIdx.x * 32 + lane;
    const int bh = blockIdx.y, batch = bh / kv_heads, kh = bh % kv_heads;
    const int group = heads / kv_heads;
    float* s = state + (size_t)bh * dk * dv;
    const bool active = j < dv;
    for (int t = 0; t < rows; t++)
    {
        const size_t token = (size_t)batch * rows + t;
        const float* kt = k + (token * kv_heads + kh) * dk;
        const float* gt = g == nullptr ? nullptr : g + (token * kv_heads + kh) * dk;
        if (active)
        {
            const float vj = v[(token * kv_heads + kh) * dv + j];
            for (int i = group_row; i < dk; i += 8)
            {
                float value = s[(size_t)i * dv + j];
                if (gt != nullptr)
                    value *= expf(gt[i]);
                s[(size_t)i * dv + j] = vj * kt[i] + value;
            }
        }
        for (int r = 0; r < group; r++)
        {
            const int h = kh * group + r;
            const float* qt = q + (token * heads + h) * dk;
            float sum = 0.0f;
            if (active)
            {
                for (int i = group_row; i < dk; i += 8)
                    sum += qt[i] * scale * s[(size_t)i * dv + j];
            }
            partial[group_row][lane] = sum;
            __syncthreads();
            if (group_row == 0 && active)
            {
                float total = 0.0f;
#pragma unroll
                for (int x = 0; x < 8; x++)
                    total += partial[x][lane];
                o[(token * heads + h) * dv + j] = total;
            }
            __syncthreads();
        }
    }
}

// ---------------------------------------------------------------- the GLA layer around the recurrence (src/Runtime/Cuda/CudaGlaLayer.cs)

// The forget gates of §4.4: z = W₂W₁x + b arrives from the GEMMs (bias not yet added); in place,
//     log α = max(logsigmoid(z + b) / τ, clamp_min)        logsigmoid(z) = min(z, 0) − log(1 + exp(−|z|))
// as the CPU's GlaKernels.LogSigmoidGates (which works in float64; here float32 with log1p, exact to rounding).
// z is (rows, cols), bias (cols) or nullptr; has_clamp 0 means no lower bound. Grid-stride loop.
extern "C" __global__ void gla_log_gates_f32(float* __restrict__ z, const float* __restrict__ bias, long long rows, int cols,
                                             float inverse_normalizer, float clamp_min, int has_clamp)
{
    const long long n = rows * cols;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    {
        const float x = z[i] + (bias != nullptr ? bias[i % cols] : 0.0f);
        float ls = (fminf(x, 0.0f) - log1pf(expf(-fabsf(x)))) * inverse_normalizer;
        if (has_clamp && ls < clamp_min)
            ls = clamp_min;
        z[i] = ls;
    }
}

// The GLA output head: per head row of o (count = rows·heads rows of dim = d_v),
//     y = RMSNorm(o)·γ ⊙ swish(gate),   swish(g) = g·σ(g)
// (fla's FusedRMSNormSwishGate; the CPU's GlaKernels.NormAndGate). o and gate are float32 (count, dim), γ (dim) or
// nullptr (γ = 1), gate nullptr for no output gate; y is bf16 (count, dim), the input of W_o.
// Grid: (count); block: a multiple of 32.
extern "C" __global__ void gla_norm_gate_f32_bf16(const float* __restrict__ o, const float* __restrict__ gate,
                                                  const float* __restrict__ gamma, bf16_t* __restrict__ y, int count, int dim,
                                                  float eps)
{
    __shared__ float scratch[32];
    const int row = blockIdx.x;
    if (row >= count)
        return;
    const float* orow = o + (size_t)row * dim;
    float sum = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        sum += orow[i] * orow[i];
    sum = block_sum(sum, scratch);
    const float inverse_rms = 1.0f / sqrtf(sum / dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
    {
        float value = orow[i] * inverse_rms * (gamma != nullptr ? gamma[i] : 1.0f);
        if (gate != nullptr)
        {
            const float g = gate[(size_t)row * dim + i];
            value *= g / (1.0f + expf(-g));
        }
        y[(size_t)row * dim + i] = float_to_bf16(value);
    }
}

// fla's ShortConvolution on q, k or v: a depthwise causal convolution of `width` taps, then silu,
//     y_t[c] = silu(bias[c] + Σ_j weight[c, j] · x_{t − (width − 1) + j}[c])
// where rows before the call's first come from `tail` ((width − 1, channels): the previous call's last inputs, zeros
// at the start). x (rows, channels) float32 is replaced by y; tail is advanced to this call's last width − 1 inputs.
// weight (channels, width), bias (channels) or nullptr. One thread per channel walks the rows (width ≤ 8).
extern "C" __global__ void gla_short_conv_silu_f32(float* __restrict__ x, float* __restrict__ tail, const float* __restrict__ weight,
                                                   const float* __restrict__ bias, int rows, int channels, int width)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= channels || width < 1 || width > 8)
        return;
    float taps[8], window[8]; // window[j]: the input j − (width − 1) steps from the current token
    for (int j = 0; j < width; j++)
        taps[j] = weight[(size_t)c * width + j];
    for (int j = 0; j < width - 1; j++)
        window[j] = tail[(size_t)j * channels + c];
    const float b = bias != nullptr ? bias[c] : 0.0f;
    for (int t = 0; t < rows; t++)
    {
        window[width - 1] = x[(size_t)t * channels + c];
        float acc = b;
        for (int j = 0; j < width; j++)
            acc += taps[j] * window[j];
        x[(size_t)t * channels + c] = acc / (1.0f + expf(-acc));
        for (int j = 0; j + 1 < width; j++)
            window[j] = window[j + 1];
    }
    for (int j = 0; j < width - 1; j++)
        tail[(size_t)j * channels + c] = window[j];
}
