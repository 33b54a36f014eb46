#!/usr/bin/env python3
"""Builds small random-weight Mixture-of-Experts checkpoints (Mixtral, Qwen2-MoE) and their expected log-probs.

Run on the GPU machine (it has torch + transformers 5.17; no network is needed):
    python tests/golden/make_moe_golden.py --out tests/golden
Each fixture directory holds a Hugging Face checkpoint (config.json + safetensors, as save_pretrained writes it) and
expected.json: {"tokens": [...], "logprobs": [...]} where logprobs[i] = log p(tokens[i+1] | tokens[..i]) computed by
transformers in float32 on the CPU with eager attention and the eager (per-expert loop) experts implementation.
expected.json also records, for the record, the tensor names save_pretrained wrote for layer 0 and the smallest
gap, over all tokens and MoE layers, between the k-th and (k+1)-th router logit (a tiny gap would make the expert
choice sensitive to rounding).

The fixtures (see docs/ops/moe.md):
  mixtral-moe-gqa              MixtralForCausalLM, hidden 64, 2 layers, 4 experts top-2, GQA 4/2, float32, saved the
                               default way (transformers 5 writes the per-expert hub layout:
                               block_sparse_moe.gate, block_sparse_moe.experts.{e}.w1/w2/w3).
  mixtral-moe-fused-bf16       MixtralForCausalLM, 5 experts top-3, bfloat16, saved with save_original_format=False
                               (the fused in-memory layout: mlp.gate, mlp.experts.gate_up_proj/down_proj).
  qwen2-moe-shared-dense       Qwen2MoeForCausalLM, 4 experts top-2, norm_topk_prob False, a sigmoid-gated shared
                               expert of another width, q/k/v bias, 3 layers with layer 1 dense (mlp_only_layers).

Weights are initialised far from transformers' default (std 0.02 gives near-uniform predictions and near-uniform
routing): the router gets logits spread over a few units, so the routing is decisive and its weights uneven.
"""
import argparse
import json
import math
import os
import re
import shutil

import torch
import transformers
from safetensors import safe_open
from transformers import AutoModelForCausalLM, MixtralConfig, Qwen2MoeConfig


def is_router(name):
    return name.endswith("mlp.gate.weight") or name.endswith("block_sparse_moe.gate.weight")


def init_weights(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)          # γ in [0.5, 1.5): a wrong γ shows
            elif name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.4)
            elif name.startswith("lm_head"):
                p.copy_(torch.randn(p.shape, generator=g) * (3.0 / math.sqrt(p.shape[-1])))
            elif is_router(name):  # router [E, D]: logits of spread ~2
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / math.sqrt(p.shape[-1])))
            else:
                # Projections at unit gain. The fan-in is the last dimension for 2-D weights [out, in] and for the
                # fused expert stacks gate_up_proj [E, 2I, D] and down_proj [E, D, I] alike.
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / math.sqrt(p.shape[-1])))


def saved_tensors(path):
    """{name: (dtype, shape)} of every tensor in the checkpoint directory, as written."""
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    result = {}
    for file in files:
        with safe_open(os.path.join(path, file), framework="pt") as f:
            for key in f.keys():
                s = f.get_slice(key)
                result[key] = (str(s.get_dtype()), list(s.get_shape()))
    return result


def describe_layout(tensors):
    if any(re.search(r"\.experts\.\d+\.", k) for k in tensors):
        return "per-expert"
    if any(k.endswith(".experts.gate_up_proj") for k in tensors):
        return "fused"
    return "unknown"


def load_reference(path):
    """The checkpoint as saved, loaded back in float32 with eager attention and eager (per-expert loop) experts."""
    kwargs = dict(dtype=torch.float32, attn_implementation="eager")
    try:
        return AutoModelForCausalLM.from_pretrained(path, experts_implementation="eager", **kwargs).eval()
    except TypeError:  # a transformers without the experts_implementation switch
        return AutoModelForCausalLM.from_pretrained(path, **kwargs).eval()


def router_gap_hooks(model, top_k, gaps):
    """Records, per MoE layer call, the smallest gap between the k-th and (k+1)-th largest router logit."""
    handles = []
    for name, module in model.named_modules():
        if name.endswith(".mlp.gate") or name.endswith(".block_sparse_moe.gate"):
            def hook(_module, _inputs, output, layer=name):
                logits = output[0] if isinstance(output, tuple) else output
                logits = logits.reshape(-1, logits.shape[-1]).double()
                if bool((logits >= 0).all()) and torch.allclose(logits.sum(-1), torch.ones_like(logits[:, 0])):
                    logits = logits.clamp_min(1e-300).log()  # some routers return softmax probabilities first
                if logits.shape[-1] > top_k:
                    top = torch.topk(logits, top_k + 1, dim=-1).values
                    gaps.append((layer, float((top[:, top_k - 1] - top[:, top_k]).min())))
            handles.append(module.register_forward_hook(hook))
    return handles


FAILED = []


def make_fixture(*args, **kwargs):
    try:
        _make_fixture(*args, **kwargs)
    except Exception:  # report every fixture's failure in one run instead of stopping at the first
        import traceback
        traceback.print_exc()
        FAILED.append(args[1])


def _make_fixture(out_dir, name, config, seq_len, seed, top_k, dtype=torch.float32, save_original_format=True,
                  expected_layout="per-expert"):
    path = os.path.join(out_dir, name)
    shutil.rmtree(path, ignore_errors=True)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    init_weights(model, seed)
    model = model.to(dtype)
    model.save_pretrained(path, save_original_format=save_original_format)
    for extra in ("generation_config.json",):
        p = os.path.join(path, extra)
        if os.path.exists(p):
            os.remove(p)

    tensors = saved_tensors(path)
    layout = describe_layout(tensors)
    layer0 = {k: v for k, v in sorted(tensors.items()) if k.startswith("model.layers.0.")}
    print(f"\n{name}: save_pretrained(save_original_format={save_original_format}) wrote {len(tensors)} tensors, "
          f"expert layout: {layout}; layer 0:")
    for k, (dt, shape) in layer0.items():
        print(f"    {k:60s} {dt:8s} {shape}")
    if layout != expected_layout:
        print(f"    NOTE: expected the {expected_layout} layout; docs/ops/moe.md and MoeTensorNames assume it")

    # The reference: the checkpoint as saved, loaded back and run in float32 on the CPU.
    ref = load_reference(path)
    gaps = []
    handles = router_gap_hooks(ref, top_k, gaps)
    g = torch.Generator().manual_seed(seed + 1)
    tokens = torch.randint(0, config.vocab_size, (seq_len,), generator=g)
    with torch.no_grad():
        logits = ref(tokens[None, :]).logits[0].double()
    for h in handles:
        h.remove()
    logprobs = torch.log_softmax(logits, dim=-1)[:-1].gather(1, tokens[1:, None])[:, 0]
    min_gap = min((gap for _, gap in gaps), default=None)
    with open(os.path.join(path, "expected.json"), "w") as f:
        json.dump({
            "description": describe(name, config, dtype, save_original_format, layout),
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "experts_implementation": getattr(ref.config, "_experts_implementation", None),
            "expert_layout": layout,
            "layer0_tensors": {k: [dt, shape] for k, (dt, shape) in layer0.items()},
            "moe_layers_run": len(gaps),
            "min_router_logit_gap": min_gap,
            "tokens": tokens.tolist(),
            "logprobs": [round(x, 7) for x in logprobs.tolist()],
        }, f)
    lp = logprobs
    print(f"{name:32s} tokens {seq_len:4d}  logprob min {lp.min():8.3f} mean {lp.mean():7.3f} max {lp.max():7.3f}"
          f"  ppl {math.exp(-lp.mean()):9.2f}  MoE layers run {len(gaps)}  min router logit gap {min_gap}"
          f"  files {sorted(os.listdir(path))}")


def describe(name, config, dtype, save_original_format, layout):
    experts = getattr(config, "num_local_experts", None) or getattr(config, "num_experts", None)
    text = (f"{name}: {type(config).__name__}, hidden {config.hidden_size}, layers {config.num_hidden_layers}, "
            f"heads {config.num_attention_heads}/{config.num_key_value_heads}, experts {experts} top-"
            f"{config.num_experts_per_tok}, dtype {str(dtype).replace('torch.', '')}, "
            f"save_original_format {save_original_format} ({layout} experts)")
    if isinstance(config, Qwen2MoeConfig):
        text += (f", moe_intermediate {config.moe_intermediate_size}, shared {config.shared_expert_intermediate_size}"
                 f", dense {config.intermediate_size}, norm_topk_prob {config.norm_topk_prob}, mlp_only_layers "
                 f"{config.mlp_only_layers}, decoder_sparse_step {config.decoder_sparse_step}, qkv_bias {config.qkv_bias}")
    else:
        text += f", intermediate {config.intermediate_size}"
    return text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/golden")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    out = args.out
    os.makedirs(out, exist_ok=True)

    # Mixtral, 4 experts top-2 (always renormalised), GQA 4/2, float32, the default save (per-expert hub names).
    make_fixture(out, "mixtral-moe-gqa", MixtralConfig(
        vocab_size=320, hidden_size=64, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, rms_norm_eps=1e-5, tie_word_embeddings=False,
        num_local_experts=4, num_experts_per_tok=2), seq_len=280, seed=21, top_k=2)

    # Mixtral, 5 experts top-3, bfloat16, the fused in-memory layout (save_original_format=False).
    make_fixture(out, "mixtral-moe-fused-bf16", MixtralConfig(
        vocab_size=288, hidden_size=64, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, rms_norm_eps=1e-5, tie_word_embeddings=False,
        num_local_experts=5, num_experts_per_tok=3), seq_len=231, seed=22, top_k=3, dtype=torch.bfloat16,
        save_original_format=False, expected_layout="fused")

    # Qwen2-MoE: 4 experts top-2 without renormalisation, a sigmoid-gated shared expert (width 80 != 32), q/k/v bias,
    # GQA 4/2, and layer 1 dense (mlp_only_layers) with its own intermediate_size.
    make_fixture(out, "qwen2-moe-shared-dense", Qwen2MoeConfig(
        vocab_size=320, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
        shared_expert_intermediate_size=80, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        num_experts=4, num_experts_per_tok=2, norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[1],
        qkv_bias=True, use_sliding_window=False, max_position_embeddings=1024, rms_norm_eps=1e-6,
        tie_word_embeddings=False), seq_len=256, seed=23, top_k=2)

    if FAILED:
        raise SystemExit(f"failed fixtures: {FAILED}")


if __name__ == "__main__":
    main()
