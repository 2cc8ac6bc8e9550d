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
import json
import os
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


def _byte_piece_value(piece):
    """<0xAB> -> 0xAB, else None (the pattern HF's ByteFallback recognises)."""
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        try:
            return int(piece[3:5], 16)
        except ValueError:
            return None
    return None


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
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError("%s: cannot read JSON: %s" % (path, e))
    if not isinstance(obj, dict):
        raise ValueError("%s: not a JSON object" % path)
    return obj


def _from_tokenizer_json(path):
    tj = _read_json_object(path)
    model = _check_json_pipeline(tj, path)

    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or not vocab:
        raise ValueError("%s: model.vocab missing or empty" % path)
    added = tj.get("added_tokens") or []
    if not isinstance(added, list):
        raise ValueError("%s: added_tokens is not a list" % path)
    for tok in added:
        if not isinstance(tok, dict) or not isinstance(tok.get("id"), int) \
                or not isinstance(tok.get("content"), str) or not tok["content"]:
            raise ValueError("%s: malformed added token %r" % (path, tok))
        for k in ("lstrip", "rstrip", "single_word"):
            if tok.get(k):
                raise ValueError("%s: added token %r uses %s, which raktn does not "
                                 "implement" % (path, tok["content"], k))
        if tok.get("normalized"):
            raise ValueError("%s: added token %r has normalized=true, which raktn "
                             "does not implement" % (path, tok["content"]))
    ids = {}
    for piece, i in vocab.items():
        if not isinstance(i, int) or i < 0 or i >= 1 << 24:
            raise ValueError("%s: bad id %r for piece %r" % (path, i, piece))
        if i in ids:
            raise ValueError("%s: id %d used twice (%r, %r)" % (path, i, ids[i], piece))
        ids[i] = piece
    for tok in added:
        if tok["id"] in ids and ids[tok["id"]] != tok["content"]:
            raise ValueError("%s: added token %r has id %d, which the vocab gives to %r"
                             % (path, tok["content"], tok["id"], ids[tok["id"]]))
        ids[tok["id"]] = tok["content"]
    n = max(ids) + 1
    if len(ids) != n:
        missing = next(i for i in range(n) if i not in ids)
        raise ValueError("%s: ids are not contiguous (no piece has id %d)" % (path, missing))
    pieces = [ids[i] for i in range(n)]
    piece_id = {p: i for i, p in enumerate(pieces)}
    if len(piece_id) != n:
        raise ValueError("%s: duplicate piece strings" % path)

    special = {tok["id"] for tok in added if tok.get("special")}
    unk = model.get("unk_token")
    unk_id = piece_id.get(unk, -1) if isinstance(unk, str) else -1
    types = []
    for i, p in enumerate(pieces):
        if i == unk_id:
            types.append(UNKNOWN)
        elif i in special:
            types.append(CONTROL)
        elif any(t["id"] == i for t in added):
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
            raise ValueError("%s: merge #%d is malformed: %r" % (path, rank, m))
        a, b = parts
        if a not in piece_id or b not in piece_id or (a + b) not in piece_id:
            raise ValueError("%s: merge #%d (%r, %r) uses a piece missing from the vocab"
                             % (path, rank, a, b))
        if (a, b) in seen:
            raise ValueError("%s: merge #%d (%r, %r) repeats merge #%d" % (path, rank, a, b, seen[a, b]))
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


def _from_sentencepiece_model(path):
    with open(path, "rb") as f:
        buf = f.read()
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
    if USER_DEFINED in types:
        raise ValueError("%s: user-defined pieces are not supported" % path)
    # LlamaTokenizer names ids 0..2 <unk>, <s>, </s> whatever the model says.
    unk_id = trainer.get(40, 0)
    piece_id = {}
    for i, p in enumerate(pieces):
        if p in piece_id:
            raise ValueError("%s: duplicate piece %r" % (path, p))
        piece_id[p] = i
    # Merges: every split (l, r) of a mergeable piece with both halves pieces.
    # The priority is the score of the result; pieces with equal score share a
    # rank, so the C encoder breaks the tie by position as sentencepiece does.
    order = sorted((i for i, t in enumerate(types) if t in (NORMAL,)),
                   key=lambda i: -scores[i])
    rank_of_score = {}
    merges = []
    for i in order:
        p = pieces[i]
        rank = rank_of_score.setdefault(scores[i], len(rank_of_score))
        for k in range(1, len(p)):
            a, b = piece_id.get(p[:k]), piece_id.get(p[k:])
            if a is not None and b is not None \
                    and types[a] != UNUSED and types[b] != UNUSED:
                merges.append((a, b, i, rank))
    added = [(i, 1) for i, t in enumerate(types) if t == CONTROL]
    if unk_id >= 0:
        added.insert(0, (unk_id, 1))
    return pieces, scores, types, merges, added, unk_id


# ------------------------------------------------------------------------ write

def _read_config(hf_dir):
    path = os.path.join(hf_dir, "tokenizer_config.json")
    add_bos, add_eos = True, False  # LlamaTokenizer defaults
    bos, eos = "<s>", "</s>"
    if os.path.exists(path):
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


def export_tokenizer(hf_dir, out_path, log):
    """Write out_path; False (with a warning) when hf_dir has no tokenizer files."""
    tj = os.path.join(hf_dir, "tokenizer.json")
    tm = os.path.join(hf_dir, "tokenizer.model")
    if os.path.exists(tj):
        pieces, scores, types, merges, added, unk_id = _from_tokenizer_json(tj)
        src = tj
    elif os.path.exists(tm):
        pieces, scores, types, merges, added, unk_id = _from_sentencepiece_model(tm)
        src = tm
    else:
        log("warning: %s has no tokenizer.json or tokenizer.model; no tokenizer.bin written"
            % hf_dir)
        return False
    add_bos, add_eos, bos, eos = _read_config(hf_dir)
    piece_id = {p: i for i, p in enumerate(pieces)}
    bos_id = piece_id.get(bos, -1)
    eos_id = piece_id.get(eos, -1)
    if add_bos and bos_id < 0:
        raise ValueError("%s: add_bos_token is set but BOS %r is not in the vocab" % (src, bos))
    if add_eos and eos_id < 0:
        raise ValueError("%s: add_eos_token is set but EOS %r is not in the vocab" % (src, eos))

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
    tmp = out_path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(out)
        os.replace(tmp, out_path)
    except BaseException as e:
        try:   # never leave a partial file behind (a full disk, an interrupt)
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise ValueError("%s: cannot write (%s)" % (tmp, e.strerror or e)) from e
        raise
    log("tokenizer: %s -> %s (%d pieces, %d merges, %d added tokens, add_bos=%d add_eos=%d)"
        % (src, out_path, len(pieces), len(merges), len(added), add_bos, add_eos))
    return True


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2

    def log(msg):
        print(msg, file=sys.stderr)
    try:
        ok = export_tokenizer(argv[1], argv[2], log)
    except (ValueError, OSError) as e:
        log("error: %s" % e)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
