#!/usr/bin/env python3
"""Builds the small random-weight checkpoints Horizon's golden tests load, and their expected log-probs.

Run on the GPU machine (it has torch + transformers; no network is needed):
    python tests/golden/make_golden.py --out tests/golden
Each fixture directory holds a Hugging Face checkpoint (config.json + safetensors, as save_pretrained writes
it) and expected.json: {"tokens": [...], "logprobs": [...]} where logprobs[i] = log p(tokens[i+1] | tokens[..i])
computed by transformers in float32 on the CPU with eager attention (exact fp32, no TF32).

Weights are initialised far from transformers' default (std 0.02 gives near-uniform predictions) so that the
log-probs spread over several nats and a wrong op shows up as a large error.
"""
import argparse
import json
import math
import os
import shutil

import torch
import transformers
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config


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
                p.copy_(torch.randn(p.shape, generator=g) * (3.0 / math.sqrt(p.shape[1])))
            else:  # projections: unit gain keeps activations O(1) through the layers
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / math.sqrt(p.shape[1])))


def to_legacy_rope_form(config_path):
    """Rewrites transformers 5's rope_parameters into the older rope_theta + rope_scaling keys."""
    with open(config_path) as f:
        cfg = json.load(f)
    params = cfg.pop("rope_parameters", None)
    if params is None:
        return cfg
    cfg["rope_theta"] = params.get("rope_theta", 10000.0)
    rope_type = params.get("rope_type", "default")
    if rope_type != "default":
        cfg["rope_scaling"] = {"type": rope_type, "factor": params["factor"]}
    else:
        cfg["rope_scaling"] = None
    with open(config_path, "w") as f:
        json.dump(cfg, f, indent=2)
    return cfg


def make_fixture(*args, **kwargs):
    try:
        _make_fixture(*args, **kwargs)
    except Exception:  # report every fixture's failure in one run instead of stopping at the first
        import traceback
        traceback.print_exc()
        FAILED.append(args[1])


FAILED = []


def _make_fixture(out_dir, name, config, seq_len, seed, dtype=torch.float32, legacy_rope=False, shard=False):
    path = os.path.join(out_dir, name)
    shutil.rmtree(path, ignore_errors=True)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    init_weights(model, seed)
    model = model.to(dtype)
    kwargs = {"max_shard_size": "150KB"} if shard else {}
    model.save_pretrained(path, **kwargs)
    for extra in ("generation_config.json",):
        p = os.path.join(path, extra)
        if os.path.exists(p):
            os.remove(p)
    if legacy_rope:
        to_legacy_rope_form(os.path.join(path, "config.json"))

    # The reference: the checkpoint as saved, loaded back and run in float32 on the CPU.
    ref = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    g = torch.Generator().manual_seed(seed + 1)
    tokens = torch.randint(0, config.vocab_size, (seq_len,), generator=g)
    with torch.no_grad():
        logits = ref(tokens[None, :]).logits[0].double()
    logprobs = torch.log_softmax(logits, dim=-1)[:-1].gather(1, tokens[1:, None])[:, 0]
    with open(os.path.join(path, "expected.json"), "w") as f:
        json.dump({
            "description": describe(name, config, dtype, legacy_rope, shard),
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "tokens": tokens.tolist(),
            "logprobs": [round(x, 7) for x in logprobs.tolist()],
        }, f)
    lp = logprobs
    print(f"{name:32s} tokens {seq_len:4d}  logprob min {lp.min():8.3f} mean {lp.mean():7.3f} max {lp.max():7.3f}"
          f"  ppl {math.exp(-lp.mean()):9.2f}  files {sorted(os.listdir(path))}")


def describe(name, config, dtype, legacy_rope, shard):
    return (f"{name}: {type(config).__name__}, hidden {config.hidden_size}, heads {config.num_attention_heads}/"
            f"{config.num_key_value_heads}, head_dim {getattr(config, 'head_dim', None)}, tied {config.tie_word_embeddings}, "
            f"dtype {str(dtype).replace('torch.', '')}, rope form {'rope_theta+rope_scaling' if legacy_rope else 'rope_parameters'}"
            f"{', sharded' if shard else ''}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/golden")
    ap.add_argument("--default-model-dir", default="models/tiny-llama")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    out = args.out

    # Llama, GQA 4/2, untied head, default RoPE, legacy config keys.
    make_fixture(out, "llama-gqa-untied", LlamaConfig(
        vocab_size=320, hidden_size=64, intermediate_size=112, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, rms_norm_eps=1e-5, tie_word_embeddings=False,
        rope_theta=10000.0), seq_len=300, seed=11, legacy_rope=True)

    # Llama, MQA (1 KV head), tied head, head_dim 24 != 64/4, linear RoPE scaling x2, legacy keys.
    make_fixture(out, "llama-mqa-tied-headdim-linear-rope", LlamaConfig(
        vocab_size=288, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, head_dim=24, max_position_embeddings=1024, rms_norm_eps=1e-6,
        tie_word_embeddings=True, rope_theta=500.0, rope_scaling={"rope_type": "linear", "factor": 2.0}),
        seq_len=257, seed=12, legacy_rope=True)

    # Llama in BF16, GQA 6/2, linear scaling x4 in the rope_parameters form, sharded checkpoint.
    make_fixture(out, "llama-bf16-sharded-rope-parameters", LlamaConfig(
        vocab_size=300, hidden_size=96, intermediate_size=160, num_hidden_layers=3, num_attention_heads=6,
        num_key_value_heads=2, max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False,
        rope_theta=10000.0, rope_scaling={"rope_type": "linear", "factor": 4.0}),
        seq_len=333, seed=13, dtype=torch.bfloat16, shard=True)

    # Qwen2 with q/k/v biases, tied head, GQA 4/2, rope_parameters form.
    make_fixture(out, "qwen2-bias-tied", Qwen2Config(
        vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, rms_norm_eps=1e-6, tie_word_embeddings=True,
        rope_theta=1000000.0), seq_len=301, seed=14)

    # Qwen2 in F16, MQA, untied head, legacy keys.
    make_fixture(out, "qwen2-f16-mqa-untied", Qwen2Config(
        vocab_size=256, hidden_size=80, intermediate_size=144, num_hidden_layers=2, num_attention_heads=5,
        num_key_value_heads=1, max_position_embeddings=1024, rms_norm_eps=1e-6, tie_word_embeddings=False,
        rope_theta=10000.0), seq_len=289, seed=15, dtype=torch.float16, legacy_rope=True)

    # The tiny checkpoint the README's first command scores (the same recipe as the first fixture).
    if args.default_model_dir:
        shutil.rmtree(args.default_model_dir, ignore_errors=True)
        shutil.copytree(os.path.join(out, "llama-gqa-untied"), args.default_model_dir)
    if FAILED:
        raise SystemExit(f"failed fixtures: {FAILED}")


if __name__ == "__main__":
    main()
