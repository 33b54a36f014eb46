# The side-by-side table of issue 4: Horizon's figures (`horizon bench cuda --out HORIZON_TSV`) beside PyTorch's on
# the same shapes, timed in the same device call (bench/cuda/torch_anchor.py HORIZON_TSV TORCH_TSV). Markdown on
# stdout; the columns keep the meaning of docs/performance.md's "CUDA (issue 4)" tables:
#   Horizon / FLASH > 1: Horizon faster (ratio of the rates, = FLASH time / Horizon time);
#   % of copy: decode's GB/s over the device copy's (cuMemcpyDtoD, read + write) measured by Horizon in the same run;
#   GLA vs X: X's time / GLA's time at the same token count (> 1: GLA faster).
# usage: python3 bench/cuda/join.py HORIZON_TSV TORCH_TSV
import math, sys
sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
from benchtsv import read_tsv, detail, shape_key

def fmt(x, spec):
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)

def rate(x, spec, unit):
    return "–" if x is None or math.isnan(x) else f"{format(x, spec)} {unit}"

def ratio(a, b):
    return math.nan if b is None or a is None or not b or math.isnan(a) or math.isnan(b) else a / b

def main():
    if len(sys.argv) != 3:
        sys.exit("usage: join.py HORIZON_TSV TORCH_TSV")
    hmeta, ours = read_tsv(sys.argv[1])
    tmeta, theirs = read_tsv(sys.argv[2])
    torch_rate = {shape_key(r) + (r["backend"],): r for r in theirs}
    def pt(row, backend):
        r = torch_rate.get(shape_key(row) + (backend,))
        return None if r is None else r["rate"]
    copy = next((r for r in ours if r["kind"] == "copy"), None)
    torch_copy = next((r for r in theirs if r["kind"] == "copy"), None)
    copy_gbs = copy["rate"] if copy else math.nan

    print(f"GPU: {hmeta.get('device', '?')} (compute capability {hmeta.get('capability', '?')}, driver {hmeta.get('driver', '?')}), "
          f"torch {tmeta.get('torch', '?')}; PTX: {hmeta.get('ptx', '?')}")
    print(f"Device copy, read + write: {fmt(copy_gbs, '.0f')} GB/s (Horizon, cuMemcpyDtoD of 1 GiB), "
          f"{fmt(torch_copy['rate'] if torch_copy else None, '.0f')} GB/s (PyTorch copy_). "
          f"Median of {hmeta.get('repeats', '?')} timed launches after {hmeta.get('warmup', '?')} warm-ups, device events around each; "
          "bf16, random normal inputs, q, k, v as (B, N, H, D) viewed as (B, H, N, D); causal FLOPs 4·B·H·N²·D / 2; decode bytes: K and V read once.")
    print()

    main_rows = [r for r in ours if r["kind"] in ("prefill", "decode")]
    if main_rows:
        print("| kernel | shape | Horizon ms | Horizon | PyTorch FLASH | PyTorch cuDNN | Horizon / FLASH | Horizon / cuDNN |")
        print("|---|---|---|---|---|---|---|---|")
        for r in main_rows:
            f, c = pt(r, "FLASH_ATTENTION"), pt(r, "CUDNN_ATTENTION")
            if r["kind"] == "prefill":
                print(f"| attention_prefill causal bf16 | B·H·N·D = {r['batch']}·{r['heads']}·{r['tokens']}·{r['head_dim']} | {r['ms']:.3f} | "
                      f"{r['rate']:.1f} TFLOP/s | {rate(f, '.1f', 'TFLOP/s')} | {rate(c, '.1f', 'TFLOP/s')} | {fmt(ratio(r['rate'], f), '.2f')} | {fmt(ratio(r['rate'], c), '.2f')} |")
            else:
                splits = "splits " + (detail(r, "splits") or "?").replace("x", " × ") + " keys"
                print(f"| attention_decode bf16 ({splits}) | B={r['batch']}, heads {r['heads']}/{r['kv_heads']}, KV {r['tokens']}, D {r['head_dim']} | "
                      f"{r['ms']:.3f} | {r['rate']:.0f} GB/s ({fmt(ratio(r['rate'], copy_gbs), '.0%')} of copy) | {rate(f, '.0f', 'GB/s')} | {rate(c, '.0f', 'GB/s')} | "
                      f"{fmt(ratio(r['rate'], f), '.2f')} | {fmt(ratio(r['rate'], c), '.2f')} |")
        print()

    gla = [r for r in ours if r["kind"] == "gla"]
    if gla:
        att = {r["tokens"]: r for r in ours if r["kind"] == "gla_attention"}
        flash = {r["tokens"]: r for r in theirs if r["kind"] == "gla_attention" and r["backend"] == "FLASH_ATTENTION"}
        hv = detail(gla[0], "head_v_dim") or "?"
        a0 = att.get(gla[0]["tokens"])
        width = f"{a0['heads']} × {a0['head_dim']}" if a0 else "?"
        print(f"| tokens | GLA bf16 prefill ({gla[0]['heads']} heads, d_k {gla[0]['head_dim']}, d_v {hv}) | Horizon flash attention ({width}, causal) | "
              f"PyTorch SDPA FLASH ({width}, causal) | GLA vs Horizon attention | GLA vs PyTorch FLASH |")
        print("|---|---|---|---|---|---|")
        for r in gla:
            n = r["tokens"]
            a, f = att.get(n), flash.get(n)
            def cell(x):
                return "–" if x is None or math.isnan(x["ms"]) else f"{x['ms']:.3f} ms, {x['rate'] / 1e6:.2f} M tok/s"
            print(f"| {n} | {cell(r)} | {cell(a)} | {cell(f)} | {fmt(ratio(a['ms'], r['ms']) if a else None, '.2f')}× | "
                  f"{fmt(ratio(f['ms'], r['ms']) if f else None, '.2f')}× |")
        print()

if __name__ == "__main__":
    main()
