# PyTorch's scaled_dot_product_attention (FLASH backend) at the width of GlaBenchmark.cs (B = 1, 8 heads × 128, causal,
# bf16), timed in the same call on the same GPU, and the GLA-versus-attention table.  usage: python3 gla_reference.py BENCH_TSV
import sys, statistics, torch
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

rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.startswith("gla\t")]
print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
print("| tokens | GLA bf16 prefill (4 heads, d_k 128, d_v 256) | Horizon flash attention (8 × 128, causal) | PyTorch SDPA FLASH (8 × 128, causal) | GLA / Horizon attention | GLA / PyTorch FLASH |")
print("|---|---|---|---|---|---|")
for row in rows:
    n = int(row[1]); gla_ms, gla_tps, att_ms, att_tps = float(row[2]), float(row[3]), float(row[4]), float(row[5])
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(1, n, 8, 128, device="cuda", dtype=torch.bfloat16, generator=g).transpose(1, 2) for _ in range(3))
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        flash_ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
    del q, k, v
    flash_tps = n / (flash_ms * 1e-3)
    print(f"| {n} | {gla_ms:.3f} ms, {gla_tps / 1e6:.2f} M tok/s | {att_ms:.3f} ms, {att_tps / 1e6:.2f} M tok/s | {flash_ms:.3f} ms, {flash_tps / 1e6:.2f} M tok/s | {att_ms / gla_ms:.2f}× | {flash_ms / gla_ms:.2f}× |")
