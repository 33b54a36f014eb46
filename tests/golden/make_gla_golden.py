#!/usr/bin/env python3
"""Builds small random-weight GLA checkpoints in flash-linear-attention's GLAForCausalLM layout, and their expected
log-probs, for Horizon's `gla` golden tests.

Run on a machine with torch and safetensors (no network, no fla, no transformers needed):
    python tests/golden/make_gla_golden.py --out tests/golden
Each fixture directory holds config.json (model_type "gla", architectures ["GLAForCausalLM"], fla's GLAConfig keys),
model.safetensors (tensor names as fla's state_dict writes them) and expected.json: {"tokens": [...],
"logprobs": [...]} where logprobs[i] = log p(tokens[i+1] | tokens[..i]).

fla is not imported: the expected log-probs come from the float64 implementation below, written from the equations
(Yang et al. 2024, "Gated Linear Attention Transformers with Hardware-Efficient Training", §4.1 recurrent form,
token by token) and from fla's block structure (GLABlock: pre-RMSNorm, GLA, residual, pre-RMSNorm, SwiGLU MLP,
residual; final RMSNorm; lm_head or tied embeddings). It runs on the weights as saved (after any bf16 rounding).

The fixtures go to tests/golden/<name>/ (the default), where GoldenTests loads every expected.json through the model
registry: models/gla.model.json (GlaModel) loads them.

Weights are initialised far from fla's default (std 0.02 gives near-uniform predictions) so that the log-probs
spread over several nats and a wrong op shows up as a large error.
"""
import argparse
import json
import math
import os
import shutil

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

GATE_LOW_RANK = 16          # fla GatedLinearAttention(gate_low_rank_dim=16): not a config key
GATE_LOGIT_NORMALIZER = 16  # fla GatedLinearAttention(gate_logit_normalizer=16): not a config key


# ----------------------------------------------------------------------------------------------------------------
# Configuration: the sizes fla derives from GLAConfig
# ----------------------------------------------------------------------------------------------------------------

def sizes(cfg):
    """The layer sizes fla's GatedLinearAttention and GatedMLP derive from a GLAConfig dict."""
    d = cfg["hidden_size"]
    heads = cfg["num_heads"]
    kv_heads = cfg.get("num_kv_heads") or heads
    groups = heads // kv_heads
    key_dim = int(d * cfg["expand_k"])
    value_dim = int(d * cfg["expand_v"])
    assert key_dim % heads == 0 and value_dim % heads == 0 and heads % kv_heads == 0
    inter = cfg.get("intermediate_size")
    if inter is None:
        ratio = cfg.get("hidden_ratio") or 4
        inter = int(d * ratio * 2 / 3)
        inter = 256 * ((inter + 256 - 1) // 256)
    return {
        "d": d, "heads": heads, "kv_heads": kv_heads, "groups": groups,
        "key_dim": key_dim, "value_dim": value_dim,
        "kv_key_dim": key_dim // groups, "kv_value_dim": value_dim // groups,
        "dk": key_dim // heads, "dv": value_dim // heads, "inter": inter,
    }


def norm_eps(cfg):
    """norm_eps (current fla) or rms_norm_eps (legacy configs); fla's GLAConfig default is 1e-6."""
    if cfg.get("norm_eps") is not None:
        return cfg["norm_eps"]
    if cfg.get("rms_norm_eps") is not None:
        return cfg["rms_norm_eps"]
    return 1e-6


# ----------------------------------------------------------------------------------------------------------------
# Random weights in fla's state_dict layout
# ----------------------------------------------------------------------------------------------------------------

def random_state_dict(cfg, seed, fused_mlp):
    """Tensor name -> float32 tensor, named as fla's GLAForCausalLM.state_dict() names them."""
    s = sizes(cfg)
    d, vocab = s["d"], cfg["vocab_size"]
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, std):
        return torch.randn(*shape, generator=g, dtype=torch.float64).float() * std

    def linear(out_features, in_features, gain=1.0):
        # unit gain keeps activations O(1) through the layers
        return randn(out_features, in_features, std=gain / math.sqrt(in_features))

    def norm_weight(n):
        return (torch.rand(n, generator=g, dtype=torch.float64) + 0.5).float()  # γ in [0.5, 1.5): a wrong γ shows

    sd = {"model.embeddings.weight": randn(vocab, d, std=0.4)}
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        sd[p + "attn_norm.weight"] = norm_weight(d)
        sd[p + "attn.q_proj.weight"] = linear(s["key_dim"], d)
        sd[p + "attn.k_proj.weight"] = linear(s["kv_key_dim"], d)
        sd[p + "attn.v_proj.weight"] = linear(s["kv_value_dim"], d)
        if cfg.get("use_output_gate", True):
            sd[p + "attn.g_proj.weight"] = linear(s["value_dim"], d)
        if cfg.get("use_short_conv", False):
            w = cfg.get("conv_size", 4)
            # nn.Conv1d(groups=channels) weight [channels, 1, width]; no bias (GLAConfig never sets conv_bias)
            sd[p + "attn.q_conv1d.weight"] = randn(s["key_dim"], 1, w, std=1.6 / math.sqrt(w))
            sd[p + "attn.k_conv1d.weight"] = randn(s["kv_key_dim"], 1, w, std=1.6 / math.sqrt(w))
            sd[p + "attn.v_conv1d.weight"] = randn(s["kv_value_dim"], 1, w, std=1.6 / math.sqrt(w))
        sd[p + "attn.gk_proj.0.weight"] = linear(GATE_LOW_RANK, d)
        # gate logits z ~ N(b, ~1.5²) with b ~ N(0, 1.5²): log α = logsigmoid(z)/16 spreads over ≈ (−0.5, 0]
        sd[p + "attn.gk_proj.1.weight"] = linear(s["kv_key_dim"], GATE_LOW_RANK, gain=1.5)
        sd[p + "attn.gk_proj.1.bias"] = randn(s["kv_key_dim"], std=1.5)
        sd[p + "attn.o_proj.weight"] = linear(d, s["value_dim"])
        if cfg.get("elementwise_affine", True):
            fused = cfg.get("fuse_norm", True) and cfg.get("use_output_gate", True) and cfg.get("hidden_act", "swish") == "swish"
            sd[p + ("attn.g_norm_swish_gate.weight" if fused else "attn.g_norm.weight")] = norm_weight(s["dv"])
        sd[p + "mlp_norm.weight"] = norm_weight(d)
        if fused_mlp:
            # legacy fla GLAMLP: one gate_proj [2I, D], gate rows first, then up rows; no up_proj
            sd[p + "mlp.gate_proj.weight"] = linear(2 * s["inter"], d)
        else:
            sd[p + "mlp.gate_proj.weight"] = linear(s["inter"], d)
            sd[p + "mlp.up_proj.weight"] = linear(s["inter"], d)
        sd[p + "mlp.down_proj.weight"] = linear(d, s["inter"])
    sd["model.norm.weight"] = norm_weight(d)
    if not cfg.get("tie_word_embeddings", False):
        sd["lm_head.weight"] = randn(vocab, d, std=3.0 / math.sqrt(d))
    return sd


# ----------------------------------------------------------------------------------------------------------------
# The float64 reference, from the equations
# ----------------------------------------------------------------------------------------------------------------

def rms_norm(x, weight, eps):
    """x / sqrt(mean(x²) + eps) · γ over the last dimension (γ = 1 when weight is None)."""
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y if weight is None else y * weight


def short_conv_silu(x, weight, bias=None):
    """Depthwise causal conv then silu. x [T, C], weight [C, 1, W]: y_t[c] = Σ_j W[c, j]·x_{t−W+1+j}[c]."""
    t, c = x.shape
    w = weight.shape[-1]
    padded = torch.cat([x.new_zeros(w - 1, c), x], dim=0)
    y = sum(weight[:, 0, j] * padded[j:j + t] for j in range(w))
    if bias is not None:
        y = y + bias
    return F.silu(y)


def gla_layer(x, sd, p, cfg):
    """fla GatedLinearAttention on x [T, D] (float64), the recurrence stepped token by token."""
    s = sizes(cfg)
    t_len = x.shape[0]
    heads, groups, dk, dv = s["heads"], s["groups"], s["dk"], s["dv"]
    q = x @ sd[p + "attn.q_proj.weight"].T
    k = x @ sd[p + "attn.k_proj.weight"].T
    v = x @ sd[p + "attn.v_proj.weight"].T
    if cfg.get("use_short_conv", False):
        q = short_conv_silu(q, sd[p + "attn.q_conv1d.weight"], sd.get(p + "attn.q_conv1d.bias"))
        k = short_conv_silu(k, sd[p + "attn.k_conv1d.weight"], sd.get(p + "attn.k_conv1d.bias"))
        v = short_conv_silu(v, sd[p + "attn.v_conv1d.weight"], sd.get(p + "attn.v_conv1d.bias"))
    gk = (x @ sd[p + "attn.gk_proj.0.weight"].T) @ sd[p + "attn.gk_proj.1.weight"].T + sd[p + "attn.gk_proj.1.bias"]
    # α_t = σ(·)^{1/16}: log α = logsigmoid(·)/16, optionally clamped from below
    gk = F.logsigmoid(gk) / GATE_LOGIT_NORMALIZER
    if cfg.get("clamp_min") is not None:
        gk = torch.clamp_min(gk, cfg["clamp_min"])

    # [T, heads, d]; key/value head h serves query heads h·groups … h·groups + groups − 1 (fla's '(h g) d' repeat)
    q = q.view(t_len, heads, dk)
    k = k.view(t_len, -1, dk).repeat_interleave(groups, dim=1)
    gk = gk.view(t_len, -1, dk).repeat_interleave(groups, dim=1)
    v = v.view(t_len, -1, dv).repeat_interleave(groups, dim=1)

    state = x.new_zeros(heads, dk, dv)
    o = x.new_zeros(t_len, heads, dv)
    scale = dk ** -0.5
    for t in range(t_len):
        # S_t = Diag(α_t) S_{t−1} + k_tᵀ v_t ;  o_t = (d_k^{−½} q_t) S_t
        state = gk[t].exp()[:, :, None] * state + k[t][:, :, None] * v[t][:, None, :]
        o[t] = torch.einsum("hk,hkv->hv", q[t] * scale, state)

    norm_w = sd.get(p + "attn.g_norm_swish_gate.weight", sd.get(p + "attn.g_norm.weight"))
    o = rms_norm(o, norm_w, norm_eps(cfg))
    if cfg.get("use_output_gate", True):
        gate = (x @ sd[p + "attn.g_proj.weight"].T).view(t_len, heads, dv)
        o = o * F.silu(gate)  # swish
    return o.reshape(t_len, heads * dv) @ sd[p + "attn.o_proj.weight"].T


def mlp(x, sd, p):
    """SwiGLU: down(silu(gate(x)) ⊙ up(x)); the legacy fused gate_proj holds [gate; up] rows."""
    if p + "mlp.up_proj.weight" in sd:
        gate = x @ sd[p + "mlp.gate_proj.weight"].T
        up = x @ sd[p + "mlp.up_proj.weight"].T
    else:
        gate, up = (x @ sd[p + "mlp.gate_proj.weight"].T).chunk(2, dim=-1)
    return (F.silu(gate) * up) @ sd[p + "mlp.down_proj.weight"].T


def reference_logits(sd, cfg, tokens):
    """GLAForCausalLM forward in float64: logits [T, vocab]."""
    eps = norm_eps(cfg)
    h = sd["model.embeddings.weight"][tokens]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = h + gla_layer(rms_norm(h, sd[p + "attn_norm.weight"], eps), sd, p, cfg)
        h = h + mlp(rms_norm(h, sd[p + "mlp_norm.weight"], eps), sd, p)
    h = rms_norm(h, sd["model.norm.weight"], eps)
    head = sd["model.embeddings.weight"] if cfg.get("tie_word_embeddings", False) else sd["lm_head.weight"]
    return h @ head.T


# ----------------------------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------------------------

def current_config(**overrides):
    """The keys fla's current GLAConfig.save_pretrained writes (defaults of fla/models/gla/configuration_gla.py)."""
    cfg = {
        "architectures": ["GLAForCausalLM"],
        "model_type": "gla",
        "attn": None,
        "attn_mode": "chunk",
        "bos_token_id": 1,
        "clamp_min": None,
        "conv_size": 4,
        "elementwise_affine": True,
        "eos_token_id": 2,
        "expand_k": 0.5,
        "expand_v": 1,
        "feature_map": None,
        "fuse_cross_entropy": True,
        "fuse_norm": True,
        "fuse_swiglu": True,
        "hidden_act": "swish",
        "hidden_ratio": 4,
        "hidden_size": 2048,
        "initializer_range": 0.02,
        "intermediate_size": None,
        "max_position_embeddings": 2048,
        "norm_eps": 1e-6,
        "num_heads": 4,
        "num_hidden_layers": 24,
        "num_kv_heads": None,
        "pad_token_id": None,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "use_cache": True,
        "use_gk": True,
        "use_gv": False,
        "use_l2warp": False,
        "use_output_gate": True,
        "use_short_conv": False,
        "vocab_size": 32000,
    }
    cfg.update(overrides)
    return cfg


def legacy_config(**overrides):
    """An early-2024 fla GLAConfig (transformers 4.39 era, the gla-340M-15B generation): rms_norm_eps,
    share_conv_kernel, no num_kv_heads / norm_eps / use_output_gate / feature_map keys, fused MLP."""
    cfg = {
        "architectures": ["GLAForCausalLM"],
        "model_type": "gla",
        "attn_mode": "fused_chunk",
        "bos_token_id": 1,
        "clamp_min": None,
        "conv_size": 4,
        "eos_token_id": 2,
        "expand_k": 0.5,
        "expand_v": 1,
        "fuse_cross_entropy": True,
        "fuse_norm": True,
        "hidden_act": "swish",
        "hidden_ratio": 4,
        "hidden_size": 2048,
        "initializer_range": 0.02,
        "intermediate_size": None,
        "max_position_embeddings": 2048,
        "num_heads": 4,
        "num_hidden_layers": 24,
        "rms_norm_eps": 1e-6,
        "share_conv_kernel": True,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.39.1",
        "use_cache": True,
        "use_gk": True,
        "use_gv": False,
        "use_short_conv": False,
        "vocab_size": 32000,
    }
    cfg.update(overrides)
    return cfg


FAILED = []


def make_fixture(*args, **kwargs):
    try:
        _make_fixture(*args, **kwargs)
    except Exception:  # report every fixture's failure in one run instead of stopping at the first
        import traceback
        traceback.print_exc()
        FAILED.append(args[1])


def _make_fixture(out_dir, name, cfg, seq_len, seed, dtype=torch.float32, fused_mlp=False):
    path = os.path.join(out_dir, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    cfg = dict(cfg)
    cfg["torch_dtype"] = str(dtype).replace("torch.", "")
    sd = random_state_dict(cfg, seed, fused_mlp)
    save_file({k: v.to(dtype).contiguous() for k, v in sd.items()}, os.path.join(path, "model.safetensors"),
              metadata={"format": "pt"})
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)

    # The reference: the checkpoint as saved, read back, widened to float64.
    saved = {k: v.double() for k, v in load_file(os.path.join(path, "model.safetensors")).items()}
    g = torch.Generator().manual_seed(seed + 1)
    tokens = torch.randint(0, cfg["vocab_size"], (seq_len,), generator=g)
    with torch.no_grad():
        logits = reference_logits(saved, cfg, tokens)
    logprobs = torch.log_softmax(logits, dim=-1)[:-1].gather(1, tokens[1:, None])[:, 0]
    s = sizes(cfg)
    with open(os.path.join(path, "expected.json"), "w") as f:
        json.dump({
            "description": (f"{name}: GLAForCausalLM, hidden {s['d']}, heads {s['heads']}/{s['kv_heads']}, "
                            f"d_k {s['dk']}, d_v {s['dv']}, intermediate {s['inter']}, layers {cfg['num_hidden_layers']}, "
                            f"short conv {cfg.get('conv_size') if cfg.get('use_short_conv') else 'no'}, "
                            f"output gate {cfg.get('use_output_gate', True)}, clamp_min {cfg.get('clamp_min')}, "
                            f"tied {cfg.get('tie_word_embeddings', False)}, mlp {'fused legacy' if fused_mlp else 'gate/up/down'}, "
                            f"dtype {cfg['torch_dtype']}"),
            "reference": "float64 token-by-token recurrence written from the equations (tests/golden/make_gla_golden.py)",
            "torch": torch.__version__,
            "tokens": tokens.tolist(),
            "logprobs": [round(x, 7) for x in logprobs.tolist()],
        }, f)
    lp = logprobs
    print(f"{name:36s} tokens {seq_len:4d}  logprob min {lp.min():8.3f} mean {lp.mean():7.3f} max {lp.max():7.3f}"
          f"  ppl {math.exp(-lp.mean()):9.2f}  files {sorted(os.listdir(path))}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/golden")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    out = args.out
    os.makedirs(out, exist_ok=True)

    # Current layout: tied embeddings, H = H_kv = 4, d_k 8, d_v 16, intermediate from hidden_ratio (→ 256).
    make_fixture(out, "gla-tied", current_config(
        hidden_size=64, num_heads=4, num_hidden_layers=2, vocab_size=256, hidden_ratio=3,
        tie_word_embeddings=True), seq_len=300, seed=21)

    # Current layout: GQA 4/2, q/k/v short convolutions (width 4), clamp_min, untied head, explicit intermediate,
    # odd sizes (d_k 6, d_v 12).
    make_fixture(out, "gla-gqa-conv-clamp-untied", current_config(
        hidden_size=48, num_heads=4, num_kv_heads=2, num_hidden_layers=2, vocab_size=288, intermediate_size=112,
        use_short_conv=True, conv_size=4, clamp_min=-0.05, norm_eps=1e-5, tie_word_embeddings=False),
        seq_len=263, seed=22)

    # Current layout: one key/value head, no output gate (y = W_o RMSNorm(o)), no norm weight, fuse_norm false,
    # expand_v 2, three layers, untied.
    make_fixture(out, "gla-mqa-nogate-noaffine", current_config(
        hidden_size=40, num_heads=2, num_kv_heads=1, expand_k=0.5, expand_v=2, num_hidden_layers=3, vocab_size=200,
        intermediate_size=96, use_output_gate=False, elementwise_affine=False, fuse_norm=False,
        tie_word_embeddings=False), seq_len=211, seed=23)

    # Legacy layout (gla-340M-15B generation): legacy config keys (rms_norm_eps, share_conv_kernel, attn_mode
    # fused_chunk), fused MLP gate_proj [2I, D] with gate rows first, tied embeddings, BF16 weights.
    make_fixture(out, "gla-legacy-fused-mlp-bf16", legacy_config(
        hidden_size=64, num_heads=2, num_hidden_layers=2, vocab_size=320, rms_norm_eps=1e-5,
        tie_word_embeddings=True), seq_len=257, seed=24, dtype=torch.bfloat16, fused_mlp=True)

    if FAILED:
        raise SystemExit(f"failed fixtures: {FAILED}")


if __name__ == "__main__":
    main()
