#define _GNU_SOURCE /* strchrnul */
/* tests/test_cli.c - the ./raktn program as people run it.
 *
 * Runs the real binary (prefill chunk 128, so sw8's 40 tokens go through in
 * one chunk: five times the 8-key window) and checks its files and text
 * against the transformers fixtures, plus exit codes and messages for bad
 * input. Run from the repository root after tests/prepare.sh.
 */
#include <check.h>
#include <math.h>
#include "testutil.h"

#define SW8 "tests/work/models/sw8/model.bin"
#define T48K "tests/work/models/t48k-bf16/model.bin"
#define LONG "tests/work/models/long/model.bin"
#define NOBOS "tests/work/models/t48k-nobos/model.bin"
#define TMP "tests/work/cli"

#include "testrun.h"

/* Run argv with stdin_text (a string, or NULL) on standard input. */
static Result run(const char *stdin_text, const char *const argv[]) {
    return run_in(stdin_text, stdin_text ? strlen(stdin_text) : 0, argv);
}

/* A failure: the given exit status, no signal, exactly one "raktn: error:"
 * line first on stderr, nothing on stdout. */
static void assert_clean_failure(Result *r, int status, const char *must_contain) {
    ck_assert_msg(r->status == status, "exit status %d, wanted %d; stderr: %s", r->status, status, r->err);
    ck_assert_msg(strncmp(r->err, "raktn: error: ", 14) == 0, "stderr does not start with the error: %s", r->err);
    ck_assert_msg(strstr(r->err, must_contain) != NULL, "stderr lacks '%s': %s", must_contain, r->err);
    ck_assert_msg(r->out[0] == 0, "stdout not empty: %s", r->out);
}

static char *fixture_ids(const char *name) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/%s.ids", name);
    char *s = tu_read_file(path, NULL);
    ck_assert_msg(s != NULL, "missing %s", path);
    for (char *p = s; *p; p++)
        if (*p == '\n') *p = 0;
    return s;
}

/* -m logits through the real binary (chunk 128: sw8's 40 positions take a
 * 32-position tile and a 16-position one, hd128's 30 one 32-position tile
 * with two zero columns) against the HF fixture. */
static const struct { const char *name, *model; int n, vocab, layers, dim; } LOGITS_CASES[] = {
    {"sw8", SW8, 40, 512, 3, 64},
    {"hd128", "tests/work/models/hd128/model.bin", 30, 1001, 2, 256},
    {"long", LONG, 260, 256, 2, 64}, /* three chunks: 128 + 128 + 4, window 100 */
};

START_TEST(test_logits_file_matches_hf) {
    const char *name = LOGITS_CASES[_i].name;
    char *ids = fixture_ids(name), out[256], hid[256], ref[256], href[256], tmp[300];
    snprintf(out, sizeof out, TMP "/%s.logits", name);
    snprintf(hid, sizeof hid, TMP "/%s.hidden", name);
    snprintf(ref, sizeof ref, "tests/fixtures/%s.logits.f32", name);
    snprintf(href, sizeof href, "tests/fixtures/%s.hidden.f32", name);
    const char *argv[] = {"./raktn", LOGITS_CASES[_i].model, "-m", "logits", "--ids", ids, "-o", out,
                          "--hidden", hid, NULL};
    Result r = run(NULL, argv);
    ck_assert_msg(r.status == 0, "raktn failed: %s", r.err);
    size_t n = (size_t)LOGITS_CASES[_i].n * LOGITS_CASES[_i].vocab;
    size_t nh = (size_t)(LOGITS_CASES[_i].layers + 1) * LOGITS_CASES[_i].n * LOGITS_CASES[_i].dim;
    float *got = tu_read_f32(out, n), *want = tu_read_f32(ref, n);
    float *hgot = tu_read_f32(hid, nh), *hwant = tu_read_f32(href, nh);
    ck_assert(got && want && hgot && hwant);
    float d = 0, dh = 0;
    for (size_t i = 0; i < n; i++) d = fmaxf(d, fabsf(got[i] - want[i]));
    for (size_t i = 0; i < nh; i++) dh = fmaxf(dh, fabsf(hgot[i] - hwant[i]));
    ck_assert_msg(d <= 1e-4f, "%s: max |dlogit| %g", name, d);
    ck_assert_msg(dh <= 1e-4f, "%s: max |dhidden| %g", name, dh);
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    ck_assert(!file_exists(tmp));
    free(got); free(want); free(hgot); free(hwant); free(ids);
    result_free(&r);
}
END_TEST

/* ppl = exp(mean NLL), computed here from HF's logits in double: sw8 (one
 * chunk) and long (260 ids: two whole chunks of 128 and a third of 3 scored
 * positions; a chunk that rereads the first chunk's ids, or is run at the
 * wrong position, moves the mean by ~1e-2) */
static const struct { const char *name, *model; int vocab; } PPL_CASES[] = {{"sw8", SW8, 512}, {"long", LONG, 256}};

START_TEST(test_ppl_matches_reference_logits) {
    const char *name = PPL_CASES[_i].name;
    int V = PPL_CASES[_i].vocab;
    char *ids_text = fixture_ids(name), path[256];
    static int ids[512];
    int n = tu_parse_ids(ids_text, ids, 512);
    snprintf(path, sizeof path, "tests/fixtures/%s.logits.f32", name);
    float *ref = tu_read_f32(path, (size_t)n * V);
    ck_assert(ref);
    double nll = 0;
    for (int p = 0; p < n - 1; p++) {
        const float *row = ref + (size_t)p * V;
        double mx = row[0], sum = 0;
        for (int v = 1; v < V; v++) mx = fmax(mx, row[v]);
        for (int v = 0; v < V; v++) sum += exp(row[v] - mx);
        nll += log(sum) + mx - row[ids[p + 1]];
    }
    nll /= n - 1;
    const char *argv[] = {"./raktn", PPL_CASES[_i].model, "-m", "ppl", "--ids", ids_text, NULL};
    Result r = run(NULL, argv);
    ck_assert_msg(r.status == 0, "%s", r.err);
    double got_nll, got_ppl;
    int tokens, predicted;
    ck_assert_msg(sscanf(r.out, "tokens %d predicted %d nll %lf ppl %lf", &tokens, &predicted, &got_nll, &got_ppl) == 4,
                  "unexpected output: %s", r.out);
    ck_assert_int_eq(tokens, n);
    ck_assert_int_eq(predicted, n - 1);
    ck_assert_msg(fabs(got_nll - nll) < 1e-5, "%s: nll %f vs reference %f", name, got_nll, nll);
    ck_assert_msg(fabs(got_ppl - exp(nll)) < 1e-4 * exp(nll), "%s: ppl %f vs %f", name, got_ppl, exp(nll));
    free(ref); free(ids_text);
    result_free(&r);
}
END_TEST

/* -t 0 reproduces HF generate(do_sample=False); the stats line is there */
START_TEST(test_greedy_generate_matches_hf) {
    char *seq = fixture_ids("sw8gen");
    int ids[64];
    int n = tu_parse_ids(seq, ids, 64);
    ck_assert_int_eq(n, 40);
    char prompt[256] = "", want[512] = "";
    for (int i = 0; i < 6; i++) snprintf(prompt + strlen(prompt), sizeof prompt - strlen(prompt), "%d ", ids[i]);
    for (int i = 6; i < n; i++) snprintf(want + strlen(want), sizeof want - strlen(want), "%d ", ids[i]);
    /* sw8 has no tokenizer.bin: raktn prints the ids it generates */
    const char *argv[] = {"./raktn", SW8, "--ids", prompt, "-t", "0", "-n", "34", NULL};
    Result r = run(NULL, argv);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_msg(strncmp(r.out, want, strlen(want)) == 0, "greedy ids\n%s\nHF\n%s", r.out, want);
    int pn, dn;
    double ps, ds;
    const char *line = strstr(r.err, "prefill ");
    ck_assert_msg(line && sscanf(line, "prefill %d tok %lf tok/s, decode %d tok %lf tok/s", &pn, &ps, &dn, &ds) == 4,
                  "no stats line: %s", r.err);
    ck_assert_int_eq(pn, 6);
    ck_assert_int_eq(dn, 34);
    free(seq);
    result_free(&r);
}
END_TEST

START_TEST(test_same_seed_same_output) {
    const char *a1[] = {"./raktn", SW8, "--ids", "1 5 9", "-t", "1.0", "-p", "0.9", "-s", "42", "-n", "30", NULL};
    const char *a2[] = {"./raktn", SW8, "--ids", "1 5 9", "-t", "1.0", "-p", "0.9", "-s", "43", "-n", "30", NULL};
    Result r1 = run(NULL, a1), r2 = run(NULL, a1), r3 = run(NULL, a2);
    ck_assert_int_eq(r1.status, 0);
    ck_assert_str_eq(r1.out, r2.out);
    ck_assert_msg(strcmp(r1.out, r3.out) != 0, "seeds 42 and 43 gave the same 30 tokens");
    result_free(&r1); result_free(&r2); result_free(&r3);
}
END_TEST

/* A piped two-turn chat equals one pass over the whole transcript: the
 * second answer is what greedy generation gives from the full transcript
 * (turn 1, answer 1, </s>, turn 2) run as one batched prompt. */
START_TEST(test_chat_two_turns_equals_one_pass) {
    const char *argv[] = {"./raktn", T48K, "-m", "chat", "-t", "0", "-n", "5", "-v", NULL};
    Result r = run("Hello, who are you?\nこんにちは、元気ですか？\n", argv);
    ck_assert_msg(r.status == 0, "%s", r.err);
    /* stderr has, in order: turn ids, answer ids, [closing ids], turn ids, answer ids */
    static int transcript[8192];
    int nt = 0, answers[2][64], na[2] = {0, 0}, turn = 0;
    char *save, *line = strtok_r(r.err, "\n", &save);
    for (; line; line = strtok_r(NULL, "\n", &save)) {
        if (!strncmp(line, "turn ids: ", 10) || !strncmp(line, "closing ids: ", 13)) {
            if (turn < 2) nt += tu_parse_ids(strchr(line, ':') + 1, transcript + nt, 8192 - nt);
        } else if (!strncmp(line, "answer ids: ", 12)) {
            na[turn] = tu_parse_ids(line + 12, answers[turn], 64);
            if (turn == 0) {
                memcpy(transcript + nt, answers[0], na[0] * sizeof(int));
                nt += na[0];
            }
            turn++;
        }
    }
    ck_assert_int_eq(turn, 2);
    ck_assert_int_gt(na[1], 0);
    ck_assert_int_eq(transcript[0], 1); /* BOS once, at the start */
    char *ids = malloc((size_t)nt * 8 + 1);
    ids[0] = 0;
    for (int i = 0; i < nt; i++) sprintf(ids + strlen(ids), "%d ", transcript[i]);
    const char *gen[] = {"./raktn", T48K, "--ids", ids, "-t", "0", "-n", "5", "-v", NULL};
    Result g = run(NULL, gen);
    ck_assert_msg(g.status == 0, "%s", g.err);
    char *got = strstr(g.err, "generated ids: ");
    ck_assert(got);
    *strchrnul(got, '\n') = 0;
    int again[64];
    int n_again = tu_parse_ids(got + 15, again, 64);
    ck_assert_int_eq(n_again, na[1]);
    for (int i = 0; i < n_again; i++) ck_assert_int_eq(again[i], answers[1][i]);
    free(ids);
    result_free(&r);
    result_free(&g);
}
END_TEST

/* --top K: a readable view whose first candidate is HF's argmax */
START_TEST(test_top_k_view) {
    char *ids = fixture_ids("sw8");
    const char *argv[] = {"./raktn", SW8, "-m", "logits", "--ids", ids, "--top", "3", NULL};
    Result r = run(NULL, argv);
    ck_assert_msg(r.status == 0, "%s", r.err);
    float *ref = tu_read_f32("tests/fixtures/sw8.logits.f32", 40 * 512);
    ck_assert(ref);
    int lines = 0;
    char *save, *line = strtok_r(r.out, "\n", &save);
    for (; line; line = strtok_r(NULL, "\n", &save), lines++) {
        int pos, id, top1;
        ck_assert_msg(sscanf(line, "pos %d id %d ->", &pos, &id) == 2, "bad line: %s", line);
        const char *arrow = strstr(line, "->");
        ck_assert(arrow && sscanf(arrow + 2, "%d", &top1) == 1);
        int best = 0;
        for (int v = 1; v < 512; v++)
            if (ref[pos * 512 + v] > ref[pos * 512 + best]) best = v;
        ck_assert_int_eq(pos, lines);
        ck_assert_msg(top1 == best, "pos %d: top-1 %d, HF argmax %d", pos, top1, best);
    }
    ck_assert_int_eq(lines, 40);
    free(ref);
    free(ids);
    result_free(&r);
}
END_TEST

/* Each bad input: a one-line error, a non-zero exit, no signal, no output file. */
START_TEST(test_bad_flags) {
    struct { const char *argv[12]; int status; const char *msg; } cases[] = {
        {{"./raktn", SW8, "--bogus", "1"}, 2, "unknown option"},
        {{"./raktn", SW8, "-n", "abc", "--ids", "1"}, 2, "-n wants an integer"},
        {{"./raktn", SW8, "-n", "-5", "--ids", "1"}, 2, "-n must be in"},
        {{"./raktn", SW8, "-t", "-1", "--ids", "1"}, 2, "-t must be in"},
        {{"./raktn", SW8, "-p", "1.5", "--ids", "1"}, 2, "-p must be in"},
        {{"./raktn", SW8, "-t", "nan", "--ids", "1"}, 2, "-t wants a number"},
        {{"./raktn", SW8, "--ids"}, 2, "--ids needs a value"},
        {{"./raktn", SW8, "-m", "dance", "--ids", "1"}, 2, "unknown mode"},
        {{"./raktn", SW8, "--ids", "1 512"}, 2, "outside the vocabulary"},
        {{"./raktn", SW8, "--ids", "1 -3"}, 2, "outside the vocabulary"},
        {{"./raktn", SW8, "--ids", "1 x"}, 2, "is not a token id"},
        {{"./raktn", SW8, "-m", "logits", "--ids", "1 2 3", "-o", TMP "/never.f32", "-c", "2"}, 1, "context"},
        {{"./raktn", SW8, "-m", "logits", "--ids", "", "-o", TMP "/never.f32"}, 1, "empty"},
        {{"./raktn", SW8, "-c", "40000", "--ids", "1"}, 2, "max_position_embeddings"},
        {{"./raktn", SW8, "-i", "a", "--ids", "1"}, 2, "only one of"},
        {{"./raktn", "tests/work/no-such-model.bin", "--ids", "1"}, 1, "cannot open"},
        {{"./raktn", SW8, "-m", "ppl", "--ids", "1"}, 1, "at least 2 tokens"},
        {{"./raktn"}, 2, "MODEL.bin is required"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Result r = run(NULL, cases[i].argv);
        assert_clean_failure(&r, cases[i].status, cases[i].msg);
        result_free(&r);
    }
    ck_assert(!file_exists(TMP "/never.f32") && !file_exists(TMP "/never.f32.tmp"));
}
END_TEST

/* Corrupt model files: truncated, bad magic, absurd header fields. */
static void write_variant(const char *dst, long truncate_to, long patch_at, const void *patch, size_t patch_len) {
    size_t len;
    char *buf = tu_read_file(SW8, &len);
    ck_assert(buf);
    if (patch) memcpy(buf + patch_at, patch, patch_len);
    if (truncate_to >= 0) len = (size_t)truncate_to;
    FILE *f = fopen(dst, "wb");
    ck_assert(f && fwrite(buf, 1, len, f) == len);
    fclose(f);
    free(buf);
}

START_TEST(test_bad_model_files) {
    uint32_t huge = 0x7FFFFFFFu, zero = 0, three = 3, all_ones = 0xFFFFFFFFu, two = 2;
    float neg = -1.0f;
    struct { long trunc, at; const void *patch; size_t plen; const char *msg; } cases[] = {
        {100, 0, NULL, 0, "shorter than the 256-byte header"},
        {300000, 0, NULL, 0, "truncated"},
        {-1, 0, "NOTRAKTN", 8, "bad magic"},
        {-1, 8, &three, 4, "version"},
        {-1, 12, &three, 4, "dtype"},
        {-1, 16, &zero, 4, "dim"},
        {-1, 16, &huge, 4, "dim"},
        {-1, 28, &huge, 4, "n_heads"},
        {-1, 32, &three, 4, "n_kv_heads"},
        {-1, 40, &huge, 4, "vocab_size"},
        {-1, 52, &huge, 4, "bos_id"},
        {-1, 64, &neg, 4, "rope_theta"},
        {-1, 80, &zero, 4, "header says"},
        {-1, 60, &all_ones, 4, "tied flag"}, /* as an int: -1, not 0 or 1 */
        {-1, 60, &two, 4, "tied flag"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_variant(TMP "/bad.bin", cases[i].trunc, cases[i].at, cases[i].patch, cases[i].plen);
        const char *argv[] = {"./raktn", TMP "/bad.bin", "--ids", "1 2", "-n", "2", NULL};
        Result r = run(NULL, argv);
        assert_clean_failure(&r, 1, cases[i].msg);
        result_free(&r);
    }
}
END_TEST

/* The ids after `label` on a line of stderr (-v), the first such line at or
 * after *from (which is moved past it); -1 if there is none. */
static int ids_after(const char **from, const char *label, int *ids, int cap) {
    const char *at = strstr(*from, label);
    if (!at) return -1;
    const char *end = strchrnul(at, '\n');
    char *line = strndup(at + strlen(label), (size_t)(end - at - strlen(label)));
    int n = tu_parse_ids(line, ids, cap);
    free(line);
    *from = end;
    return n;
}

/* sw8 with header fields bos_id (u32 at 52) and eos_id (u32 at 56) replaced */
static void write_sw8_with_specials(const char *dst, uint32_t bos, uint32_t eos) {
    uint32_t both[2] = {bos, eos};
    write_variant(dst, -1, 52, both, sizeof both);
}

/* HF's greedy generation from sw8gen's prompt (tests/fixtures/sw8gen.json):
 * the prompt as a string and the 34 generated ids */
static void sw8gen(char *prompt, size_t cap, int hf[34]) {
    char *seq = fixture_ids("sw8gen");
    int ids[64];
    ck_assert_int_eq(tu_parse_ids(seq, ids, 64), 40);
    prompt[0] = 0;
    for (int i = 0; i < 6; i++) snprintf(prompt + strlen(prompt), cap - strlen(prompt), i ? " %d" : "%d", ids[i]);
    memcpy(hf, ids + 6, 34 * sizeof(int));
    free(seq);
}

/* Generation stops at EOS, which is output and counted: with eos_id patched
 * to the token HF generates at step k (first there), -t 0 gives HF's tokens
 * 0..k and stops, the EOS not printed. bos_id is patched to the token of an
 * earlier step, which must not stop anything (HF stops on eos_token_id only). */
START_TEST(test_generation_stops_at_eos) {
    char prompt[64];
    int hf[34];
    sw8gen(prompt, sizeof prompt, hf);
    static const struct { int k, bos_step; } cases[] = {{4, 3}, {0, -1}, {13, 9}, {33, 2}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int k = cases[c].k;
        for (int j = 0; j < k; j++) ck_assert(hf[j] != hf[k]); /* HF generated it first at step k */
        int bos = cases[c].bos_step >= 0 ? hf[cases[c].bos_step] : 1;
        write_sw8_with_specials(TMP "/eos.bin", (uint32_t)bos, (uint32_t)hf[k]);
        const char *argv[] = {"./raktn", TMP "/eos.bin", "--ids", prompt, "-t", "0", "-n", "34", "-v", NULL};
        Result r = run(NULL, argv);
        ck_assert_msg(r.status == 0, "%s", r.err);
        int got[64];
        const char *from = r.err;
        int n = ids_after(&from, "generated ids: ", got, 64);
        ck_assert_msg(n == k + 1, "eos_id %d (HF's step %d): %d tokens generated, want %d; stderr:\n%s", hf[k], k, n,
                      k + 1, r.err);
        for (int j = 0; j <= k; j++) ck_assert_msg(got[j] == hf[j], "step %d: %d, HF %d", j, got[j], hf[j]);
        /* stdout: the tokens before EOS, each followed by a space */
        char want[512] = "";
        for (int j = 0; j < k; j++) snprintf(want + strlen(want), sizeof want - strlen(want), "%d ", hf[j]);
        strcat(want, "\n");
        ck_assert_msg(strcmp(r.out, want) == 0, "stdout '%s', want '%s'", r.out, want);
        int pn, dn;
        double ps, ds;
        const char *line = strstr(r.err, "prefill ");
        ck_assert(line && sscanf(line, "prefill %d tok %lf tok/s, decode %d tok %lf tok/s", &pn, &ps, &dn, &ds) == 4);
        ck_assert_int_eq(pn, 6);
        ck_assert_int_eq(dn, k + 1);
        ck_assert_msg(!strstr(r.err, "end of the context"), "%s", r.err);
        result_free(&r);
    }
}
END_TEST

/* Generation stops at the context's last position: with -c C and a prompt
 * of n ids, the model reads positions 0..C-1, so exactly C - n + 1 tokens
 * come out (the last one, predicted at position C-1, is output but never
 * fed), and they are HF's. -c 6 leaves the 6-id prompt one token. */
START_TEST(test_generation_stops_at_context_end) {
    char prompt[64];
    int hf[34];
    sw8gen(prompt, sizeof prompt, hf);
    static const int ctxs[] = {6, 7, 20, 39};
    for (size_t c = 0; c < sizeof ctxs / sizeof ctxs[0]; c++) {
        char cs[16];
        snprintf(cs, sizeof cs, "%d", ctxs[c]);
        const char *argv[] = {"./raktn", SW8, "--ids", prompt, "-t", "0", "-n", "100", "-c", cs, "-v", NULL};
        Result r = run(NULL, argv);
        ck_assert_msg(r.status == 0, "-c %s: %s", cs, r.err);
        int got[128], want_n = ctxs[c] - 6 + 1;
        const char *from = r.err;
        int n = ids_after(&from, "generated ids: ", got, 128);
        ck_assert_msg(n == want_n, "-c %d: %d tokens generated, want %d; stderr:\n%s", ctxs[c], n, want_n, r.err);
        for (int j = 0; j < n; j++) ck_assert_msg(got[j] == hf[j], "-c %d, step %d: %d, HF %d", ctxs[c], j, got[j], hf[j]);
        char msg[80];
        snprintf(msg, sizeof msg, "reached the end of the context (%d positions)", ctxs[c]);
        ck_assert_msg(strstr(r.err, msg) != NULL, "no '%s' on stderr: %s", msg, r.err);
        result_free(&r);
    }
    /* -n equal to what the context allows: the same tokens, no message needed */
    const char *argv[] = {"./raktn", SW8, "--ids", prompt, "-t", "0", "-n", "15", "-c", "40", "-v", NULL};
    Result r = run(NULL, argv);
    int got[64];
    const char *from = r.err;
    ck_assert_int_eq(ids_after(&from, "generated ids: ", got, 64), 15);
    ck_assert(!strstr(r.err, "end of the context"));
    result_free(&r);
}
END_TEST

/* A temperature so small that logit / T overflows a float (1.2e-38, 1e-45)
 * samples the limit T -> 0: HF's greedy tokens, with top-p and without
 * (before the fix: "0 0 0 ..." with -p 0.9, "511 ..." with -p 1). */
START_TEST(test_tiny_temperature_is_greedy) {
    char prompt[64];
    int hf[34];
    sw8gen(prompt, sizeof prompt, hf);
    const char *temps[] = {"1.2e-38", "1e-45"}, *tops[] = {"0.9", "1"};
    for (int ti = 0; ti < 2; ti++)
        for (int pi = 0; pi < 2; pi++) {
            const char *argv[] = {"./raktn", SW8, "--ids", prompt, "-t", temps[ti], "-p", tops[pi], "-s", "3",
                                  "-n", "34", "-v", NULL};
            Result r = run(NULL, argv);
            ck_assert_msg(r.status == 0, "%s", r.err);
            int got[64];
            const char *from = r.err;
            ck_assert_int_eq(ids_after(&from, "generated ids: ", got, 64), 34);
            for (int j = 0; j < 34; j++)
                ck_assert_msg(got[j] == hf[j], "-t %s -p %s, step %d: %d, HF greedy %d", temps[ti], tops[pi], j, got[j],
                              hf[j]);
            result_free(&r);
        }
}
END_TEST

/* The model card's prompt template, written out here byte for byte
 * (RakutenAI-7B-chat/-instruct model cards: FastChat's Vicuna v1.1). */
#define CARD_SYSTEM                                                                                             \
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, " \
    "detailed, and polite answers to the user's questions."

/* ./raktn -m tokenize of text (BOS first, as AutoTokenizer) */
static int tokenize(const char *text, int *ids, int cap) {
    const char *argv[] = {"./raktn", T48K, "-m", "tokenize", "-i", text, NULL};
    Result r = run(NULL, argv);
    ck_assert_msg(r.status == 0, "%s", r.err);
    int n = tu_parse_ids(r.out, ids, cap);
    result_free(&r);
    return n;
}

static void assert_same_ids(const int *got, int n_got, const int *want, int n_want, const char *what) {
    char g[2048] = "", w[2048] = "";
    for (int i = 0; i < n_got && strlen(g) < 2000; i++) sprintf(g + strlen(g), "%d ", got[i]);
    for (int i = 0; i < n_want && strlen(w) < 2000; i++) sprintf(w + strlen(w), "%d ", want[i]);
    ck_assert_msg(n_got == n_want && memcmp(got, want, (size_t)n_got * sizeof(int)) == 0, "%s:\n got  %s\n want %s",
                  what, g, w);
}

/* chat: BOS exactly once, at the start of the conversation; each turn is the
 * card's template around the user's line (turn 1 with the system sentence,
 * later turns without), tokenized from the literal text above; every answer
 * is closed by </s> (generated, or added), never by <s>. -y replaces the
 * system sentence. */
START_TEST(test_chat_template_and_bos_once) {
    static const char *lines[3] = {"Hello, who are you?", "こんにちは、元気ですか？", "Tell me more."};
    for (int sys = 0; sys < 2; sys++) {
        const char *custom = "You are a terse assistant.";
        const char *argv[] = {"./raktn", T48K, "-m", "chat", "-t", "0", "-n", "4", "-v",
                              sys ? "-y" : NULL, custom, NULL};
        Result r = run("Hello, who are you?\nこんにちは、元気ですか？\nTell me more.\n", argv);
        ck_assert_msg(r.status == 0, "%s", r.err);
        const char *from = r.err;
        int bos_seen = 0;
        for (int t = 0; t < 3; t++) {
            int got[512], want[512], answer[64];
            int n = ids_after(&from, "turn ids: ", got, 512);
            ck_assert_msg(n > 0, "turn %d: no 'turn ids:' line; stderr:\n%s", t + 1, r.err);
            char text[512];
            if (t == 0) snprintf(text, sizeof text, "%s USER: %s ASSISTANT:", sys ? custom : CARD_SYSTEM, lines[t]);
            else snprintf(text, sizeof text, "USER: %s ASSISTANT:", lines[t]);
            int nw = tokenize(text, want, 512);
            ck_assert_int_eq(want[0], 1);
            char what[64];
            snprintf(what, sizeof what, "turn %d's ids", t + 1);
            if (t == 0) assert_same_ids(got, n, want, nw, what);
            else assert_same_ids(got, n, want + 1, nw - 1, what); /* the same text without BOS */
            for (int i = 0; i < n; i++) bos_seen += got[i] == 1;
            ck_assert_msg(t > 0 || got[0] == 1, "the conversation does not start with BOS");
            int na = ids_after(&from, "answer ids: ", answer, 64);
            ck_assert_msg(na >= 1 && na <= 4, "turn %d: %d answer ids", t + 1, na);
            if (answer[na - 1] != 2) { /* cut short by -n: closed with </s> */
                int closing[4];
                const char *c = strstr(from, "closing ids: "), *next = strstr(from, "turn ids: ");
                ck_assert_msg(c && (!next || c < next), "turn %d: answer not closed by </s>", t + 1);
                ck_assert_int_eq(ids_after(&from, "closing ids: ", closing, 4), 1);
                ck_assert_int_eq(closing[0], 2);
                bos_seen += closing[0] == 1;
            }
        }
        ck_assert_msg(strstr(from, "turn ids: ") == NULL, "more than three turns");
        /* what raktn adds (the model's answers are its own business) */
        ck_assert_msg(bos_seen == 1, "BOS %d times in the turns raktn fed", bos_seen);
        result_free(&r);
    }
}
END_TEST

/* ---- long runs: every program over more than one prefill chunk (128) ---- */

/* generate: a 200-id prompt (prefill chunks of 128 and 72) then 60 greedy
 * tokens through the KV cache, past the window of 100: HF generate()'s ids
 * (tests/fixtures/long.ids = prompt + HF's 60) */
START_TEST(test_long_generate_matches_hf) {
    char *seq = fixture_ids("long");
    static int ids[512];
    ck_assert_int_eq(tu_parse_ids(seq, ids, 512), 260);
    static char prompt[4096];
    prompt[0] = 0;
    for (int i = 0; i < 200; i++) snprintf(prompt + strlen(prompt), sizeof prompt - strlen(prompt), i ? " %d" : "%d", ids[i]);
    const char *argv[] = {"./raktn", LONG, "--ids", prompt, "-t", "0", "-n", "60", "-v", NULL};
    Result r = run(NULL, argv);
    ck_assert_msg(r.status == 0, "%s", r.err);
    int got[64];
    const char *from = r.err;
    ck_assert_int_eq(ids_after(&from, "generated ids: ", got, 64), 60);
    for (int j = 0; j < 60; j++)
        ck_assert_msg(got[j] == ids[200 + j], "step %d (position %d): %d, HF %d", j, 200 + j, got[j], ids[200 + j]);
    int pn, dn;
    double ps, ds;
    const char *line = strstr(r.err, "prefill ");
    ck_assert(line && sscanf(line, "prefill %d tok %lf tok/s, decode %d tok %lf tok/s", &pn, &ps, &dn, &ds) == 4);
    ck_assert_int_eq(pn, 200);
    ck_assert_int_eq(dn, 60);
    free(seq);
    result_free(&r);
}
END_TEST

/* Logits at positions in the thousands: 4100 ids (33 chunks) through
 * checkpoint long, the rows far.json lists against HF's (tests/fixtures/
 * far.rows.f32). raktn and HF take the same float32 RoPE angles
 * (test_model's test_rope_tables_match_hf_angles), so what is left is the
 * fp32 rounding of the rest: measured 2e-6..7e-6 on these rows (fast and
 * plain builds), as at short positions; allowed 2e-5. An implementation
 * whose angle is not HF's float32 one (exact, or double) differs from HF
 * by 2e-5..2.2e-4 here, 8.5e-5..2.2e-4 from position 3071 on (the truth
 * build: far.json's hf_vs_float64_max_abs). */
START_TEST(test_far_positions_match_hf) {
    static const int rows[] = {999, 1000, 2047, 2048, 3071, 4095, 4096, 4099};
    enum { NR = sizeof rows / sizeof rows[0], V = 256, N = 4100 };
    char *json = tu_read_file("tests/fixtures/far.json", NULL);
    ck_assert(json && strstr(json, "\"rows\": [\n  999,\n  1000,\n  2047,\n  2048,\n  3071,\n  4095,\n  4096,\n  4099\n ]"));
    char *ids = fixture_ids("far");
    const char *out = TMP "/far.f32";
    const char *argv[] = {"./raktn", LONG, "-m", "logits", "--ids", ids, "-o", out, NULL};
    Result r = run(NULL, argv);
    ck_assert_msg(r.status == 0, "%s", r.err);
    float *got = tu_read_f32(out, (size_t)N * V), *want = tu_read_f32("tests/fixtures/far.rows.f32", (size_t)NR * V);
    ck_assert(got && want);
    for (int k = 0; k < NR; k++) {
        float d = 0;
        for (int v = 0; v < V; v++) {
            float e = fabsf(got[(size_t)rows[k] * V + v] - want[k * V + v]);
            if (!(e <= d)) d = e;
        }
        ck_assert_msg(d <= 2e-5f, "position %d: max |dlogit| %g from HF (allowed 2e-5)", rows[k], d);
    }
    unlink(out);
    free(got), free(want), free(ids), free(json);
    result_free(&r);
}
END_TEST

/* Just past the k-th (0-based) `"key": ` in text, followed by `open` */
static const char *json_after(const char *text, const char *key, const char *open, int k) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": %s", key, open);
    const char *at = text;
    for (int i = 0; i <= k; i++) {
        at = strstr(at, pat);
        ck_assert_msg(at != NULL, "no %d-th %s", k, key);
        at += strlen(pat);
    }
    return at;
}

/* The ints of the k-th JSON array named `key` in text */
static int json_ints(const char *text, const char *key, int k, int *out, int cap) {
    const char *at = json_after(text, key, "[", k);
    const char *end = strchr(at, ']');
    char *body = strndup(at, (size_t)(end - at));
    int n = tu_parse_ids(body, out, cap);
    free(body);
    return n;
}

/* The k-th JSON string named `key` (no escapes in it) */
static char *json_string(const char *text, const char *key, int k) {
    const char *at = json_after(text, key, "\"", k);
    const char *end = strchr(at, '"');
    char *s = strndup(at, (size_t)(end - at));
    ck_assert_msg(!strchr(s, '\\'), "escapes in %s", s);
    return s;
}

/* chat across turns longer than a chunk (turn 1: 138 ids, turn 3: 145 ids
 * from position 165; the conversation reaches position 318): each turn's
 * ids and each greedy answer equal tests/fixtures/chat48k.json's, made by
 * HF generate() on the conversation so far. */
START_TEST(test_chat_long_turns_match_hf) {
    char *json = tu_read_file("tests/fixtures/chat48k.json", NULL);
    ck_assert(json);
    static char input[8192];
    input[0] = 0;
    for (int t = 0; t < 3; t++) {
        char *line = json_string(json, "line", t);
        snprintf(input + strlen(input), sizeof input - strlen(input), "%s\n", line);
        free(line);
    }
    const char *argv[] = {"./raktn", T48K, "-m", "chat", "-t", "0", "-n", "8", "-v", NULL};
    Result r = run(input, argv);
    ck_assert_msg(r.status == 0, "%s", r.err);
    const char *from = r.err;
    for (int t = 0; t < 3; t++) {
        static int want[512], got[512];
        int nw = json_ints(json, "turn_ids", t, want, 512), n = ids_after(&from, "turn ids: ", got, 512);
        char what[64];
        snprintf(what, sizeof what, "turn %d's ids", t + 1);
        assert_same_ids(got, n, want, nw, what);
        nw = json_ints(json, "answer_ids", t, want, 512);
        n = ids_after(&from, "answer ids: ", got, 512);
        snprintf(what, sizeof what, "turn %d's answer (HF greedy)", t + 1);
        assert_same_ids(got, n, want, nw, what);
        nw = json_ints(json, "closing_ids", t, want, 512);
        if (nw) {
            ck_assert_int_eq(ids_after(&from, "closing ids: ", got, 512), 1);
            ck_assert_int_eq(got[0], want[0]);
        }
    }
    ck_assert(strstr(from, "turn ids: ") == NULL);
    free(json);
    result_free(&r);
}
END_TEST

/* All "turn ids:" lines of a chat fed `input` (-n 1): their count, and the
 * ids of each turn in turns[k] (n_ids[k]) */
static int chat_turns(const char *input, size_t len, const char *model, int turns[][256], int *n_ids) {
    const char *argv[] = {"./raktn", model, "-m", "chat", "-t", "0", "-n", "1", "-v", NULL};
    Result r = run_in(input, len, argv);
    ck_assert_msg(r.status == 0, "%s", r.err);
    int k = 0;
    const char *from = r.err;
    while (k < 8 && (n_ids[k] = ids_after(&from, "turn ids: ", turns[k], 256)) >= 0) k++;
    result_free(&r);
    return k;
}

static int template_ids(const char *line, int first, int *ids, int cap) {
    char text[1024];
    if (first) snprintf(text, sizeof text, "%s USER: %s ASSISTANT:", CARD_SYSTEM, line);
    else snprintf(text, sizeof text, "USER: %s ASSISTANT:", line);
    int n = tokenize(text, ids, cap);
    if (first) return n;
    memmove(ids, ids + 1, (size_t)(n - 1) * sizeof(int)); /* without BOS */
    return n - 1;
}

/* chat's input lines: a line ending in CRLF is the same turn as with LF;
 * empty lines (LF or CRLF) are skipped and do not end the conversation; a
 * line of only spaces is a turn like any other (the template around those
 * spaces, as FastChat's command line does); the last line without a newline
 * is still a turn (notes/chat.md). Expected: -m tokenize of each turn's
 * template text. */
START_TEST(test_chat_input_lines) {
    static const struct { const char *input; int turns; const char *lines[3]; } cases[] = {
        {"Hello, who are you?\r\nTell me more.\r\n", 2, {"Hello, who are you?", "Tell me more."}},
        {"\n\nHello, who are you?\n\n\r\n\nTell me more.\n\n", 2, {"Hello, who are you?", "Tell me more."}},
        {"   \nTell me more.\n", 2, {"   ", "Tell me more."}},
        {"Hello, who are you?\nTell me more.", 2, {"Hello, who are you?", "Tell me more."}},
        {"Hello, who are you?\r\n\r\n   \r\nTell me more.", 3, {"Hello, who are you?", "   ", "Tell me more."}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        static int got[8][256], want[256];
        int n_got[8];
        int k = chat_turns(cases[c].input, strlen(cases[c].input), T48K, got, n_got);
        ck_assert_msg(k == cases[c].turns, "case %zu: %d turns, want %d", c, k, cases[c].turns);
        for (int t = 0; t < k; t++) {
            int nw = template_ids(cases[c].lines[t], t == 0, want, 256);
            char what[64];
            snprintf(what, sizeof what, "case %zu, turn %d", c, t + 1);
            assert_same_ids(got[t], n_got[t], want, nw, what);
        }
    }
}
END_TEST

/* A tokenizer without BOS (t48k-nobos: tokenizer_config.json add_bos_token
 * false): no program puts <s> in front of text, as AutoTokenizer with that
 * config; the ids are otherwise those of the tokenizer with BOS. */
START_TEST(test_no_bos_tokenizer) {
    const char *text = "楽天は東京に本社を置く企業です。";
    int with[64], without[64];
    int nw = tokenize(text, with, 64);
    ck_assert_int_eq(with[0], 1);
    const char *tk[] = {"./raktn", NOBOS, "-m", "tokenize", "-i", text, NULL};
    Result r = run(NULL, tk);
    ck_assert_msg(r.status == 0, "%s", r.err);
    int n = tu_parse_ids(r.out, without, 64);
    assert_same_ids(without, n, with + 1, nw - 1, "-m tokenize without BOS");
    result_free(&r);
    /* generate and logits print the prompt's ids; ppl counts them */
    const char *gen[] = {"./raktn", NOBOS, "-i", text, "-t", "0", "-n", "2", "-v", NULL};
    r = run(NULL, gen);
    ck_assert_msg(r.status == 0, "%s", r.err);
    int got[64];
    const char *from = r.err;
    n = ids_after(&from, "prompt ids: ", got, 64);
    assert_same_ids(got, n, with + 1, nw - 1, "generate's prompt");
    result_free(&r);
    const char *lg[] = {"./raktn", NOBOS, "-m", "logits", "-i", text, "--top", "1", NULL};
    r = run(NULL, lg);
    ck_assert_msg(r.status == 0, "%s", r.err);
    from = r.err;
    n = ids_after(&from, "ids: ", got, 64);
    assert_same_ids(got, n, with + 1, nw - 1, "logits' ids");
    result_free(&r);
    const char *pp[] = {"./raktn", NOBOS, "-m", "ppl", "-i", text, NULL};
    r = run(NULL, pp);
    ck_assert_msg(r.status == 0, "%s", r.err);
    int tokens;
    ck_assert(sscanf(r.out, "tokens %d", &tokens) == 1);
    ck_assert_int_eq(tokens, nw - 1);
    result_free(&r);
    /* chat: the first turn without BOS, and no BOS anywhere */
    static int turns[8][256], want[256];
    int n_ids[8];
    const char *two = "Hello, who are you?\nTell me more.\n";
    int k = chat_turns(two, strlen(two), NOBOS, turns, n_ids);
    ck_assert_int_eq(k, 2);
    int nt = template_ids("Hello, who are you?", 1, want, 256);
    assert_same_ids(turns[0], n_ids[0], want + 1, nt - 1, "chat's first turn without BOS");
    for (int t = 0; t < k; t++)
        for (int i = 0; i < n_ids[t]; i++) ck_assert_msg(turns[t][i] != 1, "BOS in turn %d", t + 1);
}
END_TEST

/* Every field of model.bin's header is read and used: changed alone, it
 * changes the output, or the file is refused (the shapes must then account
 * for the file's size). sw8 (window 8, 40 ids) run through -m logits; a
 * changed field that is accepted must move some logit by more than 1e-3.
 * bos_id is the exception by design: as config.bos_token_id in transformers
 * when a prompt is given, it is not used (the tokenizer adds BOS); it is
 * only checked to be in the vocabulary. eos_id: test_generation_stops_at_eos. */
static float *sw8_logits(const char *model, Result *r) {
    char *ids = fixture_ids("sw8");
    const char *out = TMP "/hdr.f32";
    unlink(out);
    const char *argv[] = {"./raktn", model, "-m", "logits", "--ids", ids, "-o", out, NULL};
    *r = run(NULL, argv);
    free(ids);
    return r->status == 0 ? tu_read_f32(out, 40 * 512) : NULL;
}

START_TEST(test_header_fields_change_the_output) {
    Result r;
    float *base = sw8_logits(SW8, &r);
    ck_assert_msg(base != NULL, "%s", r.err);
    result_free(&r);
    uint32_t u;
    float f;
    struct { const char *field; long at; uint32_t u32; float f32; int is_float; int nvals; const char *refused; } cases[] = {
        {"dtype", 12, 1, 0, 0, 1, "header says"},
        {"dim", 16, 32, 0, 0, 1, "header says"},
        {"hidden_dim", 20, 80, 0, 0, 1, "header says"},
        {"n_layers", 24, 2, 0, 0, 1, "header says"},
        {"n_heads", 28, 2, 0, 0, 1, "header says"},
        {"n_kv_heads", 32, 1, 0, 0, 1, "header says"},
        {"head_dim", 36, 8, 0, 0, 1, "header says"},
        {"vocab_size", 40, 256, 0, 0, 1, "header says"},
        {"max_seq_len", 44, 39, 0, 0, 1, "context"},
        {"sliding_window", 48, 9, 0, 0, 1, NULL},
        {"sliding_window", 48, 0, 0, 0, 1, NULL},
        {"bos_id", 52, 512, 0, 0, 1, "bos_id"},
        {"eos_id", 56, 512, 0, 0, 1, "eos_id"},
        {"tied", 60, 1, 0, 0, 1, "header says"},
        {"rope_theta", 64, 0, 10500.0f, 1, 1, NULL},
        {"rms_norm_eps", 68, 0, 1e-3f, 1, 1, NULL},
        {"data_offset", 72, 320, 0, 0, 1, "offset"},
        {"file_size", 80, 0, 0, 0, 1, "header says"},
        /* the head layout, 4 heads of 16 with 2 KV heads, as 8 of 8 with 4, or 2 of 32 with 1: the same sizes */
        {"n_heads+n_kv_heads+head_dim (8, 4, 8)", 28, 8, 0, 0, 3, NULL},
        {"n_heads+n_kv_heads+head_dim (2, 1, 32)", 28, 2, 0, 0, 3, NULL},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        if (cases[c].nvals == 3) {
            uint32_t three[3] = {cases[c].u32, cases[c].u32 / 2, 64 / cases[c].u32};
            write_variant(TMP "/hdr.bin", -1, cases[c].at, three, sizeof three);
        } else if (cases[c].is_float) {
            /* the float32 (the fp32 builds) and the float64 beside it (the
             * truth build), which must round to it: bytes 64..103 */
            unsigned char hdr[40];
            char *file = tu_read_file(SW8, NULL);
            ck_assert(file);
            memcpy(hdr, file + 64, sizeof hdr);
            free(file);
            f = cases[c].f32;
            double d64 = f;
            memcpy(hdr + (cases[c].at - 64), &f, 4);
            memcpy(hdr + (cases[c].at == 64 ? 88 : 96) - 64, &d64, 8);
            write_variant(TMP "/hdr.bin", -1, 64, hdr, sizeof hdr);
        } else {
            u = cases[c].u32;
            write_variant(TMP "/hdr.bin", -1, cases[c].at, &u, 4);
        }
        float *got = sw8_logits(TMP "/hdr.bin", &r);
        if (cases[c].refused) {
            ck_assert_msg(r.status == 1 && !got, "%s changed: exit %d, not refused", cases[c].field, r.status);
            ck_assert_msg(strstr(r.err, cases[c].refused), "%s changed: '%s' not in %s", cases[c].field, cases[c].refused,
                          r.err);
        } else {
            ck_assert_msg(got != NULL, "%s changed: %s", cases[c].field, r.err);
            float d = 0;
            for (int i = 0; i < 40 * 512; i++) d = fmaxf(d, fabsf(got[i] - base[i]));
            ck_assert_msg(d > 1e-3f, "%s changed, the logits did not (max |d| %g)", cases[c].field, d);
        }
        free(got);
        result_free(&r);
    }
    /* the exact rope_theta / rms_norm_eps (float64, notes/format.md): one
     * that does not round to the float32 beside it is refused; 0 (a file
     * from before they existed) means "the float32's value" */
    double exact[2][2] = {{10500.0, 0.0}, {2e-5, 0.0}};
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 2; j++) {
            write_variant(TMP "/hdr.bin", -1, k ? 96 : 88, &exact[k][j], 8);
            float *got = sw8_logits(TMP "/hdr.bin", &r);
            if (j == 0) {
                ck_assert_msg(r.status == 1 && !got && strstr(r.err, "does not round"), "float64 %s %g: %s",
                              k ? "eps" : "theta", exact[k][j], r.err);
            } else {
                ck_assert_msg(got != NULL, "%s", r.err);
                ck_assert_msg(memcmp(got, base, 40 * 512 * sizeof(float)) == 0, "float64 field 0: other logits");
            }
            free(got);
            result_free(&r);
        }
    free(base);
}
END_TEST

Suite *cli_suite(void) {
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("raktn");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_logits_file_matches_hf, 0, 3);
    tcase_add_loop_test(tc, test_ppl_matches_reference_logits, 0, 2);
    tcase_add_test(tc, test_greedy_generate_matches_hf);
    tcase_add_test(tc, test_same_seed_same_output);
    tcase_add_test(tc, test_chat_two_turns_equals_one_pass);
    tcase_add_test(tc, test_top_k_view);
    tcase_add_test(tc, test_bad_flags);
    tcase_add_test(tc, test_bad_model_files);
    tcase_add_test(tc, test_generation_stops_at_eos);
    tcase_add_test(tc, test_generation_stops_at_context_end);
    tcase_add_test(tc, test_tiny_temperature_is_greedy);
    tcase_add_test(tc, test_chat_template_and_bos_once);
    tcase_add_test(tc, test_long_generate_matches_hf);
    tcase_add_test(tc, test_far_positions_match_hf);
    tcase_add_test(tc, test_chat_long_turns_match_hf);
    tcase_add_test(tc, test_chat_input_lines);
    tcase_add_test(tc, test_no_bos_tokenizer);
    tcase_add_test(tc, test_header_fields_change_the_output);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    mkdir(TMP, 0755);
    SRunner *sr = srunner_create(cli_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
