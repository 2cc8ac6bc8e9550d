/* bench/tok/tok_bench.c - encode throughput of tokenizer.c.
 *
 * usage: tok_bench TOKENIZER.bin TEXT_FILE [REPEATS]
 * Encodes the file line by line (as spm_encode does, so both do the same
 * work), REPEATS times, and prints load time, MB/s of the best pass and the
 * token count. */
#include "../../tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s TOKENIZER.bin TEXT_FILE [REPEATS]\n", argv[0]);
        return 2;
    }
    int repeats = argc > 3 ? atoi(argv[3]) : 3;
    char err[512];
    double t0 = now_s();
    Tokenizer *t = tokenizer_load(argv[1], err, sizeof err);
    double load_ms = (now_s() - t0) * 1e3;
    if (!t) { fprintf(stderr, "%s\n", err); return 1; }
    FILE *f = fopen(argv[2], "rb");
    if (!f) { perror(argv[2]); return 1; }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    if (!text || fread(text, 1, (size_t)size, f) != (size_t)size) { fprintf(stderr, "read error\n"); return 1; }
    fclose(f);
    double best = 1e30;
    size_t tokens = 0;
    for (int r = 0; r < repeats; r++) {
        tokens = 0;
        double s = now_s();
        for (char *p = text, *end = text + size; p < end;) {
            char *nl = memchr(p, '\n', (size_t)(end - p));
            if (!nl) nl = end;
            int *ids;
            size_t n;
            if (tokenizer_encode(t, p, (size_t)(nl - p), 0, &ids, &n) != 0) return 1;
            tokens += n;
            free(ids);
            p = nl + 1;
        }
        double dt = now_s() - s;
        if (dt < best) best = dt;
    }
    printf("raktn: load %.1f ms, %ld bytes, %zu tokens, best of %d: %.3f s = %.2f MB/s\n",
           load_ms, size, tokens, repeats, best, size / best / 1e6);
    free(text);
    tokenizer_free(t);
    return 0;
}
