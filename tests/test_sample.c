/* tests/test_sample.c - turning logits into a token: argmax, softmax,
 * temperature, top-p, the random generator.
 *
 * The code under test is #included (like tests/test_model.c); logits are
 * raktn's `real` (float, or double in the truth build). Every
 * expectation here is computed independently of raktn.c: hand-made logits
 * whose answer is known, xorshift64* as published (Vigna 2016), and, for
 * sampling, the temperature + top-p distribution that Hugging Face's
 * TemperatureLogitsWarper and TopPLogitsWarper define, computed in double
 * precision with this file's own sort and cumulative sum, against which the
 * sampler's draws are held by a chi-square test.
 *
 * False-failure rate: every statistical assertion in this file is a
 * chi-square goodness-of-fit test at level ALPHA_EACH = ALPHA_ALL /
 * N_STAT_TESTS (Bonferroni), and there are at most N_STAT_TESTS of them
 * (checked at compile time), so with seeds drawn at random the
 * probability that a correct sampler fails any of them is <= ALPHA_ALL =
 * 1e-6 (up to the chi-square approximation of the multinomial, made safe by
 * pooling the cells expected to get fewer than 10 draws). The seeds are
 * fixed, so the suite is deterministic: a correct sampler passes every run.
 * Draws of a token outside the nucleus fail outright (probability 0 under a
 * correct sampler, so they add nothing to the rate).
 */
#define RAKTN_NO_MAIN
#pragma GCC diagnostic ignored "-Wunused-function" /* the CLI parts of raktn.c */
#include "../raktn.c"
#include <check.h>
#include "testutil.h"

#define ALPHA_ALL 1e-6
#define N_STAT_TESTS 24
#define ALPHA_EACH (ALPHA_ALL / N_STAT_TESTS)
#define MIN_EXPECTED 10.0 /* cells expected to get fewer draws are pooled */

/* ---------------------------------------------------------------- helpers */

/* Regularized upper incomplete gamma Q(a, x): the series for P when
 * x < a + 1, else the continued fraction for Q (modified Lentz). */
static double gamma_q(double a, double x) {
    if (x <= 0) return 1.0;
    double lg = lgamma(a);
    if (x < a + 1) {
        double term = 1.0 / a, sum = term;
        for (int k = 1; k < 10000; k++) {
            term *= x / (a + k);
            sum += term;
            if (fabs(term) < fabs(sum) * 1e-16) break;
        }
        return 1.0 - sum * exp(-x + a * log(x) - lg);
    }
    double b = x + 1 - a, c = 1e300, d = 1 / b, h = d;
    for (int k = 1; k < 10000; k++) {
        double an = -k * (k - a);
        b += 2;
        d = an * d + b;
        if (fabs(d) < 1e-300) d = 1e-300;
        c = b + an / c;
        if (fabs(c) < 1e-300) c = 1e-300;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < 1e-16) break;
    }
    return exp(-x + a * log(x) - lg) * h;
}

/* The sampler's draws (counts[n], draws in all) against the probabilities
 * prob[n] (summing to 1): any draw where prob is 0 fails; the rest is a
 * chi-square goodness-of-fit test at ALPHA_EACH, cells with expected counts
 * under MIN_EXPECTED pooled into one (merged into the smallest other cell if
 * the pool is still under it). Returns the p-value (for the log). */
static double assert_distribution(const long *counts, const double *prob, int n, long draws, const char *what) {
    double pool_e = 0, stat = 0;
    long pool_o = 0;
    int cells = 0, smallest = -1;
    for (int i = 0; i < n; i++) {
        ck_assert_msg(prob[i] > 0 || counts[i] == 0, "%s: token %d drawn %ld times, but it is outside the nucleus",
                      what, i, counts[i]);
        double e = prob[i] * draws;
        if (e < MIN_EXPECTED) {
            pool_e += e, pool_o += counts[i];
        } else if (smallest < 0 || e < prob[smallest] * draws) {
            smallest = i;
        }
    }
    for (int i = 0; i < n; i++) {
        double e = prob[i] * draws;
        if (e < MIN_EXPECTED) continue;
        if (i == smallest && pool_e > 0 && pool_e < MIN_EXPECTED) continue; /* merged with the pool below */
        stat += (counts[i] - e) * (counts[i] - e) / e, cells++;
    }
    if (pool_e > 0 && pool_e < MIN_EXPECTED && smallest >= 0) pool_e += prob[smallest] * draws, pool_o += counts[smallest];
    if (pool_e > 0) stat += (pool_o - pool_e) * (pool_o - pool_e) / pool_e, cells++;
    else ck_assert_msg(pool_o == 0, "%s: %ld draws where none were expected", what, pool_o);
    int df = cells - 1;
    double pv = df > 0 ? gamma_q(df / 2.0, stat / 2.0) : 1.0;
    ck_assert_msg(pv >= ALPHA_EACH, "%s: chi-square %.1f with %d degrees of freedom, p = %.3g < %.3g: the draws do "
                  "not follow the expected distribution", what, stat, df, pv, ALPHA_EACH);
    return pv;
}

/* What HF's TemperatureLogitsWarper + TopPLogitsWarper leave to sample from,
 * in double precision: softmax(logits / T); then, for 0 < top_p < 1, the
 * most probable tokens, in decreasing order, up to and including the first
 * at which the cumulative probability reaches top_p, renormalized to sum 1.
 * *margin gets the distance between top_p and the nearest cumulative sum
 * (a case whose margin is tiny would depend on float rounding). */
static void nucleus(const real *logits, int n, double T, double top_p, double *prob, double *margin) {
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++) mx = fmax(mx, logits[i] / T);
    for (int i = 0; i < n; i++) sum += prob[i] = exp(logits[i] / T - mx);
    for (int i = 0; i < n; i++) prob[i] /= sum;
    *margin = INFINITY;
    if (top_p <= 0 || top_p >= 1) return;
    int *order = malloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) { /* insertion sort, most probable first */
        int j = i;
        while (j > 0 && prob[order[j - 1]] < prob[i]) { order[j] = order[j - 1]; j--; }
        order[j] = i;
    }
    double cum = 0;
    int k = 0;
    for (; k < n; k++) {
        cum += prob[order[k]];
        *margin = fmin(*margin, fabs(cum - top_p));
        if (cum >= top_p) break;
    }
    for (int j = k + 1; j < n; j++) prob[order[j]] = 0;
    for (int i = 0; i < n; i++) prob[i] /= cum;
    free(order);
}

/* sample() on a copy of the logits (it works in place) */
static int draw(Sampler *sp, const real *logits, real *scratch, int n) {
    memcpy(scratch, logits, (size_t)n * sizeof(real));
    return sample(sp, scratch, n);
}

/* counts[n] of `draws` draws at (T, top_p) from a seeded sampler */
static void draw_many(const real *logits, int n, float T, float top_p, uint64_t seed, long draws, long *counts) {
    Sampler sp = {.temperature = T, .top_p = top_p, .rng = seed, .idx = malloc((size_t)n * sizeof(int))};
    real *scratch = malloc((size_t)n * sizeof(real));
    memset(counts, 0, (size_t)n * sizeof(long));
    for (long d = 0; d < draws; d++) {
        int t = draw(&sp, logits, scratch, n);
        ck_assert_msg(t >= 0 && t < n, "sample returned %d for %d logits", t, n);
        counts[t]++;
    }
    free(scratch);
    free(sp.idx);
}

/* ------------------------------------------------------------------ tests */

/* The test's own statistics, against published chi-square quantiles */
START_TEST(test_chi_square_p_values) {
    static const struct { int df; double x, p; } q[] = {
        {1, 3.841459, 0.05}, {3, 0.3518463, 0.95}, {10, 29.58827, 0.001}, {2, 27.63102, 1e-6}, {40, 55.75848, 0.05},
    };
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        double got = gamma_q(q[i].df / 2.0, q[i].x / 2.0);
        ck_assert_msg(fabs(got - q[i].p) < 1e-4 * q[i].p, "chi-square(%d) > %g: p %.6g, want %.6g", q[i].df, q[i].x,
                      got, q[i].p);
    }
}
END_TEST

/* torch.argmax: the FIRST index of the maximum; greedy sampling is argmax */
START_TEST(test_argmax_ties_go_to_the_first) {
    const real a[] = {1, 3, 3, 2}, b[] = {5, 5, 5}, c[] = {-1, -2, -1, -1},
               d[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 9};
    ck_assert_int_eq(argmax(a, 4), 1);
    ck_assert_int_eq(argmax(b, 3), 0);
    ck_assert_int_eq(argmax(c, 4), 0);
    ck_assert_int_eq(argmax(d, 18), 16);
    ck_assert_int_eq(argmax(a, 1), 0);
    real x[18];
    Sampler sp = {.temperature = 0.0f, .top_p = 0.9f, .rng = 1, .idx = malloc(18 * sizeof(int))};
    ck_assert_int_eq(draw(&sp, a, x, 4), 1);
    ck_assert_int_eq(draw(&sp, b, x, 3), 0);
    ck_assert_int_eq(draw(&sp, d, x, 18), 16);
    free(sp.idx);
}
END_TEST

/* The maximum in softmax's scalar tail (n not a multiple of 16), leading
 * the rest by more than the ~88 where e^x leaves the floats: softmax{0, 100}
 * is {e^-100 / (1 + e^-100), 1}, i.e. {0 (or a denormal), 1} in floats. */
START_TEST(test_softmax_max_in_the_tail) {
    static const int lengths[] = {1, 2, 3, 15, 17, 31, 33, 47};
    for (size_t k = 0; k < sizeof lengths / sizeof lengths[0]; k++) {
        int n = lengths[k];
        for (int at = 0; at < n; at++) { /* the big one at every place, the tail's last included */
            real x[64];
            for (int i = 0; i < n; i++) x[i] = (float)(i % 3) - 1.0f; /* -1, 0, 1, ... */
            x[at] = 100.0f;
            softmax(x, n);
            for (int i = 0; i < n; i++) {
                double want = i == at ? 1.0 : 0.0;
                ck_assert_msg(x[i] >= 0.0f && fabs(x[i] - want) <= 1e-30 + 1e-6 * want,
                              "softmax of %d values, 100 at %d: p[%d] = %g, want %g", n, at, i, x[i], want);
            }
        }
    }
    real two[2] = {0.0f, 100.0f};
    softmax(two, 2);
    ck_assert_msg(two[0] >= 0.0f && two[0] < 1e-30f && two[1] == 1.0f, "softmax{0, 100} = {%g, %g}", two[0], two[1]);
    /* the same through the sampler: token 1 every time, with and without top-p */
    const real logits[] = {0.0f, 100.0f};
    real s[2];
    for (int pi = 0; pi < 2; pi++) {
        Sampler sp = {.temperature = 1.0f, .top_p = pi ? 0.9f : 1.0f, .rng = 5, .idx = malloc(2 * sizeof(int))};
        for (int d = 0; d < 1000; d++) ck_assert_int_eq(draw(&sp, logits, s, 2), 1);
        free(sp.idx);
    }
}
END_TEST

/* softmax against a double-precision one on small hand-made inputs */
START_TEST(test_softmax_values) {
    real x[5] = {1.0f, 2.0f, 3.0f, 4.0f, -INFINITY};
    double e[4] = {exp(-3.0), exp(-2.0), exp(-1.0), 1.0}, s = e[0] + e[1] + e[2] + e[3];
    softmax(x, 5);
    for (int i = 0; i < 4; i++) ck_assert_msg(fabs(x[i] - e[i] / s) < 1e-7, "p[%d] = %.9g, want %.9g", i, x[i], e[i] / s);
    ck_assert(x[4] == 0.0f);
}
END_TEST

/* Temperature divides the logits: p ~ exp(logit / T). Logits 0, 1, 2, 3 at
 * T = 0.5 give weights 1 : e^2 : e^4 : e^6, at T = 2 1 : e^0.5 : e : e^1.5
 * (multiplying would swap the two). No top-p (1.0), then with top-p 0.99,
 * which at T = 2 keeps all four tokens and at T = 0.5 drops token 0. */
START_TEST(test_temperature_divides) {
    const real logits[4] = {0, 1, 2, 3};
    const float temps[2] = {0.5f, 2.0f}, tops[2] = {1.0f, 0.99f};
    const long N = 40000;
    for (int ti = 0; ti < 2; ti++)
        for (int pi = 0; pi < 2; pi++) {
            double w[4], sum = 0;
            for (int i = 0; i < 4; i++) sum += w[i] = exp(i / (double)temps[ti]);
            for (int i = 0; i < 4; i++) w[i] /= sum;
            if (pi == 1 && ti == 0) { /* 1 - p(token 0) = 0.9977 >= 0.99: token 0 is out */
                ck_assert(w[3] + w[2] + w[1] >= 0.99 + 1e-4 && w[3] + w[2] < 0.99 - 1e-4);
                for (int i = 1; i < 4; i++) w[i] /= 1 - w[0];
                w[0] = 0;
            }
            long counts[4];
            draw_many(logits, 4, temps[ti], tops[pi], 1000 + 10 * ti + pi, N, counts);
            char what[64];
            snprintf(what, sizeof what, "T=%g top_p=%g", temps[ti], tops[pi]);
            assert_distribution(counts, w, 4, N, what);
        }
}
END_TEST

/* A nucleus boundary exactly at p: n equal logits give probabilities 1/n
 * exactly (in floats too), so the cumulative sums are exact. HF keeps the
 * tokens up to and including the one whose cumulative probability reaches
 * top_p: 4 tokens at p = 0.5 -> 2 of them, 8 at 0.375 -> 3, 4 at 0.25 -> 1,
 * 4 at 0.75 -> 3, each then drawn with the same probability (the draw is
 * renormalized to the nucleus). Which of the tied tokens are kept is not
 * specified (torch.sort does not promise an order), so the test counts the
 * distinct tokens drawn and checks that they are equally likely. A token
 * with logit -inf (probability 0) is never drawn. */
START_TEST(test_nucleus_boundary_exactly_at_p) {
    static const struct { int n; float top_p; int keep; } cases[] = {
        {4, 0.5f, 2}, {8, 0.375f, 3}, {4, 0.25f, 1}, {4, 0.75f, 3}, {5, 0.5f, 2},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int n = cases[k].n;
        real logits[8];
        for (int i = 0; i < n; i++) logits[i] = 0.5f;
        int total = n;
        if (n == 5) logits[2] = -INFINITY, total = 4; /* 4 tokens of 1/4 and one of 0 */
        const long N = 20000;
        for (int ti = 0; ti < 2; ti++) {
            float T = ti ? 0.7f : 1.0f; /* equal logits stay equal at any temperature */
            long counts[8];
            draw_many(logits, n, T, cases[k].top_p, 77 + k, N, counts);
            int distinct = 0;
            for (int i = 0; i < n; i++) distinct += counts[i] > 0;
            ck_assert_msg(distinct == cases[k].keep, "%d equal tokens (of %d), top_p %g: %d distinct tokens drawn, "
                          "want %d", total, n, cases[k].top_p, distinct, cases[k].keep);
            if (n == 5) ck_assert_int_eq(counts[2], 0);
            double p[8];
            for (int i = 0; i < n; i++) p[i] = counts[i] > 0 ? 1.0 / cases[k].keep : 0.0;
            char what[80];
            snprintf(what, sizeof what, "%d equal tokens, top_p %g, T %g", total, cases[k].top_p, T);
            if (cases[k].keep > 1) assert_distribution(counts, p, n, N, what);
        }
    }
}
END_TEST

/* A temperature so small that logit / T overflows (1.2e-38, the smallest
 * normal float, and 1e-45, the smallest denormal): the limit T -> 0 of
 * softmax(logits / T) puts all the mass on the maximum, so every draw is the
 * argmax, with top-p below 1 and without it (before the fix, logit / T
 * overflowed to +-inf, softmax gave NaN and the draw was token 0 with top-p
 * and token n-1 without). Logits spread over +-50, the maximum at the start,
 * the middle and in the last place; tied maxima: only they are drawn. */
START_TEST(test_tiny_temperature_is_argmax) {
    enum { n = 33 };
    const float temps[] = {1.2e-38f, 1e-45f, 1e-30f, 1e-6f};
    const float tops[] = {0.5f, 0.9f, 1.0f};
    for (int where = 0; where < 4; where++) {
        real logits[n], x[n];
        for (int i = 0; i < n; i++) logits[i] = (real)(((i * 37) % n) * 3.0 - 50.0); /* distinct, -50 .. 46 */
        int best = argmax(logits, n);
        int at = where == 0 ? 0 : where == 1 ? n / 2 : n - 1;
        if (where < 3) { /* move the maximum to `at` */
            real t = logits[at];
            logits[at] = logits[best];
            logits[best] = t;
            best = at;
        } else { /* a tie: the maximum twice */
            logits[n - 1] = logits[best];
        }
        for (size_t ti = 0; ti < sizeof temps / sizeof temps[0]; ti++)
            for (size_t pi = 0; pi < sizeof tops / sizeof tops[0]; pi++) {
                Sampler sp = {.temperature = temps[ti], .top_p = tops[pi], .rng = 99 + ti, .idx = malloc(n * sizeof(int))};
                int seen_tie = 0;
                for (int d = 0; d < 200; d++) {
                    int t = draw(&sp, logits, x, n);
                    if (where < 3) {
                        ck_assert_msg(t == best, "T=%g top_p=%g, maximum at %d: drew %d", temps[ti], tops[pi], best, t);
                    } else {
                        ck_assert_msg(t == best || t == n - 1, "T=%g top_p=%g, maxima at %d and %d: drew %d", temps[ti],
                                      tops[pi], best, n - 1, t);
                        seen_tie |= t == n - 1 ? 2 : 1;
                    }
                }
                /* two equal maxima at any temperature: each with probability 1/2 (top-p 0.5 keeps one) */
                if (where == 3 && tops[pi] > 0.5f) ck_assert_msg(seen_tie == 3, "T=%g: one of two tied maxima never drawn", temps[ti]);
                free(sp.idx);
            }
    }
}
END_TEST

/* The statistical test: for several (temperature, top_p), 40000 draws each
 * from a fixed seed against the nucleus distribution computed here in
 * double precision (nucleus() above). 64 logits ~ N(0, 2^2) (this file's
 * own generator), so the nucleus holds a handful to tens of tokens. */
static const struct { float T, top_p; } STAT_CASES[] = {
    {1.0f, 0.9f}, {0.5f, 0.9f}, {2.0f, 0.9f}, {1.0f, 0.5f}, {0.7f, 0.95f}, {1.5f, 1.0f}, {1.3f, 0.3f}, {3.0f, 0.8f},
};
#define N_STAT_CASES ((int)(sizeof STAT_CASES / sizeof STAT_CASES[0]))

START_TEST(test_sampling_distribution) {
    enum { n = 64 };
    real logits[n];
    uint64_t g = 12345; /* a 64-bit LCG (Knuth's MMIX constants) and Box-Muller */
    for (int i = 0; i < n; i += 2) {
        double u[2];
        for (int j = 0; j < 2; j++) {
            g = g * 6364136223846793005ULL + 1442695040888963407ULL;
            u[j] = ((g >> 11) + 0.5) / 9007199254740992.0;
        }
        double r = sqrt(-2 * log(u[0]));
        logits[i] = (float)(2 * r * cos(2 * M_PI * u[1]));
        logits[i + 1] = (float)(2 * r * sin(2 * M_PI * u[1]));
    }
    float T = STAT_CASES[_i].T, top_p = STAT_CASES[_i].top_p;
    double prob[n], margin;
    nucleus(logits, n, T, top_p, prob, &margin);
    /* a well-posed case: float rounding cannot move the boundary */
    ck_assert_msg(margin > 1e-4, "test case T=%g top_p=%g has a cumulative sum within %g of top_p", T, top_p, margin);
    int in = 0;
    for (int i = 0; i < n; i++) in += prob[i] > 0;
    const long N = 40000;
    long counts[n];
    draw_many(logits, n, T, top_p, 2024 + (uint64_t)_i, N, counts);
    char what[80];
    snprintf(what, sizeof what, "T=%g top_p=%g (%d tokens in the nucleus)", T, top_p, in);
    double pv = assert_distribution(counts, prob, n, N, what);
    if (getenv("RAKTN_TEST_VERBOSE")) fprintf(stderr, "%s: p-value %.3g\n", what, pv);
}
END_TEST

/* The generator is xorshift64* (Vigna, "An experimental exploration of
 * Marsaglia's xorshift generators, scrambled", 2016: shifts 12, 25, 27,
 * multiplier 0x2545F4914F6CDD1D), of which raktn takes the high 32 bits,
 * and random_f32 the top 24 of those as a float in [0, 1). Pinned so that
 * -s SEED keeps giving the same text across rewrites. */
START_TEST(test_rng_is_xorshift64star) {
    uint64_t seeds[] = {1, 42, 0x123456789ABCDEFULL, ~0ULL};
    for (size_t k = 0; k < sizeof seeds / sizeof seeds[0]; k++) {
        uint64_t mine = seeds[k], theirs = seeds[k], theirs_f = seeds[k];
        for (int i = 0; i < 1000; i++) {
            mine ^= mine >> 12;
            mine ^= mine << 25;
            mine ^= mine >> 27;
            uint32_t want = (uint32_t)((mine * 0x2545F4914F6CDD1DULL) >> 32);
            ck_assert_uint_eq(random_u32(&theirs), want);
            float f = random_f32(&theirs_f);
            ck_assert_msg(f == (float)(want >> 8) / 16777216.0f && f >= 0.0f && f < 1.0f, "random_f32 gave %.9g", f);
        }
    }
}
END_TEST

/* The Bonferroni split above assumes at most N_STAT_TESTS chi-square tests:
 * 4 in test_temperature_divides, at most 2 per case of
 * test_nucleus_boundary_exactly_at_p (5 cases), one per STAT_CASES entry. */
_Static_assert(4 + 2 * 5 + N_STAT_CASES <= N_STAT_TESTS, "raise N_STAT_TESTS (and so lower ALPHA_EACH)");

Suite *sample_suite(void) {
    Suite *s = suite_create("sample");
    TCase *tc = tcase_create("sampler");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_chi_square_p_values);
    tcase_add_test(tc, test_argmax_ties_go_to_the_first);
    tcase_add_test(tc, test_softmax_max_in_the_tail);
    tcase_add_test(tc, test_softmax_values);
    tcase_add_test(tc, test_temperature_divides);
    tcase_add_test(tc, test_tiny_temperature_is_argmax);
    tcase_add_test(tc, test_nucleus_boundary_exactly_at_p);
    tcase_add_loop_test(tc, test_sampling_distribution, 0, N_STAT_CASES);
    tcase_add_test(tc, test_rng_is_xorshift64star);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(sample_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
