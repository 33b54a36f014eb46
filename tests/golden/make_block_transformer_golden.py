#!/usr/bin/env python3
"""Builds small random-weight Block Transformer checkpoints in the official code's layout, and their expected
per-token log-probs, for Horizon's `block_transformer` golden tests.

Run on a machine with torch and safetensors (no network; transformers optional, see --check-transformers):
    python tests/golden/make_block_transformer_golden.py                 # writes tests/golden/block-transformer-*
    python tests/golden/make_block_transformer_golden.py --out DIR --check-transformers

GoldenTests loads every tests/golden/*/expected.json through the model registry: these fixtures are loaded by the
generated BlockTransformerModel (models/block_transformer.model.json, architecture BlockTransformerForCausalLM), scored
at their "first_block_padding", and compared over the non-null entries.

Each fixture directory holds
  model.safetensors  tensor names exactly as the official `BlockTransformer` module's state_dict names them
                     (itsnamgyu/block-transformer, model/block_transformer.py; HF Trainer saves it to
                     checkpoint-N/model.safetensors): embedder.embeddings.weight,
                     block_decoder.gpt_neox.{embed_in.weight, layers.N.*, final_layer_norm.*},
                     token_decoder.gpt_neox.{embed_in.weight, layers.N.*, final_layer_norm.*},
                     token_decoder.expansion_layer.{weight [R*D_T, D_B, 1], bias}, token_decoder.embed_out.weight.
                     block_decoder.gpt_neox.embed_in.weight is written (the official block decoder keeps it) but unused.
  config.json        the official code has NO config.json (its checkpoints ship with Hydra YAML,
                     conf/trainer/block_main_b4_*.yaml). This one mirrors the YAML's sections with every sub-config
                     resolved: top-level block_length, pad/bos/eos ids; "embedder" {cls "lookup", n_embedding_tokens 1,
                     projection_method "concat", config {LookupConfig keys}}; "block_decoder" {cls "gpt-neo-x",
                     config {GPTNeoXConfig keys}}; "token_decoder" {cls "gpt-neo-x", decoding_strategy "prefix",
                     expansion_method "expansion_layer", expansion_ratio R, config {GPTNeoXConfig keys}}.
                     architectures ["BlockTransformerForCausalLM"]: the official Python class is `BlockTransformer`
                     (not a transformers PreTrainedModel, never registered with AutoModel); the HF-style
                     "<Name>ForCausalLM" name lets Horizon's registry dispatch on it like on every other causal LM
                     and collides with no transformers class. model_type "block_transformer".
  expected.json      {"tokens": [...], "logprobs": [...], "first_block_padding": P, ...} where
                     logprobs[i] = log p(tokens[i+1] | tokens[..i]) with the sequence placed after P pad tokens
                     (pad_token_id) so that token t sits at stream position t + P. A token in block 0 (stream
                     position < block_length) has no prediction in the Block Transformer: its entry is null (only
                     when P < block_length - 1; with the default P = block_length - 1 every entry is a number).

The expected log-probs come from the float64 implementation below, written from the paper's equations (Ho et al.
2024, "Block Transformer: Global-to-Local Language Modeling for Fast Inference", sec. 2) and what the official code
does in its forward (training / lm_eval) path:
  * embedder (embedder/lookup.py + embedder/base.py, projection "concat"): e_b = concat of the L_B token lookups;
  * block decoder (block_decoder/gpt_neo_x.py): GPTNeoXModel on inputs_embeds, causal over blocks, positions
    0..n_blocks-1, final_layer_norm applied (outputs[0]);
  * block shift (block_transformer.py forward: labels/input_ids[:, 1:], hidden_states[:, :-1]): block b's tokens are
    predicted from the block decoder output of block b-1; block 0 is never predicted;
  * token decoder, "prefix" strategy (token_decoder/base.py _adapt_forward_inputs_for_prefix): the BOS that the
    caller prepends is REMOVED and replaced by the R = expansion_ratio prefix vectors
    reshape(Conv1d_k1(g_{b-1})) -> [R, D_T]; the last token of the block is dropped (discard_redundant_tokens), so
    the local sequence is [p_0 .. p_{R-1}, x_0 .. x_{L_B-2}] at positions 0 .. R+L_B-2 and the outputs from index
    R-1 on give the logits of x_0 .. x_{L_B-1} (embed_out after final_layer_norm).
  * GPT-NeoX layer (transformers modeling_gpt_neox.py): LayerNorm with bias; fused query_key_value viewed as
    [.., heads, 3*head_dim] and split q|k|v per head; rotate-half RoPE on the first int(head_dim * rotary_pct)
    dims, inv_freq = base^(-2i/rotary_dims); scores / sqrt(head_dim); dense; parallel residual
    x + attn(ln1(x)) + mlp(ln2(x)) or sequential; MLP dense_4h_to_h(act(dense_h_to_4h(x))), act "gelu" = exact erf.
With --check-transformers the block and token decoders are also run through transformers' GPTNeoXModel (float64,
eager attention) on the same inputs and must agree to 1e-5 (transformers forms RoPE angles in float32 even in a
float64 model, so ~1e-7 is as close as it gets): a check of the GPT-NeoX reading above, not of the Block Transformer
wiring (the official repository is not importable offline).

Weights are initialised far from the default init (std 0.02 gives near-uniform predictions) so that the log-probs
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


# ----------------------------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------------------------

def gpt_neox_config(hidden, heads, intermediate, layers, vocab, rotary_pct=0.25, parallel=True, act="gelu",
                    eps=1e-5, base=10000):
    """The keys GPTNeoXConfig.to_dict() writes in transformers 4.36-4.39 (the versions the official code was tested
    with); pythia-410m's values except for the sizes the Block Transformer YAML overrides."""
    return {
        "architectures": ["GPTNeoXForCausalLM"],
        "model_type": "gpt_neox",
        "attention_bias": True,
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "classifier_dropout": 0.1,
        "eos_token_id": 0,
        "hidden_act": act,
        "hidden_dropout": 0.0,
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": intermediate,
        "layer_norm_eps": eps,
        "max_position_embeddings": 2048,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "rope_scaling": None,
        "rotary_emb_base": base,
        "rotary_pct": rotary_pct,
        "tie_word_embeddings": False,
        "use_cache": True,
        "use_parallel_residual": parallel,
        "vocab_size": vocab,
    }


def block_transformer_config(block_length, prefix, vocab, block, token, pad_token_id=0):
    return {
        "architectures": ["BlockTransformerForCausalLM"],
        "model_type": "block_transformer",
        "block_length": block_length,
        "vocab_size": vocab,
        "pad_token_id": pad_token_id,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "embedder": {
            "cls": "lookup",
            "n_embedding_tokens": 1,
            "projection_method": "concat",
            "config": {"model_type": "lookup", "vocab_size": vocab, "hidden_size": block["hidden_size"] // block_length,
                       "pad_token_id": None, "bos_token_id": None, "eos_token_id": None, "initializer_range": 0.02},
        },
        "block_decoder": {"cls": "gpt-neo-x", "config": block},
        "token_decoder": {"cls": "gpt-neo-x", "decoding_strategy": "prefix", "expansion_method": "expansion_layer",
                          "expansion_ratio": prefix, "config": token},
        "source": "itsnamgyu/block-transformer conf/trainer/block_main_b4_*.yaml layout, sub-configs resolved",
    }


# ----------------------------------------------------------------------------------------------------------------
# Random weights under the official names
# ----------------------------------------------------------------------------------------------------------------

def random_state_dict(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    L = cfg["block_length"]
    R = cfg["token_decoder"]["expansion_ratio"]
    bc, tc = cfg["block_decoder"]["config"], cfg["token_decoder"]["config"]
    vocab = cfg["vocab_size"]

    def randn(*shape, std):
        return torch.randn(*shape, generator=g, dtype=torch.float64).float() * std

    def linear(out_features, in_features, gain=1.0):
        return randn(out_features, in_features, std=gain / math.sqrt(in_features))

    def norm(prefix, n):
        return {prefix + ".weight": (torch.rand(n, generator=g, dtype=torch.float64) + 0.5).float(),  # γ in [0.5, 1.5)
                prefix + ".bias": randn(n, std=0.2)}

    def stack(prefix, c):
        d, i = c["hidden_size"], c["intermediate_size"]
        sd = {prefix + "embed_in.weight": randn(vocab, d, std=1.0)}
        for layer in range(c["num_hidden_layers"]):
            p = f"{prefix}layers.{layer}."
            sd.update(norm(p + "input_layernorm", d))
            sd.update(norm(p + "post_attention_layernorm", d))
            sd[p + "attention.query_key_value.weight"] = linear(3 * d, d)
            sd[p + "attention.query_key_value.bias"] = randn(3 * d, std=0.3)
            sd[p + "attention.dense.weight"] = linear(d, d)
            sd[p + "attention.dense.bias"] = randn(d, std=0.1)
            sd[p + "mlp.dense_h_to_4h.weight"] = linear(i, d)
            sd[p + "mlp.dense_h_to_4h.bias"] = randn(i, std=0.3)
            sd[p + "mlp.dense_4h_to_h.weight"] = linear(d, i)
            sd[p + "mlp.dense_4h_to_h.bias"] = randn(d, std=0.1)
        sd.update(norm(prefix + "final_layer_norm", d))
        return sd

    sd = {"embedder.embeddings.weight": randn(vocab, bc["hidden_size"] // L, std=1.0)}
    sd.update(stack("block_decoder.gpt_neox.", bc))
    sd.update(stack("token_decoder.gpt_neox.", tc))
    # nn.Conv1d(D_B, R*D_T, kernel_size=1): weight [R*D_T, D_B, 1]
    sd["token_decoder.expansion_layer.weight"] = linear(R * tc["hidden_size"], bc["hidden_size"]).unsqueeze(-1)
    sd["token_decoder.expansion_layer.bias"] = randn(R * tc["hidden_size"], std=0.2)
    sd["token_decoder.embed_out.weight"] = linear(vocab, tc["hidden_size"], gain=3.0)
    return sd


# ----------------------------------------------------------------------------------------------------------------
# The float64 reference, from the equations
# ----------------------------------------------------------------------------------------------------------------

def layer_norm(x, sd, name, eps):
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).pow(2).mean(-1, keepdim=True)  # biased, as nn.LayerNorm
    return (x - mean) / torch.sqrt(var + eps) * sd[name + ".weight"] + sd[name + ".bias"]


def gelu(x, act):
    if act == "gelu":
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if act in ("gelu_new", "gelu_fast", "gelu_pytorch_tanh"):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    raise ValueError(act)


def rotary(x, positions, rot, base):
    """Rotate-half RoPE on the first `rot` dims of x [T, H, d] at the given positions; the rest passes through."""
    half = rot // 2
    inv_freq = base ** (-torch.arange(0, half, dtype=torch.float64) * 2.0 / rot)
    angle = positions.double()[:, None] * inv_freq[None, :]           # [T, rot/2]
    cos, sin = angle.cos()[:, None, :], angle.sin()[:, None, :]
    a, b, rest = x[..., :half], x[..., half:rot], x[..., rot:]
    return torch.cat([a * cos - b * sin, b * cos + a * sin, rest], dim=-1)


def gpt_neox_attention(x, sd, p, c):
    t_len, d = x.shape
    heads = c["num_attention_heads"]
    hd = d // heads
    rot = int(hd * c["rotary_pct"])
    qkv = (x @ sd[p + "attention.query_key_value.weight"].T + sd[p + "attention.query_key_value.bias"])
    qkv = qkv.view(t_len, heads, 3 * hd)                               # per head: [q | k | v]
    q, k, v = qkv[..., :hd], qkv[..., hd:2 * hd], qkv[..., 2 * hd:]
    pos = torch.arange(t_len)
    q, k = rotary(q, pos, rot, c["rotary_emb_base"]), rotary(k, pos, rot, c["rotary_emb_base"])
    out = torch.zeros(t_len, heads, hd, dtype=x.dtype)
    for i in range(t_len):                                             # query i sees keys 0..i
        scores = torch.einsum("hd,jhd->hj", q[i], k[:i + 1]) / math.sqrt(hd)
        out[i] = torch.einsum("hj,jhd->hd", torch.softmax(scores, dim=-1), v[:i + 1])
    return out.reshape(t_len, d) @ sd[p + "attention.dense.weight"].T + sd[p + "attention.dense.bias"]


def gpt_neox_mlp(x, sd, p, c):
    h = x @ sd[p + "mlp.dense_h_to_4h.weight"].T + sd[p + "mlp.dense_h_to_4h.bias"]
    return gelu(h, c["hidden_act"]) @ sd[p + "mlp.dense_4h_to_h.weight"].T + sd[p + "mlp.dense_4h_to_h.bias"]


def gpt_neox_stack(x, sd, prefix, c):
    """GPTNeoXModel(inputs_embeds=x)[0] for one sequence x [T, D]: layers, then final_layer_norm."""
    eps = c["layer_norm_eps"]
    for layer in range(c["num_hidden_layers"]):
        p = f"{prefix}layers.{layer}."
        attn = gpt_neox_attention(layer_norm(x, sd, p + "input_layernorm", eps), sd, p, c)
        if c["use_parallel_residual"]:
            x = x + attn + gpt_neox_mlp(layer_norm(x, sd, p + "post_attention_layernorm", eps), sd, p, c)
        else:
            h = x + attn
            x = h + gpt_neox_mlp(layer_norm(h, sd, p + "post_attention_layernorm", eps), sd, p, c)
    return layer_norm(x, sd, prefix + "final_layer_norm", eps)


def block_logits(sd, cfg, stream):
    """Logits [n_blocks, L_B, V] for the stream (padded, whole blocks only): row b holds the predictions of block b's
    tokens; row 0 is undefined (NaN). Also returns the decoder inputs for the optional transformers check."""
    L = cfg["block_length"]
    R = cfg["token_decoder"]["expansion_ratio"]
    bc, tc = cfg["block_decoder"]["config"], cfg["token_decoder"]["config"]
    n_blocks = len(stream) // L
    ids = torch.tensor(stream[:n_blocks * L]).view(n_blocks, L)
    # Embedder: e_b = concat_r E[s_{bL+r}]  ->  [n_blocks, D_B]
    embeds = sd["embedder.embeddings.weight"][ids].reshape(n_blocks, -1)
    contexts = gpt_neox_stack(embeds, sd, "block_decoder.gpt_neox.", bc)          # g_0 .. g_{n-1}
    w = sd["token_decoder.expansion_layer.weight"][:, :, 0]
    vocab = sd["token_decoder.embed_out.weight"].shape[0]
    logits = torch.full((n_blocks, L, vocab), float("nan"), dtype=torch.float64)
    locals_ = []
    for b in range(1, n_blocks):
        prefix = (contexts[b - 1] @ w.T + sd["token_decoder.expansion_layer.bias"]).view(R, -1)
        tokens = sd["token_decoder.gpt_neox.embed_in.weight"][ids[b, :L - 1]]    # the last token is never input
        local = torch.cat([prefix, tokens], dim=0)                                # [R + L - 1, D_T]
        hidden = gpt_neox_stack(local, sd, "token_decoder.gpt_neox.", tc)
        logits[b] = hidden[R - 1:] @ sd["token_decoder.embed_out.weight"].T       # predicts x_0 .. x_{L-1}
        locals_.append(local)
    return logits, embeds, contexts, locals_


def expected_logprobs(sd, cfg, tokens, padding):
    """logprobs[i] = log p(tokens[i+1] | tokens[..i]); None where tokens[i+1] lies in block 0."""
    L = cfg["block_length"]
    stream = [cfg["pad_token_id"]] * padding + list(tokens)
    full = len(stream) + (-len(stream)) % L
    # A partial last block is predicted from the tokens before it only (causal), so padding it to a whole block with
    # any id changes nothing that is read.
    stream_whole = stream + [cfg["pad_token_id"]] * (full - len(stream))
    logits, embeds, contexts, locals_ = block_logits(sd, cfg, stream_whole)
    logp = torch.log_softmax(logits, dim=-1)
    out = []
    for i in range(len(tokens) - 1):
        u = padding + i + 1
        b, r = divmod(u, L)
        out.append(None if b == 0 else float(logp[b, r, tokens[i + 1]]))
    return out, (embeds, contexts, locals_)


def check_with_transformers(sd, cfg, inputs):
    """Runs both decoders through transformers' GPTNeoXModel in float64 and compares with the reference stacks."""
    import transformers
    from transformers import GPTNeoXConfig, GPTNeoXModel

    embeds, contexts, locals_ = inputs
    worst = 0.0
    for section, prefix in (("block_decoder", "block_decoder.gpt_neox."), ("token_decoder", "token_decoder.gpt_neox.")):
        c = dict(cfg[section]["config"])
        c.pop("architectures", None)
        config = GPTNeoXConfig(**c)
        for key, value in (("rotary_pct", c["rotary_pct"]), ("partial_rotary_factor", c["rotary_pct"]),
                           ("rotary_emb_base", c["rotary_emb_base"]), ("rope_theta", c["rotary_emb_base"])):
            if hasattr(config, key):
                setattr(config, key, value)
        rope = getattr(config, "rope_parameters", None)  # transformers 5 keeps θ and the rotary fraction here
        if isinstance(rope, dict):
            rope.update({"rope_theta": c["rotary_emb_base"], "partial_rotary_factor": c["rotary_pct"]})
        config._attn_implementation = "eager"
        model = GPTNeoXModel(config).double().eval()
        state = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected, unexpected
        assert all("rotary" in m or m.endswith(".bias") and "attention.bias" in m or "masked_bias" in m for m in missing), missing
        with torch.no_grad():
            if section == "block_decoder":
                got = model(inputs_embeds=embeds[None]).last_hidden_state[0]
                ours = contexts
                worst = max(worst, (got - ours).abs().max().item())
            else:
                for local in locals_:
                    got = model(inputs_embeds=local[None]).last_hidden_state[0]
                    ours = gpt_neox_stack(local, sd, prefix, cfg[section]["config"])
                    worst = max(worst, (got - ours).abs().max().item())
    print(f"    transformers {transformers.__version__} GPTNeoXModel vs reference: max |diff| {worst:.2e}")
    # transformers forms the RoPE angles in float32 even in a float64 model (inv_freq and position·inv_freq are
    # .float()), so agreement stops near 1e-7; a wrong layout, rotary width or residual form is off by O(0.1).
    assert worst < 1e-5, f"GPT-NeoX reference disagrees with transformers by {worst}"


# ----------------------------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------------------------

FAILED = []


def make_fixture(*args, **kwargs):
    try:
        _make_fixture(*args, **kwargs)
    except Exception:  # report every fixture's failure in one run instead of stopping at the first
        import traceback
        traceback.print_exc()
        FAILED.append(args[1])


def _make_fixture(out_dir, name, cfg, seq_len, seed, padding=None, dtype=torch.float32, check=False):
    path = os.path.join(out_dir, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    cfg = dict(cfg)
    cfg["torch_dtype"] = str(dtype).replace("torch.", "")
    L = cfg["block_length"]
    padding = L - 1 if padding is None else padding
    sd = random_state_dict(cfg, seed)
    save_file({k: v.to(dtype).contiguous() for k, v in sd.items()}, os.path.join(path, "model.safetensors"),
              metadata={"format": "pt"})
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)

    # The reference runs on the checkpoint as saved, read back and widened to float64.
    saved = {k: v.double() for k, v in load_file(os.path.join(path, "model.safetensors")).items()}
    g = torch.Generator().manual_seed(seed + 1)
    tokens = torch.randint(0, cfg["vocab_size"], (seq_len,), generator=g).tolist()
    with torch.no_grad():
        logprobs, inputs = expected_logprobs(saved, cfg, tokens, padding)
    if check:
        check_with_transformers(saved, cfg, inputs)
    bc, tc = cfg["block_decoder"]["config"], cfg["token_decoder"]["config"]
    with open(os.path.join(path, "expected.json"), "w") as f:
        json.dump({
            "description": (f"{name}: BlockTransformer, block_length {L}, prefix {cfg['token_decoder']['expansion_ratio']}, "
                            f"vocab {cfg['vocab_size']}, block decoder hidden {bc['hidden_size']} heads {bc['num_attention_heads']} "
                            f"layers {bc['num_hidden_layers']} rotary_pct {bc['rotary_pct']} parallel {bc['use_parallel_residual']}, "
                            f"token decoder hidden {tc['hidden_size']} heads {tc['num_attention_heads']} layers {tc['num_hidden_layers']} "
                            f"rotary_pct {tc['rotary_pct']} parallel {tc['use_parallel_residual']} act {tc['hidden_act']}, "
                            f"first block padding {padding}, dtype {cfg['torch_dtype']}"),
            "reference": "float64 implementation from the equations (tests/golden/make_block_transformer_golden.py)",
            "torch": torch.__version__,
            "first_block_padding": padding,
            "tokens": tokens,
            "logprobs": [None if x is None else round(x, 7) for x in logprobs],
        }, f)
    lp = torch.tensor([x for x in logprobs if x is not None], dtype=torch.float64)
    print(f"{name:44s} tokens {seq_len:4d}  P {padding}  scored {len(lp):4d}  logprob min {lp.min():8.3f} "
          f"mean {lp.mean():7.3f} max {lp.max():7.3f}  ppl {math.exp(-lp.mean()):9.2f}  files {sorted(os.listdir(path))}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/golden")
    ap.add_argument("--check-transformers", action="store_true",
                    help="also run both GPT-NeoX stacks through transformers' GPTNeoXModel (float64) and compare")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    out = args.out
    os.makedirs(out, exist_ok=True)
    check = args.check_transformers

    # The official main shape in miniature: L_B 4, R 2, lookup width D_B/4, both decoders parallel-residual exact-GELU
    # GPT-NeoX with rotary_pct 0.25, token decoder narrower than the block decoder. P = 3: every token but the first scored.
    make_fixture(out, "block-transformer-b4-main", block_transformer_config(
        4, 2, 96,
        gpt_neox_config(64, 4, 160, 2, 96),
        gpt_neox_config(48, 3, 128, 2, 96)), seq_len=259, seed=31, check=check)

    # No padding (the lm_eval "| A B C D |" alignment: the first L_B - 1 log-probs are null), sequential residual in
    # the block decoder, rotary_pct 0.5 and a tanh GELU in the token decoder, BF16 weights.
    make_fixture(out, "block-transformer-b4-nopad-sequential-bf16", block_transformer_config(
        4, 2, 80,
        gpt_neox_config(48, 3, 96, 2, 80, rotary_pct=0.5, parallel=False),
        gpt_neox_config(40, 2, 72, 3, 80, rotary_pct=0.5, act="gelu_new")), seq_len=203, seed=32, padding=0,
        dtype=torch.bfloat16, check=check)

    # L_B 3 with R 3, one block-decoder layer, full rotary in the token decoder, P = 1.
    make_fixture(out, "block-transformer-b3-r3", block_transformer_config(
        3, 3, 72,
        gpt_neox_config(36, 3, 64, 1, 72, rotary_pct=0.5),
        gpt_neox_config(32, 4, 48, 2, 72, rotary_pct=1.0)), seq_len=200, seed=33, padding=1, check=check)

    if FAILED:
        raise SystemExit(f"failed fixtures: {FAILED}")


if __name__ == "__main__":
    main()
