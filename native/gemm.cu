// The linear layer y = x·Wᵀ without cuBLAS (CudaGemm's fallback; cuBLAS is used when it is found). x is (rows, in)
// row-major, W (out, in) row-major (the Hugging Face linear layout), y (rows, out) row-major; x and W are bf16 or fp16
// (the same type), y is float32 or the input type; products accumulate in float32. Kernels {op}_{in}_{out}.
// - linear_*: tensor cores. A block of 8 warps computes a 128 × 128 tile of y over k-steps of 32: the x and W tiles go
//   global → shared with cp.async (16 bytes a copy, zero-filled past the edges) through a 4-stage ring (three tiles in
//   flight while the fourth is used), are read with ldmatrix and multiplied with mma.sync m16n8k16 (f32 accumulators).
//   Each warp owns a 64 × 32 tile of y (4 × 4 mma tiles). Needs in % 8 == 0 and 16-byte aligned x and W (a 16-byte copy
//   must not straddle a row's end); rows and out may be anything (masked at the edges).
// - linear_rows_*: CUDA cores, one warp per output column, up to 8 rows of x per warp, W read once per 8 rows with
//   16-byte loads (in % 8 == 0 and aligned), or one element at a time otherwise. The decode path (rows ≤ 8: a matrix-
//   vector product bound by reading W) and the fallback for any in (slow for many rows: W is read rows/8 times).
// The launchers are in src/Runtime/Cuda/CudaOps.Gemm.cs; the CPU reference is CpuKernels.Linear.
#include "common.cuh"

// fp16 carried as its raw 16 bits, like bf16_t (common.cuh); a struct so that its overloads differ from bf16_t's.
struct half_t
{
    unsigned short bits;
};

namespace gemm
{
constexpr int BM = 128, BN = 128, BK = 32; // block tile of y (rows × out) and its k-step
constexpr int STAGES = 4;                  // cp.async ring depth
constexpr int THREADS = 256;               // 8 warps: 2 along rows × 4 along out
constexpr int WM = 64, WN = 32;            // warp tile
constexpr int MT = WM / 16, NT = WN / 8;   // mma tiles per warp
constexpr int STRIDE = BK + 8;             // shared row of a tile, in 16-bit elements (80 bytes: ldmatrix conflict-free)
constexpr int STAGE_ELEMENTS = (BM + BN) * STRIDE;
constexpr int SHARED_BYTES = STAGES * STAGE_ELEMENTS * 2; // 81920: opted in by the launcher
constexpr int ROWS_PER_WARP = 8;                          // linear_rows: rows of x per warp (blocks of 256 threads)
static_assert(SHARED_BYTES == 81920, "CudaOps.LinearSharedBytes");
} // namespace gemm

// ---------------------------------------------------------------- element conversions

static __device__ __forceinline__ float to_f32(bf16_t v) { return __uint_as_float(((unsigned)v) << 16); }

static __device__ __forceinline__ float to_f32(half_t v)
{
    float r;
    asm("cvt.f32.f16 %0, %1;" : "=f"(r) : "h"(v.bits));
    return r;
}

// Two 16-bit values of one 32-bit word (lower address in the lower half) to float32.
static __device__ __forceinline__ void unpack2(unsigned word, float& lo, float& hi, bf16_t)
{
    lo = __uint_as_float(word << 16);
    hi = __uint_as_float(word & 0xffff0000u);
}

static __device__ __forceinline__ void unpack2(unsigned word, float& lo, float& hi, half_t)
{
    const unsigned short l = (unsigned short)(word & 0xffffu), h = (unsigned short)(word >> 16);
    asm("cvt.f32.f16 %0, %1;" : "=f"(lo) : "h"(l));
    asm("cvt.f32.f16 %0, %1;" : "=f"(hi) : "h"(h));
}

static __device__ __forceinline__ void store1(float* y, float v) { *y = v; }
static __device__ __forceinline__ void store1(bf16_t* y, float v) { *y = float_to_bf16(v); }
static __device__ __forceinline__ void store1(half_t* y, float v)
{
    unsigned short r;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(v));
    y->bits = r;
}

// y[0], y[1] = lo, hi (y 8-byte aligned for float, 4-byte for 16-bit types).
static __device__ __forceinline__ void store2(float* y, float lo, float hi) { *reinterpret_cast<float2*>(y) = make_float2(lo, hi); }
static __device__ __forceinline__ void store2(bf16_t* y, float lo, float hi) { *reinterpret_cast<unsigned*>(y) = pack_bf16x2(lo, hi); }
static __device__ __forceinline__ void store2(half_t* y, float lo, float hi)
{
    unsigned r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    *reinterpret_cast<unsigned*>(y) = r;
}

// D (16×8, f32) += A (16×16, row) · B (16×8, col); fragments as mma_bf16_16816 in common.cuh.
static __device__ __forceinline__ void mma_16816(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1, bf16_t)
{
    mma_bf16_16816(d, a, b0, b1);
}

static __device__ __forceinline__ void mma_16816(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1, half_t)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// ---------------------------------------------------------------- tensor-core tiles

// One k-step's tiles into shared stage `s`: rows m0 … m0 + 127 of x and n0 … n0 + 127 of W, columns k0 … k0 + 31.
// 2 × 128 rows × 4 copies of 16 bytes = 1024 copies, 4 per thread; a copy outside the matrix zero-fills.
template <typename TIn>
static __device__ __forceinline__ void load_stage(TIn* stage, const TIn* __restrict__ x, const TIn* __restrict__ w, int rows,
                                                  int out, int in, int m0, int n0, int k0)
{
    using namespace gemm;
#pragma unroll
    for (int copy = 0; copy < 2 * BM * (BK / 8) / THREADS; copy++)
    {
        const int c = threadIdx.x + copy * THREADS;
        const bool is_w = c >= BM * (BK / 8);
        const int cc = is_w ? c - BM * (BK / 8) : c;
        const int r = cc >> 2, col = (cc & 3) * 8;
        const int k = k0 + col;
        const TIn* base = is_w ? w : x;
        const int global_row = (is_w ? n0 : m0) + r;
        const bool valid = global_row < (is_w ? out : rows) && k < in;
        const TIn* src = valid ? base + (size_t)global_row * in + k : base;
        cp_async_16(stage + (is_w ? BM * STRIDE : 0) + r * STRIDE + col, src, valid);
    }
}

// y tile (blockIdx.y, blockIdx.x) = x rows m0 … m0 + 127 · (W rows n0 … n0 + 127)ᵀ. Grid (CeilDiv(out, 128),
// CeilDiv(rows, 128)), block 256, dynamic shared memory gemm::SHARED_BYTES. in % 8 == 0, x and W 16-byte aligned.
template <typename TIn, typename TOut>
static __device__ void linear_tc(const TIn* __restrict__ x, const TIn* __restrict__ w, TOut* __restrict__ y, int rows, int out, int in)
{
    using namespace gemm;
    extern __shared__ __align__(16) unsigned char shared_bytes[];
    TIn* tiles = reinterpret_cast<TIn*>(shared_bytes); // STAGES × (x tile BM × STRIDE, then W tile BN × STRIDE)

    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int wm0 = (warp >> 2) * WM, wn0 = (warp & 3) * WN; // this warp's tile inside the block tile
    const int g = lane >> 2, t = lane & 3;

    float acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
            acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.0f;

    const int steps = ceil_div(in, BK);
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++)
    {
        if (s < steps)
            load_stage(tiles + s * STAGE_ELEMENTS, x, w, rows, out, in, m0, n0, s * BK);
        cp_async_commit();
    }

    // ldmatrix row addresses (lane l: row l & 7 of matrix l >> 3). A: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7),
    // (rows 0-7, k 8-15), (rows 8-15, k 8-15) = a[0..3]. B: (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7),
    // (n 8-15, k 8-15) = b0, b1 of n-tile j, b0, b1 of n-tile j + 1 (W's rows are B's columns, k contiguous).
    const int a_row = (lane & 7) + ((lane >> 3) & 1) * 8, a_col = (lane >> 4) * 8;
    const int b_row = (lane & 7) + (lane >> 4) * 8, b_col = ((lane >> 3) & 1) * 8;

    for (int step = 0; step < steps; step++)
    {
        cp_async_wait<STAGES - 2>(); // this step's tiles have landed (for this thread's copies) ...
        __syncthreads();             // ... for everyone's, and every warp is done with the stage refilled next
        const int next = step + STAGES - 1;
        if (next < steps)
            load_stage(tiles + (next % STAGES) * STAGE_ELEMENTS, x, w, rows, out, in, m0, n0, next * BK);
        cp_async_commit();

        const TIn* xs = tiles + (step % STAGES) * STAGE_ELEMENTS;
        const TIn* ws = xs + BM * STRIDE;
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16)
        {
            unsigned b[NT][2];
#pragma unroll
            for (int j = 0; j < NT; j += 2)
            {
                unsigned r[4];
                ldmatrix_x4(r, ws + (wn0 + j * 8 + b_row) * STRIDE + kk + b_col);
                b[j][0] = r[0];
                b[j][1] = r[1];
                b[j + 1][0] = r[2];
                b[j + 1][1] = r[3];
            }
#pragma unroll
            for (int i = 0; i < MT; i++)
            {
                unsigned a[4];
                ldmatrix_x4(a, xs + (wm0 + i * 16 + a_row) * STRIDE + kk + a_col);
#pragma unroll
                for (int j = 0; j < NT; j++)
                    mma_16816(acc[i][j], a, b[j][0], b[j][1], TIn{});
            }
        }
    }
    cp_async_wait<0>();

    // acc[i][j] = y[m][n .. n + 1] (c 0, 1) and y[m + 8][n .. n + 1] (c 2, 3), m = m0 + wm0 + 16i + g, n = n0 + wn0 + 8j + 2t.
    const bool pairs = (out & 1) == 0; // y[m][n], n even, starts an aligned pair
#pragma unroll
    for (int i = 0; i < MT; i++)
    {
#pragma unroll
        for (int half = 0; half < 2; half++)
        {
            const int m = m0 + wm0 + i * 16 + g + half * 8;
            if (m >= rows)
                continue;
            TOut* yr = y + (size_t)m * out;
#pragma unroll
            for (int j = 0; j < NT; j++)
            {
                const int n = n0 + wn0 + j * 8 + 2 * t;
                const float lo = acc[i][j][2 * half], hi = acc[i][j][2 * half + 1];
                if (pairs && n + 1 < out)
                    store2(yr + n, lo, hi);
                else
                {
                    if (n < out)
                        store1(yr + n, lo);
                    if (n + 1 < out)
                        store1(yr + n + 1, hi);
                }
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(256) linear_bf16_f32(const bf16_t* x, const bf16_t* w, float* y, int rows, int out, int in)
{
    linear_tc(x, w, y, rows, out, in);
}

extern "C" __global__ void __launch_bounds__(256) linear_bf16_bf16(const bf16_t* x, const bf16_t* w, bf16_t* y, int rows, int out, int in)
{
    linear_tc(x, w, y, rows, out, in);
}

extern "C" __global__ void __launch_bounds__(256) linear_f16_f32(const half_t* x, const half_t* w, float* y, int rows, int out, int in)
{
    linear_tc(x, w, y, rows, out, in);
}

extern "C" __global__ void __launch_bounds__(256) linear_f16_f16(const half_t* x, const half_t* w, half_t* y, int rows, int out, int in)
{
    linear_tc(x, w, y, rows, out, in);
}

// ---------------------------------------------------------------- CUDA-core rows (decode, and any in)

// y[r][n] = Σ_k x[r][k] · W[n][k] for r in rows r0 … r0 + 7 (r0 = 8·blockIdx.y) and n = one column per warp.
// vec (in % 8 == 0, x and W 16-byte aligned): each lane reads 8 elements (16 bytes) of W's row at a time, eight
// such loads in flight per lane; otherwise one element per lane per step. Grid (CeilDiv(out, 8), CeilDiv(rows, 8)),
// block 256 threads (8 warps).
template <typename TIn, typename TOut>
static __device__ void linear_rows(const TIn* __restrict__ x, const TIn* __restrict__ w, TOut* __restrict__ y, int rows, int out,
                                   int in, int vec)
{
    using namespace gemm;
    const int lane = threadIdx.x & 31;
    const int n = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (n >= out)
        return; // whole warps leave; nothing below synchronises the block
    const int r0 = blockIdx.y * ROWS_PER_WARP;
    const int count = min(ROWS_PER_WARP, rows - r0);
    const TIn* wr = w + (size_t)n * in;
    const TIn* xr = x + (size_t)r0 * in;
    float acc[ROWS_PER_WARP];
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; r++)
        acc[r] = 0.0f;

    if (vec)
    {
        constexpr int UNROLL = 8, SPAN = 32 * 8; // elements a warp covers with one 16-byte load per lane
        for (int k0 = lane * 8; k0 < in; k0 += UNROLL * SPAN)
        {
            uint4 wv[UNROLL];
#pragma unroll
            for (int u = 0; u < UNROLL; u++)
            {
                const int k = k0 + u * SPAN;
                wv[u] = k < in ? *reinterpret_cast<const uint4*>(wr + k) : make_uint4(0u, 0u, 0u, 0u);
            }
#pragma unroll
            for (int u = 0; u < UNROLL; u++)
            {
                const int k = k0 + u * SPAN;
                if (k >= in)
                    break;
                float wf[8];
                unpack2(wv[u].x, wf[0], wf[1], TIn{});
                unpack2(wv[u].y, wf[2], wf[3], TIn{});
                unpack2(wv[u].z, wf[4], wf[5], TIn{});
                unpack2(wv[u].w, wf[6], wf[7], TIn{});
#pragma unroll
                for (int r = 0; r < ROWS_PER_WARP; r++)
                {
                    if (r < count)
                    {
                        const uint4 xv = *reinterpret_cast<const uint4*>(xr + (size_t)r * in + k);
                        float xf[8];
                        unpack2(xv.x, xf[0], xf[1], TIn{});
                        unpack2(xv.y, xf[2], xf[3], TIn{});
                        unpack2(xv.z, xf[4], xf[5], TIn{});
                        unpack2(xv.w, xf[6], xf[7], TIn{});
#pragma unroll
                        for (int e = 0; e < 8; e++)
                            acc[r] = fmaf(xf[e], wf[e], acc[r]);
                    }
                }
            }
        }
    }
    else
    {
        for (int k = lane; k < in; k += 32)
        {
            const float wk = to_f32(wr[k]);
#pragma unroll
            for (int r = 0; r < ROWS_PER_WARP; r++)
            {
                if (r < count)
                    acc[r] = fmaf(to_f32(xr[(size_t)r * in + k]), wk, acc[r]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; r++)
    {
        const float s = warp_sum(acc[r]);
        if (lane == 0 && r < count)
            store1(y + (size_t)(r0 + r) * out + n, s);
    }
}

extern "C" __global__ void __launch_bounds__(256) linear_rows_bf16_f32(const bf16_t* x, const bf16_t* w, float* y, int rows, int out, int in, int vec)
{
    linear_rows(x, w, y, rows, out, in, vec);
}

extern "C" __global__ void __launch_bounds__(256) linear_rows_bf16_bf16(const bf16_t* x, const bf16_t* w, bf16_t* y, int rows, int out, int in, int vec)
{
    linear_rows(x, w, y, rows, out, in, vec);
}

extern "C" __global__ void __launch_bounds__(256) linear_rows_f16_f32(const half_t* x, const half_t* w, float* y, int rows, int out, int in, int vec)
{
    linear_rows(x, w, y, rows, out, in, vec);
}

extern "C" __global__ void __launch_bounds__(256) linear_rows_f16_f16(const half_t* x, const half_t* w, half_t* y, int rows, int out, int in, int vec)
{
    linear_rows(x, w, y, rows, out, in, vec);
}
