/* fuzz/fuzz_tokenizer.c - libFuzzer harness for tokenizer.c's loader.
 *
 * The input is a whole tokenizer.bin, given to parse_tokenizer() (what
 * tokenizer_load() runs on the file's bytes). A file it accepts is then
 * used: a few texts are encoded (every id must be inside the vocabulary),
 * every id is decoded alone and all ids together, and streamed through
 * tokstream_*. Only a sanitizer report, a signal, a hang or a broken
 * invariant (abort) is a finding.
 */
#include "../tokenizer.c"

#include <stdlib.h>

static void check_ids(const Tokenizer *t, const int *ids, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n_vocab) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (8u << 20)) return 0;
    Tokenizer *t = calloc(1, sizeof *t);
    if (!t) return 0;
    char err[256];
    int ok = parse_tokenizer(t, data, size, "fuzz", err, sizeof err);
    if (!ok) {
        if (strncmp(err, "fuzz: ", 6) != 0 || memchr(err, '\n', strlen(err))) abort();  /* one line */
        tokenizer_free(t);
        return 0;
    }
    static const char *texts[] = {
        "", " ", "Hello world", "  two  spaces ", "<s></s><unk>", "\xe2\x96\x81\xe2\x96\x81",
        "\xff\xfe invalid \xc3", "日本語のテキスト", "a\0b", "<0x41>", "\xf0\x9f\x98\x80 emoji",
    };
    static const size_t lens[] = {0, 1, 11, 14, 12, 6, 12, 24, 3, 6, 9};
    for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
        for (int bos = 0; bos < 2; bos++) {
            int *ids;
            size_t n;
            if (tokenizer_encode(t, texts[k], lens[k], bos, &ids, &n) != 0) continue;
            check_ids(t, ids, n);
            size_t len;
            char *s = tokenizer_decode(t, ids, n, &len);
            if (!s) abort();   /* in-vocabulary ids always decode */
            free(s);
            free(ids);
        }
    }
    /* every id: decode all together, and stream them one by one */
    int n = t->n_vocab < 4096 ? t->n_vocab : 4096;
    int *all = malloc((size_t)n * sizeof *all);
    if (all) {
        for (int i = 0; i < n; i++) all[i] = i;
        size_t len;
        char *s = tokenizer_decode(t, all, (size_t)n, &len);
        if (!s || strlen(s) > len) abort();
        free(s);
        size_t cap = tokenizer_max_piece_bytes(t) + 16;
        char *buf = malloc(cap);
        if (buf) {
            TokenStream ts;
            tokstream_init(&ts, t, 1);
            for (int i = 0; i < n; i++)
                if (tokstream_push(&ts, all[i], buf, cap) + 1 >= cap) abort();   /* never truncated */
            tokstream_push(&ts, -1, buf, cap);
            tokstream_push(&ts, t->n_vocab, buf, cap);
            if (tokstream_flush(&ts, buf, cap) + 1 >= cap) abort();
            free(buf);
        }
        free(all);
    }
    tokenizer_free(t);
    return 0;
}
