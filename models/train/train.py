#!/usr/bin/env python3
"""Trains Horizon's default model, models/horizon-kjv: a GLA + softmax-attention hybrid on the King James Bible.

Runs on a CUDA machine with PyTorch, `tokenizers` and `safetensors` (no network). From the repository root, after
`python3 models/train/prepare_data.py` has written models/train/data/:

    python3 models/train/train.py all --out /tmp/horizon-kjv

does everything, in this order:

1. `tokenizer`: trains a byte-level BPE (4,096 tokens with `<|endoftext|>` = 0) on the training chapters and encodes
   every part as a stream of chapters, each preceded by `<|endoftext|>`.
2. `selftest`: the chunked GLA form against the recurrence in float64, the whole model likewise, and a tiny model
   through training, export, golden check and sampling, so a bug stops the run before the real training starts.
3. `train`, one process per variant (`--variants DROPOUT:EPOCHS,...`, run side by side on the one GPU): AdamW,
   linear warm-up then cosine decay, bf16 autocast, sequence length 512, random windows of the training stream;
   the validation chapters are scored every `--eval-every` steps and the best weights are kept (as BF16). Each
   variant stops at its epoch count or at `--budget` seconds, whichever comes first (the cosine schedule is re-planned
   once, after the first timed steps, if the epochs would not fit).
4. `export`: takes the variant with the best validation loss, rounds its weights to BF16 (model.safetensors) and from
   then on uses only those rounded weights, upcast to float32: the held-out (test) perplexity per token and bits per
   byte, the golden check expected.json (float32 per-token log-probs of a 200-token held-out snippet, computed with
   the GLA recurrence on the CPU; the float64 and chunked-form results are printed against it), and three samples
   from "And God said". Writes config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
   generation_config.json, expected.json and train_summary.json into --out.

The model, written from the equations (docs/ops/gla.md, docs/model-spec.md), not from any other code base:

- GLA layers (flash-linear-attention's GLA layout and tensor names): q = W_q x, k = W_k x, v = W_v x (4 heads,
  d_k = D·expand_k/H, d_v = D·expand_v/H), log α = logsigmoid(W₂W₁x + b)/16 with W₁ of rank 16,
  S_t = Diag(α_t) S_{t−1} + k_tᵀ v_t, o_t = (d_k^{−½} q_t) S_t, y = W_o[RMSNorm_head(o) ⊙ swish(W_g x)].
  Training uses the chunkwise form with pairwise decays exp(b_t − b_s), s ≤ t, so no exponent is positive.
- Attention layers (Llama layout and names): RoPE (rotate-half, θ = 10000), grouped-query attention, causal softmax.
- Every layer is pre-RMSNorm with a SwiGLU MLP; the output head is the embedding table (tied).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
EOT = "<|endoftext|>"
GATE_RANK = 16
GATE_NORMALIZER = 16.0

# The shipped architecture. Group layout: GLA x3, attention x1, GLA x3, attention x1 (layer indices 0..7).
ARCH = {
    "vocab_size": 4096,
    "hidden_size": 384,
    "layer_types": ["gla", "gla", "gla", "attention", "gla", "gla", "gla", "attention"],
    # GLA (fla GLAConfig keys)
    "num_heads": 4,
    "expand_k": 0.5,
    "expand_v": 1.0,
    "use_output_gate": True,
    "use_short_conv": False,
    "hidden_act": "swish",
    "norm_eps": 1e-6,
    # attention (Llama keys)
    "num_attention_heads": 6,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "rope_theta": 10000.0,
    # shared
    "intermediate_size": 768,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}

# A tiny model of the same code paths, for the self-test.
TINY = dict(ARCH, hidden_size=64, layer_types=["gla", "attention", "gla"], num_heads=2, num_attention_heads=2,
            num_key_value_heads=1, head_dim=32, intermediate_size=96)


def log(*parts):
    print(*parts, flush=True)


# ----------------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------------

def widen(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 → float32; float32 and float64 stay (the float64 reference must not be narrowed)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x²) + eps) ⊙ γ over the last axis, computed in (at least) float32."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = widen(x)
        return xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.to(xf.dtype)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.gate_proj = nn.Linear(dim, inner, bias=False)
        self.up_proj = nn.Linear(dim, inner, bias=False)
        self.down_proj = nn.Linear(inner, dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def gla_recurrent(q, k, v, g):
    """Reference recurrence. q, k, g: [B,T,H,dk]; v: [B,T,H,dv]; g = log α. Returns o [B,T,H,dv]."""
    B, T, H, dk = q.shape
    dv = v.shape[-1]
    scale = dk ** -0.5
    S = q.new_zeros(B, H, dk, dv)
    out = []
    for t in range(T):
        S = g[:, t].exp().unsqueeze(-1) * S + k[:, t].unsqueeze(-1) * v[:, t].unsqueeze(-2)
        out.append(((q[:, t] * scale).unsqueeze(-1) * S).sum(-2))
    return torch.stack(out, dim=1)


def gla_chunked(q, k, v, g, chunk: int = 16):
    """Chunkwise parallel form of the same recurrence (§4.2), every exponent ≤ 0.

    Within a chunk, with b_t = Σ_{c≤j≤t} log α_j: o_t = Σ_{s≤t} [Σ_i q_t[i] k_s[i] exp(b_t[i] − b_s[i])] v_s
    + (q_t ⊙ exp(b_t)) S_chunk_start. Across chunks the start states are formed in closed form:
    S_n = Σ_{m<n} Diag(exp(c_{n−1} − c_m)) K̃_mᵀ V_m, c the running sum of the chunks' total log-gates and
    K̃_m = k ⊙ exp(b_last − b) of chunk m, so no sequential loop is needed.
    """
    B, T, H, dk = q.shape
    dv = v.shape[-1]
    pad = (-T) % chunk
    if pad:
        # Zero keys/values/queries and log-gates 0 after the end change nothing before it.
        q, k, v, g = (F.pad(x, (0, 0, 0, 0, 0, pad)) for x in (q, k, v, g))
    N = (T + pad) // chunk

    def split(x):  # [B,T,H,d] -> [B,H,N,C,d]
        return x.reshape(B, N, chunk, H, x.shape[-1]).permute(0, 3, 1, 2, 4)

    q, k, v, g = split(q) * dk ** -0.5, split(k), split(v), split(g)
    b = g.cumsum(-2)                                             # [B,H,N,C,dk]
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    diff = (b.unsqueeze(-2) - b.unsqueeze(-3)).masked_fill(~causal.unsqueeze(-1), float("-inf"))  # b_t − b_s
    A = torch.einsum("bhnti,bhntsi->bhnts", q, diff.exp() * k.unsqueeze(-3))
    o = A @ v                                                    # intra-chunk
    b_last = b[..., -1:, :]                                      # [B,H,N,1,dk]
    kv = (k * (b_last - b).exp()).transpose(-1, -2) @ v          # [B,H,N,dk,dv]: chunk m's contribution
    c = b_last.squeeze(-2).cumsum(-2)                            # [B,H,N,dk], c_n = Σ_{m≤n} b_last_m
    c_prev = c - b_last.squeeze(-2)                              # c_{n−1}
    before = torch.ones(N, N, dtype=torch.bool, device=q.device).tril(-1)  # m < n
    w = (c_prev.unsqueeze(-2) - c.unsqueeze(-3)).masked_fill(~before.unsqueeze(-1), float("-inf")).exp()  # [B,H,n,m,dk]
    S = torch.einsum("bhnmi,bhmij->bhnij", w, kv)                # start state of each chunk
    o = o + (q * b.exp()) @ S                                    # inter-chunk
    o = o.permute(0, 2, 3, 1, 4).reshape(B, N * chunk, H, dv)
    return o[:, :T]


class GatedLinearAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D, H = cfg["hidden_size"], cfg["num_heads"]
        self.heads = H
        self.dk = int(D * cfg["expand_k"]) // H
        self.dv = int(D * cfg["expand_v"]) // H
        self.q_proj = nn.Linear(D, H * self.dk, bias=False)
        self.k_proj = nn.Linear(D, H * self.dk, bias=False)
        self.v_proj = nn.Linear(D, H * self.dv, bias=False)
        self.g_proj = nn.Linear(D, H * self.dv, bias=False)
        self.gk_proj = nn.Sequential(nn.Linear(D, GATE_RANK, bias=False), nn.Linear(GATE_RANK, H * self.dk, bias=True))
        self.o_proj = nn.Linear(H * self.dv, D, bias=False)
        self.g_norm_swish_gate = RMSNorm(self.dv, cfg["norm_eps"])

    def forward(self, x, mode: str):
        B, T, _ = x.shape
        H = self.heads
        q = self.q_proj(x).view(B, T, H, self.dk)
        k = self.k_proj(x).view(B, T, H, self.dk)
        v = self.v_proj(x).view(B, T, H, self.dv)
        gk = self.gk_proj(x).view(B, T, H, self.dk)
        gate = self.g_proj(x).view(B, T, H, self.dv)
        with torch.autocast(device_type=x.device.type, enabled=False):
            g = F.logsigmoid(widen(gk)) / GATE_NORMALIZER
            core = gla_recurrent if mode == "recurrent" else gla_chunked
            o = core(widen(q), widen(k), widen(v), g)
            o = self.g_norm_swish_gate(o) * F.silu(widen(gate))
        return self.o_proj(o.reshape(B, T, H * self.dv))


def rope_tables(T: int, dim: int, theta: float, device, dtype):
    inv = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=device) / dim)
    ang = torch.arange(T, dtype=torch.float64, device=device)[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos().to(dtype), ang.sin().to(dtype)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D = cfg["hidden_size"]
        self.nh, self.nkv, self.hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
        self.q_proj = nn.Linear(D, self.nh * self.hd, bias=False)
        self.k_proj = nn.Linear(D, self.nkv * self.hd, bias=False)
        self.v_proj = nn.Linear(D, self.nkv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.nh * self.hd, D, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        q = (q * cos + rotate_half(q) * sin).to(v.dtype)
        k = (k * cos + rotate_half(k) * sin).to(v.dtype)
        rep = self.nh // self.nkv  # query head h reads key/value head h // rep
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(o.transpose(1, 2).reshape(B, T, self.nh * self.hd))


class Layer(nn.Module):
    def __init__(self, cfg, kind: str, dropout: float):
        super().__init__()
        self.kind = kind
        D, eps = cfg["hidden_size"], cfg["rms_norm_eps"]
        if kind == "gla":
            self.attn_norm = RMSNorm(D, eps)
            self.attn = GatedLinearAttention(cfg)
            self.mlp_norm = RMSNorm(D, eps)
        elif kind == "attention":
            self.input_layernorm = RMSNorm(D, eps)
            self.self_attn = Attention(cfg)
            self.post_attention_layernorm = RMSNorm(D, eps)
        else:
            raise ValueError(kind)
        self.mlp = SwiGLU(D, cfg["intermediate_size"])
        self.drop = nn.Dropout(dropout)

    def forward(self, h, cos, sin, mode):
        if self.kind == "gla":
            h = h + self.drop(self.attn(self.attn_norm(h), mode))
            return h + self.drop(self.mlp(self.mlp_norm(h)))
        h = h + self.drop(self.self_attn(self.input_layernorm(h), cos, sin))
        return h + self.drop(self.mlp(self.post_attention_layernorm(h)))


class Backbone(nn.Module):
    def __init__(self, cfg, dropout):
        super().__init__()
        self.embeddings = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList(Layer(cfg, kind, dropout) for kind in cfg["layer_types"])
        self.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])


class HybridLM(nn.Module):
    """State-dict keys are the checkpoint's tensor names (model.embeddings.weight, model.layers.N...., model.norm.weight)."""

    def __init__(self, cfg, dropout: float = 0.0):
        super().__init__()
        self.cfg = cfg
        self.model = Backbone(cfg, dropout)
        self.drop = nn.Dropout(dropout)
        n = len(cfg["layer_types"])
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * n) if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith(".bias"):
                nn.init.zeros_(p)

    def forward(self, ids, mode: str = "chunk"):
        h = self.drop(self.model.embeddings(ids))
        cos, sin = rope_tables(ids.shape[1], self.cfg["head_dim"], self.cfg["rope_theta"], ids.device, h.dtype)
        for layer in self.model.layers:
            h = layer(h, cos, sin, mode)
        h = self.model.norm(h)
        return F.linear(h, self.model.embeddings.weight)


def config_json(cfg) -> dict:
    out = {"architectures": ["HorizonHybridForCausalLM"], "model_type": "horizon_hybrid"}
    out.update(cfg)
    # transformers 5 validates layer_types against its own names (AutoTokenizer reads config.json too):
    # GLA layers are "linear_attention", softmax-attention layers "full_attention", as in Qwen3-Next's configs.
    out["layer_types"] = ["linear_attention" if t == "gla" else "full_attention" for t in cfg["layer_types"]]
    out.update({
        "num_hidden_layers": len(cfg["layer_types"]),
        "max_position_embeddings": 2048,
        "training_sequence_length": 512,
        "gate_low_rank_dim": GATE_RANK,
        "gate_logit_normalizer": GATE_NORMALIZER,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "dtype": "bfloat16",
    })
    return out


# ----------------------------------------------------------------------------------------------------------------
# Data and tokenizer
# ----------------------------------------------------------------------------------------------------------------

def read_chapters(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [c for c in text.strip("\n").split("\n\n") if c]


def cmd_tokenizer(data: Path, work: Path, vocab: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    t0 = time.time()
    work.mkdir(parents=True, exist_ok=True)
    parts = {name: read_chapters(data / f"{name}.txt") for name in ("train", "valid", "test")}
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=2, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(parts["train"], trainer=trainer)
    assert tok.token_to_id(EOT) == 0, "<|endoftext|> must be id 0"
    assert tok.get_vocab_size() <= vocab, tok.get_vocab_size()
    tok.save(str(work / "tokenizer.json"))
    eot = tok.token_to_id(EOT)
    store = {}
    for name, chapters in parts.items():
        docs = [torch.tensor([eot] + e.ids, dtype=torch.long) for e in tok.encode_batch(chapters)]
        for chapter, e in zip(chapters[:3], docs[:3]):
            assert tok.decode(e[1:].tolist()) == chapter, "byte-level BPE must round-trip"
        store[name] = docs
        store[name + "_bytes"] = sum(len(c.encode("utf-8")) for c in chapters)
        n = sum(len(d) for d in docs)
        log(f"[tokenizer] {name}: {len(chapters)} chapters, {n} tokens (with one {EOT} per chapter), "
            f"{store[name + '_bytes']} bytes, {store[name + '_bytes'] / (n - len(docs)):.3f} bytes/token")
    store["train_stream"] = torch.cat(store["train"])
    torch.save(store, work / "tokens.pt")
    log(f"[tokenizer] vocab {tok.get_vocab_size()}, {time.time() - t0:.1f} s")


def load_tokens(work: Path):
    return torch.load(work / "tokens.pt", weights_only=False)


# ----------------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------------

@torch.no_grad()
def score_docs(model, docs, seq: int, device, amp: bool, batch: int = 64):
    """Σ −log p and the number of predicted tokens over documents, each scored in windows of ≤ seq inputs from a
    fresh state (every token after the leading <|endoftext|> is predicted exactly once)."""
    windows = []
    for d in docs:
        for start in range(0, len(d) - 1, seq):
            end = min(start + seq, len(d) - 1)
            windows.append((d[start:end], d[start + 1:end + 1]))
    was_training = model.training
    model.eval()
    nll, count = 0.0, 0
    for i in range(0, len(windows), batch):
        group = windows[i:i + batch]
        L = max(len(x) for x, _ in group)
        x = torch.zeros(len(group), L, dtype=torch.long)
        y = torch.full((len(group), L), -100, dtype=torch.long)
        for j, (a, b) in enumerate(group):
            x[j, :len(a)] = a
            y[j, :len(b)] = b
        x, y = x.to(device), y.to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        nll += F.cross_entropy(widen(logits).reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100,
                               reduction="sum").item()
        count += int((y != -100).sum())
    model.train(was_training)
    return nll, count


# ----------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------

def train(work: Path, run: Path, cfg: dict, dropout: float, epochs: float, budget: float, seed: int, batch: int,
          seq: int, lr: float, warmup: int, weight_decay: float, eval_every: int, steps: int | None = None,
          tag: str = "train"):
    from safetensors.torch import save_file

    t_start = time.time()
    run.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda")
    torch.manual_seed(seed)
    torch.set_float32_matmul_precision("high")
    data = load_tokens(work)
    stream = data["train_stream"].to(device)
    valid = data["valid"]
    model = HybridLM(cfg, dropout).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "embeddings" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "embeddings" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    per_epoch = len(stream) / (batch * seq)
    total = steps if steps is not None else max(1, int(round(epochs * per_epoch)))
    log(f"[{tag}] params {n_params:,}, dropout {dropout}, {len(stream):,} training tokens, {per_epoch:.1f} steps/epoch, "
        f"planned {total} steps ({total / per_epoch:.1f} epochs), batch {batch}x{seq}, lr {lr}, budget {budget:.0f} s")
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    offsets = torch.arange(seq + 1, device=device)

    def lr_at(step):
        if step < warmup:
            return lr * (step + 1) / warmup
        p = min(1.0, (step - warmup) / max(1, total - warmup))
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))

    best = {"loss": float("inf"), "step": -1}
    best_state = None
    history = []
    t_loop = time.time()
    step = 0
    timed_from = None
    loss_ema = None
    while step < total:
        if step == 10:
            torch.cuda.synchronize()
            timed_from = (time.time(), step)
        if step == 40 and steps is None:
            torch.cuda.synchronize()
            per_step = (time.time() - timed_from[0]) / (step - timed_from[1])
            left = budget - (time.time() - t_start) - 5.0
            # evaluation and the final save take about 3 % extra
            fit = step + int(left / (per_step * 1.03))
            log(f"[{tag}] {per_step * 1000:.1f} ms/step; {total} planned steps would end at "
                f"{time.time() - t_start + (total - step) * per_step * 1.03:.0f} s")
            if fit < total:
                total = max(fit, step + 1)
                log(f"[{tag}] re-planned to {total} steps ({total / per_epoch:.1f} epochs) to fit the budget")
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        starts = torch.randint(0, len(stream) - seq - 1, (batch,), device=device, generator=gen)
        chunk = stream[starts[:, None] + offsets]
        x, y = chunk[:, :-1], chunk[:, 1:]
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            logits = model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        if step % 10 == 0:
            value = loss.item()
            if not math.isfinite(value):
                raise SystemExit(f"[{tag}] loss is {value} at step {step}")
            loss_ema = value if loss_ema is None else 0.9 * loss_ema + 0.1 * value
        if step % eval_every == 0 or step == total:
            nll, n = score_docs(model, valid, seq, device, amp=True)
            v = nll / n
            history.append({"step": step, "epoch": round(step / per_epoch, 2), "train_loss_ema": loss_ema, "valid_loss": v,
                            "seconds": round(time.time() - t_start, 1)})
            mark = ""
            if v < best["loss"]:
                best = {"loss": v, "step": step}
                best_state = {k: t.detach().to("cpu", torch.bfloat16, copy=True) for k, t in model.state_dict().items()}
                mark = " *"
            log(f"[{tag}] step {step:5d} ep {step / per_epoch:5.1f} lr {lr_at(step - 1):.2e} train {loss_ema if loss_ema else float('nan'):.4f} "
                f"valid {v:.4f} (ppl {math.exp(v):.2f}) {time.time() - t_start:6.1f} s{mark}")
        if time.time() - t_start > budget * 1.08:
            log(f"[{tag}] stopping at step {step}: over the time budget")
            break
    if not history or history[-1]["step"] != step:
        nll, n = score_docs(model, valid, seq, device, amp=True)
        history.append({"step": step, "epoch": round(step / per_epoch, 2), "train_loss_ema": loss_ema, "valid_loss": nll / n,
                        "seconds": round(time.time() - t_start, 1)})
        if nll / n < best["loss"]:
            best = {"loss": nll / n, "step": step}
            best_state = {k: t.detach().to("cpu", torch.bfloat16, copy=True) for k, t in model.state_dict().items()}
    train_seconds = time.time() - t_loop
    save_file({k: v.contiguous() for k, v in best_state.items()}, str(run / "model.safetensors"), metadata={"format": "pt"})
    result = {"dropout": dropout, "planned_epochs": epochs, "steps": step, "epochs": step / per_epoch,
              "best_step": best["step"], "best_epoch": best["step"] / per_epoch, "best_valid_loss": best["loss"],
              "train_seconds": train_seconds, "params": n_params, "batch": batch, "seq": seq, "lr": lr, "seed": seed,
              "weight_decay": weight_decay, "warmup": warmup, "history": history,
              "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    (run / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    log(f"[{tag}] done: {step} steps in {train_seconds:.0f} s; best valid {best['loss']:.4f} "
        f"(ppl {math.exp(best['loss']):.2f}) at step {best['step']}")


# ----------------------------------------------------------------------------------------------------------------
# Export: BF16 weights, held-out perplexity, golden check, samples
# ----------------------------------------------------------------------------------------------------------------

def load_rounded(path: Path, cfg) -> HybridLM:
    from safetensors.torch import load_file

    sd = load_file(str(path))
    model = HybridLM(cfg, 0.0)
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return model.eval()


@torch.no_grad()
def generate(model, tok, prompt: str, new_tokens: int, temperature: float, top_k: int, seed: int, device):
    ids = tok.encode(prompt).ids
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    for _ in range(new_tokens):
        logits = model(torch.tensor([ids], device=device))[0, -1].float()
        if temperature <= 0:
            nxt = int(logits.argmax())
        else:
            logits = logits / temperature
            if top_k:
                kth = torch.topk(logits, top_k).values[-1]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=gen))
        ids.append(nxt)
        if nxt == 0:
            break
    return tok.decode(ids, skip_special_tokens=False)


def cmd_export(work: Path, runs: list[Path], out: Path, cfg: dict, golden_len: int, sample_tokens: int, hf_check: bool = True):
    from safetensors.torch import save_file
    from tokenizers import Tokenizer

    t0 = time.time()
    results = []
    for r in runs:
        f = r / "result.json"
        if f.exists():
            results.append((json.loads(f.read_text()), r))
        else:
            log(f"[export] {r}: no result.json, skipped")
    if not results:
        raise SystemExit("[export] no finished run")
    for res, r in results:
        log(f"[export] candidate {r.name}: dropout {res['dropout']}, best valid {res['best_valid_loss']:.4f} at epoch "
            f"{res['best_epoch']:.1f} of {res['epochs']:.1f}")
    res, best_run = min(results, key=lambda p: p[0]["best_valid_loss"])
    log(f"[export] chose {best_run.name}")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(best_run / "model.safetensors", out / "model.safetensors")
    shutil.copyfile(work / "tokenizer.json", out / "tokenizer.json")
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))

    device = torch.device("cuda")
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    model = load_rounded(out / "model.safetensors", cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    data = load_tokens(work)
    metrics = {}
    for part in ("valid", "test"):
        nll, n = score_docs(model, data[part], 512, device, amp=False)
        nbytes = data[part + "_bytes"]
        metrics[part] = {"tokens": n, "bytes": nbytes, "nll_per_token": nll / n, "perplexity": math.exp(nll / n),
                         "bits_per_byte": nll / math.log(2) / nbytes}
        log(f"[export] {part}: {n} tokens, {nbytes} bytes: perplexity {math.exp(nll / n):.3f} per token, "
            f"{nll / math.log(2) / nbytes:.4f} bits per byte (BF16 weights in float32)")
    nll2k, n2k = score_docs(model, data["test"], 2048, device, amp=False, batch=16)
    metrics["test_window_2048_perplexity"] = math.exp(nll2k / n2k)
    log(f"[export] test scored in windows of 2048 instead of 512: perplexity {math.exp(nll2k / n2k):.3f}")

    # Golden check on the CPU: float32 recurrence with the rounded weights, against float64 and the chunked form.
    doc = data["test"][0]
    tokens = doc[:golden_len].tolist()
    cpu = load_rounded(out / "model.safetensors", cfg)
    x = torch.tensor([tokens])

    def logprobs(m, mode):
        with torch.no_grad():
            lp = torch.log_softmax(m(x, mode=mode)[0].double(), -1)
        return lp[torch.arange(len(tokens) - 1), torch.tensor(tokens[1:])]

    lp32 = logprobs(cpu, "recurrent")
    lp32c = logprobs(cpu, "chunk")
    lp64 = logprobs(cpu.double(), "recurrent")
    d64 = float((lp32 - lp64).abs().max())
    dch = float((lp32 - lp32c).abs().max())
    log(f"[export] golden: {len(tokens)} tokens; max |float32 − float64| {d64:.2e}; max |recurrent − chunked| (float32) {dch:.2e}; "
        f"snippet perplexity {math.exp(-float(lp32.mean())):.3f}")
    expected = {
        "tokens": tokens,
        "logprobs": [float(v) for v in lp32],
        "text": tok.decode(tokens[1:], skip_special_tokens=False),
        "source": "the first held-out (test) chapter, preceded by <|endoftext|>; logprobs[i] = log p(tokens[i+1] | tokens[..i])",
        "reference": "PyTorch float32 on the CPU, GLA in its recurrent form, with model.safetensors' BF16 weights upcast to float32",
        "tolerance": 1e-3,
        "float64_max_abs_diff": d64,
        "chunked_max_abs_diff": dch,
    }
    (out / "expected.json").write_text(json.dumps(expected) + "\n")

    (out / "config.json").write_text(json.dumps(config_json(cfg), indent=2) + "\n")
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOT,
        "eos_token": EOT,
        "unk_token": None,
        "pad_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 2048,
        "added_tokens_decoder": {"0": {"content": EOT, "lstrip": False, "normalized": False, "rstrip": False,
                                       "single_word": False, "special": True}},
    }, indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps({
        "bos_token_id": 0, "eos_token_id": 0, "do_sample": True, "temperature": 0.8, "top_k": 40,
    }, indent=2) + "\n")

    samples = []
    for name, temp, seed in (("greedy", 0.0, 0), ("temperature 0.8, top-k 40, seed 1", 0.8, 1),
                             ("temperature 0.8, top-k 40, seed 2", 0.8, 2)):
        text = generate(model, tok, "And God said", sample_tokens, temp, 40, seed, device)
        samples.append({"how": name, "text": text})
        log(f"[export] sample ({name}):\n{text}\n")

    try:
        if not hf_check:
            raise RuntimeError("skipped")
        from transformers import AutoTokenizer
        hf = AutoTokenizer.from_pretrained(str(out))
        probe = "And God said, Let there be light: and there was light.\nGenesis 1"
        same = hf.encode(probe, add_special_tokens=True) == tok.encode(probe).ids
        log(f"[export] transformers AutoTokenizer loads the folder: {type(hf).__name__}, ids equal: {same}, "
            f"eos {hf.eos_token!r} = {hf.eos_token_id}")
    except Exception as e:  # informative only
        log(f"[export] transformers AutoTokenizer check failed: {type(e).__name__}: {e}")

    size = (out / "model.safetensors").stat().st_size
    summary = {"chosen": best_run.name, "run": {k: v for k, v in res.items() if k != "history"}, "history": res["history"],
               "candidates": [{k: v for k, v in r.items() if k != "history"} for r, _ in results],
               "params": n_params, "model_safetensors_bytes": size, "metrics": metrics, "samples": samples}
    (out / "train_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    log(f"[export] {n_params:,} parameters, model.safetensors {size:,} bytes; {time.time() - t0:.1f} s")


# ----------------------------------------------------------------------------------------------------------------
# Self-test
# ----------------------------------------------------------------------------------------------------------------

def cmd_selftest(work: Path):
    t0 = time.time()
    dev = torch.device("cuda")
    torch.manual_seed(0)
    # 1. chunked = recurrent in float64, moderate and strongly negative gates, a length that is not a multiple of 16
    for scale, shift in ((1.0, 0.0), (20.0, -40.0)):
        B, T, H, dk, dv = 2, 75, 3, 8, 12
        q, k = torch.randn(B, T, H, dk, device=dev, dtype=torch.float64), torch.randn(B, T, H, dk, device=dev, dtype=torch.float64)
        v = torch.randn(B, T, H, dv, device=dev, dtype=torch.float64)
        g = F.logsigmoid(torch.randn(B, T, H, dk, device=dev, dtype=torch.float64) * scale + shift) / GATE_NORMALIZER
        a, b = gla_recurrent(q, k, v, g), gla_chunked(q, k, v, g)
        err = float((a - b).abs().max() / a.abs().max())
        log(f"[selftest] GLA chunked vs recurrent (gate logits ~ N({shift}, {scale}²)): relative max error {err:.2e}")
        assert err < 1e-10, err
    # 2. the whole tiny model, chunked vs recurrent, float64
    m = HybridLM(TINY).to(dev).double().eval()
    ids = torch.randint(0, TINY["vocab_size"], (2, 40), device=dev)
    with torch.no_grad():
        err = float((m(ids, "chunk") - m(ids, "recurrent")).abs().max())
    log(f"[selftest] tiny model chunked vs recurrent logits: max error {err:.2e}")
    assert err < 1e-9, err
    # 3. causal: logits of a prefix do not depend on later tokens
    with torch.no_grad():
        full = m(ids, "chunk")[:, :20]
        pre = m(ids[:, :20], "chunk")
    assert float((full - pre).abs().max()) < 1e-9
    # 4. training, export, golden, sampling on the tiny model
    run = work / "selftest_run"
    train(work, run, TINY, 0.1, 0, 60, 0, batch=4, seq=64, lr=1e-3, warmup=2, weight_decay=0.1, eval_every=3,
          steps=6, tag="selftest")
    cmd_export(work, [run], work / "selftest_export", TINY, golden_len=24, sample_tokens=4, hf_check=False)
    exp = json.loads((work / "selftest_export" / "expected.json").read_text())
    assert len(exp["tokens"]) == 24 and len(exp["logprobs"]) == 23
    log(f"[selftest] passed in {time.time() - t0:.1f} s")


# ----------------------------------------------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description="Train Horizon's default model (see the module docstring).")
    sub = p.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--work", default="/tmp/horizon-kjv-work", help="scratch folder (tokens, runs)")
    common.add_argument("--data", default=str(HERE / "data"), help="output of prepare_data.py")

    a = sub.add_parser("all", parents=[common])
    a.add_argument("--out", required=True, help="model folder to write")
    a.add_argument("--budget", type=float, default=170, help="seconds of training per variant (they run side by side)")
    a.add_argument("--variants", default="0.1:16,0.2:30,0.3:48", help="DROPOUT:EPOCHS,... trained side by side")
    a.add_argument("--seed", type=int, default=1234)
    a.add_argument("--skip-selftest", action="store_true")

    t = sub.add_parser("tokenizer", parents=[common])
    t.add_argument("--vocab", type=int, default=4096)

    s = sub.add_parser("selftest", parents=[common])

    r = sub.add_parser("train", parents=[common])
    r.add_argument("--run", required=True)
    r.add_argument("--dropout", type=float, default=0.1)
    r.add_argument("--epochs", type=float, default=16)
    r.add_argument("--steps", type=int, default=None, help="exact step count (skips the time-based re-planning)")
    r.add_argument("--budget", type=float, default=170)
    r.add_argument("--seed", type=int, default=1234)
    r.add_argument("--batch", type=int, default=32)
    r.add_argument("--seq", type=int, default=512)
    r.add_argument("--lr", type=float, default=2e-3)
    r.add_argument("--warmup", type=int, default=100)
    r.add_argument("--weight-decay", type=float, default=0.1)
    r.add_argument("--eval-every", type=int, default=50)

    e = sub.add_parser("export", parents=[common])
    e.add_argument("--runs", nargs="+", required=True)
    e.add_argument("--out", required=True)

    args = p.parse_args()
    work = Path(args.work)
    if args.cmd == "tokenizer":
        cmd_tokenizer(Path(args.data), work, args.vocab)
    elif args.cmd == "selftest":
        cmd_selftest(work)
    elif args.cmd == "train":
        train(work, Path(args.run), ARCH, args.dropout, args.epochs, args.budget, args.seed, args.batch, args.seq, args.lr,
              args.warmup, args.weight_decay, args.eval_every, steps=args.steps, tag=Path(args.run).name)
    elif args.cmd == "export":
        cmd_export(work, [Path(r) for r in args.runs], Path(args.out), ARCH, golden_len=200, sample_tokens=120)
    elif args.cmd == "all":
        t0 = time.time()
        cmd_tokenizer(Path(args.data), work, ARCH["vocab_size"])
        if not args.skip_selftest:
            cmd_selftest(work)
        procs, runs = [], []
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for i, spec in enumerate(args.variants.split(",")):
            dropout, epochs = spec.split(":")
            run = work / f"run{i}"
            runs.append(run)
            procs.append(subprocess.Popen([sys.executable, __file__, "train", "--work", str(work), "--run", str(run),
                                           "--dropout", dropout, "--epochs", epochs, "--budget", str(args.budget),
                                           "--seed", str(args.seed + i)], env=env))
        codes = [pr.wait() for pr in procs]
        log(f"[all] variants exited with {codes}")
        cmd_export(work, runs, Path(args.out), ARCH, golden_len=200, sample_tokens=120)
        log(f"[all] total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
