/* bench/kernels.c - raktn's matmul kernels alone, for tuning them: the
 * prefill tile in GFLOPS on the 1B benchmark model's shapes (random
 * weights in memory, a batch of 512 positions), and the decode kernel in
 * GB/s reading the weight bytes of a real model.bin through its mapping, as
 * raktn reads them (rows of N fp32 or bf16 weights, matrices of CH rows).
 *
 *   cc -O3 -march=native -std=c11 -pthread -o bench/work/kernels bench/kernels.c tokenizer.c -lm
 *   bench/work/kernels THREADS [MODEL.bin [N [CH]]]     (N 4096, CH 14336)
 *
 * Built with other flags (-march=x86-64-v3, -DTILE_ROWS=6 -DTILE_VECS=1,
 * -DGROUP_BYTES=..., -DDECODE_ROWS=...) it times those variants: the tile
 * and decode choices in notes/performance.md were measured with it. Like
 * the tests, it #includes raktn.c. Prints the best of 5 (prefill) and of 3
 * (decode) runs.
 */
#define main raktn_main
#include "../raktn.c"
#undef main

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void prefill(void) {
    const int batch = 512, shapes[3][2] = {{2048, 2048}, {2048, 7168}, {7168, 2048}}; /* n, d */
    for (int s = 0; s < 3; s++) {
        int n = shapes[s][0], d = shapes[s][1];
        float *x = malloc((size_t)batch * n * 4), *w = malloc((size_t)n * d * 4), *o = malloc((size_t)batch * d * 4);
        if (!x || !w || !o) die("out of memory");
        for (size_t i = 0; i < (size_t)batch * n; i++) x[i] = (float)(i % 13) * 0.01f;
        for (size_t i = 0; i < (size_t)n * d; i++) w[i] = (float)(i % 7) * 0.01f;
        matmul_fast(o, x, w, batch, n, d, DTYPE_F32);
        double best = 1e30;
        for (int r = 0; r < 5; r++) {
            double t0 = seconds();
            matmul_fast(o, x, w, batch, n, d, DTYPE_F32);
            if (seconds() - t0 < best) best = seconds() - t0;
        }
        printf("prefill tile, %d positions x %d -> %d: %.1f GFLOPS\n", batch, n, d, 2.0 * batch * n * d / best / 1e9);
        free(x), free(w), free(o);
    }
}

static void decode(const char *path, int n, int ch) {
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) die("%s: cannot open", path);
    const char *base = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) die("%s: cannot map", path);
#ifdef MADV_HUGEPAGE
    madvise((void *)base, (size_t)st.st_size, MADV_HUGEPAGE);
#endif
    if (st.st_size < 4096 + (off_t)n * 4) die("%s: too small", path);
    size_t bytes = (size_t)st.st_size - 4096; /* past the header, at most 3 GiB */
    if (bytes > (size_t)3 << 30) bytes = (size_t)3 << 30;
    float *x = malloc((size_t)n * 4), *o = malloc(bytes / ((size_t)n * 2) * 4 + 64);
    if (!x || !o) die("out of memory");
    for (int i = 0; i < n; i++) x[i] = (float)i * 1e-4f;
    for (int dtype = DTYPE_F32; dtype <= DTYPE_BF16; dtype++) { /* the same bytes read as either */
        size_t es = dtype == DTYPE_F32 ? 4 : 2, rows = bytes / (n * es);
        double best = 1e30;
        for (int r = 0; r < 3; r++) {
            double t0 = seconds();
            for (size_t i0 = 0; i0 < rows; i0 += (size_t)ch) {
                int d = (int)(rows - i0 < (size_t)ch ? rows - i0 : (size_t)ch);
                matmul_fast(o, x, base + 4096 + i0 * n * es, 1, n, d, dtype);
            }
            if (seconds() - t0 < best) best = seconds() - t0;
        }
        printf("decode kernel, %s rows of %d in matrices of %d: %.1f GB/s\n", dtype == DTYPE_F32 ? "fp32" : "bf16", n, ch,
               rows * n * es / best / 1e9);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) die("usage: kernels THREADS [MODEL.bin [N [CH]]]");
    pool_start(atoi(argv[1]));
    cpu_is_amd();
    prefill();
    if (argc > 2) decode(argv[2], argc > 3 ? atoi(argv[3]) : 4096, argc > 4 ? atoi(argv[4]) : 14336);
    return 0;
}
