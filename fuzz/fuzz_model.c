/* fuzz/fuzz_model.c - libFuzzer harness for raktn.c's model loader.
 *
 * The input is a whole model.bin. It is written to a memfd and handed to the
 * real load_model() (open, fstat, pread of the header, parse_header,
 * layout_weights, file-size checks, mmap). load_model() reports a bad file
 * with die() -> exit(1); here exit() is redirected to a longjmp back into the
 * harness, so a rejected file is a normal outcome and only a sanitizer
 * report, a signal or a hang is a finding.
 *
 * A file that loads is then used: every tensor's first and last element is
 * read (ASan checks they lie inside the mapping), and when the model is
 * small, two tokens go through the forward pass and the logits through the
 * sampler (greedy, temperature + top-p) - random weight bytes include NaN and
 * Inf, which is how a corrupt-but-well-formed download behaves.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static jmp_buf fuzz_jmp;
static int fuzz_armed;
static int fuzz_last_fd = -1;
/* die()/bad_usage() end with exit(); come back here instead */
static void fuzz_exit(int code) {
    if (fuzz_armed) longjmp(fuzz_jmp, code ? code : 1);
    _Exit(code);
}
#define exit(code) fuzz_exit(code)
/* remember the descriptor load_model() opens: it does not close it on die() */
#include <fcntl.h>
static int fuzz_open(const char *path, int flags, ...) {
    fuzz_last_fd = open(path, flags);
    return fuzz_last_fd;
}
#define open fuzz_open
/* raktn.c's messages (die, usage) go to /dev/null unless FUZZ_VERBOSE is set;
 * sanitizer reports still reach the real stderr */
#include <stdio.h>
static FILE *fuzz_stderr;
#undef stderr
#define stderr (fuzz_stderr ? fuzz_stderr : (fuzz_stderr = fopen(getenv("FUZZ_VERBOSE") ? "/dev/stderr" : "/dev/null", "w")))
#define RAKTN_NO_MAIN
#include "../raktn.c"
#undef stderr
#define stderr stderr
#undef open
#undef exit

static int memfd = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (64u << 20)) return 0;
    if (memfd < 0) {
        memfd = memfd_create("fuzz_model", 0);
        if (memfd < 0) abort();
    }
    if (ftruncate(memfd, 0) != 0) abort();
    if (size && pwrite(memfd, data, size, 0) != (ssize_t)size) abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);

    static Model m; /* static: survives the longjmp */
    m = (Model){0};
    fuzz_last_fd = -1;
    fuzz_armed = 1;
    if (setjmp(fuzz_jmp) != 0) {   /* rejected: clean up what load_model left */
        fuzz_armed = 0;
        free(m.weights.layers);
        if (fuzz_last_fd >= 0) close(fuzz_last_fd);
        return 0;
    }
    load_model(&m, path);
    fuzz_armed = 0;

    /* it loaded: the file is exactly as long as the header says */
    const Config *c = &m.config;
    if (m.map_size != size) abort();
    volatile unsigned char sink = 0;
    const unsigned char *lo = m.map, *hi = lo + m.map_size;
    size_t esize = c->dtype == DTYPE_F32 ? 4 : 2;
#define TOUCH(p, count)                                                                  \
    do {                                                                                 \
        const unsigned char *p_ = (const unsigned char *)(p);                            \
        size_t end_ = (size_t)(count) * esize;                                           \
        if (p_ < lo + HEADER_SIZE || p_ + end_ > hi) abort();                            \
        sink ^= p_[0] ^ p_[end_ - 1];                                                    \
    } while (0)
    size_t D = c->dim, F = c->hidden_dim, V = c->vocab_size;
    size_t Q = (size_t)c->n_heads * c->head_dim, KV = (size_t)c->n_kv_heads * c->head_dim;
    TOUCH(m.weights.embed_tokens, V * D);
    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *L = &m.weights.layers[l];
        TOUCH(L->input_layernorm, D);
        TOUCH(L->q_proj, Q * D);
        TOUCH(L->k_proj, KV * D);
        TOUCH(L->v_proj, KV * D);
        TOUCH(L->o_proj, D * Q);
        TOUCH(L->post_attention_layernorm, D);
        TOUCH(L->gate_proj, F * D);
        TOUCH(L->up_proj, F * D);
        TOUCH(L->down_proj, D * F);
    }
    TOUCH(m.weights.norm, D);
    TOUCH(m.weights.lm_head, V * D);
#undef TOUCH
    (void)sink;

    /* small enough to run: two tokens through the model, then sample */
    if (size <= (1u << 20) && c->n_layers <= 8) {
        int ctx = c->max_seq_len < 4 ? c->max_seq_len : 4;
        RunState s;
        init_state(&s, c, ctx);
        int toks[2] = {0, c->vocab_size - 1};
        int n = ctx < 2 ? 1 : 2;
        float *logits = forward(&m, &s, toks, n, 0);
        Sampler sp = {.temperature = 0.0f, .top_p = 0.9f, .rng = 0x9E3779B97F4A7C15ULL};
        sp.idx = xcalloc((size_t)c->vocab_size, sizeof(int));
        float *copy = xcalloc((size_t)c->vocab_size, sizeof(float));
        const float temps[3] = {0.0f, 0.8f, 1.2e-38f};
        for (int k = 0; k < 3; k++) {
            memcpy(copy, logits, (size_t)c->vocab_size * sizeof(float));
            sp.temperature = temps[k];
            int id = sample(&sp, copy, c->vocab_size);
            if (id < 0 || id >= c->vocab_size) abort();
        }
        free(copy);
        free(sp.idx);
        free_state(&s);
    }
    free_model(&m);
    return 0;
}
