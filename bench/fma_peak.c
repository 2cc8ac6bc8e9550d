/* fma_peak.c - this machine's FP32 fused multiply-add peak, the limit of
 * prefill (each weight is used for a whole chunk of positions, so prefill
 * is arithmetic, not memory).
 *
 * Each thread runs 12 independent chains of vector multiply-adds (enough to
 * cover the FMA latency times the number of FMA units on current x86 and
 * Arm cores) on registers only, with the widest vectors the build targets:
 * AVX-512, AVX2+FMA, NEON, or plain vector extensions. Prints the best of
 * the repeats in GFLOPS (one FMA = 2 flops), for OMP_NUM_THREADS threads.
 * Build it with the flags of the raktn build it is compared with:
 *
 *   cc -O2 -march=native -fopenmp -o fma_peak bench/fma_peak.c
 *   cc -O2 -march=x86-64-v3 -fopenmp -o fma_peak-avx2 bench/fma_peak.c
 *   OMP_NUM_THREADS=2 ./fma_peak
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__AVX512F__)
#include <immintrin.h>
typedef __m512 V;
#define LANES 16
#define FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define SET(x) _mm512_set1_ps(x)
#define ISA "AVX-512"
#elif defined(__FMA__)
#include <immintrin.h>
typedef __m256 V;
#define LANES 8
#define FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define SET(x) _mm256_set1_ps(x)
#define ISA "AVX2+FMA"
#elif defined(__aarch64__)
#include <arm_neon.h>
typedef float32x4_t V;
#define LANES 4
#define FMA(a, b, c) vfmaq_f32(c, a, b)
#define SET(x) vdupq_n_f32(x)
#define ISA "NEON"
#else
typedef float V __attribute__((vector_size(16)));
#define LANES 4
#define FMA(a, b, c) ((a) * (b) + (c))
#define SET(x) ((V){0} + (x))
#define ISA "generic 4-wide"
#endif

#if defined(__x86_64__) || defined(__i386__)
#define KEEP(v) __asm__("" : "+x"(v))
#elif defined(__aarch64__)
#define KEEP(v) __asm__("" : "+w"(v))
#else
#define KEEP(v) ((void)0)
#endif
#define CHAINS 12
#define ITERS 20000000L

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* twelve chains in twelve named registers (an array indexed in a loop may
 * be kept in memory, which measures store forwarding, not the FMA units) */
#define CH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
static float run(void) {
    V a = SET(0.999999f), b = SET(1e-7f);
#define DECL(i) V c##i = SET((float)i);
    CH(DECL)
    for (long it = 0; it < ITERS; it++) {
#define STEP(i) c##i = FMA(c##i, a, b); KEEP(c##i);
        CH(STEP)
    }
    float out[LANES] = {0}, s = 0;
#define SUM(i) __builtin_memcpy(out, &c##i, sizeof out); s += out[0];
    CH(SUM)
    return s;
}

int main(void) {
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    double best = 0;
    volatile float sink = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_s();
#pragma omp parallel reduction(+ : sink)
        sink += run();
        double dt = now_s() - t0;
        double gflops = 2.0 * LANES * CHAINS * ITERS * threads / dt / 1e9;
        if (gflops > best) best = gflops;
    }
    printf("%s, %d thread(s): %.1f GFLOPS FP32 FMA peak\n", ISA, threads, best);
    return 0;
}
