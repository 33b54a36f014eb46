// Helpers shared by Horizon's CUDA kernels (native/*.cu). Header-only; needs nothing beyond what nvcc
// includes by default, so `nvcc -ptx` builds every kernel file on its own (native/build_ptx.sh).
//
// Conventions (docs/cuda.md):
// - kernel symbols are `extern "C"` and named {op}_{dtype}: rms_norm_f32, rms_norm_bf16, ...
// - tensors are row-major, the last index fastest; shapes are written in words at each kernel;
// - bf16 is carried as its raw 16 bits (the upper half of an IEEE float32) and all arithmetic is float32;
// - the C# launcher (src/Runtime/Cuda/CudaOps.cs) checks sizes, computes the grid with CeilDiv and checks the
//   launch's error right away.
#pragma once

typedef unsigned short bf16_t;

#define HZ_INF __int_as_float(0x7f800000)
#define HZ_NAN __int_as_float(0x7fc00000)

static __device__ __forceinline__ int ceil_div(int a, int b) { return (a + b - 1) / b; }

// ---------------------------------------------------------------- bf16 <-> float32

// bf16 is the upper half of a float32: widening is a 16-bit shift, exact.
static __device__ __forceinline__ float to_float(float v) { return v; }
static __device__ __forceinline__ float to_float(bf16_t v) { return __uint_as_float(((unsigned)v) << 16); }

// Narrowing rounds to nearest even (cvt.rn, sm_80+), as torch's .to(torch.bfloat16) does.
static __device__ __forceinline__ bf16_t float_to_bf16(float v)
{
    unsigned short r;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(v));
    return r;
}

// Two floats to one 32-bit word of two bf16: `lo` at the lower address (the lower 16 bits).
static __device__ __forceinline__ unsigned pack_bf16x2(float lo, float hi)
{
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

template <typename T> static __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ bf16_t from_float<bf16_t>(float v) { return float_to_bf16(v); }

// ---------------------------------------------------------------- reductions

static __device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

static __device__ __forceinline__ float warp_max(float v)
{
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `scratch` is 32 floats of shared memory; the block must reach this call together.
static __device__ __forceinline__ float block_sum(float v, float* scratch)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); // scratch may still be read by a previous reduction
    if (lane == 0)
        scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0f;
    return warp_sum(v);
}

static __device__ __forceinline__ float block_max(float v, float* scratch)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0)
        scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : -HZ_INF;
    return warp_max(v);
}

// ---------------------------------------------------------------- tensor-core and async-copy primitives (sm_80+)

static __device__ __forceinline__ unsigned shared_address(const void* p)
{
    return (unsigned)__cvta_generic_to_shared(p);
}

// 16 bytes global -> shared without passing through registers; when !valid, the 16 bytes are zero-filled
// and nothing is read (src-size 0), so `src` only needs to be some mapped address.
static __device__ __forceinline__ void cp_async_16(void* dst_shared, const void* src_global, bool valid)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(dst_shared)), "l"(src_global),
                 "r"(valid ? 16 : 0)
                 : "memory");
}

static __device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

template <int N> static __device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Four 8x8 b16 matrices from shared memory; lane l gives the address of row (l & 7) of matrix (l >> 3).
// Plain: lane l receives row l/4, columns 2(l%4) and 2(l%4)+1 of each matrix (an mma A/B fragment).
static __device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const void* row_address)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(row_address))
                 : "memory");
}

// Transposed: lane l receives rows 2(l%4) and 2(l%4)+1 of column l/4 of each matrix.
static __device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const void* row_address)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(row_address))
                 : "memory");
}

// D (16x8, f32) += A (16x16, bf16, row-major) * B (16x8, bf16, "col": B[k][n] pairs adjacent in k).
// Fragments (g = lane/4, t = lane%4): a[0] = A[g][2t..2t+1], a[1] = A[g+8][2t..], a[2] = A[g][2t+8..],
// a[3] = A[g+8][2t+8..]; b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]; d[0..1] = D[g][2t..2t+1],
// d[2..3] = D[g+8][2t..2t+1].
static __device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
