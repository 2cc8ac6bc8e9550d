/* tests/test_truth.c - raktn's truth build (make truth: Part 1 of raktn.c
 * with every quantity in double) against an independent float64
 * computation of the same model (tests/ref64.py, numpy, written from
 * transformers' modeling_mistral.py; its outputs are committed as
 * tests/fixtures/NAME.logits.f64). They differ only by the order of
 * double-precision sums and by rms_norm_eps, which model.bin stores as
 * float32 (1e-5 rounded: ~1.5e-10 on these logits; with the same eps,
 * 2e-14). Allowed: 1e-9. And the fp32 transformers fixtures are within
 * their usual 1e-4 of the truth.
 */
#define CHUNK 7
#define RAKTN_NO_MAIN
#pragma GCC diagnostic ignored "-Wunused-function"
#include "../raktn.c"
#include <check.h>
#include "testutil.h"

static const struct { const char *name; int vocab; } CASES[] = {{"sw8", 512}, {"hd128", 1001}};

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
    ck_assert_msg(worst <= 1e-9, "%s: truth build differs from the float64 reference by %g", CASES[_i].name, worst);
    ck_assert_msg(worst_hf <= 1e-4, "%s: HF's fp32 logits differ from the truth by %g", CASES[_i].name, worst_hf);
    free(got), free(want), free(hf);
    free_state(&s);
    free_model(&m);
}
END_TEST

int main(void) {
    Suite *su = suite_create("truth");
    TCase *tc = tcase_create("float64");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_truth_matches_float64_reference, 0, 2);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
