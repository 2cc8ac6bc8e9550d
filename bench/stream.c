/* stream.c - this machine's memory READ bandwidth, the limit of decode.
 *
 * Decoding one token reads every weight once, so the best possible decode
 * speed is bandwidth / bytes per token. Like STREAM, but the kernel is a
 * pure read (a sum, 16 partial sums as in raktn's matmul) over an array far
 * larger than the caches, split over the OpenMP threads as raktn splits a
 * matmul's rows. Prints the best of the repeats, in GB/s (1e9 bytes).
 *
 * The array is what lets memory go fastest, so that the roofline is not
 * flattered: 2 MB aligned and advised to huge pages. malloc's 16-byte
 * aligned array, each vector load straddling two cache lines, measured
 * 36-37 GB/s on one core where this measures 40-41 (notes/performance.md).
 *
 *   cc -O3 -march=native -fopenmp -o stream bench/stream.c
 *   OMP_NUM_THREADS=2 ./stream [MiB, default 2048] [repeats, default 8]
 */
#define _DEFAULT_SOURCE /* madvise */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define BLOCK 4096

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 2048;
    int reps = argc > 2 ? atoi(argv[2]) : 8;
    size_t n = mib * (1 << 20) / sizeof(float);
    n -= n % BLOCK;
    float *a = NULL;
    if (posix_memalign((void **)&a, 2 << 20, n * sizeof(float)) != 0) {
        fprintf(stderr, "stream: out of memory\n");
        return 1;
    }
#ifdef MADV_HUGEPAGE
    madvise(a, n * sizeof(float), MADV_HUGEPAGE); /* a hint: its result does not matter */
#endif
    long i;
#pragma omp parallel for schedule(static)
    for (i = 0; i < (long)n; i++) a[i] = (float)(i & 1023) * 1e-3f;   /* first touch by the reading thread */
    double best = 1e30, total = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s(), sum = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum)
        for (i = 0; i < (long)(n / BLOCK); i++) {   /* 16 KiB blocks, like a 4096-wide weight row */
            const float *p = a + (size_t)i * BLOCK;
            float acc[16] = {0}, s = 0;
            for (int k = 0; k < BLOCK; k += 16)
                for (int j = 0; j < 16; j++) acc[j] += p[k + j];
            for (int j = 0; j < 16; j++) s += acc[j];
            sum += s;
        }
        double t = now_s() - t0;
        if (t < best) best = t;
        total += sum;
    }
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    printf("read bandwidth: %.2f GB/s (%zu MiB, best of %d, %d threads) [checksum %g]\n",
           n * sizeof(float) / best / 1e9, mib, reps, threads, total);
    free(a);
    return 0;
}
