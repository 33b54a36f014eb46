# PyTorch's anchor for `horizon bench cuda`: times torch.nn.functional.scaled_dot_product_attention with the FLASH
# and cuDNN backends on exactly the shapes of a `horizon bench cuda --out HORIZON_TSV` file, in the same device call,
# with the same method (median of the same number of timed calls after the same warm-ups, CUDA events around each
# call) and the same memory layout as Horizon's kernels: q, k, v are (B, N, H, D) tensors viewed as (B, H, N, D).
#   prefill        causal, FLASH and cuDNN                      (rate: TFLOP/s, causal FLOPs 4·B·H·N²·D / 2)
#   decode         1 query, FLASH and cuDNN, enable_gqa for GQA (rate: GB/s of K + V read once); the timed calls
#                  rotate over the same number of K/V copies as Horizon's (detail copies=N), so that a small cache
#                  is not timed from the L2
#   gla_attention  causal, FLASH                                (rate: tokens/s)
#   copy           torch's copy_ of 1 GiB, read + write counted (GB/s)
# usage: python3 bench/cuda/torch_anchor.py HORIZON_TSV TORCH_TSV      then: python3 bench/cuda/join.py HORIZON_TSV TORCH_TSV
import math, statistics, sys
import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
from benchtsv import read_tsv, detail

def median_ms(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(repeats):
        start.record(); fn(); end.record(); end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)

def sdpa_ms(backend, b, h, kvh, n_q, n_k, d, causal, warmup, repeats, copies=1):
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
            return median_ms(call, warmup, repeats)
    except RuntimeError as e:
        print(f"  {backend.name} B={b} H={h}/{kvh} N={n_k} D={d}: {str(e).splitlines()[0][:160]}", file=sys.stderr)
        return float("nan")
    finally:
        del q, kv
        torch.cuda.empty_cache()

def main():
    if len(sys.argv) != 3:
        sys.exit("usage: torch_anchor.py HORIZON_TSV TORCH_TSV")
    meta, rows = read_tsv(sys.argv[1])
    warmup, repeats = int(meta.get("warmup", 3)), int(meta.get("repeats", 20))
    out = open(sys.argv[2], "w")
    out.write(f"# torch_anchor\tdevice={torch.cuda.get_device_name()}\ttorch={torch.__version__}\twarmup={warmup}\trepeats={repeats}\n")
    out.write("kind\tbatch\theads\tkv_heads\ttokens\thead_dim\tbackend\tms\trate\tunit\n")
    def emit(r, backend, ms, rate, unit):
        line = f"{r['kind']}\t{r['batch']}\t{r['heads']}\t{r['kv_heads']}\t{r['tokens']}\t{r['head_dim']}\t{backend}\t{ms:.4f}\t{rate:.2f}\t{unit}"
        out.write(line + "\n"); out.flush()
        print("  " + line, file=sys.stderr)

    x = torch.empty(1 << 30, device="cuda", dtype=torch.uint8); x.fill_(0x5A); y = torch.empty_like(x)
    ms = median_ms(lambda: y.copy_(x), warmup, repeats)
    emit({"kind": "copy", "batch": 1, "heads": 0, "kv_heads": 0, "tokens": x.numel(), "head_dim": 0}, "copy_", ms, 2 * x.numel() / (ms * 1e-3) / 1e9, "GB/s")
    del x, y
    torch.cuda.empty_cache()

    for r in rows:
        b, h, kvh, n, d = r["batch"], r["heads"], r["kv_heads"], r["tokens"], r["head_dim"]
        if r["kind"] == "prefill":
            flops = 4.0 * b * h * n * n * d / 2
            for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION):
                ms = sdpa_ms(backend, b, h, kvh, n, n, d, True, warmup, repeats)
                emit(r, backend.name, ms, flops / (ms * 1e-3) / 1e12, "TFLOP/s")
        elif r["kind"] == "decode":
            nbytes = 2.0 * b * n * kvh * d * 2
            copies = int(detail(r, "copies") or min(16, max(1, math.ceil(256e6 / nbytes))))
            for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION):
                ms = sdpa_ms(backend, b, h, kvh, 1, n, d, False, warmup, repeats, copies)
                emit(r, backend.name, ms, nbytes / (ms * 1e-3) / 1e9, "GB/s")
        elif r["kind"] == "gla_attention":
            ms = sdpa_ms(SDPBackend.FLASH_ATTENTION, b, h, kvh, n, n, d, True, warmup, repeats)
            emit(r, SDPBackend.FLASH_ATTENTION.name, ms, n / (ms * 1e-3), "tok/s")

if __name__ == "__main__":
    main()
