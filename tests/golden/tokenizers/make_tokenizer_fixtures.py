"""Builds Horizon's byte-level BPE tokenizer fixtures with the Hugging Face `tokenizers` library, and the ids
that library gives for every string of cases.json. Run on a machine with tokenizers and transformers:

    python tests/golden/tokenizers/make_tokenizer_fixtures.py OUT_DIR

Writes, under OUT_DIR, one folder per variant (tokenizer.json + expected.json) and chat/expected.json (chat
templates rendered by transformers' Jinja engine). Variants share one vocabulary trained on kjv.txt + extra.txt:
  gpt2    ByteLevel pre-tokenizer (GPT-2 regex), ByteLevel decoder
  prefix  as gpt2 with add_prefix_space
  qwen2   NFC normalizer, Split(Qwen2 regex) + ByteLevel(use_regex=false)
  llama3  Split(Llama 3 regex) + ByteLevel(use_regex=false), ignore_merges, <|begin_of_text|> template
  small   a 300-id vocabulary in the qwen2 layout, with tokenizer_config.json (ChatML), for tests that pair it
          with the random 320-id test models
"""
import copy, json, os, sys
import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

here = os.path.dirname(os.path.abspath(__file__))
out = sys.argv[1] if len(sys.argv) > 1 else here
QWEN2 = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
LLAMA3 = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
LLAMA3_TEMPLATE = ("{% set loop_messages = messages %}{% for message in loop_messages %}"
                   "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}"
                   "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
                   "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")

lines = open(os.path.join(here, "kjv.txt"), encoding="utf-8").read().splitlines(keepends=True)
lines += open(os.path.join(here, "extra.txt"), encoding="utf-8").read().splitlines(keepends=True) * 3
cases = json.load(open(os.path.join(here, "cases.json"), encoding="utf-8"))
cases += ["fill the <mask> here", "a  <mask>b", "call <tool_call>{\"x\": 1}</tool_call> done", "<|begin_of_text|>Hello"]


def train(vocab_size, specials):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer)
    return tok


def split_byte_level(pattern):
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}


def save(name, tok, extra_files=None):
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    tok.save(os.path.join(folder, "tokenizer.json"))
    results = []
    for text in cases:
        plain = tok.encode(text, add_special_tokens=False)
        with_special = tok.encode(text, add_special_tokens=True)
        results.append({"text": text, "ids": plain.ids, "tokens": plain.tokens, "ids_with_special_tokens": with_special.ids,
                        "decoded": tok.decode(plain.ids, skip_special_tokens=False),
                        "decoded_skip_special": tok.decode(plain.ids, skip_special_tokens=True)})
    with open(os.path.join(folder, "expected.json"), "w", encoding="utf-8") as f:
        json.dump({"library": "tokenizers " + tokenizers.__version__, "vocab_size": tok.get_vocab_size(), "cases": results},
                  f, ensure_ascii=False, indent=1)
    for file_name, content in (extra_files or {}).items():
        with open(os.path.join(folder, file_name), "w", encoding="utf-8") as f:
            json.dump(content, f, ensure_ascii=False, indent=2)
    print(name, tok.get_vocab_size(), flush=True)


def variant(base, edit, added=None, post=None):
    d = json.loads(base.to_str())
    edit(d)
    tok = Tokenizer.from_str(json.dumps(d))
    if added:
        tok.add_special_tokens(added)
    if post:
        tok.post_processor = post(tok)
    return tok


base = train(1000, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
base.add_tokens([AddedToken("<tool_call>", special=False, normalized=False), AddedToken("</tool_call>", special=False, normalized=False)])
base.add_special_tokens([AddedToken("<mask>", special=True, lstrip=True, normalized=False)])

save("gpt2", base)


def prefix(d):
    d["pre_tokenizer"]["add_prefix_space"] = True
save("prefix", variant(base, prefix))


def qwen2(d):
    d["normalizer"] = {"type": "NFC"}
    d["pre_tokenizer"] = split_byte_level(QWEN2)
save("qwen2", variant(base, qwen2))


def llama3(d):
    d["pre_tokenizer"] = split_byte_level(LLAMA3)
    d["model"]["ignore_merges"] = True
save("llama3", variant(base, llama3, added=[AddedToken("<|begin_of_text|>", special=True, normalized=False)],
                       post=lambda t: processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                                                    special_tokens=[("<|begin_of_text|>", t.token_to_id("<|begin_of_text|>"))])))

small = train(300, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
small = variant(small, qwen2)
save("small", small, {
    "tokenizer_config.json": {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                              "chat_template": CHATML, "model_max_length": 1024,
                              "tokenizer_class": "Qwen2Tokenizer"},
    "generation_config.json": {"eos_token_id": [small.token_to_id("<|im_end|>"), small.token_to_id("<|endoftext|>")],
                               "do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05},
})

# Chat templates rendered by transformers (Jinja), for the C# ChatML and Llama 3 formatters.
try:
    import transformers
    from transformers import PreTrainedTokenizerFast
    conversations = [
        [{"role": "user", "content": "Hello!"}],
        [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hi."}],
        [{"role": "user", "content": "  What is 2+2?  \n"}, {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"}],
        [{"role": "system", "content": "Sys"}, {"role": "user", "content": "中文 👋"}, {"role": "assistant", "content": "ok\n"}],
    ]
    chat = {"transformers": transformers.__version__, "templates": {}}
    for name, template, folder, bos in (("chatml", CHATML, "qwen2", None), ("llama3", LLAMA3_TEMPLATE, "llama3", "<|begin_of_text|>")):
        tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(out, folder, "tokenizer.json"), bos_token=bos)
        tok.chat_template = template
        renders = []
        for messages in conversations:
            for generation_prompt in (False, True):
                text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
                ids = tok(text, add_special_tokens=False)["input_ids"]
                renders.append({"messages": messages, "add_generation_prompt": generation_prompt, "text": text, "ids": ids})
        chat["templates"][name] = {"chat_template": template, "tokenizer": folder, "renders": renders}
    os.makedirs(os.path.join(out, "chat"), exist_ok=True)
    with open(os.path.join(out, "chat", "expected.json"), "w", encoding="utf-8") as f:
        json.dump(chat, f, ensure_ascii=False, indent=1)
    print("chat ok", flush=True)
except Exception as e:  # the tokenizer fixtures above stand on their own
    print("chat failed:", repr(e), flush=True)

# The SentencePiece fixture (made with sentencepiece by make_sentencepiece_fixture.py), as transformers reads it.
try:
    from transformers import LlamaTokenizerFast
    spdir = os.path.join(here, "sentencepiece")
    tok = LlamaTokenizerFast(vocab_file=os.path.join(spdir, "tokenizer.model"), legacy=True, add_bos_token=False, add_eos_token=False, from_slow=True)
    sp_cases = json.load(open(os.path.join(spdir, "expected.json"), encoding="utf-8"))["cases"]
    agree = sum(tok(c["text"], add_special_tokens=False)["input_ids"] == c["ids"] for c in sp_cases)
    print(f"transformers LlamaTokenizerFast agrees with sentencepiece on {agree}/{len(sp_cases)} cases", flush=True)
except Exception as e:
    print("sentencepiece cross-check skipped:", repr(e), flush=True)
