/* tokenizer.c - SentencePiece-style BPE for RakutenAI-7B / Mistral-7B.
 *
 * Reproduces what Hugging Face's LlamaTokenizerFast (the Rust `tokenizers`
 * pipeline described by tokenizer.json, legacy mode) returns, read top to
 * bottom in four parts:
 *
 *   1. loading tokenizer.bin (notes/format.md) and validating it;
 *   2. encode: split off literal special tokens   (HF: AddedVocabulary)
 *              prepend ▁, spaces -> ▁             (HF: normalizers Prepend+Replace)
 *              characters -> ids, or UTF-8 bytes  (HF: BPE with byte_fallback)
 *              merge pairs by rank, lowest first  (HF: BPE::merge_word,
 *                                                  sentencepiece bpe_model.cc)
 *   3. decode: ▁ -> space, <0xXX> runs -> UTF-8, strip one leading space
 *              (HF decoders Replace, ByteFallback, Fuse, Strip);
 *   4. a streaming decoder for generation.
 *
 * notes/tokenizer.md explains the algorithm with a worked example; the file
 * layout is in notes/format.md (section "tokenizer.bin").
 */
#include "tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Piece types: SentencePiece's enum, which the exporter maps both sources to. */
enum { PIECE_NORMAL = 1, PIECE_UNKNOWN = 2, PIECE_CONTROL = 3,
       PIECE_USER_DEFINED = 4, PIECE_UNUSED = 5, PIECE_BYTE = 6 };

#define TOK_MAGIC "RKTNTOK"          /* 8 bytes with the NUL */
#define TOK_VERSION 1u
#define TOK_MAX_VOCAB (1u << 24)
#define TOK_MAX_PIECE_BYTES 4096u

/* One entry of the merge table: the pair (left, right) becomes `merged`;
 * lower rank = merged earlier. */
typedef struct {
    uint64_t key;     /* (left << 32) | right, or EMPTY_KEY */
    uint32_t rank;
    int32_t merged;
} MergeSlot;
#define EMPTY_KEY UINT64_MAX

struct Tokenizer {
    int n_vocab;
    const char **piece;     /* NUL-terminated piece strings (into blob) */
    uint32_t *piece_len;
    uint8_t *type;
    char *blob;             /* storage of all piece strings */
    int bos, eos, unk;
    int add_bos, add_eos;
    size_t max_piece;

    /* piece string -> id: open addressing, -1 = empty */
    int32_t *piece_tab;
    uint64_t piece_mask;
    /* fast path: id of the single-character piece for code points < 65536 */
    int32_t *bmp_id;
    /* id of <0xXX> for each byte value, -1 if missing */
    int32_t byte_id[256];

    MergeSlot *merge_tab;
    uint64_t merge_mask;

    /* added tokens that are matched literally in the input (<s>, </s>, <unk>) */
    int n_added;
    int32_t *added;
    unsigned char added_first[256];   /* 1 if some added token starts with it */
    unsigned char *is_added;          /* [n_vocab] 1 for an added token's id */
    int n_added_lens;                 /* the distinct lengths of added tokens, */
    uint16_t *added_lens;             /* longest first */
};

/* ------------------------------------------------------------------ UTF-8 */

/* Decode one UTF-8 character from s[0..n). Returns its length (1..4) and the
 * code point, or 0 when the bytes are not a valid, shortest-form character of
 * at most U+10FFFF that is not a surrogate (the rules of Rust's str, which is
 * what HF tokenizers sees, and of sentencepiece's DecodeUTF8). */
static int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    int len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF)      { len = 2; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

static int utf8_is_valid(const unsigned char *s, size_t n) {
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        int l = utf8_decode(s + i, n - i, &cp);
        if (!l) return 0;
        i += (size_t)l;
    }
    return 1;
}

/* "<0xAB>" -> 0xAB, or -1 (the pattern HF's ByteFallback decoder accepts). */
static int byte_piece_value(const char *p, size_t len) {
    if (len != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0'
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
              : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* ----------------------------------------------------------- hash tables */

static uint64_t hash_bytes(const char *s, size_t n) {   /* FNV-1a */
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ull; }
    return h;
}

static uint64_t hash_pair(uint64_t key) {
    key *= 0x9E3779B97F4A7C15ull;
    return key ^ (key >> 29);
}

/* id of the piece spelled s[0..n), or -1 */
static int piece_lookup(const Tokenizer *t, const char *s, size_t n) {
    for (uint64_t h = hash_bytes(s, n) & t->piece_mask;; h = (h + 1) & t->piece_mask) {
        int32_t id = t->piece_tab[h];
        if (id < 0) return -1;
        if (t->piece_len[id] == n && memcmp(t->piece[id], s, n) == 0) return id;
    }
}

static const MergeSlot *merge_lookup(const Tokenizer *t, int32_t left, int32_t right) {
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    for (uint64_t h = hash_pair(key) & t->merge_mask;; h = (h + 1) & t->merge_mask) {
        const MergeSlot *m = &t->merge_tab[h];
        if (m->key == key) return m;
        if (m->key == EMPTY_KEY) return NULL;
    }
}

static uint64_t table_size_for(uint64_t n) {   /* power of two, load <= 1/2 */
    uint64_t size = 16;
    while (size < 2 * n) size *= 2;
    return size;
}

/* ------------------------------------------------------------ 1. loading */

/* A bounds-checked reader over the file contents. */
typedef struct {
    const unsigned char *p;
    uint64_t left;
} Reader;

static int rd_bytes(Reader *r, void *dst, uint64_t n) {
    if (n > r->left) return 0;
    if (dst) memcpy(dst, r->p, (size_t)n);
    r->p += n;
    r->left -= n;
    return 1;
}

static int rd_u32(Reader *r, uint32_t *v) {
    unsigned char b[4];
    if (!rd_bytes(r, b, 4)) return 0;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 1;
}

static int fail(char *err, size_t errlen, const char *path, const char *msg, long long a) {
    if (err && errlen) {
        if (a >= 0) snprintf(err, errlen, "%s: %s %lld", path, msg, a);
        else snprintf(err, errlen, "%s: %s", path, msg);
    }
    return 0;
}

/* Parse and validate the file contents into t; 0 + err on failure. */
static int parse_tokenizer(Tokenizer *t, const unsigned char *data, uint64_t size,
                           const char *path, char *err, size_t errlen) {
    Reader r = { data, size };
    char magic[8];
    uint32_t hdr[8];
    if (!rd_bytes(&r, magic, 8) || memcmp(magic, TOK_MAGIC, 8) != 0)
        return fail(err, errlen, path, "not a raktn tokenizer.bin (bad magic)", -1);
    for (int i = 0; i < 8; i++)
        if (!rd_u32(&r, &hdr[i])) return fail(err, errlen, path, "truncated header", -1);
    uint32_t version = hdr[0], n_vocab = hdr[1], n_merges = hdr[2], n_added = hdr[3];
    int32_t special[3] = { (int32_t)hdr[4], (int32_t)hdr[5], (int32_t)hdr[6] };
    uint32_t flags = hdr[7];
    if (version != TOK_VERSION)
        return fail(err, errlen, path, "unsupported tokenizer.bin version", version);
    if (n_vocab == 0 || n_vocab > TOK_MAX_VOCAB)
        return fail(err, errlen, path, "bad vocabulary size", n_vocab);
    if (n_added > n_vocab) return fail(err, errlen, path, "bad added-token count", n_added);
    /* every merge is 16 bytes: refuse counts the file cannot hold before allocating */
    if ((uint64_t)n_merges * 16 > r.left)
        return fail(err, errlen, path, "merge count larger than the file allows", n_merges);
    /* and every piece at least 13 (12 + a 1-byte string), every added token 8 */
    if ((uint64_t)n_vocab * 13 + (uint64_t)n_merges * 16 + (uint64_t)n_added * 8 > r.left)
        return fail(err, errlen, path, "vocabulary size larger than the file allows", n_vocab);
    for (int i = 0; i < 3; i++)
        if (special[i] < -1 || special[i] >= (int32_t)n_vocab)
            return fail(err, errlen, path, "BOS/EOS/UNK id outside the vocabulary", special[i]);
    if (flags & ~3u) return fail(err, errlen, path, "unknown flags", flags);
    t->n_vocab = (int)n_vocab;
    t->bos = special[0];
    t->eos = special[1];
    t->unk = special[2];
    t->add_bos = (flags & 1) != 0;
    t->add_eos = (flags & 2) != 0;

    /* pieces: u32 length, f32 score (unused here), u32 type, bytes */
    t->piece = calloc(n_vocab, sizeof *t->piece);
    t->piece_len = calloc(n_vocab, sizeof *t->piece_len);
    t->type = calloc(n_vocab, 1);
    t->blob = malloc((size_t)size + n_vocab);   /* all strings fit in the file size */
    uint64_t piece_size = table_size_for(n_vocab);
    t->piece_tab = malloc(piece_size * sizeof *t->piece_tab);
    t->bmp_id = malloc(65536 * sizeof *t->bmp_id);
    if (!t->piece || !t->piece_len || !t->type || !t->blob || !t->piece_tab || !t->bmp_id)
        return fail(err, errlen, path, "out of memory", -1);
    memset(t->piece_tab, 0xFF, piece_size * sizeof *t->piece_tab);
    memset(t->bmp_id, 0xFF, 65536 * sizeof *t->bmp_id);
    memset(t->byte_id, 0xFF, sizeof t->byte_id);
    t->piece_mask = piece_size - 1;
    char *dst = t->blob;
    for (uint32_t id = 0; id < n_vocab; id++) {
        uint32_t len, score_bits, type;
        if (!rd_u32(&r, &len) || !rd_u32(&r, &score_bits) || !rd_u32(&r, &type))
            return fail(err, errlen, path, "truncated piece table at id", id);
        if (len == 0 || len > TOK_MAX_PIECE_BYTES)
            return fail(err, errlen, path, "bad piece length at id", id);
        if (type < PIECE_NORMAL || type > PIECE_BYTE)
            return fail(err, errlen, path, "bad piece type at id", id);
        if (!rd_bytes(&r, dst, len)) return fail(err, errlen, path, "truncated piece", id);
        if (memchr(dst, 0, len) || !utf8_is_valid((unsigned char *)dst, len))
            return fail(err, errlen, path, "piece is not NUL-free UTF-8 at id", id);
        dst[len] = 0;
        t->piece[id] = dst;
        t->piece_len[id] = len;
        t->type[id] = (uint8_t)type;
        if (len > t->max_piece) t->max_piece = len;
        dst += len + 1;
        /* insert into piece -> id; a duplicate string would make ids ambiguous */
        uint64_t h = hash_bytes(t->piece[id], len) & t->piece_mask;
        for (; t->piece_tab[h] >= 0; h = (h + 1) & t->piece_mask) {
            int32_t o = t->piece_tab[h];
            if (t->piece_len[o] == len && memcmp(t->piece[o], t->piece[id], len) == 0)
                return fail(err, errlen, path, "duplicate piece string at id", id);
        }
        t->piece_tab[h] = (int32_t)id;
        int bv = byte_piece_value(t->piece[id], len);
        if (type == PIECE_BYTE) {
            if (bv < 0) return fail(err, errlen, path, "byte piece is not <0xXX> at id", id);
            t->byte_id[bv] = (int32_t)id;
        }
        uint32_t cp;
        if (type != PIECE_BYTE && utf8_decode((unsigned char *)t->piece[id], len, &cp) == (int)len
            && cp < 65536)
            t->bmp_id[cp] = (int32_t)id;
    }

    /* merges: u32 left, right, merged, rank */
    uint64_t merge_size = table_size_for(n_merges);
    t->merge_tab = malloc(merge_size * sizeof *t->merge_tab);
    if (!t->merge_tab) return fail(err, errlen, path, "out of memory", -1);
    for (uint64_t i = 0; i < merge_size; i++) t->merge_tab[i].key = EMPTY_KEY;
    t->merge_mask = merge_size - 1;
    for (uint32_t i = 0; i < n_merges; i++) {
        uint32_t a, b, m, rank;
        if (!rd_u32(&r, &a) || !rd_u32(&r, &b) || !rd_u32(&r, &m) || !rd_u32(&r, &rank))
            return fail(err, errlen, path, "truncated merge table at merge", i);
        if (a >= n_vocab || b >= n_vocab || m >= n_vocab || rank >= n_merges)
            return fail(err, errlen, path, "id or rank out of range at merge", i);
        if ((uint64_t)t->piece_len[a] + t->piece_len[b] != t->piece_len[m]
            || memcmp(t->piece[a], t->piece[m], t->piece_len[a]) != 0
            || memcmp(t->piece[b], t->piece[m] + t->piece_len[a], t->piece_len[b]) != 0)
            return fail(err, errlen, path, "merge result is not left+right at merge", i);
        uint64_t key = ((uint64_t)a << 32) | b;
        uint64_t h = hash_pair(key) & t->merge_mask;
        for (; t->merge_tab[h].key != EMPTY_KEY; h = (h + 1) & t->merge_mask)
            if (t->merge_tab[h].key == key)
                return fail(err, errlen, path, "duplicate merge pair at merge", i);
        t->merge_tab[h] = (MergeSlot){ key, rank, (int32_t)m };
    }

    /* added tokens: u32 id, u32 special */
    t->added = malloc((n_added ? n_added : 1) * sizeof *t->added);
    t->is_added = calloc(n_vocab, 1);
    t->added_lens = calloc(TOK_MAX_PIECE_BYTES + 1, sizeof *t->added_lens);
    if (!t->added || !t->is_added || !t->added_lens) return fail(err, errlen, path, "out of memory", -1);
    t->n_added = (int)n_added;
    for (uint32_t i = 0; i < n_added; i++) {
        uint32_t id, special_flag;
        if (!rd_u32(&r, &id) || !rd_u32(&r, &special_flag))
            return fail(err, errlen, path, "truncated added-token table at", i);
        if (id >= n_vocab || special_flag > 1)
            return fail(err, errlen, path, "bad added token", i);
        t->added[i] = (int32_t)id;
        t->added_first[(unsigned char)t->piece[id][0]] = 1;
        t->is_added[id] = 1;
    }
    unsigned char seen[TOK_MAX_PIECE_BYTES + 1] = { 0 };
    for (uint32_t i = 0; i < n_added; i++) seen[t->piece_len[t->added[i]]] = 1;
    for (uint32_t l = TOK_MAX_PIECE_BYTES; l >= 1; l--) /* each length once, longest first */
        if (seen[l]) t->added_lens[t->n_added_lens++] = (uint16_t)l;
    if (r.left != 0)
        return fail(err, errlen, path, "trailing bytes after the tables:", (long long)r.left);
    return 1;
}

Tokenizer *tokenizer_load(const char *path, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    struct stat st;   /* a FIFO would block fopen; a directory has no size */
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        fail(err, errlen, path, "not a regular file", -1);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) { fail(err, errlen, path, "cannot open", -1); return NULL; }
    unsigned char *data = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        fail(err, errlen, path, "cannot determine the file size", -1);
        return NULL;
    }
    if (size < 40 || (uint64_t)size > (1ull << 32)) {
        fclose(f);
        fail(err, errlen, path, "file too small or too large to be a tokenizer.bin, bytes:", size);
        return NULL;
    }
    data = malloc((size_t)size);
    if (!data || fread(data, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        free(data);
        fail(err, errlen, path, data ? "read error" : "out of memory", -1);
        return NULL;
    }
    fclose(f);
    Tokenizer *t = calloc(1, sizeof *t);
    int ok = t && parse_tokenizer(t, data, (uint64_t)size, path, err, errlen);
    free(data);
    if (!ok) {
        if (!t) fail(err, errlen, path, "out of memory", -1);
        tokenizer_free(t);
        return NULL;
    }
    return t;
}

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    free(t->piece);
    free(t->piece_len);
    free(t->type);
    free(t->blob);
    free(t->piece_tab);
    free(t->bmp_id);
    free(t->merge_tab);
    free(t->added);
    free(t->is_added);
    free(t->added_lens);
    free(t);
}

int tokenizer_vocab_size(const Tokenizer *t) { return t->n_vocab; }
int tokenizer_bos_id(const Tokenizer *t) { return t->bos; }
int tokenizer_eos_id(const Tokenizer *t) { return t->eos; }
int tokenizer_add_bos(const Tokenizer *t) { return t->add_bos; }
int tokenizer_add_eos(const Tokenizer *t) { return t->add_eos; }
size_t tokenizer_max_piece_bytes(const Tokenizer *t) { return t->max_piece; }
const char *tokenizer_piece(const Tokenizer *t, int id) {
    return id >= 0 && id < t->n_vocab ? t->piece[id] : NULL;
}

/* ------------------------------------------------------------- 2. encode */

/* Growable int array for the output ids. */
typedef struct { int *v; size_t n, cap; } IdVec;

static int idvec_push(IdVec *a, int id) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 64;
        int *v = realloc(a->v, cap * sizeof *v);
        if (!v) return -1;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return 0;
}

/* The BPE working state of one text segment: a doubly linked list of symbols
 * (an id each; a merged-away symbol has id -1) and a binary min-heap of
 * candidate merges ordered by (rank, position of the left symbol). */
typedef struct {
    uint32_t rank;
    int32_t pos;             /* index of the left symbol */
    int32_t left, right;     /* the ids the pair had when pushed */
    int32_t merged;
} Cand;

typedef struct {
    int32_t *id, *prev, *next;
    size_t n, cap;
    Cand *heap;
    size_t n_heap, heap_cap;
    int unk_pending;         /* unknown characters seen, their <unk> not yet added */
} Work;

static int work_add_symbol(Work *w, int32_t id) {
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 256;
        int32_t *a = realloc(w->id, cap * sizeof *a);
        if (!a) return -1;
        w->id = a;
        if (!(a = realloc(w->prev, cap * sizeof *a))) return -1;
        w->prev = a;
        if (!(a = realloc(w->next, cap * sizeof *a))) return -1;
        w->next = a;
        w->cap = cap;
    }
    w->id[w->n] = id;
    w->prev[w->n] = (int32_t)w->n - 1;
    w->next[w->n] = (int32_t)w->n + 1;   /* fixed up for the last one later */
    w->n++;
    return 0;
}

static int cand_less(const Cand *a, const Cand *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

/* Push the pair starting at symbol `pos` if the merge table knows it. */
static int heap_push_pair(const Tokenizer *t, Work *w, int32_t pos) {
    if (pos < 0) return 0;
    int32_t nx = w->next[pos];
    if (nx < 0) return 0;
    const MergeSlot *m = merge_lookup(t, w->id[pos], w->id[nx]);
    if (!m) return 0;
    if (w->n_heap == w->heap_cap) {
        size_t cap = w->heap_cap ? 2 * w->heap_cap : 256;
        Cand *h = realloc(w->heap, cap * sizeof *h);
        if (!h) return -1;
        w->heap = h;
        w->heap_cap = cap;
    }
    Cand c = { m->rank, pos, w->id[pos], w->id[nx], m->merged };
    size_t i = w->n_heap++;                       /* sift up */
    while (i > 0 && cand_less(&c, &w->heap[(i - 1) / 2])) {
        w->heap[i] = w->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->heap[i] = c;
    return 0;
}

static Cand heap_pop(Work *w) {
    Cand top = w->heap[0], last = w->heap[--w->n_heap];
    size_t i = 0, n = w->n_heap;                   /* sift down */
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && cand_less(&w->heap[c + 1], &w->heap[c])) c++;
        if (!cand_less(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

/* The <unk> that stands for the unknown characters seen since the last piece. */
static int flush_unk(const Tokenizer *t, Work *w) {
    if (!w->unk_pending) return 0;
    w->unk_pending = 0;
    return work_add_symbol(w, t->unk);
}

/* One character (its UTF-8 bytes) -> initial symbol(s), as HF's BPE builds
 * its word: the character's own piece if the vocabulary has it, else one
 * <0xXX> symbol per byte (byte_fallback) if every byte has a piece, else it is
 * unknown. Consecutive unknowns become one <unk> (fuse_unk), added only when
 * the next character with a piece of its own comes, or at the end of the
 * segment: byte-fallback symbols in between go in before it ("X\x01Y", X and
 * Y unknown, only \x01 a byte piece: <0x01> <unk>). Only a vocabulary with
 * some but not all of the 256 byte pieces can show that order. */
static int add_char(const Tokenizer *t, Work *w, const unsigned char *c, int len, uint32_t cp) {
    int32_t id = cp < 65536 ? t->bmp_id[cp] : piece_lookup(t, (const char *)c, (size_t)len);
    if (id >= 0) return flush_unk(t, w) < 0 ? -1 : work_add_symbol(w, id);
    int all_bytes = 1;
    for (int i = 0; i < len; i++) all_bytes &= t->byte_id[c[i]] >= 0;
    if (all_bytes) {
        for (int i = 0; i < len; i++)
            if (work_add_symbol(w, t->byte_id[c[i]]) < 0) return -1;
        return 0;
    }
    if (t->unk >= 0) w->unk_pending = 1;   /* no <unk> piece: HF BPE drops the character */
    return 0;
}

/* Encode one segment of text that contains no special token. */
static int encode_segment(const Tokenizer *t, Work *w, const unsigned char *s, size_t n,
                          IdVec *out) {
    if (n == 0) return 0;   /* HF's Prepend normalizer leaves an empty segment empty */
    if (n > (size_t)INT32_MAX / 4 - 1) return -1;   /* symbol indices are int32 */
    static const unsigned char SPACE_MARK[3] = { 0xE2, 0x96, 0x81 };   /* ▁ U+2581 */
    static const unsigned char REPLACEMENT[3] = { 0xEF, 0xBF, 0xBD };  /* U+FFFD */
    w->n = 0;
    w->n_heap = 0;
    w->unk_pending = 0;
    /* Normalize on the fly: one ▁ in front, every ASCII space becomes ▁. */
    if (add_char(t, w, SPACE_MARK, 3, 0x2581) < 0) return -1;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int len = utf8_decode(s + i, n - i, &cp);
        int r;
        if (len == 0) {              /* invalid byte: U+FFFD, as sentencepiece does */
            r = add_char(t, w, REPLACEMENT, 3, 0xFFFD);
            len = 1;
        } else if (cp == ' ') {
            r = add_char(t, w, SPACE_MARK, 3, 0x2581);
        } else {
            r = add_char(t, w, s + i, len, cp);
        }
        if (r < 0) return -1;
        i += (size_t)len;
    }
    if (flush_unk(t, w) < 0) return -1;
    if (w->n == 0) return 0;   /* every character dropped (no <unk>) */
    w->next[w->n - 1] = -1;

    /* BPE: seed the heap with every adjacent pair, then repeatedly apply the
     * best one (lowest rank, leftmost). The symbols form a list in text
     * order (next/prev); a merge gives the left symbol the merged id and
     * unlinks the right one, whose id becomes -1 and whose own links go
     * stale (nothing reaches it again). A heap entry is acted on only if
     * the symbol at its position still has its left id and that symbol's
     * successor its right id; that suffices to recognise an entry made
     * stale by an earlier merge: a symbol's id changes only when it grows
     * (absorbing its successor, its id becomes a longer piece's, never one
     * it had before), and its successor changes only in that same step. */
    for (size_t i = 0; i + 1 < w->n; i++)
        if (heap_push_pair(t, w, (int32_t)i) < 0) return -1;
    while (w->n_heap > 0) {
        Cand c = heap_pop(w);
        int32_t nx = w->next[c.pos];
        if (w->id[c.pos] != c.left || nx < 0 || w->id[nx] != c.right) continue;
        w->id[c.pos] = c.merged;            /* the left symbol absorbs the right */
        w->id[nx] = -1;
        w->next[c.pos] = w->next[nx];
        if (w->next[nx] >= 0) w->prev[w->next[nx]] = c.pos;
        if (heap_push_pair(t, w, w->prev[c.pos]) < 0 || heap_push_pair(t, w, c.pos) < 0)
            return -1;
    }
    for (int32_t i = 0; i >= 0; i = w->next[i])
        if (idvec_push(out, w->id[i]) < 0) return -1;
    return 0;
}

/* Longest added token (<s>, </s>, <unk>) spelled at s[0..n), or -1
 * (HF's AddedVocabulary matches leftmost-longest on the raw text). Pieces
 * are unique, so for each length an added token has (longest first) the
 * piece table names the one candidate: the cost does not grow with the
 * number of added tokens. */
static int match_added(const Tokenizer *t, const unsigned char *s, size_t n, size_t *mlen) {
    for (int i = 0; i < t->n_added_lens; i++) {
        size_t l = t->added_lens[i];
        if (l > n) continue;
        int id = piece_lookup(t, (const char *)s, l);
        if (id >= 0 && t->is_added[id]) { *mlen = l; return id; }
    }
    *mlen = 0;
    return -1;
}

int tokenizer_encode(const Tokenizer *t, const char *text, size_t len,
                     int add_bos, int **ids, size_t *n_ids) {
    const unsigned char *s = (const unsigned char *)text;
    IdVec out = { 0 };
    Work w = { 0 };
    int rc = 0;
    *ids = NULL;
    *n_ids = 0;
    if (add_bos && t->bos >= 0) rc = idvec_push(&out, t->bos);
    /* Cut the text at literal special tokens; each piece between them is
     * normalized and BPE-encoded on its own (so each gets its own ▁). */
    size_t seg = 0;
    for (size_t i = 0; rc == 0 && i < len;) {
        size_t mlen;
        int id = t->added_first[s[i]] ? match_added(t, s + i, len - i, &mlen) : -1;
        if (id < 0) { i++; continue; }
        rc = encode_segment(t, &w, s + seg, i - seg, &out);
        if (rc == 0) rc = idvec_push(&out, id);
        i += mlen;
        seg = i;
    }
    if (rc == 0) rc = encode_segment(t, &w, s + seg, len - seg, &out);
    if (rc == 0 && add_bos && t->add_eos && t->eos >= 0) rc = idvec_push(&out, t->eos);
    free(w.id);
    free(w.prev);
    free(w.next);
    free(w.heap);
    if (rc < 0) { free(out.v); return -1; }
    if (!out.v && !(out.v = malloc(sizeof *out.v))) return -1;   /* empty, but freeable */
    *ids = out.v;
    *n_ids = out.n;
    return 0;
}

/* ------------------------------------------------------------- 3. decode */

typedef struct { char *v; size_t n, cap; int oom; } Buf;

static void buf_put(Buf *b, const void *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (b->n + n + 1 > cap) cap *= 2;
        char *v = realloc(b->v, cap);
        if (!v) { b->oom = 1; return; }
        b->v = v;
        b->cap = cap;
    }
    memcpy(b->v + b->n, s, n);
    b->n += n;
}

/* A piece with every ▁ turned into a space (HF decoder Replace). */
static void put_piece_text(Buf *b, const char *p, size_t len) {
    for (size_t i = 0; i < len;) {
        if (i + 3 <= len && memcmp(p + i, "\xe2\x96\x81", 3) == 0) { buf_put(b, " ", 1); i += 3; }
        else { buf_put(b, p + i, 1); i++; }
    }
}

/* End of a run of <0xXX> tokens (HF decoder ByteFallback): the run's bytes if
 * they form valid UTF-8, else one U+FFFD per byte. */
static void flush_bytes(Buf *b, const unsigned char *run, size_t n) {
    if (utf8_is_valid(run, n)) { buf_put(b, run, n); return; }
    for (size_t i = 0; i < n; i++) buf_put(b, "\xef\xbf\xbd", 3);
}

char *tokenizer_decode(const Tokenizer *t, const int *ids, size_t n_ids, size_t *out_len) {
    Buf b = { 0 };
    unsigned char *run = malloc(n_ids ? n_ids : 1);
    size_t n_run = 0;
    if (!run) return NULL;
    for (size_t i = 0; i < n_ids; i++) {
        int id = ids[i];
        if (id < 0 || id >= t->n_vocab) { free(run); free(b.v); return NULL; }
        int bv = byte_piece_value(t->piece[id], t->piece_len[id]);
        if (bv >= 0) { run[n_run++] = (unsigned char)bv; continue; }
        flush_bytes(&b, run, n_run);
        n_run = 0;
        put_piece_text(&b, t->piece[id], t->piece_len[id]);
    }
    flush_bytes(&b, run, n_run);
    free(run);
    buf_put(&b, "", 0);                  /* make sure there is room for the NUL */
    if (b.oom) { free(b.v); return NULL; }
    /* HF decoder Strip(" ", 1, 0): drop one leading space of the whole text. */
    size_t skip = b.n > 0 && b.v[0] == ' ';
    memmove(b.v, b.v + skip, b.n - skip);
    b.n -= skip;
    b.v[b.n] = 0;
    if (out_len) *out_len = b.n;
    return b.v;
}

/* ---------------------------------------------------- 4. streaming decode */

/* A bounded writer into the caller's buffer (keeps room for the NUL). */
typedef struct { char *out; size_t cap, n; TokenStream *s; } Sink;

static void sink_put(Sink *k, const char *p, size_t n) {
    if (n > 0 && k->s->at_start) {      /* HF Strip: only the very first char */
        k->s->at_start = 0;
        if (p[0] == ' ') { p++; n--; }
    }
    for (size_t i = 0; i < n && k->n + 1 < k->cap; i++) k->out[k->n++] = p[i];
}

static void sink_pending_as_fffd(Sink *k) {
    for (int i = 0; i < k->s->n_pending; i++) sink_put(k, "\xef\xbf\xbd", 3);
    k->s->n_pending = 0;
}

/* Expected length of a UTF-8 character from its first byte (0: not a lead). */
static int utf8_lead_len(unsigned c) {
    return c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
         : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
}

/* One byte from a <0xXX> token: held until its character is complete. */
static void stream_byte(Sink *k, unsigned char c) {
    TokenStream *s = k->s;
    if (s->n_pending > 0) {
        s->pending[s->n_pending] = c;
        int need = utf8_lead_len(s->pending[0]);
        uint32_t cp;
        /* still a possible prefix of a valid character? (second-byte rules
         * for E0/ED/F0/F4 are checked by decoding once complete) */
        if ((c & 0xC0) == 0x80) {
            s->n_pending++;
            if (s->n_pending < need) return;
            if (utf8_decode(s->pending, (size_t)need, &cp) == need) {
                sink_put(k, (const char *)s->pending, (size_t)need);
                s->n_pending = 0;
            } else {
                sink_pending_as_fffd(k);
            }
            return;
        }
        sink_pending_as_fffd(k);          /* broken sequence; c starts afresh */
    }
    int need = utf8_lead_len(c);
    if (need == 1) sink_put(k, (const char *)&c, 1);
    else if (need == 0) sink_put(k, "\xef\xbf\xbd", 3);
    else { s->pending[0] = c; s->n_pending = 1; }
}

void tokstream_init(TokenStream *s, const Tokenizer *t, int first) {
    s->t = t;
    s->at_start = first != 0;
    s->n_pending = 0;
}

size_t tokstream_push(TokenStream *s, int id, char *out, size_t cap) {
    Sink k = { out, cap, 0, s };
    const Tokenizer *t = s->t;
    if (cap == 0) return 0;
    if (id >= 0 && id < t->n_vocab && t->type[id] != PIECE_CONTROL) {
        const char *p = t->piece[id];
        size_t len = t->piece_len[id];
        int bv = byte_piece_value(p, len);
        if (bv >= 0) {
            stream_byte(&k, (unsigned char)bv);
        } else {
            sink_pending_as_fffd(&k);
            /* ▁ -> space, writing through the sink so the Strip rule applies */
            for (size_t i = 0; i < len;) {
                if (i + 3 <= len && memcmp(p + i, "\xe2\x96\x81", 3) == 0) {
                    sink_put(&k, " ", 1);
                    i += 3;
                } else {
                    size_t j = i + 1;
                    while (j < len && !(j + 3 <= len && memcmp(p + j, "\xe2\x96\x81", 3) == 0)) j++;
                    sink_put(&k, p + i, j - i);
                    i = j;
                }
            }
        }
    }
    out[k.n] = 0;
    return k.n;
}

size_t tokstream_flush(TokenStream *s, char *out, size_t cap) {
    Sink k = { out, cap, 0, s };
    if (cap == 0) return 0;
    sink_pending_as_fffd(&k);
    out[k.n] = 0;
    return k.n;
}
