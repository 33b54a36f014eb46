"""Builds the SentencePiece fixture (Llama 2 style BPE with byte fallback) and its expected ids.

Run with Debian's python3-sentencepiece:  /usr/bin/python3 make_sentencepiece_fixture.py
Writes sentencepiece/tokenizer.model and sentencepiece/expected.json next to this script.
"""
import json, os
import sentencepiece as spm

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "sentencepiece")
os.makedirs(out, exist_ok=True)
corpus = os.path.join(here, "kjv.txt")
extra = open(os.path.join(here, "extra.txt"), encoding="utf-8").read()
tmp = os.path.join(out, "corpus.tmp")
with open(tmp, "w", encoding="utf-8") as f:
    f.write(open(corpus, encoding="utf-8").read())
    for _ in range(3):
        f.write(extra)
spm.SentencePieceTrainer.train(
    input=tmp, model_prefix=os.path.join(out, "tokenizer"), model_type="bpe", vocab_size=600,
    byte_fallback=True, split_digits=True, add_dummy_prefix=True, remove_extra_whitespaces=False,
    normalization_rule_name="identity", allow_whitespace_only_pieces=True, character_coverage=0.9995,
    unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2)
os.remove(tmp)
os.remove(os.path.join(out, "tokenizer.vocab"))
sp = spm.SentencePieceProcessor(model_file=os.path.join(out, "tokenizer.model"))
cases = json.load(open(os.path.join(here, "cases.json"), encoding="utf-8"))
expected = {
    "library": "sentencepiece " + spm.__version__,
    "cases": [{"text": t, "ids": sp.encode(t), "decoded": sp.decode(sp.encode(t))} for t in cases],
}
with open(os.path.join(out, "expected.json"), "w", encoding="utf-8") as f:
    json.dump(expected, f, ensure_ascii=False, indent=1)
print("vocab", sp.get_piece_size())
