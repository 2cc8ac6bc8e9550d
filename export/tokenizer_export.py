#!/usr/bin/env python3
"""Write raktn's tokenizer.bin from a Hugging Face checkpoint folder.

Python 3 standard library only.  Layout of tokenizer.bin: notes/format.md.

Sources, in order of preference:
  1. tokenizer.json (what AutoTokenizer / LlamaTokenizerFast loads).  Only the
     Llama/Mistral "legacy" form is accepted: BPE model with byte_fallback,
     normalizer Prepend("▁") + Replace(" " -> "▁"), no pre-tokenizer, decoder
     Replace("▁" -> " "), ByteFallback, Fuse, Strip(" ", 1, 0).  Anything else is
     refused with ValueError, because tokenizer.c implements exactly that.
     Merges are kept in rank order (rank = index in the list).
  2. tokenizer.model only (SentencePiece protobuf, parsed here by hand).  BPE
     pieces with scores; the merges are derived the way SentencePiece applies
     them: a pair may merge when the concatenation is a piece, and its priority is
     that piece's score, all splits of one piece sharing one rank (so equal
     priorities go to the leftmost pair, as in sentencepiece's bpe_model.cc).
tokenizer_config.json (if present) gives add_bos_token / add_eos_token.

usage: python3 export/tokenizer_export.py HF_DIR OUT.bin
"""
import errno
import json
import math
import os
import stat
import struct
import sys

MAGIC = b"RKTNTOK\0"
VERSION = 1

# piece types (the SentencePiece enum values, so both sources map onto them)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

FLAG_ADD_BOS = 1
FLAG_ADD_EOS = 2

LEGACY_NORMALIZER = [
    {"type": "Prepend", "prepend": "\u2581"},
    {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
]
LEGACY_DECODER = [
    {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
    {"type": "ByteFallback"},
    {"type": "Fuse"},
    {"type": "Strip", "content": " ", "start": 1, "stop": 0},
]


HEX_DIGITS = "0123456789abcdefABCDEF"

# tokenizer.c's limits (parse_tokenizer): what it refuses, the exporter refuses first
MAX_VOCAB = 1 << 24
MAX_PIECE_BYTES = 4096


def _byte_piece_value(piece):
    """<0xAB> -> 0xAB, else None (the pattern HF's ByteFallback recognises and
    tokenizer.c's byte_piece_value accepts: exactly two ASCII hex digits, so
    not int()'s "+1", " 1" or "-1")."""
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">") \
            and piece[3] in HEX_DIGITS and piece[4] in HEX_DIGITS:
        return int(piece[3:5], 16)
    return None


# ------------------------------------------------------------ reading inputs

def read_regular(path, limit=1 << 31):
    """The bytes of path, which must be a regular file: a FIFO or a device is
    refused before it is opened (opening a FIFO blocks until a writer comes;
    opening a device can have effects), a directory too. OSError for the
    caller to report; ValueError naming the file when it is not regular."""
    with open_regular(path) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError("%s: larger than %d bytes" % (path, limit))
    return data


def open_regular(path):
    """open(path, "rb") for a regular file only (see read_regular). The check
    is made with stat() before the open and again with fstat() after it (the
    open is non-blocking, so a FIFO swapped in between cannot hang it)."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError("%s: not a regular file" % path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("%s: not a regular file" % path)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_pieces(pieces, path):
    """Refuse, naming the piece, what tokenizer.c's loader would refuse:
    empty pieces, pieces over MAX_PIECE_BYTES bytes of UTF-8, pieces with NUL,
    and strings that have no UTF-8 form (lone surrogates from JSON escapes)."""
    if not 1 <= len(pieces) <= MAX_VOCAB:
        raise ValueError("%s: %d pieces; raktn allows 1..%d" % (path, len(pieces), MAX_VOCAB))
    for i, p in enumerate(pieces):
        try:
            n = len(p.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError("%s: piece %d (%s) is not valid Unicode (a lone surrogate)"
                             % (path, i, ascii(p)[:80]))
        if n == 0:
            raise ValueError("%s: piece %d is empty" % (path, i))
        if n > MAX_PIECE_BYTES:
            raise ValueError("%s: piece %d is %d bytes long; raktn allows at most %d"
                             % (path, i, n, MAX_PIECE_BYTES))
        if "\0" in p:
            raise ValueError("%s: piece %d (%s) contains a NUL character, which raktn refuses"
                             % (path, i, ascii(p)[:80]))


# ----------------------------------------------------------------- tokenizer.json

def _check_json_pipeline(tj, path):
    def bad(what, got):
        raise ValueError("%s: unsupported %s %s (raktn implements only the "
                         "Llama/Mistral legacy SentencePiece-BPE form)"
                         % (path, what, json.dumps(got, ensure_ascii=False)[:200]))

    norm = tj.get("normalizer")
    if not (isinstance(norm, dict) and norm.get("type") == "Sequence"
            and norm.get("normalizers") == LEGACY_NORMALIZER):
        bad("normalizer", norm)
    if tj.get("pre_tokenizer") is not None:
        bad("pre_tokenizer", tj.get("pre_tokenizer"))
    dec = tj.get("decoder")
    if not (isinstance(dec, dict) and dec.get("type") == "Sequence"
            and dec.get("decoders") == LEGACY_DECODER):
        bad("decoder", dec)
    model = tj.get("model")
    if not isinstance(model, dict) or model.get("type") != "BPE":
        bad("model type", model.get("type") if isinstance(model, dict) else model)
    if model.get("byte_fallback") is not True:
        bad("model.byte_fallback", model.get("byte_fallback"))
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            bad("model." + key, model.get(key))
    if model.get("dropout") not in (None, 0, 0.0):
        bad("model.dropout", model.get("dropout"))
    if model.get("ignore_merges"):
        bad("model.ignore_merges", model.get("ignore_merges"))
    return model


def _read_json_object(path):
    """Parse a JSON file whose top level must be an object; ValueError naming
    the file otherwise."""
    try:
        obj = json.loads(read_regular(path).decode("utf-8"))
    except OSError as e:
        raise ValueError("%s: cannot read (%s)" % (path, e.strerror or e))
    except (UnicodeDecodeError, RecursionError) as e:
        raise ValueError("%s: cannot read JSON: %s" % (path, e))
    except ValueError as e:          # JSONDecodeError, an integer too long to convert
        msg = str(e)
        raise ValueError(msg if msg.startswith(path + ":") else "%s: cannot read JSON: %s" % (path, msg))
    if not isinstance(obj, dict):
        raise ValueError("%s: not a JSON object" % path)
    return obj


def _from_tokenizer_json(path):
    tj = _read_json_object(path)
    model = _check_json_pipeline(tj, path)

    def show(x):        # a value in a message: one line, bounded
        s = ascii(x)
        return s if len(s) <= 80 else s[:77] + "..."

    def is_id(v):
        return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < MAX_VOCAB

    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or not vocab:
        raise ValueError("%s: model.vocab missing or empty" % path)
    added = tj.get("added_tokens") or []
    if not isinstance(added, list):
        raise ValueError("%s: added_tokens is not a list" % path)
    for k, tok in enumerate(added):
        if not isinstance(tok, dict) or not isinstance(tok.get("content"), str) or not tok["content"]:
            raise ValueError("%s: added_tokens[%d] is malformed: %s" % (path, k, show(tok)))
        if not is_id(tok.get("id")):
            raise ValueError("%s: added_tokens[%d] (%s) has id %s; raktn needs 0..%d"
                             % (path, k, show(tok["content"]), show(tok.get("id")), MAX_VOCAB - 1))
        for key in ("lstrip", "rstrip", "single_word"):
            if tok.get(key):
                raise ValueError("%s: added token %s uses %s, which raktn does not "
                                 "implement" % (path, show(tok["content"]), key))
        if tok.get("normalized"):
            raise ValueError("%s: added token %s has normalized=true, which raktn "
                             "does not implement" % (path, show(tok["content"])))
    ids = {}
    for piece, i in vocab.items():
        if not is_id(i):
            raise ValueError("%s: model.vocab: bad id %s for piece %s (raktn needs 0..%d)"
                             % (path, show(i), show(piece), MAX_VOCAB - 1))
        if i in ids:
            raise ValueError("%s: model.vocab: id %d used twice (%s, %s)"
                             % (path, i, show(ids[i]), show(piece)))
        ids[i] = piece
    for tok in added:
        if tok["id"] in ids and ids[tok["id"]] != tok["content"]:
            raise ValueError("%s: added token %s has id %d, which the vocab gives to %s"
                             % (path, show(tok["content"]), tok["id"], show(ids[tok["id"]])))
        ids[tok["id"]] = tok["content"]
    n = max(ids) + 1
    if len(ids) != n:
        missing = next(i for i in range(n) if i not in ids)
        raise ValueError("%s: model.vocab: ids are not contiguous (no piece has id %d)"
                         % (path, missing))
    pieces = [ids[i] for i in range(n)]
    _check_pieces(pieces, path)
    piece_id = {p: i for i, p in enumerate(pieces)}
    if len(piece_id) != n:
        dup = next(p for i, p in enumerate(pieces) if piece_id[p] != i)
        raise ValueError("%s: model.vocab: piece %s appears twice" % (path, show(dup)))

    special = {tok["id"] for tok in added if tok.get("special")}
    added_ids = {tok["id"] for tok in added}
    unk = model.get("unk_token")
    unk_id = piece_id.get(unk, -1) if isinstance(unk, str) else -1
    types = []
    for i, p in enumerate(pieces):
        if i == unk_id:
            types.append(UNKNOWN)
        elif i in special:
            types.append(CONTROL)
        elif i in added_ids:
            types.append(USER_DEFINED)
        elif _byte_piece_value(p) is not None:
            types.append(BYTE)
        else:
            types.append(NORMAL)
    # tokenizer.c fuses consecutive unknown characters into one <unk>; that can
    # happen only when some byte piece is missing, and then HF must fuse too.
    if types.count(BYTE) < 256 and unk_id >= 0 and model.get("fuse_unk") is not True:
        raise ValueError("%s: unsupported model.fuse_unk %s without all 256 byte pieces "
                         "(raktn fuses unknown characters into one <unk>)"
                         % (path, json.dumps(model.get("fuse_unk"))))

    merges = []
    seen = {}
    raw = model.get("merges")
    if not isinstance(raw, list):
        raise ValueError("%s: model.merges missing" % path)
    for rank, m in enumerate(raw):
        if isinstance(m, str):
            parts = m.split(" ")
        elif isinstance(m, list):
            parts = m
        else:
            parts = None
        if not parts or len(parts) != 2 or not all(isinstance(x, str) for x in parts):
            raise ValueError("%s: model.merges[%d] is malformed: %s" % (path, rank, show(m)))
        a, b = parts
        if a not in piece_id or b not in piece_id or (a + b) not in piece_id:
            raise ValueError("%s: model.merges[%d] (%s, %s) uses a piece missing from the vocab"
                             % (path, rank, show(a), show(b)))
        if (a, b) in seen:
            raise ValueError("%s: model.merges[%d] (%s, %s) repeats merge #%d"
                             % (path, rank, show(a), show(b), seen[a, b]))
        seen[a, b] = rank
        merges.append((piece_id[a], piece_id[b], piece_id[a + b], rank))

    added_list = [(t["id"], 1 if t.get("special") else 0) for t in added]
    return pieces, [0.0] * n, types, merges, added_list, unk_id


# --------------------------------------------------------------- tokenizer.model

def _pb_fields(buf, path):
    """Yield (field_number, wire_type, value) of one protobuf message."""
    i, n = 0, len(buf)

    def varint():
        nonlocal i
        shift = result = 0
        while True:
            if i >= n or shift > 63:
                raise ValueError("%s: truncated or malformed protobuf" % path)
            c = buf[i]
            i += 1
            result |= (c & 0x7F) << shift
            shift += 7
            if not c & 0x80:
                return result

    while i < n:
        key = varint()
        field, wt = key >> 3, key & 7
        if wt == 0:
            yield field, wt, varint()
        elif wt == 1:
            if i + 8 > n:
                raise ValueError("%s: truncated protobuf" % path)
            yield field, wt, buf[i:i + 8]
            i += 8
        elif wt == 2:
            ln = varint()
            if i + ln > n:
                raise ValueError("%s: truncated protobuf" % path)
            yield field, wt, buf[i:i + ln]
            i += ln
        elif wt == 5:
            if i + 4 > n:
                raise ValueError("%s: truncated protobuf" % path)
            yield field, wt, buf[i:i + 4]
            i += 4
        else:
            raise ValueError("%s: unsupported protobuf wire type %d" % (path, wt))


def spm_vocab(pieces, scores, types, unk_id, path):
    """A SentencePiece BPE vocabulary (pieces, scores, types: from
    tokenizer.model, or from a GGUF's tokenizer.ggml.*) checked as raktn
    needs it: (merges, added tokens), or ValueError naming path."""
    for i, (piece, typ, score) in enumerate(zip(pieces, types, scores)):
        if not NORMAL <= typ <= BYTE:
            raise ValueError("%s: piece #%d has type %d; raktn knows types %d..%d"
                             % (path, i, typ, NORMAL, BYTE))
        if typ == BYTE and _byte_piece_value(piece) is None:
            raise ValueError("%s: piece #%d (%s) has type BYTE but is not spelled <0xXX>"
                             % (path, i, ascii(piece)[:40]))
        if not math.isfinite(score):
            raise ValueError("%s: piece #%d has score %r" % (path, i, score))
    if USER_DEFINED in types:
        raise ValueError("%s: user-defined pieces are not supported" % path)
    _check_pieces(pieces, path)
    if not -1 <= unk_id < len(pieces):
        raise ValueError("%s: trainer_spec.unk_id %d is outside the %d pieces"
                         % (path, unk_id, len(pieces)))
    piece_id = {}
    for i, p in enumerate(pieces):
        if p in piece_id:
            raise ValueError("%s: piece #%d (%s) duplicates piece #%d"
                             % (path, i, ascii(p)[:40], piece_id[p]))
        piece_id[p] = i
    # Merges: every split (l, r) of a mergeable piece with both halves pieces.
    # The priority is the score of the result; pieces with equal score share a
    # rank, so the C encoder breaks the tie by position as sentencepiece does.
    # Ranks are numbered over the scores that have merges only, so every rank
    # is below the number of merges (tokenizer.c's rule; same order).
    order = sorted((i for i, t in enumerate(types) if t in (NORMAL,)),
                   key=lambda i: -scores[i])
    rank_of_score = {}
    merges = []
    for i in order:
        p = pieces[i]
        for k in range(1, len(p)):
            a, b = piece_id.get(p[:k]), piece_id.get(p[k:])
            if a is not None and b is not None \
                    and types[a] != UNUSED and types[b] != UNUSED:
                rank = rank_of_score.setdefault(scores[i], len(rank_of_score))
                merges.append((a, b, i, rank))
    added = [(i, 1) for i, t in enumerate(types) if t == CONTROL]
    if unk_id >= 0 and types[unk_id] != CONTROL:    # (a GGUF may mark <unk> CONTROL)
        added.insert(0, (unk_id, 1))
    return merges, added


def _from_sentencepiece_model(path):
    try:
        buf = read_regular(path)
    except OSError as e:
        raise ValueError("%s: cannot read (%s)" % (path, e.strerror or e))
    pieces, scores, types = [], [], []
    trainer = {}
    normalizer = {"add_dummy_prefix": 1, "remove_extra_whitespaces": 1,
                  "escape_whitespaces": 1, "name": "", "charsmap": b""}
    for field, wt, val in _pb_fields(buf, path):
        if field == 1 and wt == 2:          # repeated SentencePiece pieces
            piece, score, typ = None, 0.0, NORMAL
            for f2, w2, v2 in _pb_fields(val, path):
                if f2 == 1 and w2 == 2:
                    try:
                        piece = bytes(v2).decode("utf-8")
                    except UnicodeDecodeError:
                        raise ValueError("%s: piece #%d is not UTF-8" % (path, len(pieces)))
                elif f2 == 2 and w2 == 5:
                    score = struct.unpack("<f", v2)[0]
                elif f2 == 3 and w2 == 0:
                    typ = v2
            if not piece:
                raise ValueError("%s: piece #%d has no text" % (path, len(pieces)))
            pieces.append(piece)
            scores.append(score)
            types.append(typ)
        elif field == 2 and wt == 2:        # TrainerSpec
            for f2, w2, v2 in _pb_fields(val, path):
                if w2 == 0:
                    trainer[f2] = v2
        elif field == 3 and wt == 2:        # NormalizerSpec
            for f2, w2, v2 in _pb_fields(val, path):
                if f2 == 1 and w2 == 2:
                    normalizer["name"] = bytes(v2).decode("utf-8", "replace")
                elif f2 == 2 and w2 == 2:
                    normalizer["charsmap"] = bytes(v2)
                elif f2 == 3 and w2 == 0:
                    normalizer["add_dummy_prefix"] = v2
                elif f2 == 4 and w2 == 0:
                    normalizer["remove_extra_whitespaces"] = v2
                elif f2 == 5 and w2 == 0:
                    normalizer["escape_whitespaces"] = v2
    if not pieces:
        raise ValueError("%s: no pieces (not a SentencePiece model?)" % path)
    if trainer.get(3, 1) != 2:               # model_type: 1 UNIGRAM, 2 BPE
        raise ValueError("%s: model_type %d is not BPE" % (path, trainer.get(3, 1)))
    if not trainer.get(35, 0):               # byte_fallback
        raise ValueError("%s: byte_fallback is off; raktn needs byte_fallback=true" % path)
    if normalizer["name"] not in ("identity", "") or normalizer["charsmap"] \
            or normalizer["add_dummy_prefix"] != 1 \
            or normalizer["remove_extra_whitespaces"] != 0 \
            or normalizer["escape_whitespaces"] != 1:
        raise ValueError("%s: normalizer %r (add_dummy_prefix=%d, remove_extra_whitespaces=%d) "
                         "is not the Llama/Mistral identity form" %
                         (path, normalizer["name"], normalizer["add_dummy_prefix"],
                          normalizer["remove_extra_whitespaces"]))
    # LlamaTokenizer names ids 0..2 <unk>, <s>, </s> whatever the model says.
    # unk_id is an int32 field: -1 arrives as a 64-bit varint.
    unk_id = trainer.get(40, 0)
    if unk_id >= 1 << 63:
        unk_id -= 1 << 64
    merges, added = spm_vocab(pieces, scores, types, unk_id, path)
    return pieces, scores, types, merges, added, unk_id


# ------------------------------------------------------------------------ write

def _read_config(hf_dir):
    path = os.path.join(hf_dir, "tokenizer_config.json")
    add_bos, add_eos = True, False  # LlamaTokenizer defaults
    bos, eos = "<s>", "</s>"
    if os.path.lexists(path):
        cfg = _read_json_object(path)
        add_bos = bool(cfg.get("add_bos_token", add_bos))
        add_eos = bool(cfg.get("add_eos_token", add_eos))

        def name(v, default):
            if isinstance(v, dict):
                v = v.get("content")
            return v if isinstance(v, str) else default
        bos = name(cfg.get("bos_token"), bos)
        eos = name(cfg.get("eos_token"), eos)
    return add_bos, add_eos, bos, eos


def tokenizer_bytes(pieces, scores, types, merges, added, unk_id, add_bos, add_eos,
                    bos_id, eos_id, src):
    """tokenizer.bin's bytes (layout: notes/format.md), checked as raktn's
    loader checks them, and a one-line summary."""
    flags = (FLAG_ADD_BOS if add_bos else 0) | (FLAG_ADD_EOS if add_eos else 0)
    out = bytearray()
    out += MAGIC
    out += struct.pack("<8I", VERSION, len(pieces), len(merges), len(added),
                       bos_id & 0xFFFFFFFF, eos_id & 0xFFFFFFFF, unk_id & 0xFFFFFFFF, flags)
    for p, s, t in zip(pieces, scores, types):
        b = p.encode("utf-8")
        out += struct.pack("<IfI", len(b), s, t)
        out += b
    for a, b, m, r in merges:
        out += struct.pack("<4I", a, b, m, r)
    for i, special in added:
        out += struct.pack("<2I", i, special)
    data = bytes(out)
    # The source checks above should leave nothing for this to find; it is
    # the guarantee that what is written is what raktn loads.
    check_tokenizer_bin(data, "%s (tokenizer.bin made from it)" % src)
    summary = ("%d pieces, %d merges, %d added tokens, add_bos=%d add_eos=%d"
               % (len(pieces), len(merges), len(added), add_bos, add_eos))
    return data, summary


def build_tokenizer(hf_dir):
    """tokenizer.bin's bytes for the checkpoint in hf_dir, checked as raktn's
    loader checks them: (data, source path, one-line summary), or None when
    hf_dir has no tokenizer.json or tokenizer.model. ValueError naming the
    source file and what is wrong with it."""
    tj = os.path.join(hf_dir, "tokenizer.json")
    tm = os.path.join(hf_dir, "tokenizer.model")
    if os.path.lexists(tj):     # a broken link is an error, not "no tokenizer.json"
        pieces, scores, types, merges, added, unk_id = _from_tokenizer_json(tj)
        src = tj
    elif os.path.lexists(tm):
        pieces, scores, types, merges, added, unk_id = _from_sentencepiece_model(tm)
        src = tm
    else:
        return None
    add_bos, add_eos, bos, eos = _read_config(hf_dir)
    piece_id = {p: i for i, p in enumerate(pieces)}
    bos_id = piece_id.get(bos, -1)
    eos_id = piece_id.get(eos, -1)
    if add_bos and bos_id < 0:
        raise ValueError("%s: add_bos_token is set but BOS %s is not in the vocab"
                         % (src, ascii(bos)[:80]))
    if add_eos and eos_id < 0:
        raise ValueError("%s: add_eos_token is set but EOS %s is not in the vocab"
                         % (src, ascii(eos)[:80]))

    data, summary = tokenizer_bytes(pieces, scores, types, merges, added, unk_id,
                                    add_bos, add_eos, bos_id, eos_id, src)
    return data, src, summary


def check_tokenizer_bin(data, where):
    """What tokenizer_load()/parse_tokenizer() in tokenizer.c check, on the
    bytes of a tokenizer.bin, in the same order: ValueError("WHERE: what")
    for the first problem, else the number of pieces."""
    def bad(msg):
        raise ValueError("%s: raktn would refuse it: %s" % (where, msg))
    size = len(data)
    if size < 40 or size > 1 << 32:
        bad("file too small or too large to be a tokenizer.bin (%d bytes)" % size)
    if data[:8] != MAGIC:
        bad("bad magic")
    version, n_vocab, n_merges, n_added, bos, eos, unk, flags = struct.unpack_from("<8I", data, 8)
    left = size - 40
    if version != VERSION:
        bad("unsupported version %d" % version)
    if not 1 <= n_vocab <= MAX_VOCAB:
        bad("bad vocabulary size %d" % n_vocab)
    if n_added > n_vocab:
        bad("bad added-token count %d" % n_added)
    if n_merges * 16 > left:
        bad("merge count %d larger than the file allows" % n_merges)
    if n_vocab * 13 + n_merges * 16 + n_added * 8 > left:
        bad("vocabulary size %d larger than the file allows" % n_vocab)
    for name, v in (("BOS", bos), ("EOS", eos), ("UNK", unk)):
        v = v - (1 << 32) if v >= 1 << 31 else v
        if not -1 <= v < n_vocab:
            bad("%s id %d outside the vocabulary" % (name, v))
    if flags & ~3:
        bad("unknown flags %d" % flags)
    off = 40
    pieces = []
    seen = set()
    for i in range(n_vocab):
        if off + 12 > size:
            bad("truncated piece table at id %d" % i)
        ln, _, typ = struct.unpack_from("<III", data, off)
        off += 12
        if not 1 <= ln <= MAX_PIECE_BYTES:
            bad("bad piece length %d at id %d" % (ln, i))
        if not NORMAL <= typ <= BYTE:
            bad("bad piece type %d at id %d" % (typ, i))
        if off + ln > size:
            bad("truncated piece at id %d" % i)
        p = data[off:off + ln]
        off += ln
        try:
            text = p.decode("utf-8")   # strict: the same rules as tokenizer.c's utf8_decode
        except UnicodeDecodeError:
            text = None
        if text is None or b"\0" in p:
            bad("piece is not NUL-free UTF-8 at id %d" % i)
        if p in seen:
            bad("duplicate piece string at id %d" % i)
        seen.add(p)
        if typ == BYTE and _byte_piece_value(text) is None:
            bad("byte piece is not <0xXX> at id %d" % i)
        pieces.append(p)
    pairs = set()
    for i in range(n_merges):
        if off + 16 > size:
            bad("truncated merge table at merge %d" % i)
        a, b, m, rank = struct.unpack_from("<4I", data, off)
        off += 16
        if a >= n_vocab or b >= n_vocab or m >= n_vocab or rank >= n_merges:
            bad("id or rank out of range at merge %d" % i)
        if pieces[a] + pieces[b] != pieces[m]:
            bad("merge result is not left+right at merge %d" % i)
        if (a, b) in pairs:
            bad("duplicate merge pair at merge %d" % i)
        pairs.add((a, b))
    for i in range(n_added):
        if off + 8 > size:
            bad("truncated added-token table at %d" % i)
        tid, special = struct.unpack_from("<2I", data, off)
        off += 8
        if tid >= n_vocab or special > 1:
            bad("bad added token %d" % i)
    if off != size:
        bad("%d trailing bytes after the tables" % (size - off))
    return n_vocab


def export_tokenizer(hf_dir, out_path, log):
    """Write out_path (the standalone tool; export.py writes tokenizer.bin
    itself, beside model.bin); False (with a warning) when hf_dir has no
    tokenizer files."""
    built = build_tokenizer(hf_dir)
    if built is None:
        log("warning: %s has no tokenizer.json or tokenizer.model; no tokenizer.bin written"
            % hf_dir)
        return False
    data, src, summary = built
    if not out_path:
        raise ValueError("OUT.bin is an empty name")
    # A temporary beside out_path under a fresh name (OUT.bin.XXXXXXXX.tmp),
    # created exclusively: never a file or a symlink the user already has.
    tmp = None
    try:
        for _ in range(100):
            name = "%s.%s.tmp" % (out_path, os.urandom(4).hex())
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                             0o666)
            except FileExistsError:
                continue
            tmp = name
            break
        else:
            raise OSError(errno.EEXIST, "no free temporary name", out_path)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
    except BaseException as e:
        if tmp is not None:
            try:   # never leave a partial file behind (a full disk, an interrupt)
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(e, OSError):
            raise ValueError("%s: cannot write (%s)" % (tmp or out_path, e.strerror or e)) from e
        raise
    log("tokenizer: %s -> %s (%s)" % (src, out_path, summary))
    return True


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2

    def log(msg):
        print(msg, file=sys.stderr)

    def stop(signum, frame):    # SIGTERM, SIGHUP: clean up as for Ctrl-C
        raise KeyboardInterrupt
    import signal
    for name in ("SIGTERM", "SIGHUP"):
        num = getattr(signal, name, None)
        if num is not None and signal.getsignal(num) != signal.SIG_IGN:
            signal.signal(num, stop)
    try:
        ok = export_tokenizer(argv[1], argv[2], log)
    except (ValueError, OSError) as e:
        log("error: %s" % e)
        return 1
    except KeyboardInterrupt:
        log("interrupted; %s not written" % argv[2])
        return 130
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
