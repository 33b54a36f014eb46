#!/usr/bin/env python3
"""Builds small random-weight HyenaDNA checkpoints in the LongSafari/hyenadna-*-hf layout, and their expected log-probs.

Run on the GPU machine (it needs torch and safetensors only: no network, no transformers remote code):
    python tests/golden/make_hyena_golden.py --out tests/golden
Each fixture directory holds config.json (architectures ["HyenaDNAForCausalLM"], model_type "hyenadna", the keys of
the checkpoints' HyenaConfig) and model.safetensors with the exact tensor names of HyenaDNAForCausalLM's state dict,
plus expected.json: {"tokens": [...], "logprobs": [...]} where logprobs[i] = log p(tokens[i+1] | tokens[..i]).

The reference is not the HF remote code (it cannot be fetched here) but a float64 torch implementation written from the
equations (Poli et al. 2023, Hyena Hierarchy, order 2; HyenaDNA's block layout), run on the stored values widened to
float64, with the long convolution summed directly (no FFT) so it shares nothing with the FFT path under test:
    block:  h = x + mixer(LN1(x));  x' = h + fc2(gelu_tanh(fc1(LN2(h))))   (LN1, LN2: eps 1e-5, as nn.LayerNorm's default)
    mixer:  p = in_proj(x); q = causal depthwise conv3(p) + b; (x0, x1, v) = split(q, D); u = v * x1
            y_t = sum_{s<=t} h_s * u_{t-s} + filter_bias * u_t;  out = out_proj(x0 * y)
    filter: a = sin(freq * (W0 z_s + b0)); a = sin(freq * (Wi a + bi)) for each inner layer;
            h_s = (W_out a) * (exp(-t_s * |deltas|) + 0.05)
    head:   logits = ln_f(x) @ lm_head.T over the padded vocab (vocab_size rounded up to pad_vocab_size_multiple; eps
            layer_norm_epsilon), log-softmax over all padded rows, as HyenaDNAForCausalLM does.

Weights are drawn far from the checkpoints' initialisation (std 0.02 gives near-uniform predictions) so that the
log-probs spread over several nats and a wrong op shows up as a large error. z is a trained parameter in the real
checkpoints, so it is stored perturbed from its initial formula: an implementation that recomputes z shows up too.
The Sin activations share one `freq` tensor; like a safetensors save_pretrained of transformers 4.3x, only the first
alias (implicit_filter.1.freq) is stored.
"""
import argparse
import json
import math
import os
import shutil

import torch
from safetensors.torch import save_file

DNA = {"A": 7, "C": 8, "G": 9, "T": 10, "N": 11}  # HyenaDNA's CharacterTokenizer ids; 0-6 are special tokens


def padded_vocab(cfg):
    v, m = cfg["vocab_size"], cfg["pad_vocab_size_multiple"]
    return v if v % m == 0 else v + m - v % m


def initial_z(max_len, emb_dim):
    """HyenaPositionalEmbedding's initial z: [t, cos(-f w), sin(-f w)], (max_len, emb_dim), computed as torch does (f32)."""
    t = torch.linspace(0, 1, max_len)[:, None]
    bands = (emb_dim - 1) // 2
    t_rescaled = torch.linspace(0, max_len - 1, max_len)[:, None]
    w = 2 * math.pi * t_rescaled / max_len
    f = torch.linspace(1e-4, bands - 1, bands)[None, :]
    return torch.cat([t, torch.cos(-f * w), torch.sin(-f * w)], dim=-1), t


def initial_deltas(d_model):
    """HyenaExponentialModulation's deltas: linspace(ln(1e-2)/1.5, ln(1e-2)/0.3, d_model)."""
    return torch.linspace(math.log(1e-2) / 1.5, math.log(1e-2) / 0.3, d_model)


def make_weights(cfg, seed):
    """The state dict of HyenaDNAForCausalLM, by name, random and far from near-uniform."""
    g = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=g)
    rand = lambda *shape: torch.rand(*shape, generator=g)
    d, inner, order, emb = cfg["d_model"], cfg["d_inner"], cfg["filter_order"], cfg["emb_dim"]
    width, length, vocab = 3 * d, cfg["max_seq_len"], padded_vocab(cfg)
    w = {}
    w["hyena.backbone.embeddings.word_embeddings.weight"] = randn(vocab, d) * 0.8
    for layer in range(cfg["n_layer"]):
        p = f"hyena.backbone.layers.{layer}."
        m = p + "mixer."
        f = m + "filter_fn."
        for norm in ("norm1", "norm2"):
            w[p + norm + ".weight"] = rand(d) + 0.5          # gamma in [0.5, 1.5): a wrong gamma shows
            w[p + norm + ".bias"] = randn(d) * 0.3
        w[m + "in_proj.weight"] = randn(width, d) / math.sqrt(d)
        w[m + "in_proj.bias"] = randn(width) * 0.3
        w[m + "short_filter.weight"] = randn(width, 1, cfg["short_filter_order"]) * 0.6
        w[m + "short_filter.bias"] = randn(width) * 0.3
        w[m + "out_proj.weight"] = randn(d, d) / math.sqrt(d)
        w[m + "out_proj.bias"] = randn(d) * 0.3
        z, t = initial_z(length, emb)
        w[f + "pos_emb.z"] = (z + randn(length, emb) * 0.05)[None]   # [1, L, emb_dim], "trained"
        w[f + "pos_emb.t"] = t[None]                                   # [1, L, 1], a buffer
        w[f + "modulation.deltas"] = initial_deltas(d)[None, None]     # [1, 1, D], a buffer
        w[f + "bias"] = randn(d)                                       # the skip term D, randn as HF initialises it
        n_linear = cfg["num_inner_mlps"] + 2
        for i in range(n_linear):
            rows = d if i == n_linear - 1 else order
            cols = emb if i == 0 else order
            w[f + f"implicit_filter.{2 * i}.weight"] = randn(rows, cols) / math.sqrt(cols)
            if i < n_linear - 1:
                w[f + f"implicit_filter.{2 * i}.bias"] = randn(rows) * 0.3
        # One shared Sin module: its freq [1, order] (initialised to activation_freq) is stored once.
        w[f + "implicit_filter.1.freq"] = cfg["activation_freq"] + randn(1, order) * 0.5
        w[p + "mlp.fc1.weight"] = randn(inner, d) * (1.5 / math.sqrt(d))
        w[p + "mlp.fc1.bias"] = randn(inner) * 0.3
        w[p + "mlp.fc2.weight"] = randn(d, inner) / math.sqrt(inner)
        w[p + "mlp.fc2.bias"] = randn(d) * 0.3
    w["hyena.backbone.ln_f.weight"] = rand(d) + 0.5
    w["hyena.backbone.ln_f.bias"] = randn(d) * 0.3
    w["lm_head.weight"] = randn(vocab, d) * (3.0 / math.sqrt(d))
    return {k: v.contiguous() for k, v in w.items()}


# ---------------------------------------------------------------- float64 reference, from the equations

def layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)            # biased variance, as nn.LayerNorm
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def implicit_filter(w, f, cfg, length):
    """h: (length, D). Lag s depends only on z_s and t_s."""
    z = w[f + "pos_emb.z"][0, :length]
    t = w[f + "pos_emb.t"][0, :length]
    freq = w[f + "implicit_filter.1.freq"]
    a = z
    n_linear = cfg["num_inner_mlps"] + 2
    for i in range(n_linear - 1):
        a = torch.sin(freq * (a @ w[f + f"implicit_filter.{2 * i}.weight"].T + w[f + f"implicit_filter.{2 * i}.bias"]))
    h = a @ w[f + f"implicit_filter.{2 * (n_linear - 1)}.weight"].T
    window = torch.exp(-t * w[f + "modulation.deltas"][0, 0].abs()) + 0.05
    return h * window


def causal_depthwise_conv(p, weight, bias):
    """p (T, C); weight (C, 1, K); q_t = bias + sum_j weight[:, 0, j] * p_{t-K+1+j} (zeros before position 0)."""
    k = weight.shape[-1]
    padded = torch.cat([torch.zeros(k - 1, p.shape[1], dtype=p.dtype), p])
    q = bias.expand_as(p).clone()
    for j in range(k):
        q = q + weight[:, 0, j] * padded[j:j + p.shape[0]]
    return q


def direct_causal_conv(u, h):
    """y_t = sum_{s=0}^{t} h_s * u_{t-s}, per channel: u, h (T, D)."""
    n = u.shape[0]
    lags = torch.arange(n)[:, None] - torch.arange(n)[None, :]              # t - j
    toeplitz = h[lags.clamp(min=0)] * (lags >= 0)[..., None]                 # (T, T, D): h_{t-j} for j <= t
    return torch.einsum("tjd,jd->td", toeplitz, u)


def mixer(x, w, m, cfg):
    d = cfg["d_model"]
    p = x @ w[m + "in_proj.weight"].T + w[m + "in_proj.bias"]
    q = causal_depthwise_conv(p, w[m + "short_filter.weight"], w[m + "short_filter.bias"])
    x0, x1, v = q[:, :d], q[:, d:2 * d], q[:, 2 * d:]
    u = v * x1
    h = implicit_filter(w, m + "filter_fn.", cfg, x.shape[0])
    y = direct_causal_conv(u, h) + w[m + "filter_fn.bias"] * u
    return (x0 * y) @ w[m + "out_proj.weight"].T + w[m + "out_proj.bias"]


def logprobs_float64(w, cfg, tokens):
    w = {k: v.to(torch.float64) for k, v in w.items()}
    x = w["hyena.backbone.embeddings.word_embeddings.weight"][tokens]
    for layer in range(cfg["n_layer"]):
        p = f"hyena.backbone.layers.{layer}."
        x = x + mixer(layer_norm(x, w[p + "norm1.weight"], w[p + "norm1.bias"], 1e-5), w, p + "mixer.", cfg)
        hidden = layer_norm(x, w[p + "norm2.weight"], w[p + "norm2.bias"], 1e-5)
        hidden = gelu_tanh(hidden @ w[p + "mlp.fc1.weight"].T + w[p + "mlp.fc1.bias"])
        x = x + hidden @ w[p + "mlp.fc2.weight"].T + w[p + "mlp.fc2.bias"]
    x = layer_norm(x, w["hyena.backbone.ln_f.weight"], w["hyena.backbone.ln_f.bias"], cfg["layer_norm_epsilon"])
    logits = x @ w["lm_head.weight"].T
    return torch.log_softmax(logits, dim=-1)[:-1].gather(1, tokens[1:, None])[:, 0]


# ---------------------------------------------------------------- fixtures

def config(**overrides):
    """config.json as the LongSafari checkpoints write it (HyenaConfig's keys), with the given sizes."""
    cfg = {
        "activation_freq": 10,
        "architectures": ["HyenaDNAForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_hyena.HyenaConfig",
            "AutoModel": "modeling_hyena.HyenaDNAModel",
            "AutoModelForCausalLM": "modeling_hyena.HyenaDNAForCausalLM",
        },
        "d_inner": 128,
        "d_model": 32,
        "emb_dim": 5,
        "embed_dropout": 0.1,
        "filter_order": 16,
        "hyena_dropout": 0.0,
        "hyena_filter_dropout": 0.0,
        "hyena_order": 2,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "max_seq_len": 322,
        "model_type": "hyenadna",
        "n_layer": 2,
        "num_inner_mlps": 2,
        "pad_token_id": 4,
        "pad_vocab_size_multiple": 8,
        "short_filter_order": 3,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "train_freq": True,
        "use_bias": True,
        "vocab_size": 12,
    }
    cfg.update(overrides)
    return cfg


def dna_tokens(n, seed):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(DNA["A"], DNA["T"] + 1, (n,), generator=g)
    n_mask = torch.rand(n, generator=g) < 0.03
    tokens[n_mask] = DNA["N"]
    return tokens


def make_fixture(*args, **kwargs):
    try:
        _make_fixture(*args, **kwargs)
    except Exception:  # report every fixture's failure in one run instead of stopping at the first
        import traceback
        traceback.print_exc()
        FAILED.append(args[1])


FAILED = []


def _make_fixture(out_dir, name, cfg, seq_len, seed, dtype=torch.float32):
    assert seq_len <= cfg["max_seq_len"]
    path = os.path.join(out_dir, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    cfg = dict(cfg, torch_dtype=str(dtype).replace("torch.", ""))
    weights = {k: v.to(dtype) for k, v in make_weights(cfg, seed).items()}
    save_file(weights, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)

    tokens = dna_tokens(seq_len, seed + 1)
    with torch.no_grad():
        lp = logprobs_float64(weights, cfg, tokens)   # the stored (possibly rounded) values, widened to float64
    with open(os.path.join(path, "expected.json"), "w") as f:
        json.dump({
            "description": describe(name, cfg, dtype),
            "reference": "float64 torch from the equations, direct causal convolution (make_hyena_golden.py)",
            "torch": torch.__version__,
            "tokens": tokens.tolist(),
            "logprobs": [round(x, 7) for x in lp.tolist()],
        }, f)
    print(f"{name:32s} tokens {seq_len:4d}  logprob min {lp.min():8.3f} mean {lp.mean():7.3f} max {lp.max():7.3f}"
          f"  ppl {math.exp(-lp.mean()):9.2f}  files {sorted(os.listdir(path))}")


def describe(name, cfg, dtype):
    return (f"{name}: HyenaDNAForCausalLM, d_model {cfg['d_model']}, n_layer {cfg['n_layer']}, d_inner {cfg['d_inner']}, "
            f"max_seq_len {cfg['max_seq_len']}, emb_dim {cfg['emb_dim']}, filter_order {cfg['filter_order']}, "
            f"num_inner_mlps {cfg['num_inner_mlps']}, vocab {cfg['vocab_size']} padded to {padded_vocab(cfg)}, "
            f"layer_norm_epsilon {cfg['layer_norm_epsilon']}, dtype {str(dtype).replace('torch.', '')}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/golden")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False  # everything runs on the CPU in float64; kept for symmetry

    # The HF layout at small sizes: 2 layers, d_model 32, d_inner 4·d_model, emb_dim 5, 2 inner filter layers.
    make_fixture(args.out, "hyenadna-tiny-random", config(), seq_len=280, seed=21)

    # BF16 weights, odd d_model, 1 inner filter layer, emb_dim 3, d_inner not 4·d_model, and a layer_norm_epsilon
    # far from 1e-5: only ln_f reads it (norm1 and norm2 keep nn.LayerNorm's 1e-5), which this fixture tells apart.
    make_fixture(args.out, "hyenadna-bf16-odd", config(
        d_model=27, d_inner=70, n_layer=3, emb_dim=3, filter_order=12, num_inner_mlps=1, max_seq_len=258,
        layer_norm_epsilon=0.05), seq_len=231, seed=22, dtype=torch.bfloat16)

    if FAILED:
        raise SystemExit(f"failed fixtures: {FAILED}")


if __name__ == "__main__":
    main()
