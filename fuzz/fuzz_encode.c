#define _GNU_SOURCE /* memmem */
/* fuzz/fuzz_encode.c - libFuzzer harness for tokenizer_encode / decode and
 * the streaming decoder, on real vocabularies.
 *
 * Tokenizers are loaded once from tests/work (built by `make test`), or from
 * the colon-separated list in $FUZZ_TOKENIZERS. The first input byte picks a
 * tokenizer and a mode; the rest is
 *   mode 0: text to encode (any bytes: NUL, invalid UTF-8, special-token
 *           literals), then decode the ids again, also through tokstream;
 *   mode 1: little-endian u16 ids to decode (some outside the vocabulary)
 *           and to stream.
 * Invariants checked (abort = finding):
 *   - encode's ids are all inside the vocabulary, BOS first when asked;
 *   - decode of in-vocabulary ids never fails; out-of-vocabulary -> NULL;
 *   - decode(encode(text)) == text for valid UTF-8 that contains no '<'
 *     (no special-token literal), no U+2581 (decoded as a space, as in HF)
 *     and no character outside the vocabulary;
 *   - streaming never truncates, and for ids with no control piece and no
 *     U+FFFD in the result it produces exactly what decode produces.
 */
#include "../tokenizer.c"

#include <stdio.h>
#include <stdlib.h>

#define MAX_TOK 8
static Tokenizer *toks[MAX_TOK];
static int n_toks;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *list = getenv("FUZZ_TOKENIZERS");
    if (!list) list = "tests/work/tok/rakuten48k.bin:tests/work/tok/mistral32k.bin:tests/work/tok/small.bin";
    char *copy = strdup(list), *save = NULL;
    for (char *p = strtok_r(copy, ":", &save); p && n_toks < MAX_TOK; p = strtok_r(NULL, ":", &save)) {
        char err[256];
        Tokenizer *t = tokenizer_load(p, err, sizeof err);
        if (!t) { fprintf(stderr, "fuzz_encode: %s\n", err); continue; }
        toks[n_toks++] = t;
    }
    free(copy);
    if (n_toks == 0) {
        fprintf(stderr, "fuzz_encode: no tokenizer loaded (run `make test` first or set FUZZ_TOKENIZERS)\n");
        exit(1);
    }
    return 0;
}

/* decode ids with tokstream_* into one string (malloc'd) */
static char *stream_all(const Tokenizer *t, const int *ids, size_t n, size_t *out_len) {
    size_t cap = tokenizer_max_piece_bytes(t) + 16, total = 0;
    char *piece = malloc(cap), *all = malloc(n * (cap + 8) + cap + 1);
    if (!piece || !all) abort();
    TokenStream ts;
    tokstream_init(&ts, t, 1);
    for (size_t i = 0; i < n; i++) {
        size_t k = tokstream_push(&ts, ids[i], piece, cap);
        if (k + 1 >= cap) abort();   /* never truncated */
        memcpy(all + total, piece, k);
        total += k;
    }
    size_t k = tokstream_flush(&ts, piece, cap);
    if (k + 1 >= cap) abort();
    memcpy(all + total, piece, k);
    total += k;
    all[total] = 0;
    free(piece);
    *out_len = total;
    return all;
}

static void check_stream(const Tokenizer *t, const int *ids, size_t n, const char *dec, size_t dec_len) {
    size_t slen;
    char *st = stream_all(t, ids, n, &slen);
    int comparable = 1;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n_vocab || t->type[ids[i]] == PIECE_CONTROL) comparable = 0;
    if (dec && memmem(dec, dec_len, "\xef\xbf\xbd", 3)) comparable = 0;
    if (comparable && dec && (slen != dec_len || memcmp(st, dec, slen) != 0)) abort();
    free(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 4096) return 0;
    const Tokenizer *t = toks[(data[0] >> 1) % n_toks];
    int mode = data[0] & 1;
    const unsigned char *p = data + 1;
    size_t n = size - 1;
    if (mode == 0) {
        int bos = (data[0] >> 4) & 1;
        int *ids;
        size_t nids;
        if (tokenizer_encode(t, (const char *)p, n, bos, &ids, &nids) != 0) abort();
        for (size_t i = 0; i < nids; i++)
            if (ids[i] < 0 || ids[i] >= t->n_vocab) abort();
        if (bos && t->bos >= 0 && (nids == 0 || ids[0] != t->bos)) abort();
        size_t len;
        const int *body = ids + (bos && t->bos >= 0);
        size_t nbody = nids - (size_t)(bos && t->bos >= 0);
        char *dec = tokenizer_decode(t, body, nbody, &len);
        if (!dec) abort();
        int unk = 0;
        for (size_t i = 0; i < nbody; i++) unk |= body[i] == t->unk;
        int mark = memmem(p, n, "\xe2\x96\x81", 3) != NULL;   /* decodes as a space, like HF */
        if (utf8_is_valid(p, n) && !memchr(p, '<', n) && !unk && !mark && (len != n || memcmp(dec, p, n) != 0))
            abort();
        check_stream(t, body, nbody, dec, len);
        free(dec);
        free(ids);
    } else {
        size_t nids = n / 2;
        int *ids = malloc((nids ? nids : 1) * sizeof *ids);
        if (!ids) abort();
        int oov = 0;
        for (size_t i = 0; i < nids; i++) {
            ids[i] = p[2 * i] | p[2 * i + 1] << 8;
            if ((p[2 * i + 1] & 0x80)) ids[i] = -ids[i];   /* negative ids too */
            oov |= ids[i] < 0 || ids[i] >= t->n_vocab;
        }
        size_t len;
        char *dec = tokenizer_decode(t, ids, nids, &len);
        if (oov != (dec == NULL)) abort();
        if (dec && strlen(dec) > len) abort();
        check_stream(t, ids, nids, dec, dec ? len : 0);
        free(dec);
        free(ids);
    }
    return 0;
}
