// GLA prefill harness: an old and a new native/gla.cu side by side, checks then per-launch timings (splits as C# picks).
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <cmath>
#include <vector>
#include <algorithm>
#include <cuda_runtime.h>
typedef void (*L)(int, int, const void*, const void*, const void*, const float*, float*, void*, float*, int, int, int, int, cudaEvent_t*);
extern "C" void launch_old(int, int, const void*, const void*, const void*, const float*, float*, void*, float*, int, int, int, int, cudaEvent_t*);
extern "C" void launch_new(int, int, const void*, const void*, const void*, const float*, float*, void*, float*, int, int, int, int, cudaEvent_t*);
static unsigned short bf(float x) { unsigned u; memcpy(&u, &x, 4); return (unsigned short)((u + 0x7fff + ((u >> 16) & 1)) >> 16); }
static float fb(unsigned short h) { unsigned u = (unsigned)h << 16; float x; memcpy(&x, &u, 4); return x; }
static float urand() { return (float)rand() / RAND_MAX; }
struct Run { std::vector<float> o, s; };
static Run run(L f, int splits, int f32, int rows, int heads, int dk, int dv, float gmax, unsigned seed) {
  srand(seed); size_t nq = (size_t)rows * heads * dk, nv = (size_t)rows * heads * dv; int es = f32 ? 4 : 2;
  std::vector<float> q(nq), k(nq), v(nv), g(nq), s0((size_t)heads * dk * dv);
  for (auto& x : q) x = urand() * 2 - 1; for (auto& x : k) x = urand() * 2 - 1; for (auto& x : v) x = urand() * 2 - 1;
  for (auto& x : g) x = -urand() * gmax; for (auto& x : s0) x = urand() - 0.5f;
  auto up = [&](std::vector<float>& h) { void* d; cudaMalloc(&d, h.size() * es);
    if (f32) cudaMemcpy(d, h.data(), h.size() * 4, cudaMemcpyHostToDevice);
    else { std::vector<unsigned short> b(h.size()); for (size_t i = 0; i < h.size(); i++) b[i] = bf(h[i]); cudaMemcpy(d, b.data(), b.size() * 2, cudaMemcpyHostToDevice); }
    return d; };
  void *dq = up(q), *dk_ = up(k), *dv_ = up(v), *o; float *dg, *st, *ws; int chunks = (rows + 63) / 64;
  cudaMalloc(&dg, nq * 4); cudaMemcpy(dg, g.data(), nq * 4, cudaMemcpyHostToDevice);
  cudaMalloc(&st, s0.size() * 4); cudaMemcpy(st, s0.data(), s0.size() * 4, cudaMemcpyHostToDevice);
  cudaMalloc(&o, nv * es); cudaMemset(o, 0xff, nv * es); size_t wsf = (size_t)heads * chunks * (dk * dv + dk); cudaMalloc(&ws, wsf * 4); cudaMemset(ws, 0xff, wsf * 4);
  f(f32, splits, dq, dk_, dv_, dg, st, o, ws, rows, heads, dk, dv, nullptr); cudaDeviceSynchronize();
  Run r; r.o.resize(nv); r.s.resize(s0.size());
  if (f32) cudaMemcpy(r.o.data(), o, nv * 4, cudaMemcpyDeviceToHost);
  else { std::vector<unsigned short> b(nv); cudaMemcpy(b.data(), o, nv * 2, cudaMemcpyDeviceToHost); for (size_t i = 0; i < nv; i++) r.o[i] = fb(b[i]); }
  cudaMemcpy(r.s.data(), st, r.s.size() * 4, cudaMemcpyDeviceToHost);
  cudaError_t e = cudaGetLastError(); if (e) printf("CUDA ERROR %s\n", cudaGetErrorString(e));
  cudaFree(dq); cudaFree(dk_); cudaFree(dv_); cudaFree(dg); cudaFree(st); cudaFree(o); cudaFree(ws);
  return r;
}
static double rel(const std::vector<float>& a, const std::vector<float>& b) { double n = 0, d = 0; for (size_t i = 0; i < a.size(); i++) { if (!std::isfinite(a[i])) return 1e30; n += (double)(a[i] - b[i]) * (a[i] - b[i]); d += (double)b[i] * b[i]; } return sqrt(n / d); }
static int bad = 0;
static void check(int f32, int rows, int heads, int dk, int dv, float gmax) {
  unsigned seed = 1234u + rows * 7 + dk;
  Run a = run(launch_old, 1, f32, rows, heads, dk, dv, gmax, seed);
  printf("check %s rows=%d h=%d dk=%d dv=%d gmax=%g:", f32 ? "f32" : "bf16", rows, heads, dk, dv, gmax);
  for (int sp : {1, 2, 4}) { Run b = run(launch_new, sp, f32, rows, heads, dk, dv, gmax, seed);
    double eo = rel(b.o, a.o), es = rel(b.s, a.s); printf(" [splits %d: out %.2e state %.2e]", sp, eo, es);
    if (eo > (f32 ? 1e-6 : 2e-3) || es > 1e-6) bad++; }
  printf("\n");
}
static void timeit(const char* name, L f, int splits, int rows) {
  int heads = 4, dk = 128, dv = 256, chunks = rows / 64; size_t nq = (size_t)rows * heads * dk, nv = (size_t)rows * heads * dv;
  void *q, *k, *v, *o; float *g, *st, *ws; cudaMalloc(&q, nq * 2); cudaMalloc(&k, nq * 2); cudaMalloc(&v, nv * 2); cudaMalloc(&o, nv * 2);
  cudaMalloc(&g, nq * 4); cudaMalloc(&st, heads * dk * dv * 4); cudaMalloc(&ws, (size_t)heads * chunks * (dk * dv + dk) * 4);
  { std::vector<unsigned short> h(nv); srand(5); for (auto& x : h) x = bf(urand() * 2 - 1);
    cudaMemcpy(q, h.data(), nq * 2, cudaMemcpyHostToDevice); cudaMemcpy(k, h.data() + 7, nq * 2, cudaMemcpyHostToDevice); cudaMemcpy(v, h.data(), nv * 2, cudaMemcpyHostToDevice);
    std::vector<float> gg(nq); for (auto& x : gg) x = -0.1f * urand(); cudaMemcpy(g, gg.data(), nq * 4, cudaMemcpyHostToDevice); }
  cudaMemset(st, 0, heads * dk * dv * 4);
  cudaEvent_t ev[4]; for (auto& e : ev) cudaEventCreate(&e);
  std::vector<float> t[4];
  for (int r = 0; r < 25; r++) { f(0, splits, q, k, v, g, st, o, ws, rows, heads, dk, dv, ev); cudaEventSynchronize(ev[3]);
    if (r < 5) continue; float a, b, c; cudaEventElapsedTime(&a, ev[0], ev[1]); cudaEventElapsedTime(&b, ev[1], ev[2]); cudaEventElapsedTime(&c, ev[2], ev[3]);
    t[0].push_back(a); t[1].push_back(b); t[2].push_back(c); t[3].push_back(a + b + c); }
  auto med = [](std::vector<float> x) { std::sort(x.begin(), x.end()); return x[x.size() / 2]; };
  cudaError_t e = cudaGetLastError(); if (e) printf("CUDA ERROR %s\n", cudaGetErrorString(e));
  printf("time %-6s splits=%d n=%6d: state %.3f scan %.3f output %.3f total %.3f ms (%.2f M tok/s)\n", name, splits, rows, med(t[0]), med(t[1]), med(t[2]), med(t[3]), rows / (med(t[3]) * 1e-3) / 1e6);
  cudaFree(q); cudaFree(k); cudaFree(v); cudaFree(o); cudaFree(g); cudaFree(st); cudaFree(ws);
}
int main() {
  check(0, 4096, 4, 128, 256, 0.1f); check(1, 4096, 4, 128, 256, 0.1f); check(0, 1000, 3, 100, 72, 0.1f); check(1, 1000, 3, 100, 72, 0.1f);
  check(0, 333, 2, 256, 40, 3.0f); check(1, 333, 2, 64, 64, 0.0f); check(1, 777, 2, 32, 300, 30.0f); check(0, 137, 2, 40, 200, 1.0f); check(1, 200, 4, 128, 256, 0.5f); check(0, 64, 1, 256, 512, 0.2f); check(1, 300, 2, 128, 264, 0.3f);
  printf("checks: %s\n", bad ? "SOME FAILED" : "all within bounds");
  for (int n : {2048, 4096, 8192, 16384, 65536}) { int sp = n <= 2048 ? 2 : 1; timeit("old", launch_old, sp, n); timeit("new", launch_new, sp, n); timeit("old", launch_old, sp, n); timeit("new", launch_new, sp, n); }
  printf("done\n");
}
