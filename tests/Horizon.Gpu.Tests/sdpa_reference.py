# PyTorch's scaled_dot_product_attention on the shapes of AttentionBenchmark.cs, timed in the same call on the same
# GPU, and the side-by-side table.  usage: python3 sdpa_reference.py BENCH_TSV
# Same memory layout as Horizon's kernels: q, k, v are (B, N, H, D) tensors viewed as (B, H, N, D).
import math, sys, statistics, torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend

def median_ms(fn, warmup=3, repeats=20):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); fn(); e.record(); e.synchronize()
        times.append(s.elapsed_time(e))
    return statistics.median(times)

def sdpa_ms(backend, b, h, kvh, n_q, n_k, d, causal, copies=1):
    # copies > 1: the timed calls rotate over that many K/V sets (decode: as AttentionBenchmark.Decode, so that a
    # small cache is not timed out of the L2)
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(b, n_q, h, d, device="cuda", dtype=torch.bfloat16, generator=g).transpose(1, 2)
    kv = [(torch.randn(b, n_k, kvh, d, device="cuda", dtype=torch.bfloat16, generator=g).transpose(1, 2),
           torch.randn(b, n_k, kvh, d, device="cuda", dtype=torch.bfloat16, generator=g).transpose(1, 2)) for _ in range(copies)]
    gqa = kvh != h
    step = [0]
    def call():
        k, v = kv[step[0] % copies]
        step[0] += 1
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)
    try:
        with sdpa_kernel(backend):
            return median_ms(call)
    except RuntimeError as e:
        print(f"  {backend}: {str(e).splitlines()[0][:100]}", file=sys.stderr)
        return float("nan")

ours = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
x = torch.empty(1 << 30, device="cuda", dtype=torch.uint8); y = torch.empty_like(x)
copy_gbs = 2 * x.numel() / (median_ms(lambda: y.copy_(x)) * 1e-3) / 1e9
del x, y
print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}; device copy {copy_gbs:.0f} GB/s (read + write)")
print("| kernel | shape | Horizon ms | Horizon | PyTorch FLASH | PyTorch cuDNN | Horizon / FLASH |")
print("|---|---|---|---|---|---|---|")
for row in ours:
    if row[0] == "prefill":
        b, h, n, d = map(int, row[1:5]); ms, tf = float(row[5]), float(row[6])
        flops = 4.0 * b * h * n * n * d / 2
        f = flops / (sdpa_ms(SDPBackend.FLASH_ATTENTION, b, h, h, n, n, d, True) * 1e-3) / 1e12
        c = flops / (sdpa_ms(SDPBackend.CUDNN_ATTENTION, b, h, h, n, n, d, True) * 1e-3) / 1e12
        print(f"| attention_prefill causal bf16 | B·H·N·D = {b}·{h}·{n}·{d} | {ms:.3f} | {tf:.1f} TFLOP/s | {f:.1f} TFLOP/s | {c:.1f} TFLOP/s | {tf / f:.2f} |")
    elif row[0] == "decode":
        b = int(row[1]); h, kvh = map(int, row[2].split("/")); n, d = int(row[3]), int(row[4]); ms, gbs = float(row[5]), float(row[6])
        nbytes = 2.0 * b * n * kvh * d * 2
        copies = min(16, max(1, math.ceil(256e6 / nbytes)))
        f = nbytes / (sdpa_ms(SDPBackend.FLASH_ATTENTION, b, h, kvh, 1, n, d, False, copies) * 1e-3) / 1e9
        c = nbytes / (sdpa_ms(SDPBackend.CUDNN_ATTENTION, b, h, kvh, 1, n, d, False, copies) * 1e-3) / 1e9
        print(f"| attention_decode bf16 ({row[7]}) | B={b}, heads {h}/{kvh}, KV {n}, D {d} | {ms:.3f} | {gbs:.0f} GB/s ({gbs / copy_gbs:.0%} of copy) | {f:.0f} GB/s | {c:.0f} GB/s | {gbs / f:.2f} |")
sweep = [row for row in ours if row[0] == "decode_splits"]
if sweep:
    print()
    print("| decode split sweep | shape | Horizon ms | Horizon |")
    print("|---|---|---|---|")
    for row in sweep:
        print(f"| {row[7]} | heads {row[2]}, KV {row[3]}, D {row[4]} | {float(row[5]):.3f} | {float(row[6]):.0f} GB/s ({float(row[6]) / copy_gbs:.0%} of copy) |")
