// Row-wise and elementwise ops of a decoder layer: embedding gather, RMSNorm, RoPE, SwiGLU, residual add,
// log-softmax. Each op is one templated device body and one `extern "C"` kernel per dtype ({op}_{dtype}).
// The CPU versions are in src/Runtime/Cpu/CpuKernels.cs (same names, same shapes); the launchers in
// src/Runtime/Cuda/CudaOps.cs. All arithmetic is float32; _bf16 kernels read and write bf16 (raw bits).
#include "common.cuh"

// ---------------------------------------------------------------- embedding

// y row t = table row tokens[t] (the input embedding of Vaswani et al. 2017, § 3.4).
// table is (vocab, dim), tokens is (count), y is (count, dim). An id outside [0, vocab) writes a row of NaN
// (the kernel cannot raise; NaN cannot go unnoticed downstream). Grid: (count); block: any multiple of 32.
// embedding_bf16_f32 widens a bf16 table into a float32 residual stream (the model path: weights bf16, residual f32).
template <typename T, typename TOut = T>
static __device__ void embedding(const T* __restrict__ table, const int* __restrict__ tokens, TOut* __restrict__ y,
                                 int count, int dim, int vocab)
{
    const int t = blockIdx.x;
    if (t >= count)
        return;
    const int id = tokens[t];
    TOut* out = y + (size_t)t * dim;
    if ((unsigned)id >= (unsigned)vocab)
    {
        for (int i = threadIdx.x; i < dim; i += blockDim.x)
            out[i] = from_float<TOut>(HZ_NAN);
        return;
    }
    const T* row = table + (size_t)id * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        out[i] = from_float<TOut>(to_float(row[i]));
}

extern "C" __global__ void embedding_f32(const float* table, const int* tokens, float* y, int count, int dim, int vocab)
{
    embedding(table, tokens, y, count, dim, vocab);
}

extern "C" __global__ void embedding_bf16(const bf16_t* table, const int* tokens, bf16_t* y, int count, int dim, int vocab)
{
    embedding(table, tokens, y, count, dim, vocab);
}

extern "C" __global__ void embedding_bf16_f32(const bf16_t* table, const int* tokens, float* y, int count, int dim, int vocab)
{
    embedding(table, tokens, y, count, dim, vocab);
}

// ---------------------------------------------------------------- rms_norm

// y = x / sqrt(mean(x²) + eps) ⊙ γ over the last dimension (Zhang & Sennrich 2019, eq. 4).
// x and y are (rows, dim), γ is (dim); y may be x. The mean square is accumulated in float32.
// rms_norm_f32_bf16 reads the float32 residual stream and writes the bf16 input of the next GEMM (γ float32).
// Grid: (rows); block: a multiple of 32, at most 1024.
template <typename T, typename TGamma = T, typename TOut = T>
static __device__ void rms_norm(const T* x, const TGamma* __restrict__ gamma, TOut* y, int rows, int dim, float eps)
{
    __shared__ float scratch[32];
    const int row = blockIdx.x;
    if (row >= rows)
        return;
    const T* xr = x + (size_t)row * dim;
    TOut* yr = y + (size_t)row * dim;
    float sum = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
    {
        const float v = to_float(xr[i]);
        sum += v * v;
    }
    sum = block_sum(sum, scratch);
    const float inverse_rms = 1.0f / sqrtf(sum / dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        yr[i] = from_float<TOut>(to_float(xr[i]) * inverse_rms * to_float(gamma[i]));
}

extern "C" __global__ void rms_norm_f32(const float* x, const float* gamma, float* y, int rows, int dim, float eps)
{
    rms_norm(x, gamma, y, rows, dim, eps);
}

extern "C" __global__ void rms_norm_bf16(const bf16_t* x, const bf16_t* gamma, bf16_t* y, int rows, int dim, float eps)
{
    rms_norm(x, gamma, y, rows, dim, eps);
}

extern "C" __global__ void rms_norm_f32_bf16(const float* x, const float* gamma, bf16_t* y, int rows, int dim, float eps)
{
    rms_norm(x, gamma, y, rows, dim, eps);
}

// ---------------------------------------------------------------- rope

// Rotary position embedding in place (Su et al. 2021, RoFormer, eq. 34), Hugging Face "rotate half" layout:
// with r = rotary_dim, for i < r/2 the pair (x_i, x_{i+r/2}) of every head of row t is rotated by the angle p·θ_i,
// p = start + t:   out_i = x_i cos − x_{i+r/2} sin,   out_{i+r/2} = x_{i+r/2} cos + x_i sin;
// dimensions r … head_dim − 1 pass through (GPT-NeoX partial rotary; r = head_dim for Llama and Qwen2).
// x is (rows, heads, head_dim); inv_freq is θ (r/2) in float64. As on the CPU, the angle is formed in float64 and
// only its cosine and sine are rounded to float32, so long positions keep their phase.
// Grid: (rows, CeilDiv(r/2, blockDim.x)); one thread per (row, i), looping over the heads.
template <typename T>
static __device__ void rope(T* x, const double* __restrict__ inv_freq, int rows, int heads, int head_dim, int rotary_dim,
                            int start)
{
    const int row = blockIdx.x;
    const int half = rotary_dim / 2;
    const int i = blockIdx.y * blockDim.x + threadIdx.x;
    if (row >= rows || i >= half)
        return;
    double s, c;
    sincos((double)(start + (long long)row) * inv_freq[i], &s, &c);
    const float sin_f = (float)s, cos_f = (float)c;
    T* xr = x + (size_t)row * heads * head_dim;
    for (int h = 0; h < heads; h++)
    {
        T* first = xr + (size_t)h * head_dim + i; // x_i
        T* second = first + half;                 // x_{i+r/2}
        const float a = to_float(*first), b = to_float(*second);
        *first = from_float<T>(a * cos_f - b * sin_f);
        *second = from_float<T>(b * cos_f + a * sin_f);
    }
}

extern "C" __global__ void rope_f32(float* x, const double* inv_freq, int rows, int heads, int head_dim, int rotary_dim, int start)
{
    rope(x, inv_freq, rows, heads, head_dim, rotary_dim, start);
}

extern "C" __global__ void rope_bf16(bf16_t* x, const double* inv_freq, int rows, int heads, int head_dim, int rotary_dim, int start)
{
    rope(x, inv_freq, rows, heads, head_dim, rotary_dim, start);
}

// ---------------------------------------------------------------- swiglu

// h = silu(gate) ⊙ up, silu(z) = z·σ(z) (Shazeer 2020, "GLU Variants Improve Transformer", eq. 6, the
// elementwise part of FFN_SwiGLU). gate, up and h are (n); h may be gate or up. Grid-stride loop.
// swiglu_f32_bf16 takes the float32 GEMM outputs and writes the bf16 input of the down projection.
template <typename T, typename TOut = T>
static __device__ void swiglu(const T* gate, const T* up, TOut* h, long long n)
{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    {
        const float g = to_float(gate[i]);
        h[i] = from_float<TOut>(g / (1.0f + expf(-g)) * to_float(up[i]));
    }
}

extern "C" __global__ void swiglu_f32(const float* gate, const float* up, float* h, long long n) { swiglu(gate, up, h, n); }

extern "C" __global__ void swiglu_bf16(const bf16_t* gate, const bf16_t* up, bf16_t* h, long long n) { swiglu(gate, up, h, n); }

extern "C" __global__ void swiglu_f32_bf16(const float* gate, const float* up, bf16_t* h, long long n) { swiglu(gate, up, h, n); }

// ---------------------------------------------------------------- add

// Residual add acc += x (He et al. 2016, eq. 1). acc and x are (n). Grid-stride loop.
template <typename T>
static __device__ void add(T* acc, const T* x, long long n)
{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        acc[i] = from_float<T>(to_float(acc[i]) + to_float(x[i]));
}

extern "C" __global__ void add_f32(float* acc, const float* x, long long n) { add(acc, x, n); }

extern "C" __global__ void add_bf16(bf16_t* acc, const bf16_t* x, long long n) { add(acc, x, n); }

// ---------------------------------------------------------------- log_softmax

// Row-wise y = x − max(x) − log Σ exp(x − max(x)) (log-probabilities from logits). x is (rows, cols) of T,
// y is (rows, cols) float32 for every T: log-probs feed scoring, where bf16's 8 bits are not enough.
// Grid: (rows); block: a multiple of 32, at most 1024.
template <typename T>
static __device__ void log_softmax(const T* __restrict__ x, float* __restrict__ y, int rows, int cols)
{
    __shared__ float scratch[32];
    const int row = blockIdx.x;
    if (row >= rows)
        return;
    const T* xr = x + (size_t)row * cols;
    float* yr = y + (size_t)row * cols;
    float m = -HZ_INF;
    for (int i = threadIdx.x; i < cols; i += blockDim.x)
        m = fmaxf(m, to_float(xr[i]));
    m = block_max(m, scratch);
    float sum = 0.0f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x)
        sum += expf(to_float(xr[i]) - m);
    sum = block_sum(sum, scratch);
    const float shift = m + logf(sum);
    for (int i = threadIdx.x; i < cols; i += blockDim.x)
        yr[i] = to_float(xr[i]) - shift;
}

extern "C" __global__ void log_softmax_f32(const float* x, float* y, int rows, int cols) { log_softmax(x, y, rows, cols); }

extern "C" __global__ void log_softmax_bf16(const bf16_t* x, float* y, int rows, int cols) { log_softmax(x, y, rows, cols); }

// ---------------------------------------------------------------- the model path's glue (src/Runtime/Cuda/CudaOps.Model.cs)
// A generated model on the GPU keeps its residual stream in float32 and feeds the GEMMs bf16 (weights bf16,
// float32 accumulation and output); these kernels convert and reshape between the two.

// y = x rounded to bf16, n elements. Grid-stride loop.
extern "C" __global__ void convert_f32_bf16(const float* __restrict__ x, bf16_t* __restrict__ y, long long n)
{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        y[i] = float_to_bf16(x[i]);
}

// y[r, c] += bias[c]: the bias of a linear layer after its GEMM (cuBLAS computes x·Wᵀ only). y is (rows, cols).
extern "C" __global__ void bias_add_f32(float* __restrict__ y, const float* __restrict__ bias, long long rows, int cols)
{
    const long long n = rows * cols;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        y[i] += bias[i % cols];
}

// Attention's heads into the kernels' layout: x (rows, heads, head_dim) float32 → y (rows, heads, padded_dim) bf16,
// dimensions head_dim … padded_dim − 1 set to zero. The flash kernels exist for head dims 64 and 128; a smaller head
// runs zero-padded (q·k and p·v are unchanged by zero columns; the scale stays head_dim^−½). y may be a KV cache
// (capacity, kv_heads, padded_dim) offset to its first free row. Grid-stride loop over rows·heads·padded_dim.
extern "C" __global__ void pack_heads_f32_bf16(const float* __restrict__ x, bf16_t* __restrict__ y, int rows, int heads,
                                               int head_dim, int padded_dim)
{
    const long long n = (long long)rows * heads * padded_dim;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    {
        const int d = (int)(i % padded_dim);
        const long long head_row = i / padded_dim;
        y[i] = d < head_dim ? float_to_bf16(x[head_row * head_dim + d]) : (bf16_t)0;
    }
}

// The inverse for attention's output: x (rows, heads, padded_dim) bf16 → y (rows, heads·head_dim) bf16, the padding
// dropped, ready for the output projection. Grid-stride loop over rows·heads·head_dim.
extern "C" __global__ void unpack_heads_bf16(const bf16_t* __restrict__ x, bf16_t* __restrict__ y, int rows, int heads,
                                             int padded_dim, int head_dim)
{
    const long long n = (long long)rows * heads * head_dim;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    {
        const int d = (int)(i % head_dim);
        const long long head_row = i / head_dim;
        y[i] = x[head_row * padded_dim + d];
    }
}
