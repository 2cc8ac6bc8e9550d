/* tests/test_model.c - raktn's forward pass against Hugging Face transformers.
 *
 * Like llm.c's test_gpt2.c: the code under test is #included, and its
 * outputs are compared with tensors dumped by the PyTorch reference
 * (tests/fixtures/NAME.logits.f32 and NAME.hidden.f32, made by export/reference.py
 * running transformers' MistralForCausalLM; see tests/fixtures/README.md).
 * The checkpoints themselves are regenerated bit for bit by
 * tests/prepare.sh (sha256-checked), then exported with export/export.py.
 *
 * CHUNK is set small here so that every sequence crosses several prefill
 * chunks (the real binary, with CHUNK 128, is exercised by tests/test_cli.c).
 */
#define CHUNK 5
#define _GNU_SOURCE /* strndup */
#define RAKTN_NO_MAIN
#pragma GCC diagnostic ignored "-Wunused-function" /* the CLI parts of raktn.c */
#include "../raktn.c"
#include <check.h>
#include "testutil.h"

#define TOL 1e-4f  /* max |logit difference| allowed; HF vs float64 numpy is ~1e-5 */

typedef struct {
    const char *ref;   /* tests/fixtures/REF.* */
    const char *model; /* tests/work/models/MODEL/model.bin */
} Case;

/* Every checkpoint container we export, and the reference it must match.
 * t48k-*: one set of weights (vocab 48000) stored as bf16, fp16, fp32,
 * sharded fp32 and as a LlamaForCausalLM; sw8: window 8 over 40 tokens;
 * tied: tie_word_embeddings; wide: GQA 4:1, head_dim 16, window 16;
 * hd128: the 7B's head_dim 128, window 12 over 30 tokens, intermediate 500
 * and vocab 1001 (not multiples of the matmul tiles); long: window 100 over
 * 260 tokens (52 chunks of 5 here, the ring wrapped twice); theta:
 * rope_theta 1e6 and rms_norm_eps 1e-6 with embeddings so small (std 0.002)
 * that the first RMSNorm depends on eps. */
static const Case CASES[] = {
    {"t48k", "t48k-bf16"}, {"t48k", "t48k-fp16"}, {"t48k", "t48k-fp32"}, {"t48k", "t48k-sharded"},
    {"t48k", "t48k-llama"}, {"t48k", "t48k-bf16-b16"}, {"sw8", "sw8"}, {"sw8", "sw8-b16"},
    {"sw8gen", "sw8"}, {"tied", "tied"}, {"wide", "wide"}, {"hd128", "hd128"}, {"long", "long"},
    {"theta", "theta"},
};
#define N_CASES ((int)(sizeof CASES / sizeof CASES[0]))

typedef struct {
    Model m;
    int *ids, n;
    float *ref_logits, *ref_hidden;
} Fixture;

static void fixture_open(Fixture *f, const Case *cs) {
    char path[512];
    memset(f, 0, sizeof *f);
    snprintf(path, sizeof path, "tests/work/models/%s/model.bin", cs->model);
    load_model(&f->m, path);
    snprintf(path, sizeof path, "tests/fixtures/%s.ids", cs->ref);
    char *text = tu_read_file(path, NULL);
    ck_assert_msg(text != NULL, "missing %s", path);
    f->ids = malloc(4096 * sizeof(int));
    f->n = tu_parse_ids(text, f->ids, 4096);
    free(text);
    ck_assert_int_gt(f->n, 0);
    const Config *c = &f->m.config;
    snprintf(path, sizeof path, "tests/fixtures/%s.logits.f32", cs->ref);
    f->ref_logits = tu_read_f32(path, (size_t)f->n * c->vocab_size);
    ck_assert_msg(f->ref_logits != NULL, "%s missing or not [%d, %d] float32", path, f->n, c->vocab_size);
    snprintf(path, sizeof path, "tests/fixtures/%s.hidden.f32", cs->ref);
    f->ref_hidden = tu_read_f32(path, (size_t)(c->n_layers + 1) * f->n * c->dim);
    ck_assert_msg(f->ref_hidden != NULL, "%s missing or wrong size", path);
}

static void fixture_close(Fixture *f) {
    free(f->ids);
    free(f->ref_logits);
    free(f->ref_hidden);
    free_model(&f->m);
}

/* One batched pass over the whole sequence (CHUNK positions at a time);
 * hidden: NULL or HF's output_hidden_states, collected as --hidden does. */
static void run_all(Fixture *f, float *logits, float *hidden) {
    RunState s;
    const Config *c = &f->m.config;
    init_state(&s, c, c->max_seq_len);
    Hidden hs = {{hidden_output, NULL}, hidden, f->n, c->n_layers, c->dim};
    for (int i = 0; i < f->n; i += CHUNK) {
        int len = f->n - i < CHUNK ? f->n - i : CHUNK;
        forward_chunk(&f->m, &s, f->ids + i, len, i, logits + (size_t)i * c->vocab_size, 1, hidden ? &hs.trace : NULL);
    }
    free_state(&s);
}

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= m)) m = d;   /* also catches NaN */
    }
    return m;
}

static void assert_logits_match(const Fixture *f, const float *logits, const char *what) {
    int V = f->m.config.vocab_size;
    float d = max_abs_diff(logits, f->ref_logits, (size_t)f->n * V);
    ck_assert_msg(d <= TOL, "%s: max |dlogit| = %g > %g", what, d, TOL);
    for (int p = 0; p < f->n; p++) {
        int a = argmax(logits + (size_t)p * V, V), b = argmax(f->ref_logits + (size_t)p * V, V);
        ck_assert_msg(a == b, "%s: argmax differs at position %d: %d vs HF %d", what, p, a, b);
    }
}

/* One batched pass over case k's sequence, its logits held to HF's */
static void check_logits_match_hf(int k, const char *label) {
    Fixture f;
    fixture_open(&f, &CASES[k]);
    float *logits = calloc((size_t)f.n * f.m.config.vocab_size, sizeof(float));
    run_all(&f, logits, NULL);
    char what[128];
    snprintf(what, sizeof what, "%s%s vs HF %s", label, CASES[k].model, CASES[k].ref);
    assert_logits_match(&f, logits, what);
    free(logits);
    fixture_close(&f);
}

START_TEST(test_logits_match_hf) {
    check_logits_match_hf(_i, "");
}
END_TEST

/* HF output_hidden_states: embeddings, each layer's output, final norm */
START_TEST(test_hidden_states_match_hf) {
    Fixture f;
    fixture_open(&f, &CASES[_i]);
    const Config *c = &f.m.config;
    float *logits = calloc((size_t)f.n * c->vocab_size, sizeof(float));
    float *hidden = calloc((size_t)(c->n_layers + 1) * f.n * c->dim, sizeof(float));
    run_all(&f, logits, hidden);
    for (int k = 0; k <= c->n_layers; k++) {
        size_t off = (size_t)k * f.n * c->dim;
        float d = max_abs_diff(hidden + off, f.ref_hidden + off, (size_t)f.n * c->dim);
        ck_assert_msg(d <= TOL, "%s: hidden state %d differs from HF by %g", CASES[_i].model, k, d);
    }
    free(logits);
    free(hidden);
    fixture_close(&f);
}
END_TEST

/* Decoding one token at a time through the KV cache (the matrix-vector
 * kernel) must match the batched pass (the tiled matrix-matrix kernel) and
 * therefore the HF full-sequence reference. The two kernels add in different
 * fixed orders (raktn.c: dot_rows, matmul_tile), so they agree to rounding
 * (~1e-5 here), not bit for bit. */
static void run_one_by_one(Fixture *f, float *logits) {
    RunState s;
    int V = f->m.config.vocab_size;
    init_state(&s, &f->m.config, f->m.config.max_seq_len);
    for (int p = 0; p < f->n; p++) forward_chunk(&f->m, &s, &f->ids[p], 1, p, logits + (size_t)p * V, 1, NULL);
    free_state(&s);
}

START_TEST(test_one_token_at_a_time_matches_batched) {
    Fixture f;
    fixture_open(&f, &CASES[_i]);
    int V = f.m.config.vocab_size;
    float *batched = calloc((size_t)f.n * V, sizeof(float));
    float *single = calloc((size_t)f.n * V, sizeof(float));
    run_all(&f, batched, NULL);
    run_one_by_one(&f, single);
    float d = max_abs_diff(batched, single, (size_t)f.n * V);
    ck_assert_msg(d <= 5e-5f, "%s: token-by-token logits differ from batched by %g", CASES[_i].model, d);
    assert_logits_match(&f, single, "token by token");
    free(batched);
    free(single);
    fixture_close(&f);
}
END_TEST

/* export --dtype bf16 stores the bf16 checkpoint as it is; raktn widens it
 * exactly, so the logits are bit-identical to the fp32 file's, through the
 * batched kernel and through the decode kernel. */
START_TEST(test_bf16_storage_is_bit_identical) {
    const char *pairs[][3] = {{"t48k", "t48k-bf16", "t48k-bf16-b16"}, {"sw8", "sw8", "sw8-b16"}};
    for (int i = 0; i < 2; i++) {
        Case a = {pairs[i][0], pairs[i][1]}, b = {pairs[i][0], pairs[i][2]};
        Fixture fa, fb;
        fixture_open(&fa, &a);
        fixture_open(&fb, &b);
        ck_assert_int_eq(fa.m.config.dtype, DTYPE_F32);
        ck_assert_int_eq(fb.m.config.dtype, DTYPE_BF16);
        ck_assert_uint_eq((fb.m.map_size - HEADER_SIZE) * 2, fa.m.map_size - HEADER_SIZE); /* half the bytes */
        size_t nl = (size_t)fa.n * fa.m.config.vocab_size;
        float *la = calloc(nl, sizeof(float)), *lb = calloc(nl, sizeof(float));
        run_all(&fa, la, NULL); /* the batched kernel */
        run_all(&fb, lb, NULL);
        ck_assert_msg(memcmp(la, lb, nl * sizeof(float)) == 0, "%s: bf16 storage changed the logits", pairs[i][2]);
        run_one_by_one(&fa, la); /* the decode kernel */
        run_one_by_one(&fb, lb);
        ck_assert_msg(memcmp(la, lb, nl * sizeof(float)) == 0, "%s: bf16 storage changed the decoded logits",
                      pairs[i][2]);
        free(la);
        free(lb);
        fixture_close(&fa);
        fixture_close(&fb);
    }
}
END_TEST

/* The ring buffer holds only `window` positions, yet sw8's 40 tokens
 * (5 wraps of an 8-slot ring) match HF (test_logits_match_hf). */
START_TEST(test_kv_cache_is_bounded_by_window) {
    Fixture f;
    Case cs = {"sw8", "sw8"};
    fixture_open(&f, &cs);
    RunState s;
    init_state(&s, &f.m.config, f.m.config.max_seq_len);
    ck_assert_int_eq(f.m.config.sliding_window, 8);
    ck_assert_int_eq(s.cache_len, 8);
    free_state(&s);
    init_state(&s, &f.m.config, 5); /* a context shorter than the window */
    ck_assert_int_eq(s.cache_len, 5);
    free_state(&s);
    fixture_close(&f);
}
END_TEST

/* Greedy decoding (-t 0) reproduces HF generate(do_sample=False): the
 * fixture sw8gen.ids is the 6-token prompt (sw8gen.json: generate.prompt_ids)
 * followed by the 34 tokens HF generated from it. */
#define SW8GEN_PROMPT 6
START_TEST(test_greedy_matches_hf_generate) {
    char *text = tu_read_file("tests/fixtures/sw8gen.ids", NULL);
    ck_assert_msg(text != NULL, "missing tests/fixtures/sw8gen.ids");
    int seq[256];
    int n_seq = tu_parse_ids(text, seq, 256);
    free(text);
    ck_assert_int_eq(n_seq, 40);
    const int *prompt = seq, *want = seq + SW8GEN_PROMPT;
    int n_prompt = SW8GEN_PROMPT, n_want = n_seq - SW8GEN_PROMPT;
    Model m = {0};
    load_model(&m, "tests/work/models/sw8/model.bin");
    RunState s;
    init_state(&s, &m.config, m.config.max_seq_len);
    Sampler sp = {.temperature = 0};
    float *logits = forward(&m, &s, prompt, n_prompt, 0);
    int pos = n_prompt;
    for (int i = 0; i < n_want; i++) {
        int next = sample(&sp, logits, m.config.vocab_size);
        ck_assert_msg(next == want[i], "generated token %d: raktn %d, HF %d", i, next, want[i]);
        logits = forward(&m, &s, &next, 1, pos++);
    }
    free_state(&s);
    free_model(&m);
}
END_TEST

/* Far past the window (200 tokens, window 8, 25 wraps of the ring): greedy
 * generation one token at a time must agree with one batched pass over the
 * whole generated sequence, position for position. */
START_TEST(test_long_generation_past_the_window) {
    Model m = {0};
    load_model(&m, "tests/work/models/sw8/model.bin");
    int V = m.config.vocab_size, n = 200;
    int seq[200] = {1, 7, 42};
    RunState s;
    init_state(&s, &m.config, m.config.max_seq_len);
    Sampler sp = {.temperature = 0};
    float *logits = forward(&m, &s, seq, 3, 0);
    for (int p = 3; p < n; p++) {
        seq[p] = sample(&sp, logits, V);
        logits = forward(&m, &s, &seq[p], 1, p);
    }
    free_state(&s);
    init_state(&s, &m.config, m.config.max_seq_len);
    float *all = calloc((size_t)n * V, sizeof(float));
    for (int i = 0; i < n; i += CHUNK) {
        int len = n - i < CHUNK ? n - i : CHUNK;
        forward_chunk(&m, &s, seq + i, len, i, all + (size_t)i * V, 1, NULL);
    }
    for (int p = 2; p < n - 1; p++)
        ck_assert_msg(argmax(all + (size_t)p * V, V) == seq[p + 1], "position %d: batched argmax %d, generated %d", p,
                      argmax(all + (size_t)p * V, V), seq[p + 1]);
    ck_assert_int_eq(s.cache_len, 8);
    free(all);
    free_state(&s);
    free_model(&m);
}
END_TEST

/* The model run with Part 1's plain functions (the kernel table set to them in the
 * full build; the plain build runs them in test_logits_match_hf) against
 * HF: the definition itself meets the fixtures' tolerance. */
#ifndef RAKTN_PLAIN
START_TEST(test_plain_kernels_match_hf) {
    kernels = (Kernels)PLAIN_KERNELS;
    check_logits_match_hf(_i, "plain ");
    use_fast_kernels();
}
END_TEST
#endif

/* RoPE's cos/sin tables at every position up to 32767, against
 * transformers' own definition: its inverse frequencies as torch computes
 * them in float32 (tests/fixtures/rope_inv_freq.txt, from
 * MistralRotaryEmbedding), the angle fl32(p * inv_freq) (torch.outer of two
 * float32 tensors: one correctly rounded product), then cos/sin of that
 * float32 angle taken here in double. The tolerance is derived, not
 * measured:
 *   - raktn's inv_freq[i] is 1 / powf(theta, 2i/d) with libm's powf, HF's
 *     torch's pow: each within an ulp of the exact value, so they may
 *     differ by 1 ulp (they are equal in 143 of the 144 cases here; 1 ulp
 *     at head_dim 128, theta 1e6, i = 37). Asserted: at most 1 ulp.
 *   - Where inv_freq is equal, raktn's angle is the same correctly rounded
 *     float32 product, so its cos/sin differ from the double-precision
 *     cos/sin of HF's angle only by cosf/sinf's own error, at most 1 ulp
 *     of the result (glibc's documented bound for cosf and sinf).
 *   - Where inv_freq differs by 1 ulp u, the angles differ by at most
 *     p * u + 1 ulp of the angle (the products can round to neighbours),
 *     and cos/sin are 1-Lipschitz: that is added to the bound.
 * An angle taken in double instead of HF's float32 (a port's easy slip)
 * differs by up to half an ulp of p * inv_freq: 2^-10 at p = 32767; the
 * angle of p + 1 by inv_freq itself. */
static double ulp_of(double x) { /* the float32 ulp at |x| */
    float f = fabsf((float)x);
    return (double)nextafterf(f, INFINITY) - f;
}

START_TEST(test_rope_tables_match_hf_angles) {
    FILE *fp = fopen("tests/fixtures/rope_inv_freq.txt", "r");
    ck_assert_msg(fp != NULL, "missing tests/fixtures/rope_inv_freq.txt");
    char line[256];
    int dims[8], n_sets = 0, counts[8] = {0};
    double thetas[8];
    static float hf[8][64];
    while (fgets(line, sizeof line, fp)) {
        if (line[0] == '#') continue;
        int d, i;
        double theta, v;
        char hex[64];
        ck_assert_msg(sscanf(line, "%d %lf %d %63s", &d, &theta, &i, hex) == 4, "bad line: %s", line);
        v = strtod(hex, NULL);
        int k = 0;
        while (k < n_sets && !(dims[k] == d && thetas[k] == theta)) k++;
        if (k == n_sets) { ck_assert(n_sets < 8); dims[k] = d, thetas[k] = theta, n_sets++; }
        ck_assert(i == counts[k] && i < 64);
        hf[k][i] = (float)v;
        ck_assert((double)hf[k][i] == v); /* a float32 */
        counts[k]++;
    }
    fclose(fp);
    ck_assert_int_eq(n_sets, 4);
    for (int k = 0; k < n_sets; k++) {
        int d = dims[k], half = d / 2;
        ck_assert_int_eq(counts[k], half);
        Config c = {0};
        c.dim = d, c.hidden_dim = 8, c.n_layers = 1, c.n_heads = 1, c.n_kv_heads = 1, c.head_dim = d;
        c.vocab_size = 8, c.max_seq_len = 32768, c.sliding_window = 8, c.rope_theta = (float)thetas[k];
        c.rms_norm_eps = 1e-5f;
        RunState s;
        init_state(&s, &c, c.max_seq_len);
        double worst = 0; /* of err / bound */
        int same = 0;
        for (int i = 0; i < half; i++) {
            double u = ulp_of(hf[k][i]);
            ck_assert_msg(fabs((double)s.inv_freq[i] - hf[k][i]) <= u, "head_dim %d theta %g: inv_freq[%d] %a, HF %a",
                          d, thetas[k], i, (double)s.inv_freq[i], (double)hf[k][i]);
            same += s.inv_freq[i] == hf[k][i];
        }
        for (int pos = 0; pos < c.max_seq_len; pos += CHUNK) {
            int n = c.max_seq_len - pos < CHUNK ? c.max_seq_len - pos : CHUNK;
            rope_angles(&s, d, pos, n);
            for (int b = 0; b < n; b++)
                for (int i = 0; i < half; i++) {
                    int p = pos + b;
                    volatile float a = (float)p * hf[k][i]; /* HF's angle, in float32 */
                    double ec = cos((double)a), es = sin((double)a);
                    double dang = s.inv_freq[i] == hf[k][i] ? 0 : p * ulp_of(hf[k][i]) + ulp_of(a);
                    double ec_err = fabs(s.rope_cos[(size_t)b * half + i] - ec) / (ulp_of(ec) + dang);
                    double es_err = fabs(s.rope_sin[(size_t)b * half + i] - es) / (ulp_of(es) + dang);
                    if (!(ec_err <= worst)) worst = ec_err;
                    if (!(es_err <= worst)) worst = es_err;
                    if (!(ec_err <= 1 && es_err <= 1))
                        ck_abort_msg("head_dim %d theta %g, position %d, i %d: cos %.9g sin %.9g, HF's angle %.9g gives "
                                     "%.9g %.9g (bound %.3g)", d, thetas[k], p, i, (double)s.rope_cos[(size_t)b * half + i],
                                     (double)s.rope_sin[(size_t)b * half + i], (double)a, ec, es, ulp_of(ec) + dang);
                }
        }
        if (getenv("RAKTN_TEST_VERBOSE"))
            fprintf(stderr, "rope head_dim %d theta %g: inv_freq %d/%d equal to HF's; worst error %.3g of the bound\n", d,
                    thetas[k], same, half, worst);
        free_state(&s);
    }
}
END_TEST

/* Random bf16-exact weights (so that fp32 and bf16 storage hold the same
 * values) and inputs in [-0.5, 0.5). */
static void random_weights(uint16_t *wh, float *wf, size_t n, uint64_t *rng) {
    for (size_t i = 0; i < n; i++) {
        wh[i] = (uint16_t)(0x3c00 + random_u32(rng) % 0x300) ^ (random_u32(rng) & 0x8000);
        wf[i] = bf16_to_f32(wh[i]);
    }
}

/* |got - sum| for out[b][i] against the double-precision sum, in units of
 * sum_k |W[i][k] x[b][k]| (the scale of the rounding error of any order of
 * summation). */
static double matmul_error(const float *out, const float *wf, const float *x, int batch, int n, int d) {
    double worst = 0;
    for (int b = 0; b < batch; b++)
        for (int i = 0; i < d; i++) {
            double sum = 0, mag = 0;
            for (int k = 0; k < n; k++) {
                sum += (double)wf[(size_t)i * n + k] * x[(size_t)b * n + k];
                mag += fabs((double)wf[(size_t)i * n + k] * x[(size_t)b * n + k]);
            }
            double e = fabs(out[(size_t)b * d + i] - sum) / mag;
            if (!(e <= worst)) worst = e;
        }
    return worst;
}

/* Part 1's matmul (the triple loop) against the double-precision sum, at
 * a batch and one position, fp32 and bf16 storage. The error of a float
 * sum, relative to the sum of the terms' magnitudes, is a few times 2^-24
 * (6e-8) at these sizes: measured 1.8e-7 at n 35 and 5.2e-8 at 8275;
 * allowed 1e-6 (a term lost or counted twice is ~1e-2 at n 35, ~1e-4 at
 * 8275). */
START_TEST(test_plain_matmul) {
    static const int shapes[][3] = {{35, 13, 37}, {8275, 8, 1}}; /* n, d, batch */
    for (int k = 0; k < 2; k++) {
        int n = shapes[k][0], d = shapes[k][1], batch = shapes[k][2];
        uint16_t *wh = malloc((size_t)n * d * 2);
        float *wf = malloc((size_t)n * d * 4), *x = malloc((size_t)n * batch * 4);
        float *of = malloc((size_t)batch * d * 4), *oh = malloc((size_t)batch * d * 4);
        uint64_t rng = 11 + k;
        random_weights(wh, wf, (size_t)n * d, &rng);
        for (int i = 0; i < n * batch; i++) x[i] = random_f32(&rng) - 0.5f;
        matmul(of, x, wf, batch, n, d, DTYPE_F32);
        matmul(oh, x, wh, batch, n, d, DTYPE_BF16);
        double e = matmul_error(of, wf, x, batch, n, d), tol = 1e-6;
        ck_assert_msg(e <= tol, "plain matmul n=%d: error %g of the magnitude > %g", n, e, tol);
        ck_assert_msg(memcmp(of, oh, (size_t)batch * d * 4) == 0, "plain matmul: bf16 and fp32 storage differ");
        free(wh), free(wf), free(x), free(of), free(oh);
    }
}
END_TEST

/* softmax and silu, plain (Part 1): softmax against a double-precision
 * softmax of the same floats, relative to each probability (one running
 * float sum: measured 9.8e-6 at 32768 values, allowed 4e-5); the maximum in
 * the last element (after the last whole 16) leading by 100 must win. */
START_TEST(test_plain_softmax_silu) {
    static const int lengths[] = {1, 2, 17, 1000, 32768};
    uint64_t rng = 9;
    for (size_t k = 0; k < sizeof lengths / sizeof lengths[0]; k++) {
        int n = lengths[k];
        float *x = malloc((size_t)n * sizeof(float)), max = -INFINITY;
        double *ref = malloc((size_t)n * sizeof(double)), sum = 0, err = 0;
        for (int i = 0; i < n; i++) x[i] = 40 * random_f32(&rng) - 20, max = x[i] > max ? x[i] : max;
        for (int i = 0; i < n; i++) sum += ref[i] = exp((double)(x[i] - max));
        softmax(x, n);
        for (int i = 0; i < n; i++) err = fmax(err, fabs(x[i] - ref[i] / sum) / (ref[i] / sum));
        ck_assert_msg(err <= 4e-5, "softmax of %d values: %g of a probability from double precision", n, err);
        free(x), free(ref);
    }
    float two[17] = {0};
    two[16] = 100;
    softmax(two, 17);
    ck_assert_msg(two[16] == 1.0f && two[0] < 1e-40f, "softmax missed a maximum in its last element: %g", two[16]);
    float v[5] = {-20, -1, 0, 1, 20};
    double want[5];
    for (int i = 0; i < 5; i++) want[i] = v[i] / (1 + exp(-(double)v[i]));
    silu(v, 5);
    for (int i = 0; i < 5; i++)
        ck_assert_msg(fabs(v[i] - want[i]) <= 1e-6 * fabs(want[i]) + 1e-12, "silu(%d): %g vs %g", i, v[i], want[i]);
}
END_TEST

/* Attention written out plainly in double precision, for one query head h
 * at position p: the reference every attention kernel is held to. */
static void naive_attention(const Config *c, const RunState *st, int pos, int p, int h, double *out) {
    int hd = c->head_dim, kvh = h / (c->n_heads / c->n_kv_heads);
    int first = first_key(c, p);
    const float *q = st->q + (size_t)(p - pos) * c->n_heads * hd + (size_t)h * hd;
    double *w = malloc((size_t)(p - first + 1) * sizeof(double)), max = -1e300, sum = 0;
#define KEY(t) ((t) < pos ? st->key_cache + kv_offset(st, c, 0, kvh, t) : st->k + (size_t)((t) - pos) * c->n_kv_heads * hd + (size_t)kvh * hd)
#define VALUE(t) ((t) < pos ? st->value_cache + kv_offset(st, c, 0, kvh, t) : st->v + (size_t)((t) - pos) * c->n_kv_heads * hd + (size_t)kvh * hd)
    for (int t = first; t <= p; t++) {
        double dot = 0;
        for (int i = 0; i < hd; i++) dot += (double)q[i] * KEY(t)[i];
        w[t - first] = dot / sqrt((double)hd);
        if (w[t - first] > max) max = w[t - first];
    }
    for (int t = first; t <= p; t++) sum += w[t - first] = exp(w[t - first] - max);
    for (int i = 0; i < hd; i++) {
        out[i] = 0;
        for (int t = first; t <= p; t++) out[i] += w[t - first] / sum * VALUE(t)[i];
    }
#undef KEY
#undef VALUE
    free(w);
}

/* Every attention (Part 1's plain one; in the full build also Part 2's
 * attention_rows, for decoding, and attention_blocked, for a prompt's
 * chunk) against naive_attention in double: groupings of 1, 2, 3, 4, 5, 6,
 * 8, 16 query heads per KV head (5 and 6: a second, partial block of heads
 * in attention_rows), head_dims 16 to 128 (40, 72, 80 leave leftovers after
 * the 16- and 64-wide loops), with and without a window shorter than the
 * chunk, keys partly in the ring and partly in the chunk, 21 positions (a
 * full 16-lane block and a partial one), and over 1024 keys (with and
 * without a window of 700: the value sums cross blocks of VALUE_BLOCK).
 * Measured worst: 7.7e-8 (all three kernels alike); allowed 2e-6. */
START_TEST(test_attention_kernels) {
    static const int shapes[][5] = {/* n_heads, n_kv_heads, head_dim, window, first position */
                                    {4, 4, 16, 0, 11},   {6, 2, 24, 6, 11},    {8, 1, 72, 0, 11},
                                    {16, 1, 16, 5, 11},  {8, 2, 128, 9, 11},   {4, 2, 128, 0, 11},
                                    {12, 2, 40, 7, 11},  {5, 1, 80, 0, 11},    {8, 2, 128, 0, 1100},
                                    {6, 1, 72, 0, 1030}, {8, 2, 128, 700, 1100}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        Config c = {0};
        c.n_heads = shapes[k][0], c.n_kv_heads = shapes[k][1], c.head_dim = shapes[k][2];
        c.sliding_window = shapes[k][3];
        c.dim = c.n_heads * c.head_dim, c.hidden_dim = 8, c.n_layers = 1, c.vocab_size = 8, c.rope_theta = 10000;
        int pos = shapes[k][4], n = 21, ctx = pos + n + 32, hd = c.head_dim, kv_dim = c.n_kv_heads * hd, q_dim = c.n_heads * hd;
        c.max_seq_len = ctx;
        RunState st;
        init_state(&st, &c, ctx);
        /* this file builds raktn.c with CHUNK 5: room for a 21-position chunk */
        free(st.q), free(st.k), free(st.v), free(st.att_out);
        st.q = xcalloc((size_t)n * q_dim, sizeof(float)), st.att_out = xcalloc((size_t)n * q_dim, sizeof(float));
        st.k = xcalloc((size_t)n * kv_dim, sizeof(float)), st.v = xcalloc((size_t)n * kv_dim, sizeof(float));
        uint64_t rng = 100 + k;
        for (int t = pos - st.cache_len > 0 ? pos - st.cache_len : 0; t < pos; t++) /* the ring */
            for (int h = 0; h < c.n_kv_heads; h++)
                for (int i = 0; i < hd; i++) {
                    st.key_cache[kv_offset(&st, &c, 0, h, t) + i] = random_f32(&rng) - 0.5f;
                    st.value_cache[kv_offset(&st, &c, 0, h, t) + i] = random_f32(&rng) - 0.5f;
                }
        for (int i = 0; i < n * q_dim; i++) st.q[i] = 2 * random_f32(&rng) - 1;
        for (int i = 0; i < n * kv_dim; i++) st.k[i] = 2 * random_f32(&rng) - 1, st.v[i] = random_f32(&rng) - 0.5f;
        double *ref = malloc((size_t)n * q_dim * sizeof(double));
        for (int b = 0; b < n; b++)
            for (int h = 0; h < c.n_heads; h++) naive_attention(&c, &st, pos, pos + b, h, ref + (size_t)b * q_dim + (size_t)h * hd);
        const char *names[] = {"plain attention", "attention_rows", "attention_blocked"};
        for (int kernel = 0; kernel < 3; kernel++) {
            memset(st.att_out, 0, (size_t)n * q_dim * sizeof(float));
#ifdef RAKTN_PLAIN
            if (kernel > 0) break;
            attention(&c, &st, 0, n, pos, NULL);
#else
            if (kernel == 0) attention(&c, &st, 0, n, pos, NULL);
            else if (kernel == 1) attention_rows(&c, &st, 0, n, pos);
            else attention_blocked(&c, &st, 0, n, pos);
#endif
            double worst = 0;
            for (int i = 0; i < n * q_dim; i++) worst = fmax(worst, fabs(st.att_out[i] - ref[i]));
            if (getenv("RAKTN_TEST_VERBOSE")) fprintf(stderr, "%s %d/%d/%d/%d@%d: %g\n", names[kernel], c.n_heads,
                                                      c.n_kv_heads, hd, c.sliding_window, pos, worst);
            ck_assert_msg(worst <= 2e-6, "%s, heads %d/%d, head_dim %d, window %d at %d: %g from double precision",
                          names[kernel], c.n_heads, c.n_kv_heads, hd, c.sliding_window, pos, worst);
        }
        free(ref);
        free_state(&st);
    }
}
END_TEST

/* Read a .npy file of float32 (version 1.0, '<f4', C order): its shape and
 * data. Written here from NumPy's format description, not from raktn's
 * writer. */
static float *read_npy(const char *path, long shape[3], int *ndim) {
    size_t len;
    char *buf = tu_read_file(path, &len);
    ck_assert_msg(buf != NULL, "missing %s", path);
    ck_assert_msg(len >= 10 && memcmp(buf, "\x93NUMPY\x01\x00", 8) == 0, "%s: not .npy 1.0", path);
    size_t hlen = (unsigned char)buf[8] | (size_t)(unsigned char)buf[9] << 8;
    ck_assert_msg((10 + hlen) % 64 == 0 && buf[10 + hlen - 1] == '\n', "%s: header not padded to 64", path);
    char *h = strndup(buf + 10, hlen);
    ck_assert_msg(strstr(h, "'descr': '<f4'") && strstr(h, "'fortran_order': False"), "%s: header %s", path, h);
    char *sh = strstr(h, "'shape': (");
    ck_assert(sh);
    sh += 10;
    *ndim = 0;
    while (*sh != ')') {
        char *end;
        shape[(*ndim)++] = strtol(sh, &end, 10);
        sh = end;
        while (*sh == ',' || *sh == ' ') sh++;
    }
    size_t n = 1;
    for (int i = 0; i < *ndim; i++) n *= (size_t)shape[i];
    ck_assert_msg(len == 10 + hlen + n * 4, "%s: %zu bytes for %zu floats", path, len, n);
    float *data = malloc(n * 4 + 1);
    memcpy(data, buf + 10 + hlen, n * 4);
    free(h), free(buf);
    return data;
}

/* --dump's module outputs (the trace of the forward pass, written by
 * dump_write as .npy) against HF's fixtures where HF has them: embeddings,
 * each layer's output and the final norm (output_hidden_states), lm_head
 * (the logits); every layer's files present with their shapes; attention
 * weights: rows that sum to 1, zero outside each position's window. */
START_TEST(test_dump_matches_hf) {
    Case cs = {"hd128", "hd128"}; /* window 12 over 30 positions */
    Fixture f;
    fixture_open(&f, &cs);
    const Config *c = &f.m.config;
    RunState st;
    init_state(&st, c, c->max_seq_len);
    Dump d = {{dump_output, dump_weights}, NULL, 0, 0, f.n, c->n_heads, NULL};
    float *logits = calloc((size_t)CHUNK * c->vocab_size, sizeof(float));
    for (int i = 0; i < f.n; i += CHUNK) {
        int len = f.n - i < CHUNK ? f.n - i : CHUNK;
        forward_chunk(&f.m, &st, f.ids + i, len, i, logits, 1, &d.trace);
    }
    const char *dir = "tests/work/dump-hd128";
    ck_assert(system("rm -rf tests/work/dump-hd128") == 0);
    dump_write(&d, dir);
    commit_outputs();
    dump_free(&d);
    int hd = c->head_dim, q = c->n_heads * hd, kv = c->n_kv_heads * hd, D = c->dim, F = c->hidden_dim;
    const struct { const char *module; long cols; } per_layer[] = {
        {"input_layernorm", D}, {"self_attn.q_proj", q}, {"self_attn.k_proj", kv}, {"self_attn.v_proj", kv},
        {"self_attn.q_rope", q}, {"self_attn.k_rope", kv}, {"self_attn.attn_output", q}, {"self_attn.o_proj", D},
        {"post_attention_layernorm", D}, {"mlp.gate_proj", F}, {"mlp.up_proj", F}, {"mlp.act_fn", F},
        {"mlp.down_proj", D}, {"", D}};
    char path[256];
    long shape[3];
    int ndim;
    for (int l = 0; l < c->n_layers; l++) {
        for (size_t k = 0; k < sizeof per_layer / sizeof per_layer[0]; k++) {
            snprintf(path, sizeof path, "%s/model.layers.%d%s%s.npy", dir, l, per_layer[k].module[0] ? "." : "",
                     per_layer[k].module);
            float *x = read_npy(path, shape, &ndim);
            ck_assert_msg(ndim == 2 && shape[0] == f.n && shape[1] == per_layer[k].cols, "%s: shape", path);
            if (!per_layer[k].module[0] && l < c->n_layers - 1) { /* layer output = hidden state l+1 */
                float e = max_abs_diff(x, f.ref_hidden + (size_t)(l + 1) * f.n * D, (size_t)f.n * D);
                ck_assert_msg(e <= TOL, "%s differs from HF's hidden state %d by %g", path, l + 1, e);
            }
            free(x);
        }
        snprintf(path, sizeof path, "%s/model.layers.%d.self_attn.attn_weights.npy", dir, l);
        float *w = read_npy(path, shape, &ndim);
        ck_assert(ndim == 3 && shape[0] == c->n_heads && shape[1] == f.n && shape[2] == f.n);
        for (int h = 0; h < c->n_heads; h++)
            for (int p = 0; p < f.n; p++) {
                double sum = 0;
                for (int t = 0; t < f.n; t++) {
                    float v = w[((size_t)h * f.n + p) * f.n + t];
                    if (t > p || t < p - c->sliding_window + 1) ck_assert_msg(v == 0, "weight outside the window");
                    sum += v;
                }
                ck_assert_msg(fabs(sum - 1) < 1e-5, "layer %d head %d position %d: weights sum to %g", l, h, p, sum);
            }
        free(w);
    }
    const struct { const char *name; const float *ref; long cols; } whole[] = {
        {"model.embed_tokens", f.ref_hidden, D},
        {"model.norm", f.ref_hidden + (size_t)c->n_layers * f.n * D, D},
        {"lm_head", f.ref_logits, c->vocab_size}};
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/%s.npy", dir, whole[k].name);
        float *x = read_npy(path, shape, &ndim);
        ck_assert(ndim == 2 && shape[0] == f.n && shape[1] == whole[k].cols);
        float e = max_abs_diff(x, whole[k].ref, (size_t)f.n * whole[k].cols);
        ck_assert_msg(e <= TOL, "%s differs from HF by %g", path, e);
        free(x);
    }
    free(logits);
    free_state(&st);
    fixture_close(&f);
}
END_TEST

#ifndef RAKTN_PLAIN
/* ---- Part 2's kernels against their plain twins (full build only) ---- */

/* matmul_fast, one position (dot_rows): one row at a time (R = 1) or
 * DECODE_ROWS at a time (4 with AVX: always on Intel, for rows longer than
 * 8192 on AMD); each output must come out in the same order either way: random rows of 8275 (tails of 16 and of 3) give the same
 * bits both ways, for fp32 and bf16 weights; and within the plain matmul's
 * tolerance of the double-precision sum (measured 5.3e-9 of the magnitude). */
START_TEST(test_decode_kernels_agree) {
    int n = 8192 + 64 + 16 + 3, d = 8;
    float *wf = malloc((size_t)n * d * sizeof(float)), *x = malloc((size_t)n * sizeof(float));
    uint16_t *wh = malloc((size_t)n * d * sizeof(uint16_t));
    uint64_t rng = 7;
    random_weights(wh, wf, (size_t)n * d, &rng);
    for (int i = 0; i < n; i++) x[i] = random_f32(&rng) - 0.5f;
    float out_f[8], out_h[8];
    matmul_fast(out_f, x, wf, 1, n, d, DTYPE_F32); /* four rows at a time */
    matmul_fast(out_h, x, wh, 1, n, d, DTYPE_BF16);
    for (int i = 0; i < d; i++) {
        float a, b;
        dot_rows(&a, wf, (size_t)i, x, n, DTYPE_F32, 1);
        dot_rows(&b, wh, (size_t)i, x, n, DTYPE_BF16, 1);
        ck_assert_msg(memcmp(&a, &out_f[i], 4) == 0 && memcmp(&b, &out_h[i], 4) == 0 && memcmp(&a, &b, 4) == 0,
                      "row %d: one row %a/%a, four rows %a/%a", i, a, b, out_f[i], out_h[i]);
    }
    double e = matmul_error(out_f, wf, x, 1, n, d);
    ck_assert_msg(e <= 1e-6, "decode matmul: error %g of the magnitude", e);
    free(wf);
    free(wh);
    free(x);
}
END_TEST

/* matmul_fast for a batch (matmul_tile) at its tiles' edges: d = 13 rows (a
 * last tile clamped, whatever TILE_ROWS: 12, 6 or 4), n = 35, 37 positions
 * (a full panel and a last one with 11 zero columns). Each output is its products
 * added in k order as in the plain matmul, fused here, so: within 1e-6 of
 * the magnitude of the double-precision sum (measured 2.0e-7), the same bits
 * in a batch of 37 as in a batch of 5 (another tile shape, another lane),
 * and the same bits from bf16 and fp32 storage. */
static void check_batched_matmul(int N, int D, uint64_t seed) {
    enum { B = 37 };
    uint16_t *wh = malloc((size_t)D * N * sizeof *wh);
    float *wf = malloc((size_t)D * N * sizeof *wf), *x = malloc((size_t)B * N * sizeof *x);
    float *o_f = malloc((size_t)B * D * sizeof *o_f), *o_h = malloc((size_t)B * D * sizeof *o_h);
    float *o_5 = malloc((size_t)5 * D * sizeof *o_5);
    uint64_t rng = seed;
    random_weights(wh, wf, (size_t)D * N, &rng);
    for (int i = 0; i < B * N; i++) x[i] = random_f32(&rng) - 0.5f;
    matmul_fast(o_f, x, wf, B, N, D, DTYPE_F32);
    matmul_fast(o_h, x, wh, B, N, D, DTYPE_BF16);
    matmul_fast(o_5, x + 30 * N, wf, 5, N, D, DTYPE_F32);
    ck_assert_msg(memcmp(o_f, o_h, (size_t)B * D * sizeof *o_f) == 0, "bf16 and fp32 storage differ");
    ck_assert_msg(memcmp(o_5, o_f + 30 * D, (size_t)5 * D * sizeof *o_5) == 0,
                  "positions 30..34 differ between batches of 37 and 5");
    double e = matmul_error(o_f, wf, x, B, N, D);
    ck_assert_msg(e <= 1e-6, "batched matmul: error %g of the magnitude", e);
    free(wh), free(wf), free(x), free(o_f), free(o_h), free(o_5);
}
START_TEST(test_batched_matmul_edges) { check_batched_matmul(35, 13, 11); }
END_TEST

/* The same through several groups of tiles (tiles_task): rows of 8275
 * weights, as many as make two whole groups of GROUP_BYTES and a third one
 * ending in a clamped tile, every panel of 37 positions run through each
 * group. Against the double-precision sum, and the bits of bf16 storage
 * and of one position at a time in a batch of 5. */
START_TEST(test_batched_matmul_groups) {
    int n = 8192 + 64 + 16 + 3, group = (int)(GROUP_BYTES / ((size_t)TILE_ROWS * n * sizeof(float))); /* tiles */
    check_batched_matmul(n, (2 * (group > 0 ? group : 1) + 1) * TILE_ROWS + 3, 13);
}
END_TEST

/* silu_fast, elementwise_fast and rmsnorm_fast compute their plain twins'
 * expressions element by element (row by row) on several threads: the same
 * bits, on sizes that split over the threads with a partial last share. */
START_TEST(test_elementwise_twins_are_exact) {
    enum { N = 3 * 16384 + 1000, ROWS = 7, DIM = 300 };
    static float a[N], b[N], y[N], wn[DIM];
    uint64_t rng = 5;
    for (int i = 0; i < N; i++) a[i] = b[i] = 60 * random_f32(&rng) - 30, y[i] = random_f32(&rng) - 0.5f;
    for (int i = 0; i < DIM; i++) wn[i] = random_f32(&rng) + 0.5f;
    ck_assert(silu_fast(a, N));
    silu(b, N);
    ck_assert_msg(memcmp(a, b, sizeof a) == 0, "silu_fast differs from silu");
    const char ops[] = {'*', '+'};
    for (int k = 0; k < 2; k++) {
        ck_assert(elementwise_fast(a, y, N, ops[k]));
        if (ops[k] == '*') mul_in_place(b, y, N);
        else add_in_place(b, y, N);
        ck_assert_msg(memcmp(a, b, sizeof a) == 0, "elementwise_fast '%c' differs from its plain twin", ops[k]);
    }
    static float na[ROWS * DIM], nb[ROWS * DIM];
    ck_assert(rmsnorm_fast(na, y, wn, ROWS, DIM, 1e-5f, DTYPE_F32));
    rmsnorm(nb, y, wn, ROWS, DIM, 1e-5f, DTYPE_F32);
    ck_assert_msg(memcmp(na, nb, sizeof na) == 0, "rmsnorm_fast differs from rmsnorm");
}
END_TEST

/* softmax_fast's exp (plain arithmetic, so that it vectorizes) against
 * libm's exp in double: every 61st float in [-87, 0] (the full range
 * measured 1.02e-7 at worst), the edges, then whole softmaxes of lengths
 * around the 16-lane blocks and up to 32768 keys against a double-precision
 * softmax of the same floats, element by element relative to each
 * probability (measured 2.4e-7 at 4001 values, 1.0e-6 at 32768; allowed
 * 2e-6), and the maximum in the scalar tail. */
START_TEST(test_softmax_fast) {
    double worst = 0;
    for (uint32_t b = 0x80000000u;; b += 61) {
        float x;
        memcpy(&x, &b, 4);
        if (x < -87.0f) break;
        double e = fabs(exp_nonpositive(x) - exp((double)x)) / exp((double)x);
        if (e > worst) worst = e;
    }
    ck_assert_msg(worst <= 1.2e-7, "exp_nonpositive's relative error %g exceeds 1.2e-7", worst);
    ck_assert(exp_nonpositive(0.0f) == 1.0f && exp_nonpositive(-0.0f) == 1.0f);
    ck_assert(exp_nonpositive(-87.5f) == 0.0f && exp_nonpositive(-INFINITY) == 0.0f);
    ck_assert(isnan(exp_nonpositive(NAN)));
    static const int lengths[] = {1, 2, 15, 16, 17, 33, 1000, 4001, 32768};
    uint64_t rng = 7;
    for (size_t k = 0; k < sizeof lengths / sizeof lengths[0]; k++) {
        int n = lengths[k];
        float *x = malloc((size_t)n * sizeof(float));
        double *ref = malloc((size_t)n * sizeof(double)), sum = 0, err = 0;
        float max = -INFINITY;
        for (int i = 0; i < n; i++) x[i] = 40 * random_f32(&rng) - 20, max = x[i] > max ? x[i] : max;
        /* of x - max as softmax has it in floats: its rounding is the input's */
        for (int i = 0; i < n; i++) sum += ref[i] = exp((double)(x[i] - max));
        softmax_fast(x, n);
        for (int i = 0; i < n; i++) {
            double e = fabs(x[i] - ref[i] / sum) / (ref[i] / sum);
            if (e > err) err = e;
        }
        ck_assert_msg(err <= 2e-6, "softmax_fast of %d values differs from the double-precision one by %g of a "
                      "probability", n, err);
        free(x), free(ref);
    }
    float two[17] = {0};
    two[16] = 100;
    softmax_fast(two, 17);
    ck_assert_msg(two[16] == 1.0f && two[0] < 1e-40f, "softmax_fast missed a maximum in its tail: %g", two[16]);
}
END_TEST
#endif /* !RAKTN_PLAIN */

/* explain's top_k and top_guesses: the k largest, largest first, ties to
 * the lower id (as torch.topk and argmax), probabilities softmax's */
START_TEST(test_explain_top_k) {
    real x[] = {1, 3, 3, 2, 3, -1};
    int best[4];
    ck_assert_int_eq(top_k(x, 6, 2, best), 2);
    ck_assert_msg(best[0] == 1 && best[1] == 2, "top 2 of {1,3,3,2,3,-1}: %d %d", best[0], best[1]);
    ck_assert_int_eq(top_k(x, 6, 4, best), 4);
    ck_assert_msg(best[0] == 1 && best[1] == 2 && best[2] == 4 && best[3] == 3, "top 4: %d %d %d %d", best[0], best[1],
                  best[2], best[3]);
    ck_assert_int_eq(top_k(x, 2, 4, best), 2); /* fewer than k */
    int ids[3];
    double p[3];
    top_guesses(x, 6, 3, ids, p);
    double z = 0;
    for (int i = 0; i < 6; i++) z += exp((double)x[i]);
    for (int j = 0; j < 3; j++) ck_assert_msg(fabs(p[j] - exp((double)x[ids[j]]) / z) < 1e-12, "p[%d] = %g", j, p[j]);
    ck_assert(ids[0] == 1 && ids[1] == 2 && ids[2] == 4);
}
END_TEST

Suite *model_suite(void) {
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("vs transformers");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_logits_match_hf, 0, N_CASES);
    tcase_add_loop_test(tc, test_hidden_states_match_hf, 0, N_CASES);
    tcase_add_loop_test(tc, test_one_token_at_a_time_matches_batched, 0, N_CASES);
    tcase_add_test(tc, test_bf16_storage_is_bit_identical);
    tcase_add_test(tc, test_kv_cache_is_bounded_by_window);
    tcase_add_test(tc, test_greedy_matches_hf_generate);
    tcase_add_test(tc, test_long_generation_past_the_window);
    tcase_add_test(tc, test_plain_matmul);
    tcase_add_test(tc, test_plain_softmax_silu);
    tcase_add_test(tc, test_attention_kernels);
    tcase_add_test(tc, test_dump_matches_hf);
    tcase_add_test(tc, test_rope_tables_match_hf_angles);
    tcase_add_test(tc, test_explain_top_k);
#ifndef RAKTN_PLAIN
    tcase_add_loop_test(tc, test_plain_kernels_match_hf, 0, N_CASES);
    tcase_add_test(tc, test_decode_kernels_agree);
    tcase_add_test(tc, test_batched_matmul_edges);
    tcase_add_test(tc, test_batched_matmul_groups);
    tcase_add_test(tc, test_elementwise_twins_are_exact);
    tcase_add_test(tc, test_softmax_fast);
#endif
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(model_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
