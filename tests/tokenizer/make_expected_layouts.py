#!/usr/bin/python3
"""Vocabularies whose byte pieces are NOT at ids 3..258, and their expected outputs.

Every real Llama/Mistral vocabulary (and the three of make_expected.py) puts <0x00>..<0xFF>
at ids 3..258 and has all 256 of them, so code that assumes either passes those tests.
This script builds three small vocabularies that break the assumptions, and asks the
reference engines what they do with them:

  byteslast/   small-spm/tokenizer.model with its pieces renumbered: <unk> <s> </s>, the
               441 ordinary pieces in their order (ids 3..443), then the 256 byte pieces
               in a shuffled order (ids 444..699).  A valid sentencepiece model (spm loads
               it; the ids differ, nothing else) + its tokenizer.json.
  nobytes/     spm_train on train.txt WITHOUT byte_fallback (character_coverage 0.98, so
               even some training characters are unknown): a character that is not a
               piece becomes <unk>, consecutive ones fused into one.  tokenizer.model +
               tokenizer.json (byte_fallback written true as LlamaConverter always does;
               with no <0xXX> piece that changes nothing, checked below against a
               byte_fallback=false copy).
  asciibytes/  tokenizer.json only: nobytes' pieces + <0x00>..<0x7F> appended (ids
               after the ordinary pieces).  A character outside the vocabulary falls
               back to bytes only if all its bytes are pieces (ASCII here), else <unk>.
               HF's BPE holds a pending <unk> back while byte-fallback symbols are
               added, so "X\\x01Y" (X, Y unknown) gives [<0x01>, <unk>] -- in that order.

Expected outputs (files in expected/, formats of make_expected.py):
  {v}_cases.tsv.gz   HF tokenizers (npm tokenizers@0.23.2) on tokenizer.json: make_expected's
                     CASES + UNK_CASES below + a fixed sample of the 48k adversarial and
                     fuzz texts (read from the committed expected/ files)
  {v}_invalid.tsv    sentencepiece ids for invalid UTF-8 (byteslast, nobytes)
  {v}_decode.tsv.gz  HF decode(ids, skip_special_tokens=False) of encodings and random ids
  byteslast_stream.tsv.gz  IDS <TAB> HF decode <TAB> sentencepiece decode: byte runs with broken
                     UTF-8 followed by every kind of byte, for the streaming decoder (which
                     follows sentencepiece's rule: each byte of a broken sequence -> U+FFFD,
                     valid characters kept; HF's ByteFallback turns the whole run into
                     U+FFFDs).  Where every byte run is valid UTF-8 the two must agree.
  REPORT_layouts.txt the cross-checks (HF vs sentencepiece, HF with byte_fallback=false)

usage (from the repository root; needs spm_train, python3-sentencepiece, node):
  TOK_NODE_DIR=/path/with/node_modules /usr/bin/python3 tests/tokenizer/make_expected_layouts.py
"""
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile

import make_expected as me

HERE = me.HERE
OUT = me.OUT

# Unknown characters (not pieces of the small vocabularies) in runs, next to known ones,
# around spaces/newlines, next to ASCII controls (bytes in asciibytes, unknown in nobytes),
# next to literal special tokens.
UNK_CASES = [
    "𠮷", "𠮷𩸽", "𠮷𩸽𪚲龘䨺", "a𠮷b", "𠮷a", "a𠮷", "𠮷 𩸽", " 𠮷", "𠮷 ", "  𠮷𩸽  ", "𠮷\n𩸽",
    "\n𠮷", "x𠮷𩸽y z𪚲", "😀😀😀 ok", "ok 😀", "👩‍💻", "龘䨺 and 𠮷 and 𩸽𪚲!",
    "日本語の𠮷野家で食べた🍣はおいしい。", "\x01", "\x01\x02\x03", "a\x01b", "𠮷\x01𩸽",
    "\x01𠮷\x02", "𠮷\x01", "\x01𠮷", "𠮷\x01a𩸽", "𠮷~𩸽", "𠮷\x7f", "é\x01é", "𠮷\x01\x02𩸽 𪚲",
    "𠮷 \x01 𩸽", "\x00𠮷\x00", "<unk>𠮷", "𠮷<unk>𠮷", "𠮷<s>𩸽", "<s>𠮷</s>", "a\u2581𠮷",
    "\ufffd", "𠮷\ufffd", "~`^|", "ｶﾀｶﾅ𠮷ＡＢＣ", "Ελληνικά𠮷русский",
]

INVALID_EXTRA = [b"\xff\xfe", "𠮷".encode() + b"\xff" + "𩸽".encode(), b"a\xff\x01b", b"\x01\xff\x01",
                 b"\xe3\x81" + "𠮷".encode()]


def unescape(b):
    """make_expected.escape's inverse."""
    out = bytearray()
    i = 0
    while i < len(b):
        c = b[i]
        if c == 0x5C and i + 1 < len(b):
            n = b[i + 1]
            if n == ord("x"):
                out.append(int(b[i + 2:i + 4], 16))
                i += 4
                continue
            out.append({ord("n"): 10, ord("t"): 9, ord("r"): 13}.get(n, n))
            i += 2
            continue
        out.append(c)
        i += 1
    return bytes(out)


def read_texts(path):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rb") as f:
        return [unescape(l.rstrip(b"\n").split(b"\t", 1)[1]).decode("utf-8") for l in f if l.strip()]


# ----------------------------------------------------------- protobuf (raw)

def varint(buf, i):
    shift = r = 0
    while True:
        c = buf[i]
        i += 1
        r |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return r, i


def raw_fields(buf):
    """[(field, raw bytes of the whole field incl. its key)] of one message; only
    the wire types a ModelProto uses at the top level (varint, len-delimited)."""
    i, out = 0, []
    while i < len(buf):
        start = i
        key, i = varint(buf, i)
        wt = key & 7
        if wt == 0:
            _, i = varint(buf, i)
        elif wt == 2:
            ln, i = varint(buf, i)
            i += ln
        else:
            raise ValueError("unexpected wire type %d" % wt)
        out.append((key >> 3, buf[start:i]))
    return out


def make_byteslast(src_model, dst_dir):
    """Renumber src_model's pieces: specials, ordinary pieces, shuffled byte pieces."""
    import sentencepiece as spm
    with open(src_model, "rb") as f:
        buf = f.read()
    fields = raw_fields(buf)
    piece_raw = [raw for fld, raw in fields if fld == 1]
    sp = spm.SentencePieceProcessor(model_file=src_model)
    n = sp.get_piece_size()
    assert len(piece_raw) == n
    byte_ids = [i for i in range(n) if sp.is_byte(i)]
    assert byte_ids == list(range(3, 259)), "expected a standard byte layout to start from"
    ordinary = [i for i in range(3, n) if not sp.is_byte(i)]
    random.Random(20240321).shuffle(byte_ids)
    order = [0, 1, 2] + ordinary + byte_ids
    out = bytearray()
    k = 0
    for fld, raw in fields:   # pieces are field 1; keep every other field as it was
        if fld == 1:
            out += piece_raw[order[k]]
            k += 1
        else:
            out += raw
    os.makedirs(dst_dir, exist_ok=True)
    path = os.path.join(dst_dir, "tokenizer.model")
    with open(path, "wb") as f:
        f.write(out)
    return path


def train_nobytes(dst_dir):
    os.makedirs(dst_dir, exist_ok=True)
    prefix = os.path.join(dst_dir, "tokenizer")
    subprocess.run([
        "spm_train", "--input=" + os.path.join(HERE, "train.txt"), "--model_prefix=" + prefix,
        "--model_type=bpe", "--vocab_size=400", "--hard_vocab_limit=false",
        "--byte_fallback=false", "--split_digits=true", "--allow_whitespace_only_pieces=true",
        "--remove_extra_whitespaces=false", "--normalization_rule_name=identity",
        "--add_dummy_prefix=true", "--character_coverage=0.98", "--unk_id=0", "--bos_id=1",
        "--eos_id=2", "--pad_id=-1", "--num_threads=1", "--minloglevel=2"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.remove(prefix + ".vocab")
    return prefix + ".model"


def spm_pieces(sp):
    n = sp.get_piece_size()
    return [sp.id_to_piece(i) for i in range(n)], [sp.get_score(i) for i in range(n)]


def write_config(d):
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
                   "eos_token": "</s>", "unk_token": "<unk>", "legacy": True,
                   "tokenizer_class": "LlamaTokenizer"}, f, indent=1)


# ------------------------------------------------------------ streaming cases

def stream_cases(sp, rng):
    """Id lists of byte pieces (broken UTF-8 followed by every kind of byte) and
    ordinary pieces; no control or unknown ids (the stream skips control tokens,
    sentencepiece and HF spell them differently)."""
    B = lambda *bs: [sp.piece_to_id("<0x%02X>" % b) for b in bs]
    word = sp.piece_to_id("\u2581a")      # an ordinary piece with a leading ▁
    char = sp.piece_to_id("e")            # and one without
    assert min(word, char) > 2 and not sp.is_byte(word) and not sp.is_byte(char)
    broken = [  # incomplete or already-invalid starts
        [0xC3], [0xE3], [0xE3, 0x81], [0xF0], [0xF0, 0x9F], [0xF0, 0x9F, 0x98],
        [0xE0, 0x80], [0xED, 0xA0], [0xF4, 0x90], [0xF0, 0x80], [0xC0], [0xC1], [0xF5], [0xFF],
        [0x80], [0xBF]]
    follow = [  # what comes next
        B(0x41), B(0x0A), B(0x00), B(0xC3, 0xA9), B(0xE3, 0x81, 0x82), B(0xF0, 0x9F, 0x98, 0x80),
        B(0xC3), B(0xE3), B(0xE3, 0x81), B(0xF0, 0x9F, 0x98), B(0x80), B(0xBF), B(0x80, 0x80),
        B(0xC0), B(0xFF), [word], [char], []]
    tails = [[], [word], B(0x41)]
    lists = []
    for b in broken:
        for f in follow:
            for t in tails:
                lists.append(B(*b) + f + t)
    for b in broken:                      # after an ordinary piece, and twice in a row
        lists.append([word] + B(*b) + B(0x41))
        lists.append([char] + B(*b) + [word])
        lists.append(B(*b) + B(*b) + B(0x41))
    # valid runs: must give exactly HF's text
    lists += [B(0xE3, 0x81, 0x82, 0xC3, 0xA9) + [word], B(0x41) + [word] + B(0xF0, 0x9F, 0x98, 0x80),
              [word] + B(0xE3, 0x81, 0x82) + B(0xE3, 0x81, 0x82)]
    interesting = [0x0A, 0x41, 0x7F, 0x80, 0x81, 0x82, 0x9F, 0xA0, 0xA9, 0xBF, 0xC0, 0xC2, 0xC3,
                   0xDF, 0xE0, 0xE3, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF]
    normal = [i for i in range(3, sp.get_piece_size()) if not sp.is_byte(i)]
    for _ in range(400):
        ids = []
        for _ in range(rng.randint(1, 10)):
            ids.append(rng.choice(normal) if rng.random() < 0.25 else B(rng.choice(interesting))[0])
        lists.append(ids)
    # a space from a byte piece at the very start is stripped by HF and the stream but
    # not by sentencepiece (it strips only a leading ▁): not part of these cases
    return lists


def runs_valid(sp, ids):
    run = bytearray()
    for i in ids + [None]:
        if i is not None and sp.is_byte(i):
            run.append(int(sp.id_to_piece(i)[3:5], 16))
            continue
        try:
            bytes(run).decode("utf-8")
        except UnicodeDecodeError:
            return False
        run = bytearray()
    return True


# ---------------------------------------------------------------------- main

def main():
    if not os.environ.get("TOK_NODE_DIR"):
        raise SystemExit(__doc__)
    import sentencepiece as spm
    rng = random.Random(4321)
    report = []

    # the three vocabularies
    bl_dir, nb_dir, ab_dir = (os.path.join(HERE, d) for d in ("byteslast", "nobytes", "asciibytes"))
    bl_model = make_byteslast(os.path.join(HERE, "small-spm", "tokenizer.model"), bl_dir)
    nb_model = train_nobytes(nb_dir)
    sp_bl = spm.SentencePieceProcessor(model_file=bl_model)
    sp_nb = spm.SentencePieceProcessor(model_file=nb_model)
    me.pieces_to_tokenizer_json(*spm_pieces(sp_bl), os.path.join(bl_dir, "tokenizer.json"))
    me.pieces_to_tokenizer_json(*spm_pieces(sp_nb), os.path.join(nb_dir, "tokenizer.json"))
    nb_pieces, nb_scores = spm_pieces(sp_nb)
    assert not any(sp_nb.is_byte(i) for i in range(sp_nb.get_piece_size()))
    os.makedirs(ab_dir, exist_ok=True)
    me.pieces_to_tokenizer_json(nb_pieces + ["<0x%02X>" % b for b in range(128)],
                                nb_scores + [0.0] * 128, os.path.join(ab_dir, "tokenizer.json"))
    for d in (bl_dir, nb_dir, ab_dir):
        write_config(d)

    # texts
    texts = me.CASES + UNK_CASES
    adv = read_texts(os.path.join(OUT, "rakuten48k_adversarial.tsv"))
    fuzz = read_texts(os.path.join(OUT, "rakuten48k_fuzz.tsv.gz"))
    texts += rng.sample(adv, 100) + rng.sample(fuzz, 100)
    specials = ("<s>", "</s>", "<unk>")

    vocabs = [("byteslast", bl_dir, sp_bl), ("nobytes", nb_dir, sp_nb), ("asciibytes", ab_dir, None)]
    for name, d, sp in vocabs:
        tj = os.path.join(d, "tokenizer.json")
        hf = me.hf_encode(tj, texts)
        me.write_tsv(os.path.join(OUT, name + "_cases.tsv.gz"), list(zip(hf, [t.encode() for t in texts])))
        if sp is not None:
            comparable = [k for k, s in enumerate(texts) if not any(x in s for x in specials)]
            sp_ids = [sp.encode(texts[k]) for k in comparable]
            agree = sum(hf[k] == s for k, s in zip(comparable, sp_ids))
            report.append("%s cases: hf == sentencepiece on %d/%d (texts without <s>, </s>, <unk>)"
                          % (name, agree, len(comparable)))
            for k, s in zip(comparable, sp_ids):
                if hf[k] != s:
                    report.append("  differ: %r hf=%s spm=%s" % (texts[k], hf[k], s))
            inv = me.INVALID + INVALID_EXTRA
            me.write_tsv(os.path.join(OUT, name + "_invalid.tsv"), [(sp.encode(b), b) for b in inv])
        n_unk = sum(ids.count(0) for ids in hf)
        report.append("%s cases: %d <unk> ids in %d texts" % (name, n_unk, len(texts)))
        # decode: encodings with BOS and random ids (biased to byte pieces and <unk>)
        with open(tj, encoding="utf-8") as f:
            vocab = json.load(f)["model"]["vocab"]
        n_vocab = len(vocab)
        byte_ids = [i for p, i in vocab.items() if me.te._byte_piece_value(p) is not None]
        id_lists = [[1] + h for h in hf[:len(me.CASES) + len(UNK_CASES)]]
        for _ in range(300):
            pool = [rng.randrange(n_vocab), 0] + ([rng.choice(byte_ids)] * 2 if byte_ids else [])
            id_lists.append([rng.choice(pool) for _ in range(rng.randint(1, 12))])
        dec = me.hf_decode(tj, id_lists)
        me.write_tsv(os.path.join(OUT, name + "_decode.tsv.gz"),
                     [(ids, s.encode("utf-8")) for ids, s in zip(id_lists, dec)])

    # byteslast == small-spm under the renumbering (BPE does not care about ids)
    small_tj = os.path.join(HERE, "small-spm", "tokenizer.json")
    with open(small_tj, encoding="utf-8") as f:
        small_vocab = {i: p for p, i in json.load(f)["model"]["vocab"].items()}
    bl_hf = me.hf_encode(os.path.join(bl_dir, "tokenizer.json"), texts)
    sm_hf = me.hf_encode(small_tj, texts)
    same = sum([sp_bl.piece_to_id(small_vocab[i]) if i > 2 else i for i in s] == b
               for s, b in zip(sm_hf, bl_hf))
    report.append("byteslast cases: == small's HF ids renumbered by piece on %d/%d" % (same, len(texts)))

    # nobytes: byte_fallback=false gives the same ids (no byte piece to fall back to)
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(nb_dir, "tokenizer.json"), encoding="utf-8") as f:
            tj = json.load(f)
        tj["model"]["byte_fallback"] = False
        p = os.path.join(tmp, "tokenizer.json")
        with open(p, "w", encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False)
        a, b = me.hf_encode(p, texts), me.hf_encode(os.path.join(nb_dir, "tokenizer.json"), texts)
        report.append("nobytes cases: byte_fallback=false == true on %d/%d"
                      % (sum(x == y for x, y in zip(a, b)), len(texts)))

    # streaming cases
    lists = stream_cases(sp_bl, rng)
    hf_dec = me.hf_decode(os.path.join(bl_dir, "tokenizer.json"), lists)
    sp_dec = [sp_bl.decode_ids(ids) for ids in lists]
    valid = [k for k, ids in enumerate(lists) if runs_valid(sp_bl, ids)]
    report.append("byteslast stream: %d id lists, %d with only valid byte runs; hf decode == "
                  "sentencepiece decode on %d of those, on %d of all"
                  % (len(lists), len(valid), sum(hf_dec[k] == sp_dec[k] for k in valid),
                     sum(h == s for h, s in zip(hf_dec, sp_dec))))
    for k in valid:
        if hf_dec[k] != sp_dec[k]:
            report.append("  differ: %s hf=%r spm=%r" % (lists[k], hf_dec[k], sp_dec[k]))
    rows = b"".join(b" ".join(b"%d" % i for i in ids) + b"\t" + me.escape(h.encode()) + b"\t"
                    + me.escape(s.encode()) + b"\n" for ids, h, s in zip(lists, hf_dec, sp_dec))
    with gzip.GzipFile(os.path.join(OUT, "byteslast_stream.tsv.gz"), "wb", mtime=0) as f:
        f.write(rows)

    with open(os.path.join(OUT, "REPORT_layouts.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(report) + "\n")
    print("\n".join(report), file=sys.stderr)


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
