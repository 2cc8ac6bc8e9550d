/* tests/test_truth.c - raktn's truth build (make truth: Part 1 of raktn.c
 * with every quantity in double) against an independent float64
 * computation of the same model (tests/ref64.py, numpy, written from
 * transformers' modeling_mistral.py; its outputs are committed as
 * tests/fixtures/NAME.logits.f64). They differ only by the order of
 * double-precision sums (model.bin keeps rope_theta and rms_norm_eps in
 * float64 as config.json gives them, notes/format.md): 1.1e-14 to 1.9e-14
 * measured. Allowed: 1e-12. And the fp32 transformers fixtures are within
 * their usual 1e-4 of the truth.
 * theta: rope_theta 1e6, rms_norm_eps 1e-6, an eps-sensitive first norm.
 * far: 4100 positions, the rows of far.json's
 * positions against float64 (there the fp32 HF logits are 2e-5 to 2.2e-4
 * from the truth: HF rounds the RoPE angle p * inv_freq to float32, which
 * at p ~ 4000 moves it by up to 1e-4 rad; notes/testing.md).
 */
#define CHUNK 7
#define RAKTN_NO_MAIN
#pragma GCC diagnostic ignored "-Wunused-function"
#include "../raktn.c"
#include <check.h>
#include "testutil.h"

static const struct { const char *name; int vocab; } CASES[] = {{"sw8", 512}, {"hd128", 1001}, {"theta", 256}};

START_TEST(test_truth_matches_float64_reference) {
    ck_assert_int_eq((int)sizeof(real), 8);
    char path[256];
    snprintf(path, sizeof path, "tests/work/models/%s/model.bin", CASES[_i].name);
    Model m = {0};
    load_model(&m, path);
    const Config *c = &m.config;
    ck_assert_int_eq(c->vocab_size, CASES[_i].vocab);
    snprintf(path, sizeof path, "tests/fixtures/%s.ids", CASES[_i].name);
    char *text = tu_read_file(path, NULL);
    ck_assert(text);
    int ids[256], n = tu_parse_ids(text, ids, 256);
    free(text);
    size_t V = (size_t)c->vocab_size, len;
    snprintf(path, sizeof path, "tests/fixtures/%s.logits.f64", CASES[_i].name);
    double *want = (double *)tu_read_file(path, &len);
    ck_assert_msg(want && len == (size_t)n * V * 8, "%s: wanted [%d, %zu] float64", path, n, V);
    snprintf(path, sizeof path, "tests/fixtures/%s.logits.f32", CASES[_i].name);
    float *hf = tu_read_f32(path, (size_t)n * V);
    ck_assert(hf);
    RunState s;
    init_state(&s, c, c->max_seq_len);
    double *got = calloc((size_t)n * V, sizeof(double)), worst = 0, worst_hf = 0;
    for (int i = 0; i < n; i += CHUNK) {
        int k = n - i < CHUNK ? n - i : CHUNK;
        forward_chunk(&m, &s, ids + i, k, i, got + (size_t)i * V, 1, NULL);
    }
    for (size_t i = 0; i < (size_t)n * V; i++) {
        worst = fmax(worst, fabs(got[i] - want[i]));
        worst_hf = fmax(worst_hf, fabs(got[i] - hf[i]));
    }
    ck_assert_msg(worst <= 1e-12, "%s: truth build differs from the float64 reference by %g", CASES[_i].name, worst);
    ck_assert_msg(worst_hf <= 1e-4, "%s: HF's fp32 logits differ from the truth by %g", CASES[_i].name, worst_hf);
    free(got), free(want), free(hf);
    free_state(&s);
    free_model(&m);
}
END_TEST

/* far: 4100 ids through checkpoint `long` (window 100), the logits at the
 * positions far.json lists (in the thousands) against tests/ref64.py's
 * float64 rows */
START_TEST(test_truth_far_positions) {
    static const int rows[] = {999, 1000, 2047, 2048, 3071, 4095, 4096, 4099};
    enum { NR = sizeof rows / sizeof rows[0], V = 256 };
    char *json = tu_read_file("tests/fixtures/far.json", NULL), *text = tu_read_file("tests/fixtures/far.ids", NULL);
    ck_assert(json && text);
    ck_assert_msg(strstr(json, "\"rows\": [\n  999,\n  1000,\n  2047,\n  2048,\n  3071,\n  4095,\n  4096,\n  4099\n ]"),
                  "far.json's rows are not this test's");
    int *ids = malloc(8192 * sizeof(int)), n = tu_parse_ids(text, ids, 8192);
    ck_assert_int_eq(n, 4100);
    size_t len;
    double *want = (double *)tu_read_file("tests/fixtures/far.rows.f64", &len);
    ck_assert(want && len == (size_t)NR * V * 8);
    Model m = {0};
    load_model(&m, "tests/work/models/long/model.bin");
    ck_assert_int_eq(m.config.vocab_size, V);
    RunState s;
    init_state(&s, &m.config, m.config.max_seq_len);
    double *got = calloc((size_t)CHUNK * V, sizeof(double)), worst = 0;
    for (int i = 0; i < n; i += CHUNK) {
        int k = n - i < CHUNK ? n - i : CHUNK, wanted = 0;
        for (int r = 0; r < NR; r++) wanted |= rows[r] >= i && rows[r] < i + k;
        forward_chunk(&m, &s, ids + i, k, i, wanted ? got : NULL, 1, NULL);
        for (int r = 0; r < NR; r++)
            if (rows[r] >= i && rows[r] < i + k)
                for (int v = 0; v < V; v++) worst = fmax(worst, fabs(got[(size_t)(rows[r] - i) * V + v] - want[r * V + v]));
    }
    ck_assert_msg(worst <= 1e-9, "far: truth build differs from the float64 reference by %g", worst);
    free(got), free(want), free(ids), free(json), free(text);
    free_state(&s);
    free_model(&m);
}
END_TEST

int main(void) {
    Suite *su = suite_create("truth");
    TCase *tc = tcase_create("float64");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_truth_matches_float64_reference, 0, 3);
    tcase_add_test(tc, test_truth_far_positions);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
