"""Derives two fixtures from gpt2/tokenizer.json with plain JSON edits (no tokenizers library needed):

  qwen2/tokenizer.json  the qwen2 variant of make_tokenizer_fixtures.py (NFC + Split(Qwen2 regex) + ByteLevel
                        without regex); qwen2/expected.json holds the tokenizers library's ids for exactly this
                        configuration (the device run returned expected.json but not the tokenizer file).
  small/                the first 300 ids of the same vocabulary (3 special tokens, 256 bytes, the first 41
                        merges) in the qwen2 layout, with tokenizer_config.json (ChatML) and
                        generation_config.json: a tokenizer whose ids fit the random 320-id test models.

    python3 tests/golden/tokenizers/derive_fixtures.py
"""
import json, os

here = os.path.dirname(os.path.abspath(__file__))
QWEN2 = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def write(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=2)
        f.write("\n")


gpt2 = json.load(open(os.path.join(here, "gpt2", "tokenizer.json"), encoding="utf-8"))
qwen2 = json.loads(json.dumps(gpt2))
qwen2["normalizer"] = {"type": "NFC"}
qwen2["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": QWEN2}, "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
write(os.path.join(here, "qwen2", "tokenizer.json"), qwen2)

size = 300
small = json.loads(json.dumps(qwen2))
small["added_tokens"] = [t for t in small["added_tokens"] if t["id"] < size]
small["model"]["vocab"] = {k: v for k, v in small["model"]["vocab"].items() if v < size}
small["model"]["merges"] = [m for m in small["model"]["merges"] if "".join(m) in small["model"]["vocab"] and small["model"]["vocab"]["".join(m)] < size]
write(os.path.join(here, "small", "tokenizer.json"), small)
write(os.path.join(here, "small", "tokenizer_config.json"), {
    "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": CHATML,
    "model_max_length": 1024, "tokenizer_class": "Qwen2Tokenizer"})
write(os.path.join(here, "small", "generation_config.json"), {
    "eos_token_id": [2, 0], "do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05})
print("small vocab", len(small["model"]["vocab"]), "merges", len(small["model"]["merges"]))
