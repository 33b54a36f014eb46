#!/usr/bin/env python3
"""PyTorch's own bf16 inference of the golden fixtures and the default model, against their float32/float64
references: how far a same-precision computation lands. Horizon's CUDA backend (bf16 weights and GEMM inputs,
float32 residual stream) is held to the flash-attention rule at the model level: its error may be at most twice
this one (tests/Horizon.Gpu.Tests/ModelTests.cs), and at most 1e-2 where this one is small.

Run on the GPU machine from the repository root (torch, transformers, safetensors):
    python3 tests/golden/bf16_baseline.py > tests/golden/bf16_baseline.json
Per fixture: max |Δ logprob| of the bf16 computation against expected.json.
- Llama / Qwen2 fixtures: transformers' model loaded with dtype=torch.bfloat16 on CUDA (sdpa attention), the usual
  bf16 inference (weights, activations and residual stream bf16), log-softmax of the logits in float32.
- GLA fixtures: make_gla_golden.py's equations with bf16 weights and bf16 inputs to every matrix product (float32
  accumulation, as torch's bf16 matmul on CUDA), the recurrence and norms in float32 (fla keeps its state float32).
- models/horizon-kjv: its training script's model (models/train/train.py) under torch.autocast(bfloat16), as it was
  scored in training.
"""
import json
import os
import sys

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))
sys.path.insert(0, os.path.join(ROOT, "models", "train"))
DEVICE = "cuda"


def expected(path):
    with open(os.path.join(path, "expected.json")) as f:
        e = json.load(f)
    return e["tokens"], torch.tensor(e["logprobs"], dtype=torch.float64)


def token_logprobs(logits, tokens):
    lp = torch.log_softmax(logits.float(), dim=-1)[:-1].gather(1, tokens[1:, None])[:, 0]
    return lp.double().cpu()


@torch.no_grad()
def transformers_bf16(path):
    from transformers import AutoModelForCausalLM
    tokens, ref = expected(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, attn_implementation="sdpa").to(DEVICE).eval()
    ids = torch.tensor(tokens, device=DEVICE)
    logits = model(ids[None]).logits[0]
    return float((token_logprobs(logits, ids) - ref).abs().max())


@torch.no_grad()
def gla_bf16(path):
    import make_gla_golden as g
    from safetensors.torch import load_file
    tokens, ref = expected(path)
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    sd = {k: v.to(torch.bfloat16).float().to(DEVICE) for k, v in load_file(os.path.join(path, "model.safetensors")).items()}

    class Bf16Weight:
        """W such that x @ W.T is a bf16 matrix product with float32 accumulation."""

        def __init__(self, w):
            self.w = w.to(torch.bfloat16)

        @property
        def T(self):
            return self

        def __rmatmul__(self, x):
            return (x.to(torch.bfloat16) @ self.w.T).float()

    weights = {k: (Bf16Weight(v) if v.dim() == 2 and not k.endswith("embeddings.weight") else v) for k, v in sd.items()}
    head = "model.embeddings.weight" if cfg.get("tie_word_embeddings", False) else "lm_head.weight"
    table = sd["model.embeddings.weight"]
    weights["model.embeddings.weight"] = table
    # reference_logits ends with h @ head.T: give the head as a bf16 product too.
    original = g.reference_logits

    def logits(sd_, cfg_, toks):
        eps = g.norm_eps(cfg_)
        h = table[toks]
        for layer in range(cfg_["num_hidden_layers"]):
            p = f"model.layers.{layer}."
            h = h + g.gla_layer(g.rms_norm(h, sd_[p + "attn_norm.weight"], eps), sd_, p, cfg_)
            h = h + g.mlp(g.rms_norm(h, sd_[p + "mlp_norm.weight"], eps), sd_, p)
        h = g.rms_norm(h, sd_["model.norm.weight"], eps)
        return h @ Bf16Weight(sd[head]).T

    ids = torch.tensor(tokens, device=DEVICE)
    out = logits(weights, cfg, ids)
    assert original is g.reference_logits
    return float((token_logprobs(out, ids) - ref).abs().max())


@torch.no_grad()
def horizon_kjv_bf16(path):
    import train
    tokens, ref = expected(path)
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    # config.json names the layer kinds as transformers does; train.py builds them by its own names.
    cfg["layer_types"] = ["gla" if t == "linear_attention" else "attention" for t in cfg["layer_types"]]
    from pathlib import Path
    model = train.load_rounded(Path(path) / "model.safetensors", cfg).to(DEVICE)
    ids = torch.tensor(tokens, device=DEVICE)
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        logits = model(ids[None])[0]
    return float((token_logprobs(logits, ids) - ref).abs().max())


def main():
    fixtures = {
        "tests/golden/llama-gqa-untied": transformers_bf16,
        "tests/golden/llama-mqa-tied-headdim-linear-rope": transformers_bf16,
        "tests/golden/llama-bf16-sharded-rope-parameters": transformers_bf16,
        "tests/golden/qwen2-bias-tied": transformers_bf16,
        "tests/golden/qwen2-f16-mqa-untied": transformers_bf16,
        "tests/golden/gla-tied": gla_bf16,
        "tests/golden/gla-gqa-conv-clamp-untied": gla_bf16,
        "tests/golden/gla-mqa-nogate-noaffine": gla_bf16,
        "tests/golden/gla-legacy-fused-mlp-bf16": gla_bf16,
        "models/horizon-kjv": horizon_kjv_bf16,
    }
    out = {"description": "max |Δ logprob| of PyTorch bf16 inference against each fixture's reference (tests/golden/bf16_baseline.py)",
           "torch": torch.__version__}
    for name, run in fixtures.items():
        try:
            out[name] = run(os.path.join(ROOT, name))
        except Exception as e:  # one broken fixture must not hide the others
            out[name] = None
            print(f"{name}: {type(e).__name__}: {e}", file=sys.stderr)
        print(f"{name}: {out[name]}", file=sys.stderr)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
