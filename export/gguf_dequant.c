/* gguf_dequant.c - export/gguf.py's dequantization in C, for speed only.
 *
 * Built by make as export/gguf_dequant.so; export/gguf.py loads it with
 * ctypes (Python's standard library) when it is there and computes the same
 * values in Python otherwise (tests/test_gguf.py holds the two to the same
 * bytes). Pure Python dequantizes ~3 M weights/s, so a 7B Q4_K_M takes
 * most of an hour; this takes seconds, and the export is then as fast as
 * the disk (notes/verification.md, "GGUF in").
 *
 * Each function is ggml's definition (ggml/src/ggml-quants.c,
 * dequantize_row_*): a float16 block scale times small integers, which
 * float32 holds exactly, and for Q4_K one such product minus another,
 * rounded once to float32.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static float half(const uint8_t *p) { /* IEEE half, little-endian, exactly */
    unsigned h = p[0] | (unsigned)p[1] << 8;
    int e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(m | 1024), e - 25);
    return h & 0x8000 ? -v : v;
}

static void q8_0(const uint8_t *b, float *y) {
    float d = half(b);
    for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

static void q4_0(const uint8_t *b, float *y) {
    float d = half(b);
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((b[2 + j] & 15) - 8) * d;
        y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
    }
}

static void q4_k(const uint8_t *b, float *y) {
    float d = half(b), dmin = half(b + 2);
    const uint8_t *s = b + 4, *q = b + 16;
    for (int c = 0; c < 4; c++)
        for (int k = 0; k < 2; k++) {
            int j = 2 * c + k, sc, m; /* get_scale_min_k4 */
            if (j < 4) sc = s[j] & 63, m = s[j + 4] & 63;
            else sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4), m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
            float d1 = d * (float)sc, m1 = dmin * (float)m;
            for (int l = 0; l < 32; l++) {
                int v = k ? q[32 * c + l] >> 4 : q[32 * c + l] & 15;
                y[64 * c + 32 * k + l] = (float)((double)d1 * v - m1); /* exact in double, one rounding */
            }
        }
}

static void q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = half(b + 208);
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            int a = ql[64 * h + l], c = ql[64 * h + l + 32], hh = qh[32 * h + l];
            int q[4] = {((a & 15) | ((hh & 3) << 4)) - 32, ((c & 15) | (((hh >> 2) & 3) << 4)) - 32,
                        ((a >> 4) | (((hh >> 4) & 3) << 4)) - 32, ((c >> 4) | (((hh >> 6) & 3) << 4)) - 32};
            for (int k = 0; k < 4; k++) y[128 * h + 32 * k + l] = d * (float)sc[8 * h + l / 16 + 2 * k] * (float)q[k];
        }
}

/* ggml type (2 Q4_0, 8 Q8_0, 12 Q4_K, 14 Q6_K), n bytes of whole blocks ->
 * float32 values in out. Returns the number of values, or -1 for a type it
 * does not know or a non-finite block scale (the Python path says which). */
long gguf_dequant(int type, const uint8_t *in, size_t n, float *out) {
    size_t bs, per;
    void (*f)(const uint8_t *, float *);
    switch (type) {
    case 2: bs = 18, per = 32, f = q4_0; break;
    case 8: bs = 34, per = 32, f = q8_0; break;
    case 12: bs = 144, per = 256, f = q4_k; break;
    case 14: bs = 210, per = 256, f = q6_k; break;
    default: return -1;
    }
    if (n % bs) return -1;
    for (size_t i = 0; i < n / bs; i++) {
        const uint8_t *b = in + i * bs;
        int at[2] = {type == 14 ? 208 : 0, type == 12 ? 2 : -1};
        for (int k = 0; k < 2; k++)
            if (at[k] >= 0 && ((b[at[k] + 1] >> 2) & 31) == 31) return -1; /* inf or NaN scale */
        f(b, out + i * per);
    }
    return (long)(n / bs * per);
}
