#!/usr/bin/python3
"""Regenerate the expected ids under tests/tokenizer/expected/ from the reference engines.

Ground truth = Hugging Face `tokenizers` (npm `tokenizers@0.23.2`, the Rust engine behind
LlamaTokenizerFast) on tokenizer.json.  Second opinion = sentencepiece (Debian
python3-sentencepiece) on tokenizer.model; every disagreement is written to
expected/REPORT.txt.  For invalid UTF-8 input (which HF cannot receive at all) the
expected ids come from sentencepiece, whose policy raktn follows (each bad byte -> U+FFFD).

usage (from the repository root):
  TOK_NODE_DIR=/path/with/node_modules /usr/bin/python3 tests/tokenizer/make_expected.py \
      SHARED_TOKENIZERS_DIR
where SHARED_TOKENIZERS_DIR holds mistral-v0.1/, rakuten-like-48k/ (tokenizer.json and
tokenizer.model) and groundtruth/*.jsonl(.gz) (their texts are re-encoded here).
`npm install tokenizers@0.23.2` inside TOK_NODE_DIR provides the HF engine.

It also (re)trains the small vocabulary tests/tokenizer/small-spm/tokenizer.model from
train.txt with Debian's spm_train and converts it to tokenizer.json the way transformers'
LlamaConverter does (see spm_to_tokenizer_json below).

File format (read by tests/test_tokenizer.c): one case per line,
  IDS <TAB> TEXT
IDS are decimal ids separated by single spaces (no BOS), TEXT is the input with
backslash escapes: \\\\ \\n \\t \\r and \\xHH for other bytes < 0x20, 0x7f and bytes
that are not valid UTF-8; everything else is raw UTF-8.  *_decode.tsv files hold
IDS <TAB> HF's decode(IDS, skip_special_tokens=False).  Large files are gzipped.
"""
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "export"))
import tokenizer_export as te  # noqa: E402  (our own protobuf reader)

OUT = os.path.join(HERE, "expected")

CHAT = ("A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions. "
        "USER: {user_input} ASSISTANT:")
USER_INPUTS = ["「馬が合う」はどう言う意味ですか", "How to make an authentic Spanish Omelette?",
               "楽天グループについて教えてください。", "What is the meaning of life?"]

# Hand-written cases: what people type, and the corners of the rules.
CASES = [
    "", " ", "  ", "Hello", " Hello", "  Hello", "Hello ", "Hello  world", "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    "楽天グループ株式会社は、東京都世田谷区に本社を置く日本の企業です。",
    "日本語と English が混ざった文章。テスト 123 です。",
    "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。",
    "東京 大阪　京都", "全角スペース　の後", "ｶﾀｶﾅ ＡＢＣ １２３",
    "a\nb", "\n", "\n\n", "line1\nline2\n", " \n ", "a\tb", "\t", "\tindent", "a\r\nb\r\n", "\r",
    "    four spaces", "x" + " " * 17 + "y", "trailing   ", "   ", " " * 40,
    "emoji 😀 and 👩‍💻 and 🇯🇵", "😀", "👍🏽", "rare CJK 𠮷野家 𩸽 𪚲 龘 䨺", "𠮷",
    "Ω≈ç√∫˜µ≤≥÷", "Zürich naïve café", "Ελληνικά, русский, العربية, עברית, हिन्दी, 한국어",
    "\u00a0nbsp\u2009thin\u3000ideographic", "zero\u200bwidth", "\ufeffbom",
    "\u2581literal mark\u2581\u2581", "<0x41>", "<0xZZ>", "a\u0000b", "\u0000",
    "Hello <s> world", "<s>", "</s>", "<unk>", "<s><s>", "<s> x </s>", "a<unk>b", "<<s>>",
    "<s", "s>", "< s>", "<S>", "</s >", "text</s>", "<s>\n", " <s> ",
    "1234567890", "3.14159 2024-03-21 12:30", "$100.00 ¥2,500 €3", "https://example.com/a?b=c&d=e",
    "def f(x):\n    return x * 2\n", "{\"key\": [1, 2, 3]}", "C:\\path\\to\\file",
    "!!!???...", "ーーー", "。。。", "ああああああああああああああああ",
    "「馬が合う」はどう言う意味ですか", "How to make an authentic Spanish Omelette?",
] + [CHAT.format(user_input=u) for u in USER_INPUTS] + [
    "<s>" + CHAT.format(user_input=USER_INPUTS[0]),
    CHAT.format(user_input=USER_INPUTS[1]) + " Here is a recipe.</s>",
]

INVALID = [b"a\xffb", b"\xff", b"\xe3\x81", b"\xe3\x81c", b"\xed\xa0\x80x", b"\xc0\xafz",
           b"\xf4\x90\x80\x80q", b"\x80\x80", b"abc\xe6\x97", b"\xf0\x9f\x98", b"ok \xfe\xfe ok",
           "日本".encode() + b"\xe6" + "語".encode(), b"\xc3", b"x \xc3 y"]


def escape(b):
    """bytes -> one-line text (the format above)."""
    out = []
    i = 0
    while i < len(b):
        c = b[i]
        if c == 0x5C:
            out.append(b"\\\\")
        elif c == 10:
            out.append(b"\\n")
        elif c == 9:
            out.append(b"\\t")
        elif c == 13:
            out.append(b"\\r")
        elif c < 0x20 or c == 0x7F:
            out.append(b"\\x%02x" % c)
        elif c < 0x80:
            out.append(bytes([c]))
        else:
            n = 2 if 0xC2 <= c <= 0xDF else 3 if 0xE0 <= c <= 0xEF else 4 if 0xF0 <= c <= 0xF4 else 0
            try:
                ch = b[i:i + n].decode("utf-8") if n else None
            except UnicodeDecodeError:
                ch = None
            if ch is None or len(ch) != 1:
                out.append(b"\\x%02x" % c)
            else:
                out.append(b[i:i + n])
                i += n
                continue
        i += 1
    return b"".join(out)


def write_tsv(path, rows):
    data = b"".join(b" ".join(b"%d" % i for i in ids) + b"\t" + escape(t) + b"\n"
                    for ids, t in rows)
    if path.endswith(".gz"):
        with gzip.GzipFile(path, "wb", mtime=0) as f:   # reproducible bytes
            f.write(data)
    else:
        with open(path, "wb") as f:
            f.write(data)
    print("wrote %s (%d cases)" % (os.path.relpath(path), len(rows)), file=sys.stderr)


# ------------------------------------------------------------- HF (npm) engine

HF_JS = r"""
import fs from 'fs';
import { createRequire } from 'module';
const require = createRequire(process.env.TOK_NODE_DIR + '/package.json');
const { Tokenizer } = require('tokenizers');
const [tokPath, inPath, outPath] = process.argv.slice(2);
const tok = Tokenizer.fromFile(tokPath);
const jobs = JSON.parse(fs.readFileSync(inPath, 'utf8'));
const out = [];
for (const j of jobs) {
  if (j.text !== undefined)
    out.push(Array.from((await tok.encode(j.text, null, { addSpecialTokens: false })).getIds(), Number));
  else
    out.push(await tok.decode(j.ids, false));
}
fs.writeFileSync(outPath, JSON.stringify(out));
"""


def hf_run(tok_json, jobs):
    with tempfile.TemporaryDirectory() as d:
        js, inp, outp = (os.path.join(d, n) for n in ("hf.mjs", "in.json", "out.json"))
        with open(js, "w") as f:
            f.write(HF_JS)
        with open(inp, "w", encoding="utf-8") as f:
            json.dump(jobs, f, ensure_ascii=False)
        subprocess.run(["node", js, tok_json, inp, outp], check=True)
        with open(outp, encoding="utf-8") as f:
            return json.load(f)


def hf_encode(tok_json, texts):
    return hf_run(tok_json, [{"text": t} for t in texts])


def hf_decode(tok_json, id_lists):
    return hf_run(tok_json, [{"ids": ids} for ids in id_lists])


# --------------------------------------------------- the small trained vocabulary

def train_small(dst):
    os.makedirs(dst, exist_ok=True)
    prefix = os.path.join(dst, "tokenizer")
    subprocess.run([
        "spm_train", "--input=" + os.path.join(HERE, "train.txt"), "--model_prefix=" + prefix,
        "--model_type=bpe", "--vocab_size=700", "--hard_vocab_limit=false",
        "--byte_fallback=true", "--split_digits=true", "--allow_whitespace_only_pieces=true",
        "--remove_extra_whitespaces=false", "--normalization_rule_name=identity",
        "--add_dummy_prefix=true", "--character_coverage=0.99", "--unk_id=0", "--bos_id=1",
        "--eos_id=2", "--pad_id=-1", "--num_threads=1", "--minloglevel=2"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.remove(prefix + ".vocab")
    return prefix + ".model"


def spm_to_tokenizer_json(model_path, out_path):
    """Our own LlamaConverter: vocab, merges sorted by the merged piece's score
    (stable, so equal scores keep id order; the splits of one piece in (id(l), id(r))
    order), and the legacy normalizer/decoder that tokenizer_export.py accepts."""
    pieces, scores, _types, _m, _a, _u = te._from_sentencepiece_model(model_path)
    pieces_to_tokenizer_json(pieces, scores, out_path)


def pieces_to_tokenizer_json(pieces, scores, out_path):
    """spm_to_tokenizer_json's conversion, from the model's pieces and scores in id
    order (make_expected_layouts.py also uses it for models tokenizer_export.py does
    not read). byte_fallback is written true whatever the model, as LlamaConverter does."""
    pieces = ["<unk>", "<s>", "</s>"] + list(pieces[3:])
    vocab = {p: i for i, p in enumerate(pieces)}
    merges = []
    for i, p in enumerate(pieces):
        local = [(vocab[p[:k]], vocab[p[k:]], i) for k in range(1, len(p))
                 if p[:k] in vocab and p[k:] in vocab]
        merges += sorted(local)
    merges.sort(key=lambda m: -(scores[m[2]] if m[2] >= 3 else 0.0))
    added = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, c in enumerate(pieces[:3])]
    tj = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": te.LEGACY_NORMALIZER},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                    {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "<s>", "type_id": 1}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": te.LEGACY_DECODER},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True, "vocab": vocab,
                  "merges": ["%s %s" % (pieces[a], pieces[b]) for a, b, _ in merges]},
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, indent=1)


# ---------------------------------------------------------------------- main

def load_texts(path):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rt", encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def main():
    if len(sys.argv) != 2 or not os.environ.get("TOK_NODE_DIR"):
        raise SystemExit(__doc__)
    shared = sys.argv[1]
    import sentencepiece as spm
    os.makedirs(OUT, exist_ok=True)

    small_dir = os.path.join(HERE, "small-spm")
    small_model = train_small(small_dir)
    spm_to_tokenizer_json(small_model, os.path.join(small_dir, "tokenizer.json"))
    with open(os.path.join(small_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
                   "eos_token": "</s>", "unk_token": "<unk>", "legacy": True,
                   "tokenizer_class": "LlamaTokenizer"}, f, indent=1)

    adv48 = load_texts(os.path.join(shared, "groundtruth", "rakuten48k_adversarial.jsonl"))
    fuzz48 = load_texts(os.path.join(shared, "groundtruth", "rakuten48k_fuzz.jsonl.gz"))
    vocabs = [
        ("mistral32k", os.path.join(shared, "mistral-v0.1"), "mistral32k"),
        ("rakuten48k", os.path.join(shared, "rakuten-like-48k"), "rakuten48k"),
        ("small", small_dir, None),
    ]
    report = []
    rng = random.Random(1234)
    for name, d, gt in vocabs:
        tok_json = os.path.join(d, "tokenizer.json")
        sp = spm.SentencePieceProcessor(model_file=os.path.join(d, "tokenizer.model"))
        sets = {"cases": [t.encode("utf-8") for t in CASES]}
        if gt:
            adv = load_texts(os.path.join(shared, "groundtruth", gt + "_adversarial.jsonl"))
            fuzz = load_texts(os.path.join(shared, "groundtruth", gt + "_fuzz.jsonl.gz"))
        else:   # the small vocabulary reuses the 48k texts (a subset of the fuzz set)
            adv, fuzz = adv48, fuzz48[:4000]
        sets["adversarial"] = [r["text"].encode("utf-8") for r in adv]
        sets["fuzz"] = [r["text"].encode("utf-8") for r in fuzz]
        for set_name, texts in sets.items():
            strs = [t.decode("utf-8") for t in texts]
            hf = hf_encode(tok_json, strs)
            sp_ids = [sp.encode(s) for s in strs]
            if gt and set_name != "cases":   # must equal the shared file's "hf" field
                src = adv if set_name == "adversarial" else fuzz
                same = sum(h == r["hf"] for h, r in zip(hf, src))
                report.append("%s %s: our HF run == shared groundtruth hf on %d/%d"
                              % (name, set_name, same, len(src)))
            specials = ("<s>", "</s>", "<unk>")
            comparable = [k for k, s in enumerate(strs) if not any(x in s for x in specials)]
            agree = sum(hf[k] == sp_ids[k] for k in comparable)
            report.append("%s %s: hf == sentencepiece on %d/%d (texts without <s>, </s>, <unk>)"
                          % (name, set_name, agree, len(comparable)))
            for k in comparable:
                if hf[k] != sp_ids[k]:
                    report.append("  differ: %r hf=%s spm=%s" % (strs[k], hf[k], sp_ids[k]))
            ext = ".tsv.gz" if set_name == "fuzz" else ".tsv"
            write_tsv(os.path.join(OUT, name + "_" + set_name + ext), list(zip(hf, texts)))
        # invalid UTF-8: sentencepiece is the reference for the policy
        write_tsv(os.path.join(OUT, name + "_invalid.tsv"),
                  [(sp.encode(b), b) for b in INVALID])
        # decode: HF decode of encodings with BOS, and of random id sequences
        n_vocab = sp.get_piece_size()
        id_lists = [[1] + h for h in hf_encode(tok_json, CASES)]
        id_lists += [h for h in hf_encode(tok_json, CASES[:30])]
        for _ in range(300):
            n = rng.randint(1, 12)
            id_lists.append([rng.choice([rng.randrange(n_vocab), rng.randrange(3, 259),
                                         rng.randrange(3, 259)]) for _ in range(n)])
        dec = hf_decode(tok_json, id_lists)
        rows = b"".join(b" ".join(b"%d" % i for i in ids) + b"\t" + escape(s.encode("utf-8"))
                        + b"\n" for ids, s in zip(id_lists, dec))
        with open(os.path.join(OUT, name + "_decode.tsv"), "wb") as f:
            f.write(rows)
    with open(os.path.join(OUT, "REPORT.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(report) + "\n")
    print("\n".join(l for l in report if not l.startswith("  ")), file=sys.stderr)


if __name__ == "__main__":
    main()
