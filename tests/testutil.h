/* tests/testutil.h - small helpers shared by the Check test programs.
 * Tests run from the repository root (make test). */
#ifndef RAKTN_TESTUTIL_H
#define RAKTN_TESTUTIL_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Read a whole file into a malloc'd buffer (NUL-terminated); NULL if absent. */
static inline char *tu_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) { cap *= 2; char *nb = realloc(buf, cap + 1); if (!nb) { free(buf); buf = NULL; } else buf = nb; }
    }
    fclose(f);
    if (!buf) return NULL;
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

/* Read a raw little-endian float32 file of exactly n floats; NULL otherwise. */
static inline float *tu_read_f32(const char *path, size_t n) {
    size_t len = 0;
    char *buf = tu_read_file(path, &len);
    if (!buf) return NULL;
    if (len != n * sizeof(float)) { free(buf); return NULL; }
    return (float *)buf;
}

/* Parse space-separated integers; returns count (at most cap). */
static inline int tu_parse_ids(const char *s, int *ids, int cap) {
    int n = 0;
    char *end;
    while (*s && n < cap) {
        long v = strtol(s, &end, 10);
        if (end == s) { s++; continue; }
        ids[n++] = (int)v;
        s = end;
    }
    return n;
}
#endif
