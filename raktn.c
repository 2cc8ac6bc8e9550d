/* raktn.c - RakutenAI-7B (the Mistral-7B architecture) in one file of C.
 *
 * How to read this file
 *
 *   Part 1  THE MODEL          read this first: it is the whole definition.
 *           Config and weights, the run state (activations, the KV cache),
 *           the building blocks in plain C (matmul, RMSNorm, RoPE, softmax,
 *           SiLU, attention), the forward pass step by step as Hugging Face
 *           transformers' MistralForCausalLM.forward, then sampling.
 *   Part 2  MAKING IT FAST     skip on a first read. Vector kernels, tiles,
 *           prefetching, blocked attention and threads. Each fast kernel
 *           names the plain function of Part 1 it computes, and
 *           tests/test_model.c holds it to that function.
 *   Part 3  THE MODEL FILE     model.bin (notes/format.md): checked, mmap'd.
 *   Part 4  THE PROGRAMS       generate, chat, logits, ppl, tokenize,
 *           detokenize, and the command line.
 *
 * Every computation is fp32 and mirrors transformers' MistralForCausalLM
 * (eager attention); the comments name the HF module each step mirrors.
 * Weights are stored as fp32 or bf16 (widened to fp32 as they are read,
 * which is exact). notes/model.md walks Part 1 with the 7B's shapes.
 *
 * Build: make         the full build (Part 1 + Part 2; POSIX threads)
 *        make plain   ./raktn-plain: Part 1 alone does the computing
 *                     (-DRAKTN_PLAIN; same results within rounding)
 * Usage: ./raktn MODEL.bin -i "prompt"    (./raktn -h for everything else)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* glibc, musl: MAP_ANONYMOUS, madvise(MADV_HUGEPAGE), sched_getaffinity */
#endif
#ifndef _DARWIN_C_SOURCE
#define _DARWIN_C_SOURCE /* macOS: MAP_ANON, madvise */
#endif
#ifndef _FILE_OFFSET_BITS
#define _FILE_OFFSET_BITS 64 /* 32-bit hosts: files over 2 GiB */
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#if defined(__GNUC__)
#include <tgmath.h> /* <math.h>, and exp(x) typed by its argument */
#else
/* <tgmath.h> is built on GCC's and Clang's own extensions (tcc cannot
 * compile glibc's): the functions used here, typed by their argument the
 * same way (expf for a float, exp for a double) */
#include <math.h>
#define exp(x) _Generic((x), float: expf, default: exp)(x)
#define log(x) _Generic((x), float: logf, default: log)(x)
#define sqrt(x) _Generic((x), float: sqrtf, default: sqrt)(x)
#define cos(x) _Generic((x), float: cosf, default: cos)(x)
#define sin(x) _Generic((x), float: sinf, default: sin)(x)
#define pow(x, y) _Generic((x) + (y), float: powf, default: pow)(x, y)
#endif
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "tokenizer.h"

/* Part 2's kernels are written with GCC's and Clang's vector extensions;
 * other compilers build the plain model (Part 1) alone. */
#if !defined(__GNUC__) && !defined(RAKTN_PLAIN)
#define RAKTN_PLAIN
#endif

/* Positions pushed through the layers together during a prompt (prefill):
 * each weight row is then read from memory once per chunk instead of once
 * per token. */
#ifndef CHUNK
#define CHUNK 128
#endif
_Static_assert(CHUNK >= 1, "CHUNK: at least one position");

/* s with every control character written as \n, \r, \t or \xNN, into
 * dst (at least 4 * strlen(s) + 1 bytes) */
static void escape_into(char *dst, const char *s) {
    static const char hex[] = "0123456789abcdef";
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch >= 0x20 && ch != 0x7f) { *dst++ = (char)ch; continue; }
        *dst++ = '\\';
        if (ch == '\n') *dst++ = 'n';
        else if (ch == '\r') *dst++ = 'r';
        else if (ch == '\t') *dst++ = 't';
        else *dst++ = 'x', *dst++ = hex[ch >> 4], *dst++ = hex[ch & 15];
    }
    *dst = 0;
}

/* Every failure is one line on stderr, "raktn: error: ...", and a non-zero
 * exit: 1 for bad files and data (die), 2 for bad usage (bad_usage). A
 * control character in it (a newline in a file name) is written escaped, so
 * that it stays one line. */
static void print_error(const char *fmt, va_list ap) {
    va_list again;
    va_copy(again, ap);
    int len = vsnprintf(NULL, 0, fmt, ap);
    char *msg = len >= 0 ? malloc((size_t)len + 1) : NULL, *shown = msg ? malloc(4 * (size_t)len + 1) : NULL;
    fputs("raktn: error: ", stderr);
    if (shown) {
        vsnprintf(msg, (size_t)len + 1, fmt, again);
        escape_into(shown, msg);
        fputs(shown, stderr);
    } else {
        vfprintf(stderr, fmt, again); /* out of memory: as it is */
    }
    va_end(again);
    fputc('\n', stderr);
    free(msg);
    free(shown);
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    print_error(fmt, ap);
    va_end(ap);
    exit(1);
}

/* a * b as a size, or a one-line error where it does not fit (32-bit hosts) */
static size_t size_mul(uint64_t a, uint64_t b) {
    if (a && b > SIZE_MAX / a) die("out of memory (%llu x %llu does not fit in this machine's sizes)",
                                   (unsigned long long)a, (unsigned long long)b);
    return (size_t)(a * b);
}

/* x is neither NaN nor infinite, read from its bits: -ffast-math lets a
 * compiler assume isfinite() is always true and drop the check */
static int is_finite(double x) {
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return (u >> 52 & 0x7ff) != 0x7ff;
}

static void *xcalloc(size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) die("out of memory (%zu x %zu bytes)", n, size);
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) die("out of memory (%zu x %zu bytes)", n, size);
    return p;
}

/* ##########################################################################
 * PART 1: THE MODEL
 * ########################################################################## */

/* The shape of the model: config.json's fields, with the 7B's values. */
typedef struct {
    int dim;            /* hidden_size: 4096 */
    int hidden_dim;     /* intermediate_size, the MLP's width: 14336 */
    int n_layers;       /* num_hidden_layers: 32 */
    int n_heads;        /* num_attention_heads (query heads): 32 */
    int n_kv_heads;     /* num_key_value_heads: 8 (grouped-query attention) */
    int head_dim;       /* hidden_size / num_attention_heads: 128 */
    int vocab_size;     /* vocab_size: 48000 for RakutenAI (Mistral: 32000) */
    int max_seq_len;    /* max_position_embeddings: 32768 */
    int sliding_window; /* sliding_window: each position sees this many keys (4096); 0 = all */
    int bos_id, eos_id; /* bos_token_id 1, eos_token_id 2; -1 when absent */
    int tied;           /* tie_word_embeddings: false (lm_head has its own matrix) */
    double rope_theta;   /* rope_theta: 10000 } as config.json gives them; the fp32 builds  */
    double rms_norm_eps; /* rms_norm_eps: 1e-5 } round them to float, as transformers does */
    int dtype;          /* how model.bin stores the weights: DTYPE_F32 or DTYPE_BF16 */
} Config;

enum { DTYPE_F32 = 0, DTYPE_BF16 = 1 };

/* The type every activation is computed in: float, as transformers does in
 * fp32; double in the truth build (make truth: the model's exact math, to
 * measure how far fp32 implementations are from it). Math functions come
 * from <tgmath.h>, so exp(x) is expf for a float and exp for a double. */
#ifdef RAKTN_TRUTH
typedef double real;
#else
typedef float real;
#endif

/* The weights, as in the HF checkpoint: each points into the mapped file
 * at fp32 or bf16 values (Config.dtype), row-major as in PyTorch, so a
 * Linear's weight is [out_features][in_features]. */
typedef struct {
    const void *input_layernorm;          /* [dim] */
    const void *q_proj;                   /* self_attn.q_proj: [n_heads*head_dim][dim] */
    const void *k_proj, *v_proj;          /* self_attn.k_proj, v_proj: [n_kv_heads*head_dim][dim] */
    const void *o_proj;                   /* self_attn.o_proj: [dim][n_heads*head_dim] */
    const void *post_attention_layernorm; /* [dim] */
    const void *gate_proj, *up_proj;      /* mlp.gate_proj, up_proj: [hidden_dim][dim] */
    const void *down_proj;                /* mlp.down_proj: [dim][hidden_dim] */
} LayerWeights;

typedef struct {
    const void *embed_tokens; /* model.embed_tokens: [vocab][dim] */
    LayerWeights *layers;     /* model.layers: [n_layers] */
    const void *norm;         /* model.norm: [dim] */
    const void *lm_head;      /* lm_head: [vocab][dim]; == embed_tokens when tied */
} Weights;

typedef struct {
    Config config;
    Weights weights;
    void *map; /* model.bin, mapped read-only (Part 3) */
    size_t map_size;
} Model;

/* bf16 is the top 16 bits of an fp32, so widening is a shift and is exact */
static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Element i of a weight tensor, as fp32 */
static inline float weight_at(const void *w, size_t i, int dtype) {
    return dtype == DTYPE_F32 ? ((const float *)w)[i] : bf16_to_f32(((const uint16_t *)w)[i]);
}

/* ==========================================================================
 * The run state: activations for a chunk of up to CHUNK positions, and the
 * key/value cache. The cache is a ring of `cache_len` positions per layer:
 * position p lives in slot p % cache_len. With a sliding window W a
 * position never looks further back than W-1, so W slots suffice however
 * long the text runs.
 * ========================================================================== */

struct Fast; /* Part 2's scratch memory (none in the plain build) */

typedef struct RunState {
    int ctx;          /* positions this run may reach (<= max_seq_len) */
    int cache_len;    /* slots in the ring: min(sliding_window, ctx), or ctx */
    real *x;         /* [CHUNK][dim] the residual stream */
    real *xb;        /* [CHUNK][dim] a block's normed input */
    real *q;         /* [CHUNK][n_heads*head_dim] queries */
    real *k, *v;     /* [CHUNK][n_kv_heads*head_dim] this chunk's keys and values */
    real *att_out;   /* [CHUNK][n_heads*head_dim] attention output, before o_proj */
    real *proj;      /* [CHUNK][dim] output of o_proj or down_proj */
    real *gate, *up; /* [CHUNK][hidden_dim] */
    real *scores;    /* [cache_len] one query's attention weights */
    real *inv_freq;  /* [head_dim/2] RoPE frequencies */
    real *rope_cos, *rope_sin; /* [CHUNK][head_dim/2] the chunk's RoPE angles */
    real *key_cache; /* [n_layers][n_kv_heads][cache_len][head_dim] (kv_offset) */
    real *value_cache;
    size_t kv_floats; /* values in each cache */
    real *logits;    /* [vocab] the last position's logits */
    struct Fast *fast; /* Part 2's scratch (kernels.prepare), or NULL */
    void (*release)(struct RunState *s); /* how to free what kernels.prepare made, or NULL */
} RunState;

/* ==========================================================================
 * The building blocks
 * ========================================================================== */

/* nn.Linear without bias, for a batch of positions:
 * out[b][i] = sum_k W[i][k] * x[b][k], W is [d][n], x is [batch][n]. */
static void matmul(real *out, const real *x, const void *w, int batch, int n, int d, int dtype) {
    for (int b = 0; b < batch; b++)
        for (int i = 0; i < d; i++) {
            real sum = 0;
            for (int k = 0; k < n; k++) sum += weight_at(w, (size_t)i * n + k, dtype) * x[(size_t)b * n + k];
            out[(size_t)b * d + i] = sum;
        }
}

/* MistralRMSNorm: out = w * x / sqrt(mean(x^2) + eps) for each of `rows`
 * vectors of n. No mean subtracted, no bias; w is a learned per-channel
 * scale. */
static void rmsnorm_row(real *out, const real *x, const void *w, int n, real eps, int dtype) {
    /* The mean of the squares in double, rounded once: torch sums a float
     * tensor pairwise, within an ulp or two of the exact mean; a plain float
     * loop over the 7B's 4096 squares would drift further. */
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    real inv = 1 / sqrt((real)(ss / n) + eps);
    for (int i = 0; i < n; i++) out[i] = weight_at(w, (size_t)i, dtype) * (x[i] * inv);
}
static void rmsnorm(real *out, const real *x, const void *w, int rows, int n, real eps, int dtype) {
    for (int r = 0; r < rows; r++) rmsnorm_row(out + (size_t)r * n, x + (size_t)r * n, w, n, eps, dtype);
}

/* MistralRotaryEmbedding: the cosine and sine of each position's angles,
 * angle = float(p) * inv_freq[i], computed in fp32 as HF does (in double in
 * the truth build). */
static void rope_angles(RunState *s, int head_dim, int pos, int n) {
    int half = head_dim / 2;
    for (int b = 0; b < n; b++)
        for (int i = 0; i < half; i++) {
            real angle = (real)(pos + b) * s->inv_freq[i];
            s->rope_cos[(size_t)b * half + i] = cos(angle);
            s->rope_sin[(size_t)b * half + i] = sin(angle);
        }
}

/* apply_rotary_pos_emb with rotate_half: in each head, dim i turns together
 * with dim i + head_dim/2 (not with its neighbour, as in Meta's original
 * layout) by the position's angle i. This is where the position enters. */
static void rope(real *vec, int n_heads, int head_dim, const real *cos_p, const real *sin_p) {
    int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        real *v = vec + (size_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            real x0 = v[i], x1 = v[i + half];
            v[i] = x0 * cos_p[i] - x1 * sin_p[i];
            v[i + half] = x1 * cos_p[i] + x0 * sin_p[i];
        }
    }
}

/* softmax in place: exp(x - max) / sum. Subtracting the max first keeps
 * exp from overflowing and does not change the result. */
static void softmax(real *x, int n) {
    real max = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > max) max = x[i];
    real sum = 0;
    for (int i = 0; i < n; i++) {
        x[i] = exp(x[i] - max);
        sum += x[i];
    }
    for (int i = 0; i < n; i++) x[i] /= sum;
}

/* The MLP's activation (act_fn): SiLU(x) = x * sigmoid(x), in place */
static void silu(real *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] / (1 + exp(-x[i]));
}

/* x *= y (the MLP's gating) and x += y (the residual connections) */
static void mul_in_place(real *x, const real *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] *= y[i];
}
static void add_in_place(real *x, const real *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

/* Where the key (or value) of position t for KV head kvh of a layer lives
 * in the ring: [layer][KV head][slot][head_dim], slot t % cache_len. */
static size_t kv_offset(const RunState *s, const Config *c, int layer, int kvh, int t) {
    return (((size_t)layer * c->n_kv_heads + kvh) * s->cache_len + (size_t)(t % s->cache_len)) * c->head_dim;
}

/* The key (cache = key_cache, chunk = k) or value (value_cache, v) of
 * position t: in the ring if it came before this chunk (t < pos), else
 * still in the chunk's own rows. */
static const real *kv_row(const Config *c, const RunState *s, const real *cache, const real *chunk, int layer,
                           int kvh, int t, int pos) {
    if (t < pos) return cache + kv_offset(s, c, layer, kvh, t);
    return chunk + (size_t)(t - pos) * c->n_kv_heads * c->head_dim + (size_t)kvh * c->head_dim;
}

/* The first key position p may attend to: its sliding window holds W keys,
 * itself included (HF's sliding-window causal mask) */
static int first_key(const Config *c, int p) {
    return c->sliding_window > 0 && p - c->sliding_window + 1 > 0 ? p - c->sliding_window + 1 : 0;
}

/* Watching the forward pass (--hidden, --dump): given a Trace, the forward
 * pass hands it each module's output under the Hugging Face module's name
 * ("self_attn.q_proj" of layer 3: model.layers.3.self_attn.q_proj). */
typedef struct Trace Trace;
struct Trace {
    /* rows x cols floats: `module`'s output for positions pos .. pos+rows-1;
     * layer -1 for the modules outside the layers */
    void (*output)(Trace *t, const char *module, int layer, int pos, const real *x, int rows, int cols);
    /* NULL, or: query head h at position p, its attention weights over keys
     * first .. first+n_keys-1 (the rest of the causal row is 0) */
    void (*weights)(Trace *t, int layer, int h, int p, int first, const real *w, int n_keys);
};

/* The name under which a layer hands over its own output: HF's module
 * model.layers.L itself (its output_hidden_states entry L+1) */
#define LAYER_OUTPUT ""

static void trace(Trace *t, const char *module, int layer, int pos, const real *x, int rows, int cols) {
    if (t) t->output(t, module, layer, pos, x, rows, cols);
}

/* MistralAttention (eager), after the projections and RoPE: for each of the
 * chunk's positions p and each query head h, a score for every key p may
 * see (q . k / sqrt(head_dim)), softmax, and the weighted sum of the
 * values. GQA (HF's repeat_kv): query head h reads KV head h / group. Keys
 * before the chunk come from the ring; the chunk's own are still in s->k. */
static void attention(const Config *c, RunState *s, int layer, int n, int pos, Trace *tr) {
    int hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
    for (int b = 0; b < n; b++) {
        int p = pos + b, first = first_key(c, p), n_keys = p - first + 1;
        for (int h = 0; h < c->n_heads; h++) {
            int kvh = h / group;
            const real *q = s->q + ((size_t)b * c->n_heads + h) * hd;
            for (int t = first; t <= p; t++) {
                const real *k = kv_row(c, s, s->key_cache, s->k, layer, kvh, t, pos);
                real dot = 0;
                for (int i = 0; i < hd; i++) dot += q[i] * k[i];
                s->scores[t - first] = dot / sqrt((real)hd);
            }
            softmax(s->scores, n_keys);
            if (tr && tr->weights) tr->weights(tr, layer, h, p, first, s->scores, n_keys);
            real *out = s->att_out + ((size_t)b * c->n_heads + h) * hd;
            for (int i = 0; i < hd; i++) out[i] = 0;
            for (int t = first; t <= p; t++) {
                const real *v = kv_row(c, s, s->value_cache, s->v, layer, kvh, t, pos);
                for (int i = 0; i < hd; i++) out[i] += s->scores[t - first] * v[i];
            }
        }
    }
}

/* The KV cache: after every position of the chunk has attended, its keys
 * and values go into their ring slots, in position order (with more
 * positions than slots the latest win). Writing them before attending could
 * overwrite a key an earlier position of the chunk still needs. */
static void store_kv(const Config *c, RunState *s, int layer, int n, int pos) {
    int hd = c->head_dim, kv_dim = c->n_kv_heads * hd;
    for (int b = 0; b < n; b++)
        for (int kvh = 0; kvh < c->n_kv_heads; kvh++) {
            size_t at = kv_offset(s, c, layer, kvh, pos + b), from = (size_t)b * kv_dim + (size_t)kvh * hd;
            memcpy(s->key_cache + at, s->k + from, (size_t)hd * sizeof(real));
            memcpy(s->value_cache + at, s->v + from, (size_t)hd * sizeof(real));
        }
}

/* ==========================================================================
 * The kernels: the forward pass below calls the building blocks through
 * this table. It holds the plain functions above; the full build's Part 2
 * puts fast twins in their place (they compute the same: tests/test_model.c
 * holds each to its plain twin), and the truth build's --round and --kv put
 * a peer's rounding there (end of Part 3). prepare: Part 2's own memory
 * for a run (none in the plain build).
 * ========================================================================== */
typedef struct {
    void (*matmul)(real *out, const real *x, const void *w, int batch, int n, int d, int dtype);
    void (*rmsnorm)(real *out, const real *x, const void *w, int rows, int n, real eps, int dtype);
    void (*silu)(real *x, size_t n);
    void (*mul_in_place)(real *x, const real *y, size_t n);
    void (*add_in_place)(real *x, const real *y, size_t n);
    void (*attention)(const Config *c, RunState *s, int layer, int n, int pos, Trace *tr);
    void (*prepare)(RunState *s, const Config *c);
} Kernels;
#define PLAIN_KERNELS {matmul, rmsnorm, silu, mul_in_place, add_in_place, attention, NULL}
static Kernels kernels = PLAIN_KERNELS;

/* The run state for contexts of up to ctx positions */
static void init_state(RunState *s, const Config *c, int ctx) {
    size_t D = c->dim, Q = (size_t)c->n_heads * c->head_dim, KV = (size_t)c->n_kv_heads * c->head_dim;
    s->ctx = ctx;
    s->cache_len = (c->sliding_window > 0 && c->sliding_window < ctx) ? c->sliding_window : ctx;
    s->x = xcalloc(CHUNK * D, sizeof(real));
    s->xb = xcalloc(CHUNK * D, sizeof(real));
    s->q = xcalloc(CHUNK * Q, sizeof(real));
    s->k = xcalloc(CHUNK * KV, sizeof(real));
    s->v = xcalloc(CHUNK * KV, sizeof(real));
    s->att_out = xcalloc(CHUNK * Q, sizeof(real));
    s->proj = xcalloc(CHUNK * D, sizeof(real));
    s->gate = xcalloc(CHUNK * (size_t)c->hidden_dim, sizeof(real));
    s->up = xcalloc(CHUNK * (size_t)c->hidden_dim, sizeof(real));
    s->scores = xcalloc((size_t)s->cache_len, sizeof(real));
    s->logits = xcalloc((size_t)c->vocab_size, sizeof(real));
    s->rope_cos = xcalloc(CHUNK * ((size_t)c->head_dim / 2), sizeof(real));
    s->rope_sin = xcalloc(CHUNK * ((size_t)c->head_dim / 2), sizeof(real));
    /* MistralRotaryEmbedding: inv_freq[i] = 1 / theta^(2i/head_dim), in fp32 */
    s->inv_freq = xcalloc((size_t)c->head_dim / 2, sizeof(real));
    for (int i = 0; i < c->head_dim / 2; i++)
        s->inv_freq[i] = 1 / pow((real)c->rope_theta, (real)(2 * i) / (real)c->head_dim);
    s->kv_floats = size_mul(size_mul((size_t)c->n_layers, (size_t)s->cache_len), KV);
    s->key_cache = xcalloc(s->kv_floats, sizeof(real));
    s->value_cache = xcalloc(s->kv_floats, sizeof(real));
    s->fast = NULL;
    s->release = NULL;
    if (kernels.prepare) kernels.prepare(s, c);
}

static void free_state(RunState *s) {
    if (s->release) s->release(s);
    real *bufs[] = {s->x,      s->xb,       s->q,        s->k,        s->v,       s->att_out,
                     s->proj,   s->gate,     s->up,       s->scores,   s->logits,  s->rope_cos,
                     s->rope_sin, s->inv_freq};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(s->key_cache);
    free(s->value_cache);
}

/* ==========================================================================
 * The forward pass: MistralForCausalLM.forward for n (<= CHUNK) tokens at
 * positions pos .. pos+n-1, whose earlier positions are in the KV cache.
 * logits: NULL, or [n][vocab] (all = 1) or [vocab] for the last token only.
 * ========================================================================== */
static void forward_chunk(Model *m, RunState *s, const int *tokens, int n, int pos, real *logits, int all,
                          Trace *tr) {
    const Config *c = &m->config;
    const Weights *w = &m->weights;
    int D = c->dim, F = c->hidden_dim, hd = c->head_dim, dt = c->dtype;
    int q_dim = c->n_heads * hd, kv_dim = c->n_kv_heads * hd;
    real eps = (real)c->rms_norm_eps;

    rope_angles(s, hd, pos, n); /* once for all layers */

    /* model.embed_tokens: each token's row of the embedding matrix starts
     * the residual stream x, which every layer reads and adds to */
    for (int b = 0; b < n; b++)
        for (int i = 0; i < D; i++) s->x[(size_t)b * D + i] = weight_at(w->embed_tokens, (size_t)tokens[b] * D + i, dt);
    trace(tr, "model.embed_tokens", -1, pos, s->x, n, D);

    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *L = &w->layers[l];

        /* MistralDecoderLayer, first half: x = x + self_attn(input_layernorm(x)) */
        kernels.rmsnorm(s->xb, s->x, L->input_layernorm, n, D, eps, dt);
        trace(tr, "input_layernorm", l, pos, s->xb, n, D);
        kernels.matmul(s->q, s->xb, L->q_proj, n, D, q_dim, dt);
        trace(tr, "self_attn.q_proj", l, pos, s->q, n, q_dim);
        kernels.matmul(s->k, s->xb, L->k_proj, n, D, kv_dim, dt);
        trace(tr, "self_attn.k_proj", l, pos, s->k, n, kv_dim);
        kernels.matmul(s->v, s->xb, L->v_proj, n, D, kv_dim, dt);
        trace(tr, "self_attn.v_proj", l, pos, s->v, n, kv_dim);
        for (int b = 0; b < n; b++) {
            const real *cs = s->rope_cos + (size_t)b * (hd / 2), *sn = s->rope_sin + (size_t)b * (hd / 2);
            rope(s->q + (size_t)b * q_dim, c->n_heads, hd, cs, sn);
            rope(s->k + (size_t)b * kv_dim, c->n_kv_heads, hd, cs, sn);
        }
        trace(tr, "self_attn.q_rope", l, pos, s->q, n, q_dim);
        trace(tr, "self_attn.k_rope", l, pos, s->k, n, kv_dim);
        kernels.attention(c, s, l, n, pos, tr);
        store_kv(c, s, l, n, pos);
        trace(tr, "self_attn.attn_output", l, pos, s->att_out, n, q_dim);
        kernels.matmul(s->proj, s->att_out, L->o_proj, n, q_dim, D, dt);
        trace(tr, "self_attn.o_proj", l, pos, s->proj, n, D);
        kernels.add_in_place(s->x, s->proj, (size_t)n * D);

        /* second half, MistralMLP: x = x + down_proj(act_fn(gate_proj(h)) * up_proj(h)),
         * h = post_attention_layernorm(x) (SwiGLU) */
        kernels.rmsnorm(s->xb, s->x, L->post_attention_layernorm, n, D, eps, dt);
        trace(tr, "post_attention_layernorm", l, pos, s->xb, n, D);
        kernels.matmul(s->gate, s->xb, L->gate_proj, n, D, F, dt);
        trace(tr, "mlp.gate_proj", l, pos, s->gate, n, F);
        kernels.matmul(s->up, s->xb, L->up_proj, n, D, F, dt);
        trace(tr, "mlp.up_proj", l, pos, s->up, n, F);
        kernels.silu(s->gate, (size_t)n * F);
        trace(tr, "mlp.act_fn", l, pos, s->gate, n, F);
        kernels.mul_in_place(s->gate, s->up, (size_t)n * F);
        kernels.matmul(s->proj, s->gate, L->down_proj, n, F, D, dt);
        trace(tr, "mlp.down_proj", l, pos, s->proj, n, D);
        kernels.add_in_place(s->x, s->proj, (size_t)n * D);
        trace(tr, LAYER_OUTPUT, l, pos, s->x, n, D);
    }

    /* model.norm, then lm_head: the logits of the next token (only for the
     * positions whose logits are wanted) */
    int first = all || tr ? 0 : n - 1;
    kernels.rmsnorm(s->xb + (size_t)first * D, s->x + (size_t)first * D, w->norm, n - first, D, eps, dt);
    trace(tr, "model.norm", -1, pos, s->xb, n, D);
    if (!logits) return;
    first = all ? 0 : n - 1;
    kernels.matmul(logits, s->xb + (size_t)first * D, w->lm_head, n - first, D, c->vocab_size, dt);
    if (all) trace(tr, "lm_head", -1, pos, logits, n, c->vocab_size);
}

/* Any number of tokens, CHUNK at a time; returns the last token's logits
 * (in s->logits: only the last chunk goes through lm_head). */
static real *forward(Model *m, RunState *s, const int *tokens, int n, int pos) {
    for (int i = 0; i < n; i += CHUNK) {
        int len = n - i < CHUNK ? n - i : CHUNK;
        forward_chunk(m, s, tokens + i, len, pos + i, i + len == n ? s->logits : NULL, 0, NULL);
    }
    return s->logits;
}

/* ==========================================================================
 * Sampling: turning the logits into the next token
 * ========================================================================== */

typedef struct {
    float temperature; /* 0 = greedy */
    float top_p;       /* nucleus: sample from the smallest set with mass >= top_p */
    uint64_t rng;      /* xorshift64* state */
    int *idx;          /* [vocab] scratch for top-p */
} Sampler;

static uint32_t random_u32(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * 0x2545F4914F6CDD1DULL) >> 32);
}
static float random_f32(uint64_t *state) { return (random_u32(state) >> 8) / 16777216.0f; }

/* torch.argmax: the first index of the maximum (greedy decoding in HF) */
static int argmax(const real *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static const real *g_sort_probs; /* qsort has no context argument */
static int by_prob_desc(const void *a, const void *b) {
    real pa = g_sort_probs[*(const int *)a], pb = g_sort_probs[*(const int *)b];
    return pa < pb ? 1 : pa > pb ? -1 : (*(const int *)a - *(const int *)b);
}

/* The next token from the logits (changed in place): greedy, or a draw
 * from softmax(logits / temperature), kept to the nucleus of mass top_p. */
static int sample(Sampler *sp, real *logits, int n) {
    if (sp->temperature == 0.0f) return argmax(logits, n);
    /* (logit - max) / T: the same softmax as logit / T, but a tiny T sends
     * every token below the maximum to -inf (probability 0) instead of
     * overflowing to inf - inf = NaN: T -> 0 tends to argmax, as it should */
    real max = logits[argmax(logits, n)];
    for (int i = 0; i < n; i++) logits[i] = (logits[i] - max) / sp->temperature;
    softmax(logits, n);
    float r = random_f32(&sp->rng);
    if (sp->top_p <= 0.0f || sp->top_p >= 1.0f) {
        real cdf = 0;
        for (int i = 0; i < n; i++) {
            cdf += logits[i];
            if (r < cdf) return i;
        }
        return n - 1;
    }
    /* Top-p: tokens below (1 - top_p) / (n - 1) can never be in the nucleus,
     * so only the rest needs sorting. */
    real cutoff = (1.0f - sp->top_p) / (real)(n - 1 > 0 ? n - 1 : 1);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (logits[i] >= cutoff) sp->idx[m++] = i;
    /* NaN probabilities (NaN or Inf logits, from NaN/Inf in the weights)
     * pass no cutoff: fall back to argmax rather than idx[-1] */
    if (m == 0) return argmax(logits, n);
    g_sort_probs = logits;
    qsort(sp->idx, (size_t)m, sizeof(int), by_prob_desc);
    real mass = 0;
    int last = m - 1;
    for (int i = 0; i < m; i++) {
        mass += logits[sp->idx[i]];
        if (mass >= sp->top_p) { last = i; break; }
    }
    real cdf = 0;
    r *= mass; /* a draw within the nucleus */
    for (int i = 0; i <= last; i++) {
        cdf += logits[sp->idx[i]];
        if (r < cdf) return sp->idx[i];
    }
    return sp->idx[last];
}

/* ##########################################################################
 * PART 2: MAKING IT FAST (skip on a first read)
 *
 * The same computations as Part 1's matmul, attention and silu, organized
 * for the hardware: weights streamed from memory once per chunk (prefill)
 * or once per token (decode) at close to the memory's bandwidth, in vector
 * registers, on every core. notes/performance.md has the measurements
 * behind every choice here. Nothing below is compiled with -DRAKTN_PLAIN.
 * ########################################################################## */
#ifndef RAKTN_PLAIN
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

/* --------------------------------------------------------------------------
 * Threads: a pool of POSIX threads. parallel_for(n, ...) splits items
 * 0 .. n-1 into blocks and returns when every block is done. STATIC makes
 * one block per thread (equal contiguous shares); GUIDED makes blocks of
 * `grain` items and lets each claim take ceil(remaining / threads) of them,
 * so that a thread that finishes early takes over the rest in shrinking
 * pieces. Any thread may claim any block (the caller is thread 0): a job
 * never waits for a thread the system has not scheduled, only for blocks
 * already claimed. On a machine shared with other work, or with more
 * threads than CPUs, that is what keeps a descheduled thread from holding
 * every loop up.
 *
 * Idle workers spin for a short while (a decode step opens hundreds of
 * loops a token, microseconds apart), yielding the CPU to any other thread
 * that wants it, then sleep. A loop wakes sleeping workers only while fewer
 * than the CPUs this process may use are awake: threads beyond the CPUs
 * (-T 64 on 2 CPUs) never spin at once, so more threads than CPUs cost
 * little (notes/performance.md, "Threads").
 * -------------------------------------------------------------------------- */
typedef void (*TaskFn)(void *ctx, int begin, int end, int thread);
enum { STATIC, GUIDED };

/* The claim word: job number, next block, number of blocks. A thread claims
 * blocks with one compare-and-swap of the whole word, and how many it takes
 * depends on the word alone, so a thread that read the word of an earlier
 * job can never claim from a later one by mistake. */
#define CLAIM_BITS 26
#define CLAIM_MAX ((1u << CLAIM_BITS) - 1)
#define CLAIM_WORD(job, next, limit) ((uint64_t)(job) << (2 * CLAIM_BITS) | (uint64_t)(next) << CLAIM_BITS | (limit))
#define CLAIM_NEXT(w) ((uint32_t)((w) >> CLAIM_BITS) & CLAIM_MAX)
#define CLAIM_LIMIT(w) ((uint32_t)(w) & CLAIM_MAX)
#define CLAIM_JOB(w) ((uint32_t)((w) >> (2 * CLAIM_BITS)))

static struct {
    int n_threads; /* the caller included; 0 until pool_start */
    int cpus;      /* CPUs this process may run on: at most this many threads are awake */
    /* the job: written by the caller before it publishes the claim word, read
     * by a thread only after it has claimed a block (and so before the job
     * can end) */
    TaskFn fn;
    void *ctx;
    int n_items, block;
    _Atomic uint64_t claim;
    atomic_uint done;   /* blocks of this job finished */
    atomic_int awake;   /* workers spinning or working (not asleep) */
    atomic_int caller_waits;
    int tickets;        /* wake-ups granted and not yet taken (under mu) */
    pthread_mutex_t mu;
    pthread_cond_t wake, finished;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .finished = PTHREAD_COND_INITIALIZER};

/* How long an idle thread spins before it sleeps: about the gap between two
 * tokens' loops on a small model, far below what a sleep and a wake-up cost
 * a large one. */
#define SPIN_NS 200000

static inline void cpu_relax(void) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_ia32_pause();
#elif defined(__GNUC__) && (defined(__aarch64__) || defined(__arm__) && __ARM_ARCH >= 7)
    __asm__ __volatile__("yield");
#endif
}

static int64_t clock_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Spin until ready(arg) or SPIN_NS have passed; 1 if ready. Every few
 * rounds the thread offers its CPU to whoever else wants it. */
static int spin_until(int (*ready)(void *), void *arg) {
    int64_t start = 0;
    for (int i = 1;; i++) {
        if (ready(arg)) return 1;
        cpu_relax();
        if (i % 64 == 0) {
            int64_t t = clock_ns();
            if (!start) start = t;
            else if (t - start > SPIN_NS) return 0;
            sched_yield();
        }
    }
}

/* Claim blocks of the job in `w` and run them, until none is left. */
static void run_blocks(uint64_t w, int thread) {
    for (;;) {
        uint32_t next = CLAIM_NEXT(w), limit = CLAIM_LIMIT(w);
        if (next >= limit) return;
        uint32_t take = (limit - next + (uint32_t)pool.n_threads - 1) / (uint32_t)pool.n_threads;
        uint64_t claimed = CLAIM_WORD(CLAIM_JOB(w), next + take, limit);
        if (!atomic_compare_exchange_weak(&pool.claim, &w, claimed)) continue; /* w is reloaded */
        int begin = (int)((int64_t)next * pool.block), end = (int)((int64_t)(next + take) * pool.block);
        if (end > pool.n_items) end = pool.n_items;
        if (begin < end) pool.fn(pool.ctx, begin, end, thread);
        if (atomic_fetch_add(&pool.done, take) + take == limit && atomic_load(&pool.caller_waits)) {
            pthread_mutex_lock(&pool.mu);
            pthread_cond_signal(&pool.finished);
            pthread_mutex_unlock(&pool.mu);
        }
        w = claimed;
    }
}

static int work_waiting(void *unused) {
    (void)unused;
    uint64_t w = atomic_load(&pool.claim);
    return CLAIM_NEXT(w) < CLAIM_LIMIT(w);
}

/* A worker starts asleep; woken, it works and spins until it has had nothing
 * to do for SPIN_NS, then sleeps again. */
static void *pool_worker(void *arg) {
    int thread = (int)(intptr_t)arg;
    for (;;) {
        pthread_mutex_lock(&pool.mu);
        while (pool.tickets == 0) pthread_cond_wait(&pool.wake, &pool.mu);
        pool.tickets--; /* the waker counted this thread awake */
        pthread_mutex_unlock(&pool.mu);
        do run_blocks(atomic_load(&pool.claim), thread);
        while (spin_until(work_waiting, NULL));
        pthread_mutex_lock(&pool.mu);
        atomic_fetch_sub(&pool.awake, 1);
        pthread_mutex_unlock(&pool.mu);
    }
    return NULL;
}

/* The CPUs this process may run on: its affinity mask where the system has
 * one (Linux and FreeBSD: taskset, cpusets, docker --cpuset-cpus, Slurm
 * give a process fewer CPUs than the machine has), else the CPUs online. */
static int available_cpus(void) {
#if defined(CPU_COUNT) && (defined(__linux__) || defined(__FreeBSD__))
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
#endif
#if defined(_SC_NPROCESSORS_ONLN)
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n > 0) return n > 4096 ? 4096 : (int)n;
#endif
    return 1;
}

/* Start n - 1 workers (once); n <= 0: one thread per available CPU */
static void pool_start(int n) {
    if (pool.n_threads) return;
    pool.cpus = available_cpus();
    if (n <= 0) n = pool.cpus;
    pool.n_threads = n;
    /* The workers block the signals sent to the process (Ctrl-C, kill, a
     * closed pipe): those go to the main thread, whose handler cleans up
     * (Part 4); faults (SIGBUS, SIGSEGV) stay with the thread that made them. */
    sigset_t all, old;
    sigfillset(&all);
    int faults[] = {SIGBUS, SIGSEGV, SIGFPE, SIGILL, SIGABRT};
    for (int i = 0; i < 5; i++) sigdelset(&all, faults[i]);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (int t = 1; t < n; t++) {
        pthread_t th;
        int err = pthread_create(&th, NULL, pool_worker, (void *)(intptr_t)t);
        if (err) pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (err) die("cannot start thread %d of %d (%s): try fewer with -T", t + 1, n, strerror(err));
        pthread_detach(th);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static int thread_count(void) {
    pool_start(0);
    return pool.n_threads;
}

static int job_finished(void *limit) { return atomic_load(&pool.done) == *(uint32_t *)limit; }

static void parallel_for(int n_items, int mode, int grain, TaskFn fn, void *ctx) {
    pool_start(0);
    if (pool.n_threads == 1 || n_items <= 1) {
        if (n_items > 0) fn(ctx, 0, n_items, 0);
        return;
    }
    int T = pool.n_threads;
    int block = mode == STATIC ? (n_items + T - 1) / T : grain > 0 ? grain : 1;
    if ((n_items + (int64_t)block - 1) / block > CLAIM_MAX) block = (int)((n_items + (int64_t)CLAIM_MAX - 1) / CLAIM_MAX);
    uint32_t limit = (uint32_t)((n_items + (int64_t)block - 1) / block);
    pool.fn = fn, pool.ctx = ctx, pool.n_items = n_items, pool.block = block;
    atomic_store(&pool.done, 0);
    uint64_t w = CLAIM_WORD(CLAIM_JOB(atomic_load(&pool.claim)) + 1, 0, limit);
    atomic_store(&pool.claim, w); /* published: from here any thread may claim */
    /* helpers to have awake: one per block beyond the caller's, no more than
     * the CPUs allow */
    int want = T - 1;
    if (want > pool.cpus - 1) want = pool.cpus - 1;
    if (want > (int)limit - 1) want = (int)limit - 1;
    if (atomic_load(&pool.awake) < want) {
        pthread_mutex_lock(&pool.mu);
        int sleeping = T - 1 - atomic_load(&pool.awake);
        for (; atomic_load(&pool.awake) < want && sleeping > 0; sleeping--) {
            atomic_fetch_add(&pool.awake, 1);
            pool.tickets++;
            pthread_cond_signal(&pool.wake);
        }
        pthread_mutex_unlock(&pool.mu);
    }
    run_blocks(w, 0);
    if (!spin_until(job_finished, &limit)) {
        pthread_mutex_lock(&pool.mu);
        atomic_store(&pool.caller_waits, 1);
        while (atomic_load(&pool.done) != limit) pthread_cond_wait(&pool.finished, &pool.mu);
        atomic_store(&pool.caller_waits, 0);
        pthread_mutex_unlock(&pool.mu);
    }
}

/* --------------------------------------------------------------------------
 * Vectors of 16 floats. With AVX-512 a vector is one register and the
 * multiply-add is fused; elsewhere it is a plain array the compiler may
 * vectorize. Every output is computed by a fixed sequence of operations
 * whatever its tile position or thread, and the same for bf16 and fp32
 * storage: results do not depend on the thread count, and the two
 * storages give bit-identical logits.
 * -------------------------------------------------------------------------- */
#if defined(__AVX512F__)
#include <immintrin.h>
typedef __m512 vec16;
static inline vec16 v_zero(void) { return _mm512_setzero_ps(); }
static inline vec16 v_load(const float *p) { return _mm512_loadu_ps(p); }
static inline vec16 v_load_bf16(const uint16_t *p) { /* widen: u16 -> u32, << 16 */
    __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}
static inline vec16 v_set1(float f) { return _mm512_set1_ps(f); }
static inline void v_store(float *p, vec16 v) { _mm512_storeu_ps(p, v); }
static inline vec16 v_madd(vec16 acc, vec16 a, vec16 b) { return _mm512_fmadd_ps(a, b, acc); }
static inline vec16 v_add(vec16 a, vec16 b) { return _mm512_add_ps(a, b); }
/* v_keep pins a loaded vector in a register: without it GCC folds the load
 * into every multiply-add that uses it and the tile becomes load-bound */
static inline vec16 v_keep(vec16 v) { __asm__("" : "+v"(v)); return v; }
/* the 16 lanes added as a tree: (8 pairs), (4 pairs), (2), (1) */
static inline float v_sum(vec16 v) {
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); /* AVX-512F alone (no DQ) */
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), hi);
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}
#else
/* GCC's and Clang's vector extensions: a vec16 is 16 / VLEN vectors of the
 * target's register width (VLEN floats: 8 with AVX, 4 with NEON or SSE),
 * so that the kernels' text is the same on every target and every part
 * stays in a register. */
#if defined(__AVX__)
#define VLEN 8
#else
#define VLEN 4
#endif
#pragma GCC diagnostic ignored "-Wpsabi" /* vectors passed between inlined functions only */
typedef float vN __attribute__((vector_size(VLEN * 4)));
typedef uint32_t uN __attribute__((vector_size(VLEN * 4)));
typedef uint16_t hN __attribute__((vector_size(VLEN * 2)));
#define NP (16 / VLEN)
typedef struct { vN p[NP]; } vec16;
static inline vec16 v_zero(void) {
    vec16 v;
    for (int i = 0; i < NP; i++) v.p[i] = (vN){0};
    return v;
}
static inline vec16 v_load(const float *p) {
    vec16 v;
    for (int i = 0; i < NP; i++) memcpy(&v.p[i], p + VLEN * i, sizeof(vN));
    return v;
}
/* VLEN bf16 values widened to floats: u16 -> u32, << 16 (AVX2: one
 * widening load; GCC made two half-width widenings and an insert of it) */
#if defined(__AVX2__) && VLEN == 8
#include <immintrin.h>
static inline vN widen_bf16(const uint16_t *p) {
    return (vN)_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16);
}
#else
static inline vN widen_bf16(const uint16_t *p) {
    hN h;
    memcpy(&h, p, sizeof h);
    return (vN)(__builtin_convertvector(h, uN) << 16);
}
#endif
static inline vec16 v_load_bf16(const uint16_t *p) {
    vec16 v;
    for (int i = 0; i < NP; i++) v.p[i] = widen_bf16(p + VLEN * i);
    return v;
}
static inline vec16 v_set1(float f) {
    /* an initializer of VLEN copies: one broadcast instruction (filling the
     * lanes one by one became a chain of inserts; a scalar operand of a
     * vector op would be a double on x87 and s390x) */
#if VLEN == 8
    vN b = {f, f, f, f, f, f, f, f};
#else
    vN b = {f, f, f, f};
#endif
    vec16 v;
    for (int i = 0; i < NP; i++) v.p[i] = b;
    return v;
}
static inline void v_store(float *p, vec16 v) {
    for (int i = 0; i < NP; i++) memcpy(p + VLEN * i, &v.p[i], sizeof(vN));
}
/* acc + a * b for one register, fused where the target has a fused
 * multiply-add (twice the arithmetic per instruction): the one place for
 * its intrinsics */
#if defined(__FMA__) && VLEN == 8
#include <immintrin.h>
static inline vN fma_n(vN acc, vN a, vN b) { return (vN)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)acc); }
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
static inline vN fma_n(vN acc, vN a, vN b) { return (vN)vfmaq_f32((float32x4_t)acc, (float32x4_t)a, (float32x4_t)b); }
#else
static inline vN fma_n(vN acc, vN a, vN b) { return acc + a * b; }
#endif
static inline vec16 v_madd(vec16 acc, vec16 a, vec16 b) {
    for (int i = 0; i < NP; i++) acc.p[i] = fma_n(acc.p[i], a.p[i], b.p[i]);
    return acc;
}
static inline vec16 v_add(vec16 a, vec16 b) {
    for (int i = 0; i < NP; i++) a.p[i] += b.p[i];
    return a;
}
static inline vec16 v_keep(vec16 v) { return v; }
static inline float v_sum(vec16 v) { /* the same tree as the AVX-512 version */
    float f[16];
    for (int i = 0; i < NP; i++) memcpy(f + VLEN * i, &v.p[i], sizeof(vN));
    for (int w = 8; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) f[j] += f[j + w];
    return f[0];
}
#endif

/* Hints to fetch the cache line at p into L1, for one use (x86:
 * prefetchnta) or to keep (prefetcht0); they never fault, so p may point
 * past the end of what is being read. */
#if defined(__GNUC__)
#define prefetch_nt(p) __builtin_prefetch((p), 0, 0)
#define prefetch(p) __builtin_prefetch((p), 0, 3)
#define ALWAYS_INLINE __attribute__((always_inline))
#define NOINLINE __attribute__((noinline))
#else
#define prefetch_nt(p) ((void)(p))
#define prefetch(p) ((void)(p))
#define ALWAYS_INLINE
#define NOINLINE
#endif

/* --------------------------------------------------------------------------
 * matmul for a batch (prefill): matmul_tile computes matmul()'s outputs for
 * TILE_ROWS weight rows x nv vectors of 16 positions (nv <= TILE_VECS). The
 * input comes as columns in panels of PANEL positions, xp[k][16nv] for the
 * tile's panel, so one load brings input k of 16 positions and the panel is
 * read front to back. Each step broadcasts one weight of
 * every row and does TILE_ROWS x nv multiply-adds into accumulators that
 * stay in registers: each weight loaded serves 16 x nv positions, each
 * input vector TILE_ROWS rows. Output (b, i) adds its products in order
 * k = 0, 1, ..., n-1 in one lane, as matmul() does (fused multiply-adds
 * here, so not the same bits), whatever its place in the tile, the thread
 * count or the storage type. Rows past d are clamped to d-1 (computed, not
 * stored); positions past the batch are zero columns.
 * -------------------------------------------------------------------------- */
#ifndef TILE_ROWS
#if defined(__AVX512F__) /* 32 registers of 16 floats: 24 accumulators, 2 inputs, 1 weight */
#define TILE_ROWS 12
#define TILE_VECS 2
#elif defined(__AVX__) || (defined(__aarch64__) && defined(__ARM_NEON))
/* 16 registers of 8 floats (AVX2): 12 accumulators, 2 inputs, 1 weight;
 * 32 registers of 4 (NEON): 24, 4 and 1 */
#define TILE_ROWS 6
#define TILE_VECS 1
#else
#define TILE_ROWS 4
#define TILE_VECS 1
#endif
#endif
_Static_assert(TILE_ROWS >= 1 && TILE_VECS >= 1 && TILE_VECS <= 3, "TILE_VECS: tiles_task runs 1 to 3 vectors");
#define PANEL (16 * TILE_VECS) /* positions per panel of the input's columns */
#ifndef GROUP_BYTES
#define GROUP_BYTES ((size_t)1 << 20) /* weight rows a thread keeps in L2 while the panels go by */
#endif
static inline ALWAYS_INLINE void matmul_tile(float *out, const float *xt, const float *w, int w0, int n, int d,
                                             int i0, int b0, int batch, int nv) {
    const float *xp = xt + (size_t)b0 * n; /* the panel of positions b0 .. b0 + 16nv - 1 */
    const float *wr[TILE_ROWS];            /* w holds rows w0, w0 + 1, ... */
    for (int r = 0; r < TILE_ROWS; r++) wr[r] = w + (size_t)((i0 + r < d ? i0 + r : d - 1) - w0) * n;
    vec16 acc[TILE_ROWS][TILE_VECS];
    for (int r = 0; r < TILE_ROWS; r++)
        for (int v = 0; v < nv; v++) acc[r][v] = v_zero();
    for (int k = 0; k < n; k++) {
        vec16 xv[TILE_VECS];
        for (int v = 0; v < nv; v++) xv[v] = v_keep(v_load(xp + (size_t)k * 16 * nv + 16 * v));
        for (int r = 0; r < TILE_ROWS; r++) {
            vec16 wv = v_set1(wr[r][k]);
            for (int v = 0; v < nv; v++) acc[r][v] = v_madd(acc[r][v], wv, xv[v]);
        }
    }
    /* lane j of acc[r][v] is output (b0 + 16v + j, i0 + r); the tile goes
     * out a position at a time, TILE_ROWS neighbouring outputs per store */
    float t[TILE_ROWS][16 * TILE_VECS];
    for (int r = 0; r < TILE_ROWS; r++)
        for (int v = 0; v < nv; v++) v_store(t[r] + 16 * v, acc[r][v]);
    int rows = d - i0 < TILE_ROWS ? d - i0 : TILE_ROWS;
    for (int b = 0; b < 16 * nv && b0 + b < batch; b++) {
        float *o = out + (size_t)(b0 + b) * d + i0;
        for (int r = 0; r < rows; r++) o[r] = t[r][b];
    }
}

/* matmul for one position (decode): outputs row .. row+R-1 of matmul()'s
 * matrix-vector product. Each output's four accumulators take turns over
 * 64-weight blocks so that four multiply-adds are in flight (one chain
 * would wait on each add's latency and stream weights slower than memory
 * delivers them). R rows share each load of x; the order within an output
 * does not depend on R. bf16 rows are prefetched 4 KB ahead (split over the
 * R rows); fp32 rows go without (it cost them speed). Two choices are the
 * CPU's (notes/performance.md): on AMD, R = 1 streams best except for rows
 * so long (the 7B's down_proj) that x no longer fits in L1, and the hint
 * is non-temporal (the weights do not evict x); on the Intel Xeon measured,
 * DECODE_ROWS at once (streams in flight) read 25-35% faster than one, and
 * a non-temporal hint halved bf16 decode. */
static int cpu_amd = -1;
static int cpu_is_amd(void) {
    if (cpu_amd < 0) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
        /* the vendor string from CPUID leaf 0, "AuthenticAMD" (GCC's
         * __builtin_cpu_is needs a runtime symbol Apple's clang may not link) */
        unsigned a = 0, b = 0, c = 0, d = 0;
        cpu_amd = __get_cpuid(0, &a, &b, &c, &d) && b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163;
#else
        cpu_amd = 0;
#endif
    }
    return cpu_amd;
}
#ifndef DECODE_ROWS
#if defined(__AVX512F__)
#define DECODE_ROWS 4 /* 16 accumulators of 32 registers */
#elif defined(__AVX__)
#define DECODE_ROWS 2 /* 16 accumulator halves: 4 rows (32) spilled and read 3-7% slower */
#else
#define DECODE_ROWS 1
#endif
#endif
_Static_assert(DECODE_ROWS >= 1 && DECODE_ROWS <= 4, "DECODE_ROWS: dot_rows has accumulators for 1 to 4 rows");
static inline ALWAYS_INLINE void dot_rows(float *out, const void *w, size_t row, const float *x, int n, int dtype,
                                          int R) {
    const float *wf = (const float *)w + row * n;
    const uint16_t *wh = (const uint16_t *)w + row * n;
#define W16(r, k) (dtype == DTYPE_F32 ? v_load(wf + (size_t)(r) * n + (k)) : v_load_bf16(wh + (size_t)(r) * n + (k)))
    vec16 a[4][4];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < 4; c++) a[r][c] = v_zero();
    int k = 0, nt = dtype == DTYPE_BF16 && cpu_amd == 1;
    for (; k + 64 <= n; k += 64) {
        if (dtype == DTYPE_BF16)
            for (int r = 0; r < R; r++) {
                const char *ahead = (const char *)(wh + (size_t)r * n + k) + 4096 / R;
                if (nt) prefetch_nt(ahead), prefetch_nt(ahead + 64);
                else prefetch(ahead), prefetch(ahead + 64);
            }
        for (int c = 0; c < 4; c++) {
            vec16 xv = v_load(x + k + 16 * c);
            for (int r = 0; r < R; r++) a[r][c] = v_madd(a[r][c], W16(r, k + 16 * c), xv);
        }
    }
    for (int r = 0; r < R; r++) {
        int kk = k;
        for (; kk + 16 <= n; kk += 16) a[r][0] = v_madd(a[r][0], W16(r, kk), v_load(x + kk));
        float s = v_sum(v_add(v_add(a[r][0], a[r][1]), v_add(a[r][2], a[r][3])));
        for (; kk < n; kk++) s += weight_at(w, (row + r) * n + kk, dtype) * x[kk];
        out[r] = s;
    }
#undef W16
}

/* The batched kernel reads its input by columns: x[b][k] goes to panel
 * b / PANEL, which holds [k][its positions] for PANEL positions (fewer in
 * the last), padded with zero columns to a whole number of vectors. The
 * panels live in one 64-byte aligned buffer that grows as needed (an
 * unaligned one cost the tile a quarter of its speed). */
static float *columns_buf;
static size_t columns_cap;
typedef struct { float *xt; const float *x; int batch, bp, n; } ColumnsTask;
static void columns_task(void *ctx, int begin, int end, int thread) {
    (void)thread;
    ColumnsTask *t = ctx;
    for (int k0 = begin * 16; k0 < end * 16 && k0 < t->n; k0 += 16) /* 16 columns at a time */
        for (int b = 0; b < t->bp; b++) {
            int b0 = b / PANEL * PANEL, pw = t->bp - b0 < PANEL ? t->bp - b0 : PANEL;
            float *panel = t->xt + (size_t)b0 * t->n + (b - b0);
            for (int k = k0; k < k0 + 16 && k < t->n; k++)
                panel[(size_t)k * pw] = b < t->batch ? t->x[(size_t)b * t->n + k] : 0.0f;
        }
}

static const float *to_columns(const float *x, int batch, int n) {
    int bp = (batch + 15) / 16 * 16;
    size_t need = (size_t)bp * n;
    if (need > columns_cap) {
        free(columns_buf);
        if (need > SIZE_MAX / sizeof(float) || posix_memalign((void **)&columns_buf, 64, need * sizeof(float)) != 0)
            die("out of memory (%zu floats)", need);
        columns_cap = need;
    }
    ColumnsTask t = {columns_buf, x, batch, bp, n};
    parallel_for((n + 15) / 16, STATIC, 1, columns_task, &t);
    return columns_buf;
}

/* matmul() (Part 1), fast: threads split the rows. Decoding one position, a
 * thread reads its rows in order, R at a time, with dot_rows (sequential
 * streams are what memory serves fastest). For a batch each thread
 * takes its tiles of TILE_ROWS rows in groups of GROUP_BYTES of weights and
 * runs every panel of the batch through a group while its rows sit in L2:
 * each weight row comes from memory once per batch, each panel from L2 once
 * per tile. Rows are handed out guided: the thread that finishes first
 * takes the rest in shrinking pieces instead of idling. */
typedef struct { float *out; const float *x, *xt; float *wide; const void *w; int batch, bp, n, d, dtype, R; } MatmulTask;

static void matvec_task(void *ctx, int begin, int end, int thread) {
    (void)thread;
    MatmulTask *t = ctx;
    for (int i0 = begin * t->R; i0 < end * t->R; i0 += t->R) {
        if (t->R == DECODE_ROWS) {
            if (t->dtype == DTYPE_F32) dot_rows(t->out + i0, t->w, (size_t)i0, t->x, t->n, DTYPE_F32, DECODE_ROWS);
            else dot_rows(t->out + i0, t->w, (size_t)i0, t->x, t->n, DTYPE_BF16, DECODE_ROWS);
        } else {
            if (t->dtype == DTYPE_F32) dot_rows(t->out + i0, t->w, (size_t)i0, t->x, t->n, DTYPE_F32, 1);
            else dot_rows(t->out + i0, t->w, (size_t)i0, t->x, t->n, DTYPE_BF16, 1);
        }
    }
}

static int tile_group(int n) { /* tiles whose fp32 rows fill GROUP_BYTES */
    size_t g = GROUP_BYTES / ((size_t)TILE_ROWS * n * sizeof(float));
    return g < 1 ? 1 : g > INT_MAX ? INT_MAX : (int)g;
}

static void tiles_task(void *ctx, int begin, int end, int thread) {
    MatmulTask *t = ctx;
    int group = tile_group(t->n);
    for (int g0 = begin; g0 < end; g0 += group) { /* tiles g0 .. g1-1: their rows stay in L2 */
        int g1 = g0 + group < end ? g0 + group : end;
        int r0 = g0 * TILE_ROWS, r1 = g1 * TILE_ROWS < t->d ? g1 * TILE_ROWS : t->d;
        const float *w = (const float *)t->w + (size_t)r0 * t->n;
        if (t->dtype == DTYPE_BF16) { /* widened once here (exactly), not at every panel */
            float *wide = t->wide + (size_t)thread * group * TILE_ROWS * t->n;
            const uint16_t *h = (const uint16_t *)t->w + (size_t)r0 * t->n;
            for (size_t i = 0; i < (size_t)(r1 - r0) * t->n; i++) wide[i] = bf16_to_f32(h[i]);
            w = wide;
        }
        for (int b0 = 0; b0 < t->bp; b0 += PANEL) /* one panel after the other through them */
            for (int i0 = r0; i0 < g1 * TILE_ROWS; i0 += TILE_ROWS) {
                int nv = (t->bp - b0) / 16 < TILE_VECS ? (t->bp - b0) / 16 : TILE_VECS;
                switch (nv) { /* nv as a constant: the tile's loops unroll */
                case 1: matmul_tile(t->out, t->xt, w, r0, t->n, t->d, i0, b0, t->batch, 1); break;
#if TILE_VECS >= 2
                case 2: matmul_tile(t->out, t->xt, w, r0, t->n, t->d, i0, b0, t->batch, 2); break;
#endif
#if TILE_VECS >= 3
                case 3: matmul_tile(t->out, t->xt, w, r0, t->n, t->d, i0, b0, t->batch, 3); break;
#endif
                }
            }
    }
}

/* bf16 rows widened per thread for the tiles (grows as needed) */
static float *wide_buf;
static size_t wide_cap;
static float *widen_space(int n) {
    size_t need = size_mul(size_mul((size_t)thread_count(), (size_t)tile_group(n)), (size_t)TILE_ROWS * n);
    if (need > wide_cap) {
        free(wide_buf);
        if (need > SIZE_MAX / sizeof(float) || posix_memalign((void **)&wide_buf, 64, need * sizeof(float)) != 0)
            die("out of memory (%zu floats)", need);
        wide_cap = need;
    }
    return wide_buf;
}

static int matmul_fast(float *out, const float *x, const void *w, int batch, int n, int d, int dtype) {
    MatmulTask t = {out, x, NULL, NULL, w, batch, (batch + 15) / 16 * 16, n, d, dtype, 1};
    if (batch == 1) {
        int amd = cpu_is_amd(); /* (dot_rows reads its answer too) */
        t.R = d % DECODE_ROWS == 0 && (n > 8192 || !amd) ? DECODE_ROWS : 1;
        parallel_for(d / t.R, GUIDED, 16, matvec_task, &t);
        return 1;
    }
    t.xt = to_columns(x, batch, n);
    if (dtype == DTYPE_BF16) t.wide = widen_space(n);
    parallel_for((d + TILE_ROWS - 1) / TILE_ROWS, GUIDED, 1, tiles_task, &t);
    return 1;
}

/* silu() (Part 1) on every core: the same expression, element by element,
 * so the same bits */
typedef struct { float *x; size_t n; } SiluTask;
static void silu_task(void *ctx, int begin, int end, int thread) {
    (void)thread;
    SiluTask *t = ctx;
    size_t stop = (size_t)end * 1024 < t->n ? (size_t)end * 1024 : t->n;
    for (size_t i = (size_t)begin * 1024; i < stop; i++) t->x[i] = t->x[i] / (1.0f + expf(-t->x[i]));
}
static int silu_fast(float *x, size_t n) {
    if (n / 1024 >= INT_MAX) return 0;
    SiluTask t = {x, n};
    parallel_for((int)((n + 1023) / 1024), STATIC, 1, silu_task, &t);
    return 1;
}

/* mul_in_place() and add_in_place() (Part 1) on every core, a chunk's worth
 * at a time (a decode step's few thousand stay on one): the same bits */
typedef struct { float *x; const float *y; size_t n; char op; } ElementTask;
static void element_task(void *ctx, int begin, int end, int thread) {
    (void)thread;
    ElementTask *t = ctx;
    size_t stop = (size_t)end * 16384 < t->n ? (size_t)end * 16384 : t->n;
    if (t->op == '*')
        for (size_t i = (size_t)begin * 16384; i < stop; i++) t->x[i] *= t->y[i];
    else
        for (size_t i = (size_t)begin * 16384; i < stop; i++) t->x[i] += t->y[i];
}
static int elementwise_fast(float *x, const float *y, size_t n, char op) {
    if (n <= 16384 || n / 16384 >= INT_MAX) return 0;
    ElementTask t = {x, y, n, op};
    parallel_for((int)((n + 16383) / 16384), STATIC, 1, element_task, &t);
    return 1;
}

/* rmsnorm() (Part 1): its rows on every core, each by rmsnorm_row */
typedef struct { float *out; const float *x; const void *w; int n, dtype; float eps; } NormTask;
static void norm_task(void *ctx, int begin, int end, int thread) {
    (void)thread;
    NormTask *t = ctx;
    for (int r = begin; r < end; r++) rmsnorm_row(t->out + (size_t)r * t->n, t->x + (size_t)r * t->n, t->w, t->n, t->eps, t->dtype);
}
static int rmsnorm_fast(float *out, const float *x, const void *w, int rows, int n, float eps, int dtype) {
    if (rows < 2) return 0;
    NormTask t = {out, x, w, n, dtype, eps};
    parallel_for(rows, STATIC, 1, norm_task, &t);
    return 1;
}

/* --------------------------------------------------------------------------
 * Attention
 * -------------------------------------------------------------------------- */

/* e^x for x <= 0, for softmax_fast: libm's expf is a call per element that
 * the compiler cannot vectorize; this is plain arithmetic it can. x = n ln2
 * + r with n an integer and |r| <= ln2/2 (ln2 split in two so that n *
 * LN2_HI is exact), e^r from its Taylor series up to r^7, and 2^n written
 * into a float's exponent bits. Within 1 ulp of glibc's expf for every float
 * in [-87, 0] (tested); below -87 (where 2^n would leave the normal floats)
 * it returns 0 instead of expf's denormals. NaN stays NaN. */
static inline float exp_nonpositive(float x) {
    const float LOG2E = 1.44269504f, LN2_HI = 0.693359375f, LN2_LO = -2.12194440e-4f;
    float xc = x < -87.0f ? -87.0f : x;
    float n = rintf(xc * LOG2E); /* the nearest integer, whatever FLT_EVAL_METHOD (x87 keeps excess precision) */
    float r = (xc - n * LN2_HI) - n * LN2_LO;
    float p = 1.0f + r * (1.0f + r * (1.0f / 2 + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720 + r * (1.0f / 5040)))))));
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float two_n;
    memcpy(&two_n, &bits, 4);
    return x < -87.0f ? 0.0f : p * two_n;
}

/* softmax() (Part 1) with exp_nonpositive, the max and the sum kept in 16
 * lanes and combined at the end (one running sum would wait on each add's
 * latency). Agrees with softmax() to ~1e-6 of a probability (tested). */
static void softmax_fast(float *x, int n) {
    float lane[16];
    for (int j = 0; j < 16; j++) lane[j] = x[0];
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) lane[j] = x[i + j] > lane[j] ? x[i + j] : lane[j];
    float max = x[0];
    for (int j = 0; j < 16; j++) max = lane[j] > max ? lane[j] : max;
    for (; i < n; i++) max = x[i] > max ? x[i] : max;
    for (i = 0; i < n; i++) x[i] = exp_nonpositive(x[i] - max);
    vec16 lanes = v_zero();
    for (i = 0; i + 16 <= n; i += 16) lanes = v_add(lanes, v_load(x + i));
    float sum = 0;
    for (; i < n; i++) sum += x[i];
    sum += v_sum(lanes);
    for (i = 0; i < n; i++) x[i] /= sum;
}

/* Scratch memory of the fast attention, per thread. */
struct Fast {
    int threads;
    int key_slots;            /* keys one block of a prompt can see: cache_len + 16 */
    size_t scores_per_thread; /* floats: [group][cache_len] or [16][key_slots] */
    float *scores;
    const float **key_rows, **value_rows; /* [threads][key_slots] where each visible key/value is */
    float *q_cols;                        /* [threads][head_dim][16] a block's queries as columns */
};

static float *thread_scores(const RunState *s, int thread) { return s->fast->scores + (size_t)thread * s->fast->scores_per_thread; }
static const float **thread_rows(const RunState *s, const float **rows, int thread) { return rows + (size_t)thread * s->fast->key_slots; }

typedef struct { const Config *c; RunState *s; int layer, n, pos, n_blocks; } AttentionTask;

/* kv_row() for keys from .. from+count-1 of KV head kvh, into krow, vrow */
static void find_kv_rows(const Config *c, const RunState *s, int layer, int kvh, int pos, int from, int count,
                         const float **krow, const float **vrow) {
    for (int t = 0; t < count; t++) {
        krow[t] = kv_row(c, s, s->key_cache, s->k, layer, kvh, from + t, pos);
        vrow[t] = kv_row(c, s, s->value_cache, s->v, layer, kvh, from + t, pos);
    }
}

/* attention()'s weighted sum of the values, for four queries at once:
 * out[j][i] = sum over t of weights[j][t] * vrow[t][i] for i < hd, each
 * output adding its products in key order. 64 dimensions of the four are
 * summed in registers over the keys, so each value vector is loaded once
 * for the four. The keys go in blocks of VALUE_BLOCK, each block through
 * every 64 dimensions in turn, the sums parked in out between blocks
 * (stored and reloaded exactly, so the bits are those of one pass): the
 * block's values, read from memory for the first 64 dimensions, are still
 * in L2 for the others. Only out[0] .. out[keep-1] are stored: a caller with
 * fewer than four queries fills the other slots with any weights. */
#define KV_AHEAD 4096 /* bytes: how far ahead attention prefetches keys and values */
#define VALUE_BLOCK 512
static NOINLINE void weighted_values4(float *const out[4], const float *const weights[4], int keep,
                                      const float *const *vrow, int n_keys, int hd) {
    for (int t0 = 0; t0 < n_keys; t0 += VALUE_BLOCK) {
        int t1 = n_keys - t0 < VALUE_BLOCK ? n_keys : t0 + VALUE_BLOCK;
        for (int i = 0; i + 64 <= hd; i += 64) {
            vec16 acc[4][4];
            for (int j = 0; j < 4; j++)
                for (int v = 0; v < 4; v++) acc[j][v] = t0 > 0 && j < keep ? v_load(out[j] + i + 16 * v) : v_zero();
            for (int t = t0; t < t1; t++) {
                vec16 val[4];
                if (i == 0) /* the whole row: the other dimensions' passes find it in cache */
                    for (int off = 0; off < hd * 4; off += 64) prefetch((const char *)vrow[t] + KV_AHEAD + off);
                for (int v = 0; v < 4; v++) val[v] = v_load(vrow[t] + i + 16 * v);
                for (int j = 0; j < 4; j++) {
                    vec16 weight = v_set1(weights[j][t]);
                    for (int v = 0; v < 4; v++) acc[j][v] = v_madd(acc[j][v], weight, val[v]);
                }
            }
            for (int j = 0; j < keep; j++)
                for (int v = 0; v < 4; v++) v_store(out[j] + i + 16 * v, acc[j][v]);
        }
    }
    for (int i = hd / 64 * 64; i < hd; i++) /* head_dim % 64 leftovers */
        for (int j = 0; j < keep; j++) {
            float sum = 0;
            for (int t = 0; t < n_keys; t++) sum += weights[j][t] * vrow[t][i];
            out[j][i] = sum;
        }
}

/* attention() (Part 1) position by position (decoding): work split over
 * (KV head, position) pairs; each key and value vector is loaded once for
 * up to 4 of the `group` query heads that share it, and prefetched KV_AHEAD
 * bytes ahead (the rows of one KV head are consecutive in the ring). Each
 * dot product is summed in 16 lanes, added as a tree. */
static void attention_rows_task(void *ctx, int begin, int end, int thread) {
    AttentionTask *task = ctx;
    const Config *c = task->c;
    RunState *s = task->s;
    int layer = task->layer, n = task->n, pos = task->pos;
    int hd = c->head_dim, group = c->n_heads / c->n_kv_heads, cl = s->cache_len;
    float scale = sqrtf((float)hd);
    for (int item = begin; item < end; item++) {
        int kvh = item / n, b = item % n;
        {
            int p = pos + b, first = first_key(c, p);
            int n_keys = p - first + 1, h0 = kvh * group; /* query heads h0 .. h0+group-1 */
            const float *q = s->q + (size_t)b * c->n_heads * hd;
            float *out = s->att_out + (size_t)b * c->n_heads * hd;
            float *scores = thread_scores(s, thread); /* [group][cache_len] */
            const float **krow = thread_rows(s, s->fast->key_rows, thread), **vrow = thread_rows(s, s->fast->value_rows, thread);
            find_kv_rows(c, s, layer, kvh, pos, first, n_keys, krow, vrow);
            for (int g0 = 0; g0 < group; g0 += 4) { /* scores = q . k / sqrt(head_dim), 4 heads at a time */
                int gn = group - g0 < 4 ? group - g0 : 4;
                const float *qg[4];
                for (int g = 0; g < 4; g++) qg[g] = q + (size_t)(h0 + g0 + (g < gn ? g : 0)) * hd;
                for (int t = 0; t < n_keys; t++) {
                    vec16 acc[4] = {v_zero(), v_zero(), v_zero(), v_zero()};
                    for (int off = 0; off < hd * 4; off += 64) prefetch((const char *)krow[t] + KV_AHEAD + off);
                    int i = 0;
                    for (; i + 16 <= hd; i += 16) {
                        vec16 key = v_load(krow[t] + i);
                        for (int g = 0; g < 4; g++) acc[g] = v_madd(acc[g], v_load(qg[g] + i), key);
                    }
                    for (int g = 0; g < gn; g++) {
                        float sum = v_sum(acc[g]);
                        for (int ii = i; ii < hd; ii++) sum += qg[g][ii] * krow[t][ii];
                        scores[(size_t)(g0 + g) * cl + t] = sum / scale;
                    }
                }
            }
            for (int g = 0; g < group; g++) softmax_fast(scores + (size_t)g * cl, n_keys);
            for (int g0 = 0; g0 < group; g0 += 4) { /* the weighted sum of the values, 4 heads at a time */
                int gn = group - g0 < 4 ? group - g0 : 4;
                const float *a[4];
                float *o[4];
                for (int g = 0; g < 4; g++) {
                    int h = g0 + (g < gn ? g : 0); /* heads past gn repeat head g0 */
                    a[g] = scores + (size_t)h * cl;
                    o[g] = out + (size_t)(h0 + h) * hd;
                }
                weighted_values4(o, a, gn, vrow, n_keys, hd);
            }
        }
    }
}

/* attention() (Part 1) for a prompt's chunk: the queries of QB consecutive
 * positions x `group` heads (16 / group positions, up to 16 queries) are
 * the 16 lanes of a vector. q . k for 8 keys at a time is then 8 vector
 * multiply-adds per dimension, each key element broadcast to all the
 * queries, with no per-pair sum of lanes. Each position keeps its own
 * visible keys: the block's scores cover the union of their ranges and a
 * position's weights are zero outside its own. */
static void attention_blocked_task(void *ctx, int begin, int end, int thread) {
    AttentionTask *task = ctx;
    const Config *c = task->c;
    RunState *s = task->s;
    int layer = task->layer, n = task->n, pos = task->pos;
    int hd = c->head_dim, group = c->n_heads / c->n_kv_heads, QB = 16 / group;
    int n_blocks = task->n_blocks, ks = s->fast->key_slots; /* ks: row length of sc */
    float scale = sqrtf((float)hd);
    for (int item = begin; item < end; item++) {
        int kvh = item / n_blocks, blk = item % n_blocks;
        {
            int b0 = blk * QB, nb = n - b0 < QB ? n - b0 : QB, lanes = nb * group; /* lane = (b - b0) * group + g */
            int lo = first_key(c, pos + b0), n_keys = pos + b0 + nb - lo; /* keys lo .. pos+b0+nb-1 */
            float *qt = s->fast->q_cols + (size_t)thread * 16 * hd; /* [hd][16] */
            float *sc = thread_scores(s, thread);                     /* [16][ks] */
            const float **krow = thread_rows(s, s->fast->key_rows, thread), **vrow = thread_rows(s, s->fast->value_rows, thread);
            find_kv_rows(c, s, layer, kvh, pos, lo, n_keys, krow, vrow);
            for (int i = 0; i < hd; i++)
                for (int l = 0; l < 16; l++)
                    qt[(size_t)i * 16 + l] =
                        l < lanes ? s->q[(size_t)(b0 + l / group) * c->n_heads * hd + (size_t)(kvh * group + l % group) * hd + i]
                                  : 0.0f;
            for (int t = 0; t < n_keys; t += 8) { /* sc[lane][t] = q . k_t / sqrt(head_dim), 8 keys at a time */
                int nk = n_keys - t < 8 ? n_keys - t : 8;
                vec16 acc[8];
                for (int j = 0; j < 8; j++) acc[j] = v_zero();
                for (int i = 0; i < hd; i++) {
                    vec16 q = v_load(qt + (size_t)i * 16);
                    for (int j = 0; j < 8; j++) acc[j] = v_madd(acc[j], v_set1(krow[t + (j < nk ? j : 0)][i]), q);
                }
                for (int j = 0; j < nk; j++) {
                    float lane[16];
                    v_store(lane, acc[j]);
                    for (int l = 0; l < lanes; l++) sc[(size_t)l * ks + t + j] = lane[l] / scale;
                }
            }
            /* softmax of each lane over its own keys; weight 0 for the rest of
             * the block's keys (and for lanes past the block) */
            for (int l = 0; l < 16; l++) {
                float *row = sc + (size_t)l * ks;
                int p = pos + b0 + l / group, from = l < lanes ? first_key(c, p) - lo : n_keys;
                int to = l < lanes ? p - lo : n_keys - 1;
                if (l < lanes) softmax_fast(row + from, to - from + 1);
                for (int k = 0; k < n_keys; k++)
                    if (k < from || k > to) row[k] = 0.0f;
            }
            for (int l0 = 0; l0 < lanes; l0 += 4) { /* the weighted sum of the values, 4 queries at a time */
                float *o[4];
                const float *wts[4];
                for (int j = 0; j < 4; j++) {
                    int l = l0 + j < lanes ? l0 + j : l0; /* past the block: computed (zero weights), not kept */
                    o[j] = s->att_out + (size_t)(b0 + l / group) * c->n_heads * hd + (size_t)(kvh * group + l % group) * hd;
                    wts[j] = sc + (size_t)(l0 + j) * ks;
                }
                weighted_values4(o, wts, lanes - l0 < 4 ? lanes - l0 : 4, vrow, n_keys, hd);
            }
        }
    }
}

/* attention() (Part 1), the work split over (KV head, position) pairs or
 * (KV head, block of positions) pairs */
static void attention_rows(const Config *c, RunState *s, int layer, int n, int pos) {
    AttentionTask t = {c, s, layer, n, pos, 0};
    parallel_for(c->n_kv_heads * n, STATIC, 1, attention_rows_task, &t);
}
static void attention_blocked(const Config *c, RunState *s, int layer, int n, int pos) {
    int QB = 16 / (c->n_heads / c->n_kv_heads);
    AttentionTask t = {c, s, layer, n, pos, (n + QB - 1) / QB};
    parallel_for(c->n_kv_heads * t.n_blocks, STATIC, 1, attention_blocked_task, &t);
}

static int attention_fast(const Config *c, RunState *s, int layer, int n, int pos) {
    if (n > 1 && c->n_heads / c->n_kv_heads <= 16) attention_blocked(c, s, layer, n, pos);
    else attention_rows(c, s, layer, n, pos);
    return 1;
}

/* --------------------------------------------------------------------------
 * Memory
 * -------------------------------------------------------------------------- */

/* A key or value cache from its own anonymous mapping: zeroed, page
 * aligned, made resident only as it is written, and advised to 2 MB pages
 * (a hint; the length is rounded up to whole 2 MB so that the kernel places
 * it on a 2 MB boundary). Attention streams the cache, and with calloc's
 * 4 KB pages, 16 bytes off a page boundary, it ran slower. */
#define KV_MAP_BYTES(floats) (((floats) * sizeof(float) + ((size_t)2 << 20) - 1) / ((size_t)2 << 20) * ((size_t)2 << 20))
static float *fast_kv_cache(size_t floats) {
    if (floats > (SIZE_MAX - ((size_t)2 << 20)) / sizeof(float)) die("out of memory (a KV cache of %zu floats)", floats);
#if !defined(MAP_ANONYMOUS) && defined(MAP_ANON)
#define MAP_ANONYMOUS MAP_ANON
#endif
#ifdef MAP_ANONYMOUS
    void *p = mmap(NULL, KV_MAP_BYTES(floats), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("out of memory (a KV cache of %zu floats)", floats);
#else /* a C library that hides anonymous mappings: aligned and zeroed by hand */
    void *p = NULL;
    if (posix_memalign(&p, (size_t)2 << 20, KV_MAP_BYTES(floats)) != 0) die("out of memory (a KV cache of %zu floats)", floats);
    memset(p, 0, KV_MAP_BYTES(floats));
#endif
#ifdef MADV_HUGEPAGE
    madvise(p, KV_MAP_BYTES(floats), MADV_HUGEPAGE);
#endif
    return p;
}
static void fast_kv_cache_free(float *p, size_t floats) {
#ifdef MAP_ANONYMOUS
    munmap(p, KV_MAP_BYTES(floats));
#else
    free(p);
#endif
}

/* What fast_prepare made (free_state calls it; then frees the rest) */
static void fast_release(RunState *s) {
    fast_kv_cache_free(s->key_cache, s->kv_floats);
    fast_kv_cache_free(s->value_cache, s->kv_floats);
    s->key_cache = s->value_cache = NULL;
    if (!s->fast) return;
    free(s->fast->scores);
    free(s->fast->key_rows);
    free(s->fast->value_rows);
    free(s->fast->q_cols);
    free(s->fast);
    s->fast = NULL;
}

/* kernels.prepare: a run's KV cache in its own 2 MB pages (init_state's
 * calloc'd caches are still untouched, so trading them costs nothing) and
 * the attention's scratch */
static void fast_prepare(RunState *s, const Config *c) {
    free(s->key_cache);
    s->key_cache = fast_kv_cache(s->kv_floats);
    free(s->value_cache);
    s->value_cache = fast_kv_cache(s->kv_floats);
    s->release = fast_release;
    struct Fast *f = xcalloc(1, sizeof *f);
    f->threads = thread_count();
    f->key_slots = s->cache_len + 16; /* at most cache_len + 15 keys in a block of the prompt */
    size_t per_thread = size_mul((size_t)(c->n_heads / c->n_kv_heads), (size_t)s->cache_len);
    if (per_thread < size_mul((size_t)f->key_slots, 16)) per_thread = (size_t)f->key_slots * 16;
    f->scores_per_thread = per_thread;
    f->scores = xcalloc(size_mul((size_t)f->threads, per_thread), sizeof(float));
    f->key_rows = xcalloc(size_mul((size_t)f->threads, (size_t)f->key_slots), sizeof(float *));
    f->value_rows = xcalloc(size_mul((size_t)f->threads, (size_t)f->key_slots), sizeof(float *));
    f->q_cols = xcalloc(size_mul((size_t)f->threads * 16, (size_t)c->head_dim), sizeof(float));
    s->fast = f;
}

/* --------------------------------------------------------------------------
 * The fast twins in Part 1's kernel table. Where a twin declines (sizes it
 * does not split, one row for rmsnorm_fast) the plain function runs; the
 * attention's weights are handed out only by the plain attention (for
 * --dump and explain). The table is filled before main runs (and in the
 * tests, which include this file).
 * -------------------------------------------------------------------------- */
static void matmul_kernel(float *out, const float *x, const void *w, int batch, int n, int d, int dtype) {
    if (!matmul_fast(out, x, w, batch, n, d, dtype)) matmul(out, x, w, batch, n, d, dtype);
}
static void rmsnorm_kernel(float *out, const float *x, const void *w, int rows, int n, float eps, int dtype) {
    if (!rmsnorm_fast(out, x, w, rows, n, eps, dtype)) rmsnorm(out, x, w, rows, n, eps, dtype);
}
static void silu_kernel(float *x, size_t n) {
    if (!silu_fast(x, n)) silu(x, n);
}
static void mul_kernel(float *x, const float *y, size_t n) {
    if (!elementwise_fast(x, y, n, '*')) mul_in_place(x, y, n);
}
static void add_kernel(float *x, const float *y, size_t n) {
    if (!elementwise_fast(x, y, n, '+')) add_in_place(x, y, n);
}
static void attention_kernel(const Config *c, RunState *s, int layer, int n, int pos, Trace *tr) {
    if (tr && tr->weights) attention(c, s, layer, n, pos, tr);
    else attention_fast(c, s, layer, n, pos);
}

__attribute__((constructor)) static void use_fast_kernels(void) {
    kernels = (Kernels){matmul_kernel, rmsnorm_kernel, silu_kernel, mul_kernel, add_kernel, attention_kernel,
                        fast_prepare};
}
#endif /* !RAKTN_PLAIN */

/* ##########################################################################
 * PART 3: THE MODEL FILE
 *
 * A 256-byte header (all little-endian) followed by the tensors in the order
 * the forward pass uses them, each starting on a 64-byte boundary. The
 * header carries every config.json field the forward pass needs
 * (notes/format.md). The file is checked completely before it is mapped: a
 * bad file must never be read past its end.
 * ########################################################################## */

#define MODEL_MAGIC "raktnMDL"
#define MODEL_VERSION 1
#define HEADER_SIZE 256
#define TENSOR_ALIGN 64

static uint32_t rd_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd_u64(const unsigned char *p) { return rd_u32(p) | (uint64_t)rd_u32(p + 4) << 32; }
static float rd_f32(const unsigned char *p) {
    uint32_t u = rd_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static double rd_f64(const unsigned char *p) {
    uint64_t u = rd_u64(p);
    double f;
    memcpy(&f, &u, 8);
    return f;
}

/* a*b, or 0 with *ok cleared on uint64 overflow */
static uint64_t mul_u64(uint64_t a, uint64_t b, int *ok) {
    if (a && b > UINT64_MAX / a) { *ok = 0; return 0; }
    return a * b;
}
static uint64_t add_u64(uint64_t a, uint64_t b, int *ok) {
    if (b > UINT64_MAX - a) { *ok = 0; return 0; }
    return a + b;
}

/* Parse and check the header. Returns NULL if it is sound, else a message. */
/* The header's fields at their byte offsets: notes/format.md's table (and
 * export/export.py's HEADER_FIELDS) */
enum {
    H_VERSION = 8, H_DTYPE = 12, H_DIM = 16, H_HIDDEN_DIM = 20, H_N_LAYERS = 24, H_N_HEADS = 28, H_N_KV_HEADS = 32,
    H_HEAD_DIM = 36, H_VOCAB_SIZE = 40, H_MAX_SEQ_LEN = 44, H_SLIDING_WINDOW = 48, H_BOS_ID = 52, H_EOS_ID = 56,
    H_TIED = 60, H_ROPE_THETA = 64, H_RMS_NORM_EPS = 68, H_DATA_OFFSET = 72, H_FILE_SIZE = 80,
    H_ROPE_THETA_EXACT = 88, H_RMS_NORM_EPS_EXACT = 96
};

static const char *parse_header(const unsigned char *h, Config *c, uint64_t *data_offset,
                                uint64_t *file_size) {
    if (memcmp(h, MODEL_MAGIC, 8) != 0) return "not a raktn model file (bad magic; export it with export/export.py)";
    if (rd_u32(h + H_VERSION) != MODEL_VERSION) return "unsupported model.bin version (re-export with this raktn's export.py)";
    uint32_t dtype = rd_u32(h + H_DTYPE);
    if (dtype != DTYPE_F32 && dtype != DTYPE_BF16) return "unknown weight dtype in header";
    c->dtype = (int)dtype;
    /* the shape, within generous limits far above any real model that keep
     * all index math in int */
    const struct { const char *name; int at; uint32_t lo, hi; int *field; } shape[] = {
        {"dim", H_DIM, 1, 1 << 16, &c->dim},
        {"hidden_dim", H_HIDDEN_DIM, 1, 1 << 20, &c->hidden_dim},
        {"n_layers", H_N_LAYERS, 1, 1 << 12, &c->n_layers},
        {"n_heads", H_N_HEADS, 1, 1 << 12, &c->n_heads},
        {"n_kv_heads", H_N_KV_HEADS, 1, 1 << 12, &c->n_kv_heads},
        {"head_dim", H_HEAD_DIM, 1, 1 << 12, &c->head_dim},
        {"vocab_size", H_VOCAB_SIZE, 1, 1 << 24, &c->vocab_size},
        {"max_seq_len", H_MAX_SEQ_LEN, 1, 1 << 24, &c->max_seq_len},
        {"sliding_window", H_SLIDING_WINDOW, 0, 1 << 24, &c->sliding_window},
    };
    for (size_t i = 0; i < sizeof shape / sizeof shape[0]; i++) {
        uint32_t v = rd_u32(h + shape[i].at);
        if (v < shape[i].lo || v > shape[i].hi) {
            static char msg[96];
            snprintf(msg, sizeof msg, "header field %s = %u is out of range", shape[i].name, v);
            return msg;
        }
        *shape[i].field = (int)v;
    }
    c->bos_id = (int32_t)rd_u32(h + H_BOS_ID);
    c->eos_id = (int32_t)rd_u32(h + H_EOS_ID);
    c->tied = (int)rd_u32(h + H_TIED);
    /* rope_theta and rms_norm_eps as float32 (the fp32 builds compute with
     * these, as transformers does) and exactly as config.json gives them
     * (float64; 0 in files from before those fields): the truth build
     * computes with those, which must round to the float32 values */
    float theta32 = rd_f32(h + H_ROPE_THETA), eps32 = rd_f32(h + H_RMS_NORM_EPS);
    double theta64 = rd_f64(h + H_ROPE_THETA_EXACT), eps64 = rd_f64(h + H_RMS_NORM_EPS_EXACT);
    if (!is_finite(theta32) || !(theta32 > 0)) return "rope_theta is not a positive number";
    if (!is_finite(eps32) || !(eps32 > 0 && eps32 < 1)) return "rms_norm_eps is not in (0, 1)";
    if ((theta64 != 0 && (float)theta64 != theta32) || (eps64 != 0 && (float)eps64 != eps32))
        return "rope_theta or rms_norm_eps as float64 does not round to its float32 value";
    c->rope_theta = theta64 != 0 ? theta64 : theta32;
    c->rms_norm_eps = eps64 != 0 ? eps64 : eps32;
    *data_offset = rd_u64(h + H_DATA_OFFSET);
    *file_size = rd_u64(h + H_FILE_SIZE);
    if (c->n_heads % c->n_kv_heads) return "n_heads is not a multiple of n_kv_heads";
    if (c->head_dim % 2) return "head_dim is odd (RoPE needs pairs)";
    if ((int64_t)c->n_heads * c->head_dim > (1 << 20)) return "n_heads * head_dim is too large";
    if (c->bos_id < -1 || c->bos_id >= c->vocab_size) return "bos_id is outside the vocabulary";
    if (c->eos_id < -1 || c->eos_id >= c->vocab_size) return "eos_id is outside the vocabulary";
    if (c->tied != 0 && c->tied != 1) return "tied flag is neither 0 nor 1";
    if (*data_offset != HEADER_SIZE) return "tensor data offset is not 256";
    return NULL;
}

/* Walk the tensors in file order, summing their sizes in 64 bits with
 * overflow checks; with a base address it also points w's fields into the
 * mapped file. Returns the file size the header implies. */
static uint64_t layout_weights(const Config *c, const char *base, Weights *w, int *ok) {
    uint64_t esize = c->dtype == DTYPE_F32 ? 4 : 2;
    uint64_t off = HEADER_SIZE;
    uint64_t D = (uint64_t)c->dim, F = (uint64_t)c->hidden_dim, V = (uint64_t)c->vocab_size;
    uint64_t Q = (uint64_t)c->n_heads * c->head_dim, KV = (uint64_t)c->n_kv_heads * c->head_dim;
#define TENSOR(dst, rows, cols)                                                       \
    do {                                                                              \
        if (base) (dst) = base + off;                                                 \
        uint64_t bytes_ = mul_u64(mul_u64(rows, cols, ok), esize, ok);                \
        bytes_ = add_u64(bytes_, TENSOR_ALIGN - 1, ok) / TENSOR_ALIGN * TENSOR_ALIGN; \
        off = add_u64(off, bytes_, ok);                                               \
    } while (0)
    TENSOR(w->embed_tokens, V, D);
    for (int l = 0; l < c->n_layers; l++) {
        LayerWeights *L = &w->layers[l];
        TENSOR(L->input_layernorm, 1, D);
        TENSOR(L->q_proj, Q, D);
        TENSOR(L->k_proj, KV, D);
        TENSOR(L->v_proj, KV, D);
        TENSOR(L->o_proj, D, Q);
        TENSOR(L->post_attention_layernorm, 1, D);
        TENSOR(L->gate_proj, F, D);
        TENSOR(L->up_proj, F, D);
        TENSOR(L->down_proj, D, F);
    }
    TENSOR(w->norm, 1, D);
    if (c->tied) {
        if (base) w->lm_head = w->embed_tokens;
    } else {
        TENSOR(w->lm_head, V, D);
    }
#undef TENSOR
    return off;
}

/* Open model.bin, check it completely, then map it. Exits with a one-line
 * message on any problem: a bad file must never be touched past its end. */
static void load_model(Model *m, const char *path) {
    /* The weights are read in place from the mapped file, which is
     * little-endian: a big-endian host would read every one wrongly. */
    const uint16_t one = 1;
    if (*(const unsigned char *)&one != 1)
        die("%s: model.bin is little-endian and this host is big-endian: raktn reads the weights in place and "
            "runs only on little-endian hosts", path);
    /* O_NONBLOCK: a FIFO given as the model must fail below, not block here */
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) die("%s: cannot open (%s)", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) die("%s: not a regular file", path);
    if (st.st_size < HEADER_SIZE) die("%s: file is %lld bytes, shorter than the %d-byte header", path,
                                      (long long)st.st_size, HEADER_SIZE);
    unsigned char h[HEADER_SIZE];
    if (pread(fd, h, HEADER_SIZE, 0) != HEADER_SIZE) die("%s: cannot read the header", path);
    uint64_t data_offset, file_size;
    const char *err = parse_header(h, &m->config, &data_offset, &file_size);
    if (err) die("%s: %s", path, err);
    int ok = 1;
    m->weights.layers = xcalloc((size_t)m->config.n_layers, sizeof(LayerWeights));
    uint64_t need = layout_weights(&m->config, NULL, &m->weights, &ok);
    if (!ok) die("%s: tensor sizes overflow 64 bits (corrupt header)", path);
    if (file_size != need)
        die("%s: header says %llu bytes but its shapes need %llu", path, (unsigned long long)file_size,
            (unsigned long long)need);
    if ((uint64_t)st.st_size != need)
        die("%s: file is %llu bytes, the header implies %llu (truncated or padded download?)", path,
            (unsigned long long)st.st_size, (unsigned long long)need);
    if (need > SIZE_MAX) die("%s: too large for this machine's address space", path);
    m->map_size = (size_t)need;
    m->map = mmap(NULL, m->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m->map == MAP_FAILED)
        die("%s: mmap failed (%s)%s", path, strerror(errno),
            sizeof(void *) < 8 ? ": a 32-bit process may not have this much address space" : "");
#if defined(MADV_HUGEPAGE) && !defined(RAKTN_PLAIN)
    /* A hint (Part 2's business), so its result is ignored: pages read from
     * disk through this mapping come into the page cache as 2 MB folios and
     * are mapped with 2 MB pages where the kernel can (Linux 6.x; ext4 and
     * xfs); decode streams every weight once per token, faster so. */
    madvise(m->map, m->map_size, MADV_HUGEPAGE);
#endif
    layout_weights(&m->config, m->map, &m->weights, &ok);
}

static void free_model(Model *m) {
    free(m->weights.layers);
    if (m->map && m->map != MAP_FAILED) munmap(m->map, m->map_size);
}

#ifdef RAKTN_TRUTH
/* --------------------------------------------------------------------------
 * Rounding where a peer rounds (raktn-truth only): --round bf16|f16|q8_0|q8_k
 * rounds what every matmul reads, --kv f16 the attention's operands, at the
 * points llama.cpp's CPU backend rounds them (ggml-cpu, c392e509: each
 * weight type's vec_dot_type; with an f16 KV cache, q and the attention
 * weights become f16 for their products with the cached keys and values).
 * The rest stays exact, so a correct peer differs only by the order of its
 * float32 sums and the rare value its rounding puts on the other side of a
 * step (notes/verification.md, "Presets"). Both take their place in Part
 * 1's kernel table: kernels.matmul = matmul_rounded, kernels.attention =
 * attention_f16kv.
 * -------------------------------------------------------------------------- */
enum { ROUND_NONE, ROUND_BF16, ROUND_F16, ROUND_Q8_0, ROUND_Q8_K };
static int peer_round = ROUND_NONE;

/* the float32 of v, rounded to bfloat16 (nearest even: GGML_FP32_TO_BF16) */
static double round_bf16(double v) {
    float f = (float)v;
    uint32_t u;
    memcpy(&u, &f, 4);
    u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

/* the float32 of v, rounded to IEEE half (nearest even) */
static double round_f16(double v) {
    double f = (float)v, a = fabs(f);
    if (a == 0 || !isfinite(a)) return f;
    int e;
    frexp(a, &e); /* a in [2^(e-1), 2^e): half's step there is 2^(e-11), at least 2^-24 */
    double step = ldexp(1.0, (e - 1 < -14 ? -14 : e - 1) - 10);
    double r = nearbyint(f / step) * step;
    return fabs(r) > 65504 ? copysign(INFINITY, f) : r;
}

/* quantize_row_q8_0 as ggml-cpu runs it on x86 (AVX): blocks of 32,
 * q = nearest-even(x * 127/amax), value q * half(amax/127) */
static void round_q8_0(real *x, int n) {
    for (int b = 0; b + 32 <= n; b += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmax(amax, fabs((float)x[b + j]));
        float id = amax != 0 ? 127.f / amax : 0;
        double d = round_f16(amax / 127.f);
        for (int j = 0; j < 32; j++) x[b + j] = nearbyint((float)((float)x[b + j] * id)) * d;
    }
}

/* quantize_row_q8_K_ref (the K-quants' activations): blocks of 256, scale
 * -127/max where max is the entry of largest magnitude, q <= 127 */
static void round_q8_k(real *x, int n) {
    for (int b = 0; b + 256 <= n; b += 256) {
        float amax = 0, max = 0;
        for (int j = 0; j < 256; j++)
            if (fabs((float)x[b + j]) > amax) amax = fabs((float)x[b + j]), max = (float)x[b + j];
        float iscale = amax != 0 ? -127.f / max : 0, d = amax != 0 ? 1 / iscale : 0;
        for (int j = 0; j < 256; j++) {
            double q = nearbyint((float)(iscale * (float)x[b + j]));
            x[b + j] = (q > 127 ? 127 : q) * d;
        }
    }
}

/* kernels.matmul under --round: matmul() of the inputs rounded as the peer
 * rounds them */
static void matmul_rounded(real *out, const real *x, const void *w, int batch, int n, int d, int dtype) {
    static real *buf;
    static size_t cap;
    size_t len = (size_t)batch * n;
    if (len > cap) {
        free(buf);
        buf = xcalloc(len, sizeof(real));
        cap = len;
    }
    for (size_t i = 0; i < len; i++)
        buf[i] = peer_round == ROUND_BF16 ? round_bf16(x[i]) : peer_round == ROUND_F16 ? round_f16(x[i]) : x[i];
    for (int b = 0; b < batch && peer_round >= ROUND_Q8_0; b++)
        (peer_round == ROUND_Q8_0 ? round_q8_0 : round_q8_k)(buf + (size_t)b * n, n);
    matmul(out, buf, w, batch, n, d, dtype);
}

/* attention() with an f16 KV cache as llama.cpp computes it (flash attention
 * off): f16 keys times the f16 query, softmax (traced as computed), then the
 * f16 weights times the f16 values */
static void attention_f16kv(const Config *c, RunState *s, int layer, int n, int pos, Trace *tr) {
    int hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
    for (int b = 0; b < n; b++) {
        int p = pos + b, first = first_key(c, p), n_keys = p - first + 1;
        for (int h = 0; h < c->n_heads; h++) {
            int kvh = h / group;
            const real *q = s->q + ((size_t)b * c->n_heads + h) * hd;
            for (int t = first; t <= p; t++) {
                const real *k = kv_row(c, s, s->key_cache, s->k, layer, kvh, t, pos);
                real dot = 0;
                for (int i = 0; i < hd; i++) dot += round_f16(q[i]) * round_f16(k[i]);
                s->scores[t - first] = dot / sqrt((real)hd);
            }
            softmax(s->scores, n_keys);
            if (tr && tr->weights) tr->weights(tr, layer, h, p, first, s->scores, n_keys);
            real *out = s->att_out + ((size_t)b * c->n_heads + h) * hd;
            for (int i = 0; i < hd; i++) out[i] = 0;
            for (int t = first; t <= p; t++) {
                const real *v = kv_row(c, s, s->value_cache, s->v, layer, kvh, t, pos);
                for (int i = 0; i < hd; i++) out[i] += round_f16(s->scores[t - first]) * round_f16(v[i]);
            }
        }
    }
}
#endif

/* ##########################################################################
 * PART 4: THE PROGRAMS
 * ########################################################################## */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    const char *model_path, *tokenizer_path, *mode;
    const char *prompt, *prompt_file, *ids, *system, *out_path, *hidden_path, *dump_dir, *json_path, *html_path;
    int steps, ctx, top_k, threads, pos;
    float temperature, top_p;
    unsigned long long seed;
    int seed_given; /* -s: else the seed comes from the clock */
    int verbose;
} Options;

/* The modes, and the options each one reads. An option given to a mode that
 * does not read it is refused (it would do nothing); -T and -v go with
 * every mode. A new mode is one more row (and its branch in main). */
static const struct { const char *mode, *options; } MODES[] = {
    {"generate", "-i -f --ids -z -n -t -p -s -c"},
    {"chat", "-z -n -t -p -s -c -y"},
    {"logits", "-i -f --ids -z -c -o --hidden --dump --top --round --kv"},
    {"explain", "-i -f --ids -z -c --top --pos --json --html --round --kv"},
    {"ppl", "-i -f --ids -z -c"},
    {"tokenize", "-i -f -z"},
    {"detokenize", "--ids -z"},
};
#define N_MODES ((int)(sizeof MODES / sizeof MODES[0]))

static void usage(FILE *f) {
    fputs("usage: raktn MODEL.bin [options]            (tokenize/detokenize need no MODEL.bin)\n"
          "  -m MODE     generate (default) | chat | logits | explain | ppl | tokenize | detokenize\n"
          "  -i TEXT     prompt text (--text is the same)\n"
          "  -f FILE     read the prompt (or the ppl text) from FILE, byte for byte\n"
          "  --ids LIST  the prompt as token ids, e.g. \"1 22 333\" (no tokenizer involved)\n"
          "  -z FILE     tokenizer.bin (default: tokenizer.bin next to MODEL.bin)\n"
          "  -n N        generate at most N new tokens (default 256)\n"
          "  -t T        temperature, 0 = greedy (default 0.8)\n"
          "  -p P        top-p / nucleus mass in (0,1] (default 0.9)\n"
          "  -s SEED     random seed (default: from the clock; -v prints it)\n"
          "  -c N        context length in positions (default: the model's maximum)\n"
          "  -y TEXT     chat: replace the system sentence of the template\n"
          "  -o FILE     logits: write [n_tokens, vocab] float32 to FILE (.npy: NumPy format;\n"
          "              the truth build writes float64)\n"
          "  --hidden F  logits: also write [n_layers+1, n_tokens, dim] hidden states (.npy too)\n"
          "  --dump DIR  logits: every module's output as DIR/<HF module path>.npy\n"
          "  --top K     logits: print the K most likely next tokens at each position;\n"
          "              explain: keep K guesses per distribution (default 5)\n"
          "  --pos P     explain: walk position P through the model (default: the last;\n"
          "              'all': every position)\n"
          "  --json FILE explain: everything, for every position, as JSON (notes/explain.md)\n"
          "  --html FILE explain: a self-contained page showing it\n"
          "  -T N        threads (default: one per CPU this process may use; the plain build has one)\n"
#ifdef RAKTN_TRUTH
          "  --round R   truth build: round every matmul's input as a peer does: bf16, f16,\n"
          "              q8_0 or q8_k (llama.cpp's BF16, F16, Q8_0/Q4_0, K-quant weights)\n"
          "  --kv f16    truth build: an f16 KV cache as llama.cpp's (q, k, v, weights)\n"
#endif
          "  -v          verbose: print token ids (and the seed) to stderr\n"
          "  -h          this help\n"
          "Each mode reads only its own options:\n",
          f);
    for (int m = 0; m < N_MODES; m++) fprintf(f, "  %-11s %s -T -v\n", MODES[m].mode, MODES[m].options);
}

static void bad_usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    print_error(fmt, ap);
    va_end(ap);
    usage(stderr);
    exit(2);
}

static long parse_long(const char *s, const char *flag, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) bad_usage("%s wants an integer, got '%s'", flag, s);
    if (v < lo || v > hi) bad_usage("%s must be in %ld..%ld, got %ld", flag, lo, hi, v);
    return v;
}

static float parse_float(const char *s, const char *flag, float lo, float hi) {
    char *end;
    errno = 0;
    double v = strtod(s, &end); /* double: 1e-45 is a number even if float can barely hold it */
    if (end == s || *end || !is_finite(v)) bad_usage("%s wants a number, got '%s'", flag, s);
    if (v < lo || v > hi) bad_usage("%s must be in %g..%g, got %s", flag, lo, hi, s);
    return (float)v;
}

/* Parse "1 22 333" (spaces, tabs, newlines or commas between) into ids,
 * each checked against the vocabulary. Returns a malloc'd array. */
static int *parse_ids(const char *s, int vocab, int *n_out) {
    size_t cap = 16, n = 0;
    int *ids = xcalloc(cap, sizeof(int));
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ',') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || !(*end == 0 || strchr(" \t\n\r,", *end))) {
            size_t len = strcspn(p, " \t\n\r,");
            bad_usage("--ids: '%.*s' is not a token id", (int)(len < 20 ? len : 20), p);
        }
        if (v < 0 || v >= vocab) bad_usage("--ids: token id %ld is outside the vocabulary (0..%d)", v, vocab - 1);
        if (n == cap) {
            cap *= 2;
            int *nb = realloc(ids, cap * sizeof(int));
            if (!nb) die("out of memory");
            ids = nb;
        }
        ids[n++] = (int)v;
        p = end;
    }
    if (n > INT_MAX / 2) die("--ids: too many ids");
    *n_out = (int)n;
    return ids;
}

/* --------------------------------------------------------------------------
 * Output files, all or nothing. Every file a run writes (-o, --hidden, the
 * files of --dump) goes to a temporary beside it (PATH.raktn-XXXXXX) and is
 * renamed into place only when the whole run has succeeded, standard output
 * included (commit_outputs, the last thing main does). Before that an error
 * (die, through atexit) or a signal (INT, TERM, HUP, QUIT, PIPE) removes the
 * temporaries and a --dump folder raktn created; during the renames those
 * signals are held, so a run leaves all the old files or all the new ones.
 * SIGXFSZ is ignored: a file-size limit is a write error, like a full disk.
 * A replaced file keeps its permission bits, and one the user could not
 * write to is refused (as the shell's > refuses it). An existing path that
 * is not a regular file (a device, a FIFO) is written in place, never
 * replaced. Every path is checked before the model computes anything
 * (check_out_paths).
 * -------------------------------------------------------------------------- */
static char **pending_tmp, **pending_path;
static volatile sig_atomic_t n_pending;
static int pending_cap;
static char *made_dir; /* a --dump folder this run created, removed on failure */

static const int caught_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE};
#define N_CAUGHT ((int)(sizeof caught_signals / sizeof caught_signals[0]))

static void remove_temporaries(void) { /* async-signal-safe: unlink, rmdir */
    for (int i = 0; i < n_pending; i++)
        if (pending_tmp[i]) unlink(pending_tmp[i]);
    if (made_dir) rmdir(made_dir);
}

static void on_signal(int sig) {
    remove_temporaries();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Hold (block) or release the caught signals: nothing in between sees a
 * half-updated record of the temporaries */
static void hold_signals(int hold, sigset_t *old) {
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < N_CAUGHT; i++) sigaddset(&set, caught_signals[i]);
    if (hold) pthread_sigmask(SIG_BLOCK, &set, old);
    else pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* At startup. A signal ignored when raktn starts (nohup's SIGHUP) stays
 * ignored. (The pool's threads block these signals: only this thread runs
 * the handler.) */
static void catch_signals(void) {
    atexit(remove_temporaries);
    for (int i = 0; i < N_CAUGHT; i++) {
        struct sigaction sa = {0}, old;
        if (sigaction(caught_signals[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(caught_signals[i], &sa, NULL);
    }
#ifdef SIGXFSZ
    signal(SIGXFSZ, SIG_IGN);
#endif
}

static void add_pending(char *tmp, const char *path) {
    sigset_t old;
    hold_signals(1, &old);
    if (n_pending == pending_cap) {
        int cap = pending_cap ? 2 * pending_cap : 16;
        char **t = realloc(pending_tmp, (size_t)cap * sizeof *t), **p = t ? realloc(pending_path, (size_t)cap * sizeof *p) : NULL;
        if (t) pending_tmp = t;
        if (!p) die("out of memory");
        pending_path = p, pending_cap = cap;
    }
    pending_tmp[n_pending] = tmp;
    pending_path[n_pending] = (char *)path;
    n_pending++;
    hold_signals(0, &old);
}

/* A file path as the file system sees it: the folder it is in and its name
 * there, and the file itself if it exists. Two paths name one file when both
 * exist and are one file, or when they are one name in one folder
 * ("x.npy", "./x.npy", "sub/x.npy" with sub -> .). */
typedef struct {
    struct stat st, dir;
    int exists;
    const char *name; /* after the last '/' */
} PathId;

/* 0 (errno set) when the folder the path is in is not there */
static int path_id(const char *path, PathId *id) {
    const char *slash = strrchr(path, '/');
    id->name = slash ? slash + 1 : path;
    size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;
    char *dir = xcalloc(dir_len + 2, 1);
    if (dir_len) memcpy(dir, path, dir_len);
    else dir[0] = '.';
    int ok = stat(dir, &id->dir) == 0;
    if (ok && !S_ISDIR(id->dir.st_mode)) ok = 0, errno = ENOTDIR;
    free(dir);
    id->exists = stat(path, &id->st) == 0;
    return ok;
}

static int same_file(const PathId *a, const PathId *b) {
    if (a->exists && b->exists && a->st.st_dev == b->st.st_dev && a->st.st_ino == b->st.st_ino) return 1;
    return a->dir.st_dev == b->dir.st_dev && a->dir.st_ino == b->dir.st_ino && !strcmp(a->name, b->name);
}

/* The files this run reads (model.bin, tokenizer.bin, the prompt): no output
 * may be one of them */
static PathId inputs[3];
static const char *input_paths[3];
static int n_inputs;
static void note_input(const char *path) {
    if (n_inputs < 3 && path_id(path, &inputs[n_inputs])) input_paths[n_inputs++] = path;
}

/* The outputs named on the command line (-o, --hidden), once opened */
static PathId named[8];
static int n_named;

typedef struct { FILE *f; const char *path; const char *tmp; } OutFile;

/* Refuse an output that is an input or an output already opened */
static void check_output(const char *path, const PathId *id) {
    for (int i = 0; i < n_inputs; i++)
        if (same_file(id, &inputs[i])) bad_usage("%s is a file this run reads: it will not be overwritten", path);
    for (int i = 0; i < n_named; i++)
        if (same_file(id, &named[i])) bad_usage("%s is named twice as an output", path);
}

/* PATH.raktn-XXXXXX, with PATH's own name cut short where the file system's
 * limit on a name (usually 255 bytes) has no room for the 13 added bytes */
static char *temporary_name(const char *path, const PathId *id) {
    size_t dir_len = (size_t)(id->name - path), keep = strlen(id->name);
    long name_max = 255;
#ifdef _PC_NAME_MAX
    char *dir = xcalloc(dir_len + 2, 1);
    if (dir_len) memcpy(dir, path, dir_len);
    else dir[0] = '.';
    long got = pathconf(dir, _PC_NAME_MAX);
    if (got > 0) name_max = got;
    free(dir);
#endif
    if (keep + 13 > (size_t)name_max) {
        keep = name_max > 13 ? (size_t)name_max - 13 : 0;
        while (keep > 0 && ((unsigned char)id->name[keep] & 0xC0) == 0x80) keep--; /* whole UTF-8 characters */
    }
    char *tmp = xcalloc(dir_len + keep + 16, 1);
    memcpy(tmp, path, dir_len + keep);
    memcpy(tmp + dir_len + keep, ".raktn-XXXXXX", 14);
    return tmp;
}

static void out_open(OutFile *o, const char *path, int named_output) {
    PathId id;
    if (!path_id(path, &id)) die("%s: cannot create a file there (%s)", path, strerror(errno));
    check_output(path, &id);
    o->path = path;
    o->tmp = NULL;
    if (id.exists && !S_ISREG(id.st.st_mode)) { /* a device or FIFO: in place, never replaced */
        if (S_ISDIR(id.st.st_mode)) die("%s: is a folder, not a file", path);
        o->f = fopen(path, "wb");
        if (!o->f) die("%s: cannot open (%s)", path, strerror(errno));
    } else {
        if (id.exists && access(path, W_OK) != 0)
            die("%s: will not replace it (%s), as the shell's > would not", path, strerror(errno));
        char *tmp = temporary_name(path, &id);
        int fd = mkstemp(tmp);
        if (fd < 0) die("%s: cannot create a file beside it (%s)", path, strerror(errno));
        add_pending(tmp, path); /* removed on any failure from here on */
        if (id.exists) { /* the file it replaces: its owner where allowed, its mode */
            if (fchown(fd, id.st.st_uid, id.st.st_gid) != 0) { /* not allowed: the mode alone */ }
            fchmod(fd, id.st.st_mode & 07777);
        } else { /* what a plain create would give (mkstemp's is 0600) */
            mode_t um = umask(0);
            umask(um);
            fchmod(fd, 0666 & ~um);
        }
        o->f = fdopen(fd, "wb");
        if (!o->f) die("%s: cannot open (%s)", tmp, strerror(errno));
        o->tmp = tmp;
    }
    if (named_output && n_named < 8) named[n_named++] = id;
}

static void out_write(OutFile *o, const void *buf, size_t size) {
    if (size && fwrite(buf, 1, size, o->f) != size) die("%s: write failed (%s)", o->path, strerror(errno));
}

/* Complete (still under its temporary name until commit_outputs) */
static void out_close(OutFile *o) {
    if (fflush(o->f) != 0 || ferror(o->f)) die("%s: write failed (%s)", o->path, strerror(errno));
    if (o->tmp && fsync(fileno(o->f)) != 0 && errno != EINVAL) die("%s: write failed (%s)", o->path, strerror(errno));
    if (fclose(o->f) != 0) { o->f = NULL; die("%s: write failed (%s)", o->path, strerror(errno)); }
    o->f = NULL;
}

/* The run has succeeded: rename every output into place, the caught signals
 * held meanwhile (one that comes ends raktn after the last rename) */
static void commit_outputs(void) {
    sigset_t old;
    hold_signals(1, &old);
    for (int i = 0; i < n_pending; i++)
        if (pending_tmp[i] && rename(pending_tmp[i], pending_path[i]) != 0)
            die("%s: cannot rename into place (%s)", pending_path[i], strerror(errno));
    for (int i = 0; i < n_pending; i++) free(pending_tmp[i]);
    n_pending = 0;
    made_dir = NULL;
    hold_signals(0, &old);
}

/* NumPy's .npy format (version 1.0): magic, header length, a Python dict
 * literal giving dtype, order and shape, padded to a multiple of 64 bytes
 * with spaces and a newline; then the data, little-endian, C order. */
static int is_npy(const char *path) {
    size_t n = strlen(path);
    return n >= 4 && !strcmp(path + n - 4, ".npy");
}
static void npy_header(OutFile *o, const char *descr, const long *shape, int ndim) {
    char dict[256];
    int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < ndim; i++) len += snprintf(dict + len, sizeof dict - len, "%ld,%s", shape[i], i + 1 < ndim ? " " : "");
    len += snprintf(dict + len, sizeof dict - len, "), }");
    int total = (10 + len + 1 + 63) / 64 * 64; /* magic(6) version(2) length(2) dict '\n' */
    unsigned char head[320];
    memcpy(head, "\x93NUMPY\x01\x00", 8);
    head[8] = (unsigned char)((total - 10) & 0xff);
    head[9] = (unsigned char)((total - 10) >> 8);
    memcpy(head + 10, dict, (size_t)len);
    memset(head + 10 + len, ' ', (size_t)(total - 10 - len));
    head[total - 1] = '\n';
    out_write(o, head, (size_t)total);
}

/* An output of reals: .npy with this shape when the name ends in .npy,
 * else raw; little-endian float32 (float64 in the truth build) */
static void out_open_floats(OutFile *o, const char *path, const long *shape, int ndim, int named_output) {
    out_open(o, path, named_output);
    if (is_npy(path)) npy_header(o, sizeof(real) == 8 ? "<f8" : "<f4", shape, ndim);
}

/* standard output: every write checked once, at the end of each turn and
 * of the run (a reader that goes away is SIGPIPE's, the Unix convention) */
static void check_stdout(void) {
    if (fflush(stdout) != 0 || ferror(stdout)) die("standard output: write failed (%s)", strerror(errno ? errno : EIO));
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die("%s: cannot open (%s)", path, strerror(errno));
    size_t cap = 1 << 16, n = 0, r;
    char *buf = xcalloc(cap + 1, 1);
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            if (cap > SIZE_MAX / 4) die("%s: file too large", path);
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb) die("out of memory reading %s", path);
            buf = nb;
        }
    }
    if (ferror(f)) die("%s: read error", path);
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

static Tokenizer *open_tokenizer(const Options *o) {
    char path[4096], err[256];
    if (o->tokenizer_path) {
        snprintf(path, sizeof path, "%s", o->tokenizer_path);
    } else {
        if (!o->model_path) bad_usage("-m %s needs a tokenizer: -z TOKENIZER.bin", o->mode);
        const char *slash = strrchr(o->model_path, '/');
        int dir_len = slash ? (int)(slash - o->model_path + 1) : 0;
        snprintf(path, sizeof path, "%.*stokenizer.bin", dir_len, o->model_path);
    }
    Tokenizer *t = tokenizer_load(path, err, sizeof err);
    if (!t) die("%s", err); /* the message names the file */
    note_input(path);
    return t;
}

/* The prompt as token ids: --ids, or BOS + encode(text) as AutoTokenizer. */
static int *prompt_ids(const Options *o, Tokenizer *tok, int vocab, int *n) {
    if (o->ids) return parse_ids(o->ids, vocab, n);
    size_t len;
    char *text = NULL;
    const char *src = o->prompt;
    if (o->prompt_file) src = text = read_file(o->prompt_file, &len);
    else len = src ? strlen(src) : 0;
    if (!src) bad_usage("-m %s needs a prompt: -i TEXT, -f FILE or --ids LIST", o->mode);
    int *ids;
    size_t nids;
    if (tokenizer_encode(tok, src, len, tokenizer_add_bos(tok), &ids, &nids) != 0) die("out of memory while tokenizing");
    free(text);
    for (size_t i = 0; i < nids; i++)
        if (ids[i] < 0 || ids[i] >= vocab) die("tokenizer produced id %d outside the model's vocabulary (%d): "
                                               "tokenizer.bin and model.bin do not match", ids[i], vocab);
    if (nids > (size_t)INT_MAX) die("prompt too long");
    *n = (int)nids;
    return ids;
}

static void print_ids(const char *label, const int *ids, int n) {
    fprintf(stderr, "%s", label);
    for (int i = 0; i < n; i++) fprintf(stderr, "%s%d", i ? " " : "", ids[i]);
    fputc('\n', stderr);
}

static void check_fits(int n, const RunState *s) {
    if (n > s->ctx) die("the sequence has %d tokens but the context is %d positions (-c, at most the model's "
                        "max_position_embeddings)", n, s->ctx);
}

/* --hidden: HF's output_hidden_states collected from the forward pass's
 * trace: [n_layers+1][n][dim], entry 0 the embeddings, entry k the output
 * of layer k-1, the last entry after the final norm (model.norm). */
typedef struct {
    Trace trace;
    real *h;
    int n, n_layers, dim;
} Hidden;

static void hidden_output(Trace *t, const char *module, int layer, int pos, const real *x, int rows, int cols) {
    Hidden *hs = (Hidden *)t;
    int k = -1;
    if (!strcmp(module, "model.embed_tokens")) k = 0;
    else if (layer >= 0 && !module[0] && layer < hs->n_layers - 1) k = layer + 1;
    else if (!strcmp(module, "model.norm")) k = hs->n_layers;
    if (k >= 0) memcpy(hs->h + ((size_t)k * hs->n + pos) * hs->dim, x, (size_t)rows * cols * sizeof(real));
}

/* --dump DIR: every module's output for the whole sequence, one .npy per
 * Hugging Face module path (notes/verification.md lists them): rows are
 * gathered chunk by chunk in memory and written at the end. */
typedef struct {
    char *name;
    real *data;
    long shape[3];
    int ndim;
} Tensor;

typedef struct {
    Trace trace;
    Tensor *t;
    int count, cap, n, n_heads;
    Trace *also; /* NULL, or a trace that sees every output too (--hidden with --dump) */
} Dump;

/* The dump's tensors by name (one Dump at a time): a hash table of index + 1
 * (0: empty), so that a model of thousands of layers is not quadratic */
static int *dump_slots;
static size_t dump_n_slots;

/* The slot of `name`: the one holding it, or the empty one where it goes
 * (FNV-1a hash, then the next slot along) */
static int *dump_slot(const Dump *d, const char *name) {
    uint64_t h = 14695981039346656037ull;
    for (const char *p = name; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    size_t i = (size_t)h & (dump_n_slots - 1);
    while (dump_slots[i] && strcmp(d->t[dump_slots[i] - 1].name, name)) i = (i + 1) & (dump_n_slots - 1);
    return &dump_slots[i];
}

static Tensor *dump_tensor(Dump *d, const char *name, int ndim, long s0, long s1, long s2) {
    if (d->count == 0) free(dump_slots), dump_slots = NULL, dump_n_slots = 0; /* a new dump */
    int *slot = dump_n_slots ? dump_slot(d, name) : NULL;
    if (slot && *slot) return &d->t[*slot - 1];
    if (2 * (size_t)(d->count + 1) > dump_n_slots) { /* grow the table, and place every name again */
        free(dump_slots);
        dump_n_slots = dump_n_slots ? 2 * dump_n_slots : 256;
        dump_slots = xcalloc(dump_n_slots, sizeof(int));
        for (int i = 0; i < d->count; i++) *dump_slot(d, d->t[i].name) = i + 1;
    }
    *dump_slot(d, name) = d->count + 1;
    if (d->count == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 64;
        Tensor *nt = realloc(d->t, (size_t)d->cap * sizeof(Tensor));
        if (!nt) die("out of memory");
        d->t = nt;
    }
    Tensor *t = &d->t[d->count++];
    t->name = strdup(name);
    t->ndim = ndim;
    t->shape[0] = s0, t->shape[1] = s1, t->shape[2] = s2;
    t->data = xcalloc(size_mul(size_mul((uint64_t)s0, (uint64_t)s1), (uint64_t)(ndim == 3 ? s2 : 1)), sizeof(real));
    if (!t->name) die("out of memory");
    return t;
}

static void dump_name(char *buf, size_t cap, const char *module, int layer) {
    if (layer < 0) snprintf(buf, cap, "%s", module);
    else snprintf(buf, cap, "model.layers.%d%s%s", layer, module[0] ? "." : "", module);
}

static void dump_output(Trace *tr, const char *module, int layer, int pos, const real *x, int rows, int cols) {
    Dump *d = (Dump *)tr;
    char name[128];
    dump_name(name, sizeof name, module, layer);
    Tensor *t = dump_tensor(d, name, 2, d->n, cols, 0);
    memcpy(t->data + (size_t)pos * cols, x, (size_t)rows * cols * sizeof(real));
    trace(d->also, module, layer, pos, x, rows, cols);
}

static void dump_weights(Trace *tr, int layer, int h, int p, int first, const real *w, int n_keys) {
    Dump *d = (Dump *)tr;
    char name[128];
    dump_name(name, sizeof name, "self_attn.attn_weights", layer);
    Tensor *t = dump_tensor(d, name, 3, d->n_heads, d->n, d->n);
    memcpy(t->data + ((size_t)h * d->n + p) * d->n + first, w, (size_t)n_keys * sizeof(real));
}

static void dump_write(Dump *d, const char *dir) {
    struct stat st; /* (check_out_paths has made it, in a run) */
    if (stat(dir, &st) != 0) {
        if (mkdir(dir, 0777) != 0) die("%s: cannot create the folder (%s)", dir, strerror(errno));
        made_dir = (char *)dir;
    } else if (!S_ISDIR(st.st_mode)) {
        die("%s: --dump wants a folder", dir);
    }
    for (int i = 0; i < d->count; i++) {
        Tensor *t = &d->t[i];
        size_t len = strlen(dir) + strlen(t->name) + 8;
        char *path = xcalloc(len, 1);
        snprintf(path, len, "%s/%s.npy", dir, t->name);
        OutFile f;
        out_open_floats(&f, path, t->shape, t->ndim, 0);
        out_write(&f, t->data, size_mul(size_mul((uint64_t)t->shape[0], (uint64_t)t->shape[1]),
                                        (uint64_t)(t->ndim == 3 ? t->shape[2] : 1) * sizeof(real)));
        out_close(&f);
    }
}

static void dump_free(Dump *d) {
    for (int i = 0; i < d->count; i++) free(d->t[i].name), free(d->t[i].data);
    free(d->t);
    free(dump_slots);
    dump_slots = NULL, dump_n_slots = 0;
}

/* Every name dump_name() makes, with .npy: model.*.npy or lm_head.npy */
static int is_dump_name(const char *name) {
    size_t n = strlen(name);
    return !strcmp(name, "lm_head.npy") || (n > 10 && !strncmp(name, "model.", 6) && !strcmp(name + n - 4, ".npy"));
}

/* -m logits and explain, before anything is computed: each output file can be created
 * where it is named, no two outputs are one file and none is a file this
 * run reads (the model, the tokenizer, the prompt), and the --dump folder is
 * there (made now if it is not: removed again if the run fails) with no
 * other file of this run under a name the dump will write. */
static void check_out_paths(const Options *o, const char *const files[2], const char *const flags[2]) {
    if (o->prompt_file) note_input(o->prompt_file);
    PathId ids[2];
    for (int i = 0; i < 2; i++) {
        if (!files[i]) continue;
        if (!path_id(files[i], &ids[i])) die("%s: cannot create a file there (%s)", files[i], strerror(errno));
        if (ids[i].exists && S_ISDIR(ids[i].st.st_mode)) die("%s: is a folder, not a file", files[i]);
        check_output(files[i], &ids[i]);
        if (i == 1 && files[0] && same_file(&ids[0], &ids[1]))
            bad_usage("%s is named twice as an output (%s %s, %s %s)", files[1], flags[0], files[0], flags[1], files[1]);
    }
    const char *dir = o->dump_dir;
    if (!dir) return;
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (mkdir(dir, 0777) != 0) die("%s: cannot create the folder (%s)", dir, strerror(errno));
        made_dir = (char *)dir;
        if (stat(dir, &st) != 0) die("%s: cannot create the folder (%s)", dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) die("%s: --dump wants a folder", dir);
    if (access(dir, W_OK | X_OK) != 0) die("%s: cannot write into the folder (%s)", dir, strerror(errno));
    for (int i = 0; i < 2; i++)
        if (files[i] && ids[i].dir.st_dev == st.st_dev && ids[i].dir.st_ino == st.st_ino && is_dump_name(ids[i].name))
            bad_usage("%s is named twice as an output: --dump %s writes a file of that name", files[i], dir);
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i].dir.st_dev == st.st_dev && inputs[i].dir.st_ino == st.st_ino && is_dump_name(inputs[i].name))
            bad_usage("%s is a file this run reads: --dump %s would overwrite it", input_paths[i], dir);
}

/* The logits of a position must be numbers: NaN or Inf there comes from NaN
 * or Inf in the weights (or values beyond float's range), never from a
 * sound model, and would print as <unk> or -nan. */
static void check_logits(const real *row, int vocab, int pos) {
    for (int v = 0; v < vocab; v++)
        if (!is_finite(row[v]))
            die("the logits at position %d are not numbers (%s): the model's weights hold NaN or Inf, or values "
                "too large for float (export/export.py warns of such tensors)", pos, row[v] != row[v] ? "NaN" : "Inf");
}

/* -m logits: one forward pass over the sequence: every position's logits
 * (-o), HF's output_hidden_states (--hidden), every module's output
 * (--dump), or a readable top-K view (--top). */
static void run_logits(Model *m, RunState *s, const Options *o, Tokenizer *tok) {
    const Config *c = &m->config;
    if (!o->out_path && !o->hidden_path && !o->dump_dir && o->top_k == 0)
        bad_usage("-m logits needs -o FILE, --hidden FILE, --dump DIR or --top K");
    check_out_paths(o, (const char *[2]){o->out_path, o->hidden_path}, (const char *[2]){"-o", "--hidden"});
    int n;
    int *ids = prompt_ids(o, tok, c->vocab_size, &n);
    if (n == 0) die("empty sequence: nothing to run");
    check_fits(n, s);
    if (!o->ids || o->verbose) print_ids("ids: ", ids, n);
    Hidden hs = {{hidden_output, NULL}, NULL, n, c->n_layers, c->dim};
    Dump dump = {{dump_output, dump_weights}, NULL, 0, 0, n, c->n_heads, o->hidden_path ? &hs.trace : NULL};
    Trace *tr = o->dump_dir ? &dump.trace : o->hidden_path ? &hs.trace : NULL;
    size_t hidden_size = size_mul(size_mul((uint64_t)c->n_layers + 1, (uint64_t)n), (uint64_t)c->dim);
    if (o->hidden_path) hs.h = xcalloc(hidden_size, sizeof(real));
    OutFile out = {0}, hf = {0}; /* both opened before the computing */
    long shape[3] = {n, c->vocab_size}, hshape[3] = {c->n_layers + 1, n, c->dim};
    if (o->out_path) out_open_floats(&out, o->out_path, shape, 2, 1);
    if (o->hidden_path) out_open_floats(&hf, o->hidden_path, hshape, 3, 1);
    real *logits = xcalloc((size_t)CHUNK * c->vocab_size, sizeof(real));
    for (int i = 0; i < n; i += CHUNK) {
        int len = n - i < CHUNK ? n - i : CHUNK;
        forward_chunk(m, s, ids + i, len, i, logits, 1, tr);
        for (int b = 0; b < len; b++) check_logits(logits + (size_t)b * c->vocab_size, c->vocab_size, i + b);
        if (o->out_path) out_write(&out, logits, (size_t)len * c->vocab_size * sizeof(real));
        for (int b = 0; b < len && o->top_k > 0; b++) {
            const real *row = logits + (size_t)b * c->vocab_size;
            int id = ids[i + b];
            const char *piece = tok ? tokenizer_piece(tok, id) : NULL;
            printf("pos %d  id %d %s%s%s ->", i + b, id, piece ? "'" : "", piece ? piece : "", piece ? "'" : "");
            /* the K largest, by repeated selection (K is small) */
            int *best = xcalloc((size_t)o->top_k, sizeof(int));
            for (int k = 0; k < o->top_k && k < c->vocab_size; k++) {
                int arg = -1;
                for (int v = 0; v < c->vocab_size; v++) {
                    int taken = 0;
                    for (int j = 0; j < k; j++) taken |= best[j] == v;
                    if (!taken && (arg < 0 || row[v] > row[arg])) arg = v;
                }
                best[k] = arg;
                const char *p = tok ? tokenizer_piece(tok, arg) : NULL;
                printf("  %d%s%s%s %.4f", arg, p ? " '" : "", p ? p : "", p ? "'" : "", row[arg]);
            }
            printf("\n");
            free(best);
        }
    }
    if (o->out_path) out_close(&out);
    if (o->hidden_path) {
        out_write(&hf, hs.h, size_mul(hidden_size, sizeof(real)));
        out_close(&hf);
    }
    if (o->dump_dir) dump_write(&dump, o->dump_dir);
    /* renamed into place by main, once standard output is flushed too */
    dump_free(&dump);
    free(logits);
    free(hs.h);
    free(ids);
}

/* --------------------------------------------------------------------------
 * -m explain: one prompt walked through the model, for a learner.
 *
 * The forward pass runs once over the prompt, exactly as in -m logits, and
 * a Trace (Part 1) watches it: each module hands over its output under its
 * Hugging Face name, and each head its attention weights. From these,
 * explain keeps for every layer L and position p:
 *   attention  each head's weights over the keys (self_attn.attn_weights)
 *   attn_rms   how large attention's addition to the stream is
 *              (the RMS of self_attn.o_proj's output)
 *   mid_rms    the residual stream after that addition
 *   mlp_rms    how large the MLP's addition is (mlp.down_proj's output)
 *   resid_rms  the residual stream after the layer (model.layers.L)
 *   lens       the logit lens: what the model would predict if it stopped
 *              after layer L, i.e. model.norm and lm_head applied to
 *              model.layers.L's output, by Part 1's own rmsnorm and matmul
 * RMS(v) = sqrt(mean(v_i^2)). The last layer's lens is the model's output.
 * The terminal shows one position (the last, or --pos P, or --pos all);
 * --json writes everything for every position (notes/explain.md has the
 * schema), --html a page that shows it.
 * -------------------------------------------------------------------------- */

/* The k largest of x[0..n), largest first (ties: the lower index first, as
 * torch.topk and argmax). Returns how many (k, or n if smaller). */
static int top_k(const real *x, int n, int k, int *best) {
    int m = 0;
    for (int v = 0; v < n; v++) {
        if (m == k && !(x[v] > x[best[k - 1]])) continue;
        int j = m < k ? m++ : k - 1;
        for (; j > 0 && x[v] > x[best[j - 1]]; j--) best[j] = best[j - 1];
        best[j] = v;
    }
    return m;
}

/* The k most likely next tokens of one row of logits, with their
 * probabilities softmax(logits)[id], summed in double so that the only
 * rounding in them is the forward pass's */
static void top_guesses(const real *logits, int vocab, int k, int *ids, double *probs) {
    double max = logits[argmax(logits, vocab)], sum = 0;
    for (int v = 0; v < vocab; v++) sum += exp((double)logits[v] - max);
    top_k(logits, vocab, k, ids);
    for (int j = 0; j < k; j++) probs[j] = exp((double)logits[ids[j]] - max) / sum;
}

static double rms_of(const real *x, int n) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    return sqrt(ss / n);
}

typedef struct {
    Trace trace;
    const Model *m;
    int n, k;        /* positions in the prompt; guesses kept per distribution */
    int *row;        /* [n] a shown position's row in lens and attention, or -1 */
    int n_rows;
    double *embed_rms;                                /* [n] */
    double *attn_rms, *mid_rms, *mlp_rms, *resid_rms; /* [n_layers][n] */
    real *stream;    /* [n][dim] the residual stream entering the current layer */
    int *lens_id;    /* [n_layers][n_rows][k] */
    double *lens_p;  /* [n_layers][n_rows][k] */
    real *attn;      /* [n_layers][n_heads][n_rows][n], 0 where masked */
    real *normed, *logits; /* the lens's scratch: [CHUNK][dim], [CHUNK][vocab] */
} Explain;

/* The logit lens for the shown positions among pos .. pos+rows-1 (x holds
 * their stream after `layer`): the same model.norm and lm_head as the end of
 * forward_chunk, on a layer's output instead of the last one's */
static void explain_lens(Explain *e, int layer, int pos, const real *x, int rows) {
    const Config *c = &e->m->config;
    const Weights *w = &e->m->weights;
    int b0 = 0, cnt = 0; /* the shown rows are contiguous: all of them, or one */
    while (b0 < rows && e->row[pos + b0] < 0) b0++;
    while (b0 + cnt < rows && e->row[pos + b0 + cnt] >= 0) cnt++;
    if (!cnt) return;
    kernels.rmsnorm(e->normed, x + (size_t)b0 * c->dim, w->norm, cnt, c->dim, (real)c->rms_norm_eps, c->dtype);
    kernels.matmul(e->logits, e->normed, w->lm_head, cnt, c->dim, c->vocab_size, c->dtype);
    for (int b = 0; b < cnt; b++) {
        size_t at = ((size_t)layer * e->n_rows + e->row[pos + b0 + b]) * e->k;
        top_guesses(e->logits + (size_t)b * c->vocab_size, c->vocab_size, e->k, e->lens_id + at, e->lens_p + at);
    }
}

static void explain_output(Trace *t, const char *module, int layer, int pos, const real *x, int rows, int cols) {
    Explain *e = (Explain *)t;
    size_t at = (size_t)(layer < 0 ? 0 : layer) * e->n + pos;
    for (int b = 0; b < rows; b++) {
        const real *xb = x + (size_t)b * cols;
        real *sb = e->stream + (size_t)(pos + b) * cols;
        if (!strcmp(module, "model.embed_tokens")) {
            e->embed_rms[pos + b] = rms_of(xb, cols);
            memcpy(sb, xb, (size_t)cols * sizeof(real));
        } else if (!strcmp(module, "self_attn.o_proj")) {
            e->attn_rms[at + b] = rms_of(xb, cols);
            double ss = 0; /* the stream after the residual connection, x + o_proj */
            for (int i = 0; i < cols; i++) {
                real mid = sb[i] + xb[i];
                ss += (double)mid * mid;
            }
            e->mid_rms[at + b] = sqrt(ss / cols);
        } else if (!strcmp(module, "mlp.down_proj")) {
            e->mlp_rms[at + b] = rms_of(xb, cols);
        } else if (!module[0]) { /* the layer's output, model.layers.L */
            e->resid_rms[at + b] = rms_of(xb, cols);
            memcpy(sb, xb, (size_t)cols * sizeof(real));
        }
    }
    /* the last layer's lens is the output itself (run_explain takes it from
     * the logits) */
    if (!module[0] && layer >= 0 && layer < e->m->config.n_layers - 1) explain_lens(e, layer, pos, x, rows);
}

static void explain_weights(Trace *t, int layer, int h, int p, int first, const real *w, int n_keys) {
    Explain *e = (Explain *)t;
    if (e->row[p] < 0) return;
    size_t at = (((size_t)layer * e->m->config.n_heads + h) * e->n_rows + e->row[p]) * e->n;
    memcpy(e->attn + at + first, w, (size_t)n_keys * sizeof(real));
}

/* What a token stands for in text: the piece with U+2581 as a space, or
 * the one byte of a byte-fallback piece <0xXX>. Returns the length in out
 * (at most cap), *special = 1 for <unk>, <s>, </s> (no text of their own). */
static size_t token_bytes(const Tokenizer *tok, int id, unsigned char *out, size_t cap, int *special) {
    const char *p = tok ? tokenizer_piece(tok, id) : NULL;
    *special = tok && (id == tokenizer_bos_id(tok) || id == tokenizer_eos_id(tok) || (p && !strcmp(p, "<unk>")));
    if (!p || *special) return 0;
    unsigned v;
    char end;
    if (strlen(p) == 6 && sscanf(p, "<0x%2X%c", &v, &end) == 2 && end == '>') {
        out[0] = (unsigned char)v;
        return 1;
    }
    size_t n = 0;
    for (; *p && n < cap; p++) {
        if (!strncmp(p, "\xe2\x96\x81", 3)) { out[n++] = ' '; p += 2; }
        else out[n++] = (unsigned char)*p;
    }
    return n;
}

/* A piece for the terminal: as the vocabulary spells it, control bytes as
 * \xNN; "#ID" without a tokenizer */
static void print_piece(FILE *f, const Tokenizer *tok, int id) {
    const char *p = tok ? tokenizer_piece(tok, id) : NULL;
    if (!p) { fprintf(f, "#%d", id); return; }
    fputc('\'', f);
    for (; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) fprintf(f, "\\x%02x", (unsigned char)*p);
        else fputc(*p, f);
    }
    fputc('\'', f);
}

/* One line of the walk: what (at the left), the HF module, the raktn.c
 * functions that computed it (at the right) */
static void walk_line(const char *module, const char *fn, const char *fmt, ...) {
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    printf("%-34s %-52s [%s]\n", module, text, fn);
}

static void print_guesses(const Tokenizer *tok, const int *ids, const double *probs, int k) {
    for (int j = 0; j < k; j++) {
        printf(j ? "  " : "      ");
        print_piece(stdout, tok, ids[j]);
        printf(" %.4f", probs[j]);
    }
    printf("\n");
}

/* The terminal walk for position p, in forward order */
static void explain_print(const Explain *e, const Tokenizer *tok, const int *ids, int p) {
    const Config *c = &e->m->config;
    int r = e->row[p], L = c->n_layers, H = c->n_heads;
    char mod[96];
    printf("\nposition %d, token ", p);
    print_piece(stdout, tok, ids[p]);
    printf(": what comes next, layer by layer\n");
    walk_line("model.embed_tokens", "forward_chunk", "the token's row: residual stream rms %.4g", e->embed_rms[p]);
    for (int l = 0; l < L; l++) {
        size_t at = (size_t)l * e->n + p;
        double before = l ? e->resid_rms[at - e->n] : e->embed_rms[p];
        snprintf(mod, sizeof mod, "model.layers.%d.self_attn", l);
        walk_line(mod, "attention", "where each query head looks (top keys, weights)");
        for (int h = 0; h < H; h++) {
            const real *w = e->attn + (((size_t)l * H + h) * e->n_rows + r) * e->n;
            int best[3], m = top_k(w, p + 1, 3, best);
            printf("      head %-3d (kv %d)", h, h / (H / c->n_kv_heads));
            for (int j = 0; j < m; j++) {
                printf("  %d:", best[j]);
                print_piece(stdout, tok, ids[best[j]]);
                printf(" %.3f", (double)w[best[j]]);
            }
            printf("\n");
        }
        snprintf(mod, sizeof mod, "model.layers.%d.self_attn.o_proj", l);
        walk_line(mod, "matmul", "attention adds rms %.4g (%.2fx the stream's)", e->attn_rms[at],
                  e->attn_rms[at] / before);
        snprintf(mod, sizeof mod, "model.layers.%d.mlp.down_proj", l);
        walk_line(mod, "matmul", "the MLP adds rms %.4g (%.2fx the stream's)", e->mlp_rms[at],
                  e->mlp_rms[at] / e->mid_rms[at]);
        snprintf(mod, sizeof mod, "model.layers.%d", l);
        walk_line(mod, "add_in_place", "residual stream rms %.4g", e->resid_rms[at]);
        size_t g = ((size_t)l * e->n_rows + r) * e->k;
        if (l < L - 1) walk_line("  logit lens", "rmsnorm, matmul", "model.norm + lm_head on model.layers.%d:", l);
        else walk_line("model.norm, lm_head", "forward_chunk", "the model's prediction (the last layer's lens):");
        print_guesses(tok, e->lens_id + g, e->lens_p + g, e->k);
    }
}

/* JSON strings: UTF-8 with ", \, control characters and '<' escaped ('<'
 * so that the same text can sit inside the page's <script>); a byte that
 * is not valid UTF-8 becomes U+FFFD. Numbers: every digit the value has
 * (round trip), null for NaN or infinity. */
static int utf8_len(const unsigned char *p) { /* the valid character at p: its length, else 0 */
    int n = p[0] < 0x80 ? 1 : p[0] >= 0xc2 && p[0] <= 0xdf ? 2 : p[0] >= 0xe0 && p[0] <= 0xef ? 3
          : p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80) return 0;
    if (n == 3 && ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0))) return 0; /* overlong, surrogate */
    if (n == 4 && ((p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))) return 0; /* overlong, > U+10FFFF */
    return n;
}

static void json_str(FILE *f, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    while (*p) {
        int n = utf8_len(p);
        if (n == 0) { fputs("\\ufffd", f); p++; continue; }
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == '<') fprintf(f, "\\u%04x", *p);
        else fwrite(p, 1, (size_t)n, f);
        p += n;
    }
    fputc('"', f);
}

static void json_num(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.*g", sizeof(real) == 8 ? 17 : 9, v);
    else fputs("null", f);
}

static void json_nums(FILE *f, const double *v, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        if (i) fputs(", ", f);
        json_num(f, v[i]);
    }
    fputc(']', f);
}

static void json_guesses(FILE *f, const int *ids, const double *probs, int k) {
    fputs("{\"ids\": [", f);
    for (int j = 0; j < k; j++) fprintf(f, j ? ", %d" : "%d", ids[j]);
    fputs("], \"probs\": ", f);
    json_nums(f, probs, k);
    fputc('}', f);
}

/* The page's copy of a layer's attention: each head's lower triangle
 * (row p: keys 0..p) as little-endian float32 in base64, a third of the
 * size of the same numbers in decimal */
static void base64_floats(FILE *f, const Explain *e, int l) {
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char buf[3];
    int have = 0;
    for (int h = 0; h < e->m->config.n_heads; h++)
        for (int p = 0; p < e->n; p++)
            for (int t = 0; t <= p; t++) {
                float w = (float)e->attn[(((size_t)l * e->m->config.n_heads + h) * e->n_rows + e->row[p]) * e->n + t];
                uint32_t u;
                memcpy(&u, &w, 4);
                for (int b = 0; b < 4; b++) {
                    buf[have++] = (unsigned char)(u >> (8 * b));
                    if (have < 3) continue;
                    char out[4] = {digits[buf[0] >> 2], digits[(buf[0] & 3) << 4 | buf[1] >> 4],
                                   digits[(buf[1] & 15) << 2 | buf[2] >> 6], digits[buf[2] & 63]};
                    fwrite(out, 1, 4, f);
                    have = 0;
                }
            }
    if (have) {
        if (have == 1) buf[1] = 0;
        char out[4] = {digits[buf[0] >> 2], digits[(buf[0] & 3) << 4 | buf[1] >> 4],
                       have == 2 ? digits[(buf[1] & 15) << 2] : '=', '='};
        fwrite(out, 1, 4, f);
    }
}

/* Everything explain found, for every position (notes/explain.md has the
 * schema). page = 1: the page's copy, attention in base64. */
static void explain_json(const Explain *e, const Tokenizer *tok, const int *ids, const char *model_path, FILE *f,
                         int page) {
    const Config *c = &e->m->config;
    int n = e->n, L = c->n_layers, H = c->n_heads;
    fputs("{\"format\": \"raktn-explain\", \"version\": 1,\n \"model\": {\"path\": ", f);
    json_str(f, model_path);
    fprintf(f, ", \"n_layers\": %d, \"dim\": %d, \"hidden_dim\": %d, \"n_heads\": %d, \"n_kv_heads\": %d, "
            "\"head_dim\": %d, \"vocab_size\": %d, \"sliding_window\": %d, \"dtype\": \"%s\", \"real\": \"%s\"},\n",
            L, c->dim, c->hidden_dim, H, c->n_kv_heads, c->head_dim, c->vocab_size, c->sliding_window,
            c->dtype == DTYPE_BF16 ? "bf16" : "f32", sizeof(real) == 8 ? "float64" : "float32");
    fprintf(f, " \"k\": %d,\n \"tokens\": [", e->k);
    for (int p = 0; p < n; p++) {
        unsigned char bytes[4096];
        int special;
        size_t nb = token_bytes(tok, ids[p], bytes, sizeof bytes, &special);
        const char *piece = tok ? tokenizer_piece(tok, ids[p]) : NULL;
        fprintf(f, "%s\n  {\"id\": %d, \"piece\": ", p ? "," : "", ids[p]);
        if (piece) json_str(f, piece);
        else fputs("null", f);
        fputs(", \"bytes\": [", f);
        for (size_t i = 0; i < nb; i++) fprintf(f, i ? ", %u" : "%u", bytes[i]);
        fprintf(f, "], \"special\": %s}", special ? "true" : "false");
    }
    fputs("],\n \"embed_rms\": ", f);
    json_nums(f, e->embed_rms, n);
    fputs(",\n \"layers\": [", f);
    for (int l = 0; l < L; l++) {
        size_t at = (size_t)l * n;
        fprintf(f, "%s\n  {\"module\": \"model.layers.%d\",\n   \"resid_rms\": ", l ? "," : "", l);
        json_nums(f, e->resid_rms + at, n);
        fputs(",\n   \"mid_rms\": ", f);
        json_nums(f, e->mid_rms + at, n);
        fputs(",\n   \"attn_rms\": ", f);
        json_nums(f, e->attn_rms + at, n);
        fputs(",\n   \"mlp_rms\": ", f);
        json_nums(f, e->mlp_rms + at, n);
        fputs(",\n   \"lens\": [", f);
        for (int p = 0; p < n; p++) {
            fputs(p ? ",\n    " : "\n    ", f);
            size_t g = ((size_t)l * e->n_rows + e->row[p]) * e->k;
            json_guesses(f, e->lens_id + g, e->lens_p + g, e->k);
        }
        if (page) {
            fputs("],\n   \"attention_b64\": \"", f);
            base64_floats(f, e, l);
            fputs("\"}", f);
            continue;
        }
        fputs("],\n   \"attention\": [", f);
        for (int h = 0; h < H; h++) {
            fputs(h ? ",\n    [" : "\n    [", f);
            for (int p = 0; p < n; p++) {
                const real *w = e->attn + (((size_t)l * H + h) * e->n_rows + e->row[p]) * n;
                fputs(p ? ", [" : "[", f);
                for (int t = 0; t < n; t++) {
                    if (t) fputs(", ", f);
                    if (w[t] == 0) fputc('0', f);
                    else json_num(f, w[t]);
                }
                fputc(']', f);
            }
            fputc(']', f);
        }
        fputs("]}", f);
    }
    fputs("],\n \"final\": [", f);
    for (int p = 0; p < n; p++) {
        fputs(p ? ",\n  " : "\n  ", f);
        size_t g = ((size_t)(L - 1) * e->n_rows + e->row[p]) * e->k;
        json_guesses(f, e->lens_id + g, e->lens_p + g, e->k);
    }
    fputs("]}\n", f);
}

/* --html: one self-contained page (no network, no other file). What can be
 * drawn once is plain HTML and SVG written here: the token strip, the
 * logit-lens grid, the RMS chart. The attention patterns (n_layers x
 * n_heads small maps of n x n weights: a million cells for the 7B and 32
 * tokens, far too many for SVG) are painted into canvases by the short
 * script at the end, from the page's copy of the JSON. */
static void html_text(FILE *f, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = utf8_len(p);
        if (n == 0) { fputs("\xef\xbf\xbd", f); p++; continue; }
        switch (*p) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default:
            if (*p < 0x20) fprintf(f, "\\x%02x", *p);
            else fwrite(p, 1, (size_t)n, f);
        }
        p += n;
    }
}

static void html_piece(FILE *f, const Tokenizer *tok, int id) {
    const char *p = tok ? tokenizer_piece(tok, id) : NULL;
    if (p) html_text(f, p);
    else fprintf(f, "#%d", id);
}

static const char PAGE_STYLE[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}"
    "h1{font-size:1.5em;margin:0}h2{font-size:1.15em;margin:1.6em 0 .4em}"
    ".mod{font:12px ui-monospace,monospace;color:#7a3e00;background:#fff4e5;padding:0 .3em;border-radius:3px}"
    ".note{color:#555;margin:.2em 0 .6em}"
    ".strip{display:flex;flex-wrap:wrap;gap:4px}"
    ".tok{border:1px solid #bbb;border-radius:4px;padding:2px 5px;font:13px ui-monospace,monospace;background:#f7f7f7}"
    ".tok b{color:#999;font-weight:normal;margin-right:4px;font-size:11px}"
    ".tok i{color:#36c;font-style:normal;margin-left:4px;font-size:11px}"
    "table.lens{border-collapse:collapse;font:12px ui-monospace,monospace}"
    "table.lens th{font-weight:normal;padding:2px 6px;text-align:right;white-space:nowrap}"
    "table.lens thead th{text-align:center;vertical-align:bottom}"
    "table.lens td{border:1px solid #fff;padding:2px 4px;max-width:7em;overflow:hidden;text-overflow:ellipsis;"
    "white-space:nowrap;text-align:center;cursor:default}"
    "table.lens tr.out th,table.lens tr.out td{border-top:2px solid #333}"
    ".heads .layer{display:flex;flex-wrap:wrap;align-items:center;gap:3px;margin:3px 0}"
    ".heads .layer>.mod{width:15em;flex:none}"
    "canvas.maps{max-width:100%;image-rendering:pixelated;cursor:pointer}"
    "#big canvas{border:1px solid #ddd}"
    "#big-read{font:13px ui-monospace,monospace;min-height:1.4em}"
    "svg text{font:11px system-ui,sans-serif;fill:#333}";

static const char PAGE_SCRIPT[] =
    "(function(){\n"
    "var D=JSON.parse(document.getElementById('raktn-data').textContent);\n"
    "var n=D.tokens.length,H=D.model.n_heads,W=D.model.sliding_window,tri=n*(n+1)/2;\n"
    "function piece(p){var t=D.tokens[p];return t.piece===null?'#'+t.id:t.piece;}\n"
    "/* each layer's attention: float32, little-endian, head by head, row p = keys 0..p */\n"
    "var A=D.layers.map(function(L){var s=atob(L.attention_b64),v=new DataView(new ArrayBuffer(s.length));\n"
    "  for(var i=0;i<s.length;i++)v.setUint8(i,s.charCodeAt(i));\n"
    "  var a=new Float32Array(s.length/4);for(var i=0;i<a.length;i++)a[i]=v.getFloat32(4*i,true);return a;});\n"
    "function masked(p,t){return t>p||(W>0&&t<=p-W);}\n"
    "function weight(l,h,p,t){return masked(p,t)?0:A[l][h*tri+p*(p+1)/2+t];}\n"
    "function rgb(l,h,p,t){if(masked(p,t))return[232,232,232];var w=weight(l,h,p,t);\n"
    "  return[Math.round(255*(1-w)),Math.round(255-175*w),Math.round(255-80*w)];}\n"
    "/* one canvas per layer, its heads' maps side by side: cell px per weight, gap px between maps */\n"
    "var cell=Math.max(1,Math.floor(48/n)),map=n*cell,gap=4;\n"
    "function paint(c,sel){var l=+c.dataset.layer,x=c.getContext('2d');c.width=H*(map+gap)-gap;c.height=map;\n"
    "  var im=x.createImageData(c.width,c.height),d=im.data;\n"
    "  for(var h=0;h<H;h++)for(var p=0;p<n;p++)for(var t=0;t<n;t++){var c3=rgb(l,h,p,t);\n"
    "    for(var dy=0;dy<cell;dy++)for(var dx=0;dx<cell;dx++){var i=4*((p*cell+dy)*c.width+h*(map+gap)+t*cell+dx);\n"
    "      d[i]=c3[0];d[i+1]=c3[1];d[i+2]=c3[2];d[i+3]=255;}}\n"
    "  x.putImageData(im,0,0);\n"
    "  if(sel>=0){x.strokeStyle='#c00';x.lineWidth=2;x.strokeRect(sel*(map+gap)+1,1,map-2,map-2);}\n"
    "  c.setAttribute('data-drawn','1');}\n"
    "var big=document.getElementById('big-canvas'),read=document.getElementById('big-read'),cur=null,S=1,ML=0,MT=0;\n"
    "function label(p){var s=piece(p);return p+' '+(s.length>12?s.slice(0,11)+'\u2026':s);}\n"
    "function show(c,h){var l=+c.dataset.layer,x=big.getContext('2d');\n"
    "  if(cur&&cur!==c)paint(cur,-1);cur=c;paint(c,h);\n"
    "  S=Math.max(3,Math.min(40,Math.floor(560/n)));var lab=S>=10;ML=lab?130:0;MT=lab?100:0;\n"
    "  big.width=ML+n*S+(lab?70:0);big.height=MT+n*S;x.clearRect(0,0,big.width,big.height);\n"
    "  for(var p=0;p<n;p++)for(var t=0;t<n;t++){var c3=rgb(l,h,p,t);\n"
    "    x.fillStyle='rgb('+c3.join(',')+')';x.fillRect(ML+t*S,MT+p*S,S,S);}\n"
    "  if(lab){x.fillStyle='#333';x.font='12px monospace';x.textBaseline='middle';\n"
    "    for(var p=0;p<n;p++){x.textAlign='right';x.fillText(label(p),ML-4,MT+p*S+S/2);}\n"
    "    for(var t=0;t<n;t++){x.save();x.translate(ML+t*S+S/2,MT-4);x.rotate(-Math.PI/3);x.textAlign='left';\n"
    "      x.fillText(label(t),0,0);x.restore();}}\n"
    "  big.dataset.layer=l;big.dataset.head=h;big.setAttribute('data-drawn','1');\n"
    "  document.getElementById('big-title').textContent='model.layers.'+l+'.self_attn, query head '+h+\n"
    "    ' (reads KV head '+Math.floor(h/(H/D.model.n_kv_heads))+'): row = query position, column = key position';\n"
    "  read.textContent='';}\n"
    "big.addEventListener('mousemove',function(ev){var t=Math.floor((ev.offsetX-ML)/S),p=Math.floor((ev.offsetY-MT)/S);\n"
    "  if(p<0||t<0||p>=n||t>=n)return;var l=+big.dataset.layer,h=+big.dataset.head;\n"
    "  read.textContent='query '+label(p)+'  \\u2192  key '+label(t)+':  '+\n"
    "    (masked(p,t)?'masked':weight(l,h,p,t).toPrecision(6));});\n"
    "var cs=document.querySelectorAll('canvas.maps');\n"
    "for(var i=0;i<cs.length;i++){paint(cs[i],-1);cs[i].addEventListener('click',function(ev){\n"
    "  var h=Math.floor(ev.offsetX*this.width/this.clientWidth/(map+gap));if(h<H)show(this,h);});}\n"
    "if(cs.length)show(cs[cs.length-1],0);\n"
    "/* milliseconds from opening the page to here, all drawn (notes/explain.md) */\n"
    "document.body.setAttribute('data-ready-ms',Math.round(performance.now()));\n"
    "})();\n";

/* A probability as the lens grid's colour: white (0) to deep blue (1) */
static void html_prob_style(FILE *f, double p) {
    if (!(p >= 0)) p = 0;
    fprintf(f, " style=\"background:hsl(215,85%%,%.0f%%)%s\"", 97 - 60 * p, p > 0.55 ? ";color:#fff" : "");
}

/* The residual stream's RMS across the layers: one line per position (the
 * last one drawn thick), on a log scale; for the last position also what
 * attention and the MLP add */
static void html_rms_chart(FILE *f, const Explain *e) {
    int n = e->n, L = e->m->config.n_layers, W = 820, Ht = 260, x0 = 60, y0 = 20, pw = W - x0 - 200, ph = Ht - 70;
    double lo = 1e300, hi = 0;
    for (int i = 0; i < n; i++) {
        double v = e->embed_rms[i];
        if (v > 0 && v < lo) lo = v;
        if (v > hi) hi = v;
    }
    for (size_t i = 0; i < (size_t)L * n; i++) {
        double vs[3] = {e->resid_rms[i], e->attn_rms[i], e->mlp_rms[i]};
        for (int j = 0; j < 3; j++) {
            if (vs[j] > 0 && vs[j] < lo) lo = vs[j];
            if (vs[j] > hi) hi = vs[j];
        }
    }
    if (!(hi > lo)) hi = lo * 10;
    double a = log10(lo), b = log10(hi);
#define X(i) (x0 + (double)pw * (i) / (L > 0 ? L : 1))
#define Y(v) (y0 + ph - (double)ph * (log10(v) - a) / (b - a))
    fprintf(f, "<svg id=\"rms-chart\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" "
            "aria-label=\"residual stream RMS per layer\">\n", W, Ht, W, Ht);
    for (int d = (int)floor(a); d <= (int)ceil(b); d++) {
        double v = pow(10.0, d);
        if (v < lo / 1.0001 || v > hi * 1.0001) continue;
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", x0, x0 + pw, Y(v), Y(v), x0 - 4, Y(v) + 4, v);
    }
    for (int l = -1; l < L; l++) {
        int step = L > 16 ? 4 : 1;
        if (l >= 0 && l % step && l != L - 1) continue;
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s", X(l + 1), y0 + ph + 16, l < 0 ? "embed" : "");
        if (l >= 0) fprintf(f, "%d", l);
        fputs("</text>\n", f);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">after model.layers.L (embed: model.embed_tokens); "
            "log scale</text>\n", X(L / 2.0), y0 + ph + 36);
    for (int p = 0; p < n; p++) {
        fprintf(f, "<polyline class=\"pos\" data-pos=\"%d\" fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" points=\"", p,
                p == n - 1 ? "#1f5fbf" : "#b8c6dc", p == n - 1 ? "2.5" : "1");
        fprintf(f, "%.1f,%.1f", X(0), Y(e->embed_rms[p]));
        for (int l = 0; l < L; l++) fprintf(f, " %.1f,%.1f", X(l + 1), Y(e->resid_rms[(size_t)l * n + p]));
        fprintf(f, "\"><title>position %d: residual stream RMS</title></polyline>\n", p);
    }
    const char *what[2] = {"self_attn.o_proj", "mlp.down_proj"}, *col[2] = {"#d9730d", "#2b9a3e"};
    for (int j = 0; j < 2; j++) {
        const double *v = j ? e->mlp_rms : e->attn_rms;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-dasharray=\"5,3\" stroke-width=\"1.5\" points=\"", col[j]);
        for (int l = 0; l < L; l++) fprintf(f, "%s%.1f,%.1f", l ? " " : "", X(l + 1), Y(v[(size_t)l * n + n - 1] > 0 ? v[(size_t)l * n + n - 1] : lo));
        fprintf(f, "\"><title>position %d: RMS of %s's output</title></polyline>\n", n - 1, what[j]);
    }
    int lx = x0 + pw + 12;
    fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"30\" y2=\"30\" stroke=\"#1f5fbf\" stroke-width=\"2.5\"/>"
            "<text x=\"%d\" y=\"34\">stream, last position</text>\n", lx, lx + 20, lx + 24);
    fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"50\" y2=\"50\" stroke=\"#b8c6dc\"/>"
            "<text x=\"%d\" y=\"54\">stream, other positions</text>\n", lx, lx + 20, lx + 24);
    fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"70\" y2=\"70\" stroke=\"#d9730d\" stroke-dasharray=\"5,3\"/>"
            "<text x=\"%d\" y=\"74\">attention adds</text>\n", lx, lx + 20, lx + 24);
    fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"90\" y2=\"90\" stroke=\"#2b9a3e\" stroke-dasharray=\"5,3\"/>"
            "<text x=\"%d\" y=\"94\">MLP adds</text>\n", lx, lx + 20, lx + 24);
    fputs("</svg>\n", f);
#undef X
#undef Y
}

static void explain_html(const Explain *e, const Tokenizer *tok, const int *ids, const char *model_path, FILE *f) {
    const Config *c = &e->m->config;
    int n = e->n, L = c->n_layers, H = c->n_heads;
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>raktn explain: ", f);
    html_text(f, model_path);
    fprintf(f, "</title>\n<style>%s</style></head>\n<body>\n<h1>raktn explain</h1>\n<p class=\"note\">", PAGE_STYLE);
    html_text(f, model_path);
    fprintf(f, ": %d layers, hidden %d, %d query heads / %d KV heads (head_dim %d), vocab %d, weights %s. "
            "%d tokens. Every number is what raktn.c computed in one forward pass (%s).</p>\n",
            L, c->dim, H, c->n_kv_heads, c->head_dim, c->vocab_size, c->dtype == DTYPE_BF16 ? "bf16" : "fp32", n,
            sizeof(real) == 8 ? "float64" : "float32");

    fputs("<section id=\"tokens\"><h2>The tokens <span class=\"mod\">input_ids</span> "
          "<span class=\"mod\">model.embed_tokens</span></h2>\n<p class=\"note\">position, piece, id "
          "(tokenizer.c: tokenizer_encode)</p>\n<div class=\"strip\">\n", f);
    for (int p = 0; p < n; p++) {
        unsigned char bytes[4096];
        int special;
        size_t nb = token_bytes(tok, ids[p], bytes, sizeof bytes, &special);
        fprintf(f, "<span class=\"tok\" data-pos=\"%d\" title=\"position %d, id %d, ", p, p, ids[p]);
        if (special) fputs("special token", f);
        else {
            fputs("bytes", f);
            for (size_t i = 0; i < nb; i++) fprintf(f, " %02x", bytes[i]);
        }
        fprintf(f, "\"><b>%d</b>", p);
        html_piece(f, tok, ids[p]);
        fprintf(f, "<i>%d</i></span>\n", ids[p]);
    }
    fputs("</div></section>\n", f);

    fputs("<section id=\"lens\"><h2>The logit lens <span class=\"mod\">model.norm</span> + "
          "<span class=\"mod\">lm_head</span> on each <span class=\"mod\">model.layers.L</span></h2>\n"
          "<p class=\"note\">Row L: the most likely next token if the model stopped after layer L "
          "(raktn.c: explain_lens, with Part 1's rmsnorm and matmul); colour: its probability; hover a cell "
          "for the top 5. The last row is the model's output.</p>\n"
          "<table class=\"lens\"><thead><tr><th>module \\ position</th>", f);
    for (int p = 0; p < n; p++) {
        fprintf(f, "<th>%d<br>", p);
        html_piece(f, tok, ids[p]);
        fputs("</th>", f);
    }
    fputs("</tr></thead><tbody>\n", f);
    for (int l = 0; l < L; l++) {
        fprintf(f, "<tr class=\"%s\" data-layer=\"%d\"><th class=\"mod\">model.layers.%d%s</th>", l == L - 1 ? "out" : "lay",
                l, l, l == L - 1 ? " = output (lm_head)" : "");
        for (int p = 0; p < n; p++) {
            size_t g = ((size_t)l * e->n_rows + e->row[p]) * e->k;
            const int *gid = e->lens_id + g;
            const double *gp = e->lens_p + g;
            fprintf(f, "<td data-pos=\"%d\" data-id=\"%d\"", p, gid[0]);
            html_prob_style(f, gp[0]);
            fprintf(f, " title=\"model.layers.%d, position %d: next token", l, p);
            for (int j = 0; j < e->k && j < 5; j++) {
                fputs(j ? ", " : " ", f);
                html_piece(f, tok, gid[j]);
                fprintf(f, " %.4f", gp[j]);
            }
            fputs("\">", f);
            html_piece(f, tok, gid[0]);
            fputs("</td>", f);
        }
        fputs("</tr>\n", f);
    }
    fputs("</tbody></table></section>\n", f);

    fputs("<section id=\"rms\"><h2>The residual stream <span class=\"mod\">model.embed_tokens</span> "
          "<span class=\"mod\">model.layers.L</span> and what each block adds "
          "<span class=\"mod\">self_attn.o_proj</span> <span class=\"mod\">mlp.down_proj</span></h2>\n"
          "<p class=\"note\">RMS = sqrt(mean(x&sup2;)) of the stream after each layer (raktn.c: explain_output)</p>\n", f);
    html_rms_chart(f, e);
    fputs("</section>\n", f);

    fputs("<section id=\"attention\"><h2>Attention <span class=\"mod\">model.layers.L.self_attn</span> "
          "weights, one map per query head</h2>\n<p class=\"note\">Row: query position; column: key position; "
          "darker: more weight; grey: masked (causal or outside the sliding window). raktn.c: attention. "
          "Heads 0, 1, ... from left to right; click a map to enlarge it, hover the large map for the numbers.</p>\n"
          "<div class=\"heads\">\n", f);
    for (int l = 0; l < L; l++) {
        fprintf(f, "<div class=\"layer\"><span class=\"mod\">model.layers.%d.self_attn</span><canvas class=\"maps\" "
                "data-layer=\"%d\" width=\"1\" height=\"1\" title=\"model.layers.%d.self_attn: heads 0..%d, left to "
                "right\"></canvas></div>\n", l, l, l, H - 1);
    }
    fputs("</div>\n<div id=\"big\"><h3 id=\"big-title\"></h3><canvas id=\"big-canvas\" width=\"1\" height=\"1\"></canvas>"
          "<div id=\"big-read\"></div></div></section>\n", f);
    fputs("<script type=\"application/json\" id=\"raktn-data\">", f);
    explain_json(e, tok, ids, model_path, f, 1);
    fprintf(f, "</script>\n<script>\n%s</script>\n</body></html>\n", PAGE_SCRIPT);
}

#define POS_LAST -1 /* --pos: the default, the last position */
#define POS_ALL -2  /* --pos all */

static void run_explain(Model *m, RunState *s, const Options *o, Tokenizer *tok) {
    const Config *c = &m->config;
    int n, L = c->n_layers, V = c->vocab_size;
    check_out_paths(o, (const char *[2]){o->json_path, o->html_path}, (const char *[2]){"--json", "--html"});
    int *ids = prompt_ids(o, tok, V, &n);
    if (n == 0) die("empty prompt: give some text or --ids");
    check_fits(n, s);
    if (o->pos >= n) bad_usage("--pos %d: the prompt's positions are 0..%d", o->pos, n - 1);
    /* --json and --html carry every position; the terminal shows one, or all */
    int every = o->json_path || o->html_path || o->pos == POS_ALL, shown = o->pos >= 0 ? o->pos : n - 1;
    Explain e = {.trace = {explain_output, explain_weights}, .m = m, .n = n, .k = o->top_k ? (o->top_k < V ? o->top_k : V) : 5};
    e.row = xcalloc((size_t)n, sizeof(int));
    for (int p = 0; p < n; p++) e.row[p] = every ? p : p == shown ? 0 : -1;
    e.n_rows = every ? n : 1;
    uint64_t attn_floats = (uint64_t)L * c->n_heads * e.n_rows * n;
    if (attn_floats * sizeof(real) > ((uint64_t)1 << 31))
        die("explain keeps every head's attention weights: %d positions would need %.1f GB; use a shorter prompt, "
            "or one --pos without --json and --html", n, attn_floats * sizeof(real) / 1e9);
    OutFile json = {0}, html = {0};
    if (o->json_path) out_open(&json, o->json_path, 0);
    if (o->html_path) out_open(&html, o->html_path, 0);
    e.embed_rms = xcalloc((size_t)n, sizeof(double));
    double **rms[4] = {&e.attn_rms, &e.mid_rms, &e.mlp_rms, &e.resid_rms};
    for (int i = 0; i < 4; i++) *rms[i] = xcalloc(size_mul((uint64_t)L, (uint64_t)n), sizeof(double));
    e.stream = xcalloc(size_mul((uint64_t)n, (uint64_t)c->dim), sizeof(real));
    e.lens_id = xcalloc(size_mul((uint64_t)L * e.n_rows, (uint64_t)e.k), sizeof(int));
    e.lens_p = xcalloc(size_mul((uint64_t)L * e.n_rows, (uint64_t)e.k), sizeof(double));
    e.attn = xcalloc((size_t)attn_floats, sizeof(real));
    e.normed = xcalloc((size_t)CHUNK * c->dim, sizeof(real));
    e.logits = xcalloc(size_mul(CHUNK, (uint64_t)V), sizeof(real));
    real *logits = xcalloc(size_mul(CHUNK, (uint64_t)V), sizeof(real));
    for (int i = 0; i < n; i += CHUNK) {
        int len = n - i < CHUNK ? n - i : CHUNK;
        forward_chunk(m, s, ids + i, len, i, logits, 1, &e.trace);
        for (int b = 0; b < len; b++) check_logits(logits + (size_t)b * V, V, i + b);
        for (int b = 0; b < len; b++) /* the output: the last layer's lens */
            if (e.row[i + b] >= 0) {
                size_t g = ((size_t)(L - 1) * e.n_rows + e.row[i + b]) * e.k;
                top_guesses(logits + (size_t)b * V, V, e.k, e.lens_id + g, e.lens_p + g);
            }
    }

    printf("explain: %s: %d layers, hidden %d, %d query heads / %d KV heads (head_dim %d), vocab %d\n",
           o->model_path, L, c->dim, c->n_heads, c->n_kv_heads, c->head_dim, V);
    printf("\nthe prompt's %d tokens (tokenizer.c: tokenizer_encode); each id picks a row of model.embed_tokens\n", n);
    printf("  pos      id  piece                 bytes\n");
    for (int p = 0; p < n; p++) {
        unsigned char bytes[4096];
        int special;
        size_t nb = token_bytes(tok, ids[p], bytes, sizeof bytes, &special);
        printf("  %3d  %6d  ", p, ids[p]);
        print_piece(stdout, tok, ids[p]);
        const char *piece = tok ? tokenizer_piece(tok, ids[p]) : NULL;
        int width = 0; /* columns: a UTF-8 character's continuation bytes take none */
        for (const char *q = piece ? piece : "#00000"; *q; q++) width += ((unsigned char)*q & 0xc0) != 0x80;
        for (int pad = 20 - width; pad > 0; pad--) putchar(' ');
        if (special) printf(" special token: no text");
        for (size_t b = 0; b < nb; b++) printf(" %02x", bytes[b]);
        printf("\n");
    }
    for (int p = 0; p < n; p++)
        if (o->pos == POS_ALL || p == shown) explain_print(&e, tok, ids, p);
    check_stdout();

    if (o->json_path) {
        explain_json(&e, tok, ids, o->model_path, json.f, 0);
        out_close(&json);
    }
    if (o->html_path) {
        explain_html(&e, tok, ids, o->model_path, html.f);
        out_close(&html);
    }
    /* renamed into place by main, once standard output is flushed too */
    free(logits);
    free(e.logits), free(e.normed), free(e.attn), free(e.lens_p), free(e.lens_id), free(e.stream);
    for (int i = 0; i < 4; i++) free(*rms[i]);
    free(e.embed_rms), free(e.row), free(ids);
}

/* -m ppl: teacher-forced mean negative log-likelihood of each token given
 * the ones before it (the first token, BOS, is given, not predicted). */
static void run_ppl(Model *m, RunState *s, const Options *o, Tokenizer *tok) {
    const Config *c = &m->config;
    int n;
    int *ids = prompt_ids(o, tok, c->vocab_size, &n);
    if (n < 2) die("ppl needs at least 2 tokens (got %d)", n);
    check_fits(n, s);
    real *logits = xcalloc((size_t)CHUNK * c->vocab_size, sizeof(real));
    double nll = 0;
    for (int i = 0; i < n - 1; i += CHUNK) {
        int len = n - 1 - i < CHUNK ? n - 1 - i : CHUNK;
        forward_chunk(m, s, ids + i, len, i, logits, 1, NULL);
        for (int b = 0; b < len; b++) {
            const real *row = logits + (size_t)b * c->vocab_size;
            check_logits(row, c->vocab_size, i + b);
            real max = row[0];
            for (int v = 1; v < c->vocab_size; v++) if (row[v] > max) max = row[v];
            double sum = 0;
            for (int v = 0; v < c->vocab_size; v++) sum += exp((double)row[v] - max);
            nll += (log(sum) + max) - row[ids[i + b + 1]];
        }
    }
    double mean = nll / (n - 1);
    printf("tokens %d  predicted %d  nll %.6f  ppl %.6f\n", n, n - 1, mean, exp(mean));
    free(logits);
    free(ids);
}

/* Generation shared by generate and chat: feed `prompt` at position *pos,
 * then sample up to `steps` tokens, streaming their text. Returns the number
 * generated; *last gets the last token fed to the model. */
typedef struct { double prefill_s, decode_s; long prefill_tok, decode_tok; } Stats;

static int generate(Model *m, RunState *s, Tokenizer *tok, Sampler *sp, const int *prompt, int n_prompt,
                    int *pos, int steps, int at_start, Stats *st, int *out_ids) {
    const Config *c = &m->config;
    if (*pos + n_prompt > s->ctx) die("the prompt needs %d positions but only %d of the context's %d are left",
                                      n_prompt, s->ctx - *pos, s->ctx);
    double t0 = now_s();
    real *logits = forward(m, s, prompt, n_prompt, *pos);
    *pos += n_prompt;
    check_logits(logits, c->vocab_size, *pos - 1);
    st->prefill_s += now_s() - t0;
    st->prefill_tok += n_prompt;

    TokenStream ts;
    if (tok) tokstream_init(&ts, tok, at_start);
    size_t cap = tok ? tokenizer_max_piece_bytes(tok) + 16 : 0;
    char *piece = tok ? xcalloc(cap, 1) : NULL;
    int produced = 0;
    t0 = now_s();
    while (produced < steps) {
        int next = sample(sp, logits, c->vocab_size);
        if (out_ids) out_ids[produced] = next;
        produced++;
        if (next == c->eos_id) break;
        if (tok) {
            size_t len = tokstream_push(&ts, next, piece, cap);
            fwrite(piece, 1, len, stdout);
        } else {
            printf("%d ", next);
        }
        fflush(stdout);
        if (*pos >= s->ctx) {
            fprintf(stderr, "\nraktn: reached the end of the context (%d positions)\n", s->ctx);
            break;
        }
        logits = forward(m, s, &next, 1, *pos);
        *pos += 1;
        check_logits(logits, c->vocab_size, *pos - 1);
    }
    if (tok) {
        size_t len = tokstream_flush(&ts, piece, cap);
        fwrite(piece, 1, len, stdout);
    }
    fflush(stdout);
    st->decode_s += now_s() - t0;
    st->decode_tok += produced;
    free(piece);
    return produced;
}

static void print_stats(const Stats *st) {
    fprintf(stderr, "prefill %ld tok %.2f tok/s, decode %ld tok %.2f tok/s\n", st->prefill_tok,
            st->prefill_s > 0 ? st->prefill_tok / st->prefill_s : 0.0, st->decode_tok,
            st->decode_s > 0 ? st->decode_tok / st->decode_s : 0.0);
}

static void run_generate(Model *m, RunState *s, const Options *o, Tokenizer *tok, Sampler *sp) {
    int n;
    int *ids = prompt_ids(o, tok, m->config.vocab_size, &n);
    if (n == 0) die("empty prompt: give some text or --ids");
    if (o->verbose) print_ids("prompt ids: ", ids, n);
    int pos = 0;
    Stats st = {0};
    int *out = xcalloc((size_t)o->steps + 1, sizeof(int));
    int got = generate(m, s, tok, sp, ids, n, &pos, o->steps, n == 1, &st, out);
    printf("\n");
    fflush(stdout); /* the text before the stats line on stderr */
    if (o->verbose) print_ids("generated ids: ", out, got);
    print_stats(&st);
    free(out);
    free(ids);
}

/* -m chat: the model card's template, which is Vicuna v1.1's, one user turn
 * per line of stdin. The conversation is one token sequence that only grows:
 *   BOS "{system} USER: {turn 1} ASSISTANT:" {answer 1} </s>
 *       "USER: {turn 2} ASSISTANT:" {answer 2} </s> ...
 * exactly FastChat's Vicuna v1.1 string (no space after </s>). Each turn's
 * text is tokenized on its own, which is what HF's tokenizer does with text
 * that follows the special token </s> (notes/chat.md), and fed at the end of
 * the cache, so the history is never run again. */
static const char *DEFAULT_SYSTEM =
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions.";

static void run_chat(Model *m, RunState *s, const Options *o, Tokenizer *tok, Sampler *sp) {
    const Config *c = &m->config;
    const char *system = o->system ? o->system : DEFAULT_SYSTEM;
    char *line = NULL;
    size_t line_cap = 0;
    int pos = 0, turn = 0;
    Stats st = {0};
    int *answer = xcalloc((size_t)o->steps + 1, sizeof(int));
    int interactive = isatty(STDIN_FILENO);
    for (;;) {
        if (interactive) { fputs("USER: ", stdout); fflush(stdout); }
        errno = 0;
        ssize_t len = getline(&line, &line_cap, stdin);
        if (len < 0) { /* the end of input ends the chat; a read error is an error, and so is running out of
                        * memory for a line (glibc's getline then sets errno, not the stream's error flag) */
            if (ferror(stdin) || (!feof(stdin) && errno))
                die("standard input: cannot read a line (%s)", strerror(errno ? errno : EIO));
            if (interactive) putchar('\n');
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        /* the turn's text around the user's line */
        size_t cap = strlen(system) + (size_t)len + 64;
        char *text = xcalloc(cap, 1);
        int tlen = turn == 0 ? snprintf(text, cap, "%s USER: %s ASSISTANT:", system, line)
                             : snprintf(text, cap, "USER: %s ASSISTANT:", line);
        int *ids;
        size_t nids;
        if (tokenizer_encode(tok, text, (size_t)tlen, turn == 0 && tokenizer_add_bos(tok), &ids, &nids) != 0)
            die("out of memory");
        free(text);
        if (o->verbose) print_ids("turn ids: ", ids, (int)nids);
        if (pos + (int)nids >= s->ctx) {
            fprintf(stderr, "raktn: the conversation has reached the end of the context (%d positions)\n", s->ctx);
            free(ids);
            break;
        }
        if (!interactive) fputs("ASSISTANT:", stdout);
        int got = generate(m, s, tok, sp, ids, (int)nids, &pos, o->steps, 0, &st, answer);
        free(ids);
        printf("\n");
        fflush(stdout);
        check_stdout();
        if (o->verbose) print_ids("answer ids: ", answer, got);
        /* close the turn with </s> if the answer was cut short, so that the
         * transcript keeps the template's shape */
        if ((got == 0 || answer[got - 1] != c->eos_id) && c->eos_id >= 0 && pos < s->ctx) {
            int eos = c->eos_id;
            forward(m, s, &eos, 1, pos);
            pos++;
            if (o->verbose) print_ids("closing ids: ", &eos, 1);
        }
        turn++;
    }
    free(line);
    free(answer);
    print_stats(&st);
}

static void run_tokenize(const Options *o) {
    Tokenizer *tok = open_tokenizer(o);
    int n;
    int *ids = prompt_ids(o, tok, tokenizer_vocab_size(tok), &n);
    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
    free(ids);
    tokenizer_free(tok);
}

static void run_detokenize(const Options *o) {
    Tokenizer *tok = open_tokenizer(o);
    if (!o->ids) bad_usage("-m detokenize needs --ids LIST");
    int n;
    int *ids = parse_ids(o->ids, tokenizer_vocab_size(tok), &n);
    size_t len;
    char *text = tokenizer_decode(tok, ids, (size_t)n, &len);
    if (!text) die("cannot decode these ids");
    fwrite(text, 1, len, stdout);
    printf("\n");
    free(text);
    free(ids);
    tokenizer_free(tok);
}

/* Is `opt` one of the words of the space-separated `list`? */
static int listed(const char *list, const char *opt) {
    size_t n = strlen(opt);
    for (const char *p = list; (p = strstr(p, opt)) != NULL; p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0)) return 1;
    return 0;
}

static void parse_args(Options *o, int argc, char **argv) {
    *o = (Options){.mode = "generate", .steps = 256, .temperature = 0.8f, .top_p = 0.9f, .seed = 0, .ctx = 0, .pos = POS_LAST};
    /* the options given, by their names in MODES (--text is -i) */
    const char *given[64];
    int n_given = 0;
    int i = 1;
    if (argc > 1 && argv[1][0] != '-') o->model_path = argv[i++];
    if (o->model_path && !o->model_path[0]) bad_usage("MODEL.bin: the file name is empty");
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); exit(0); }
        if (!strcmp(a, "-v")) { o->verbose = 1; continue; }
        if (a[0] != '-') bad_usage("unexpected argument '%s'", a);
        if (i + 1 >= argc) bad_usage("%s needs a value", a);
        const char *v = argv[++i];
        const char *name = !strcmp(a, "--text") ? "-i" : a;
        for (int k = 0; k < n_given; k++)
            if (!strcmp(given[k], name)) bad_usage("%s is given twice", a);
        if (n_given < 64) given[n_given++] = name;
        if (!strcmp(a, "-m")) o->mode = v;
        else if (!strcmp(a, "-i") || !strcmp(a, "--text")) o->prompt = v;
        else if (!strcmp(a, "-f")) o->prompt_file = v;
        else if (!strcmp(a, "--ids")) o->ids = v;
        else if (!strcmp(a, "-z")) o->tokenizer_path = v;
        else if (!strcmp(a, "-n")) o->steps = (int)parse_long(v, a, 0, 1 << 24);
        else if (!strcmp(a, "-t")) o->temperature = parse_float(v, a, 0.0f, 100.0f);
        else if (!strcmp(a, "-p")) {
            /* (0, 1] as the usage says; 1e-400 is 0 too. (HF's top_p 0 keeps
             * the most likely token alone: that is -t 0.) */
            o->top_p = parse_float(v, a, 0.0f, 1.0f);
            if (!(o->top_p > 0)) bad_usage("-p must be in (0, 1], got %s (-t 0 keeps only the most likely token)", v);
        }
        else if (!strcmp(a, "-s")) o->seed = (unsigned long long)parse_long(v, a, 0, LONG_MAX), o->seed_given = 1;
        else if (!strcmp(a, "-c")) o->ctx = (int)parse_long(v, a, 1, 1 << 24);
        else if (!strcmp(a, "-y")) o->system = v;
        else if (!strcmp(a, "-o")) o->out_path = v;
        else if (!strcmp(a, "--hidden")) o->hidden_path = v;
        else if (!strcmp(a, "--dump")) o->dump_dir = v;
        else if (!strcmp(a, "--pos")) o->pos = !strcmp(v, "all") ? POS_ALL : (int)parse_long(v, a, 0, 1 << 24);
        else if (!strcmp(a, "--json")) o->json_path = v;
        else if (!strcmp(a, "--html")) o->html_path = v;
        else if (!strcmp(a, "--top")) o->top_k = (int)parse_long(v, a, 1, 1000);
        else if (!strcmp(a, "-T")) o->threads = (int)parse_long(v, a, 1, 4096);
#ifdef RAKTN_TRUTH
        else if (!strcmp(a, "--round")) { /* a peer's rounding, end of Part 3 */
            const char *r[] = {"none", "bf16", "f16", "q8_0", "q8_k"};
            peer_round = -1;
            for (int k = 0; k < 5; k++)
                if (!strcmp(v, r[k])) peer_round = k;
            if (peer_round < 0) bad_usage("--round wants none, bf16, f16, q8_0 or q8_k");
            kernels.matmul = peer_round == ROUND_NONE ? matmul : matmul_rounded;
        } else if (!strcmp(a, "--kv")) {
            if (strcmp(v, "f16") && strcmp(v, "f32")) bad_usage("--kv wants f32 or f16");
            kernels.attention = !strcmp(v, "f16") ? attention_f16kv : attention;
        }
#else
        else if (!strcmp(a, "--round") || !strcmp(a, "--kv")) bad_usage("%s is for raktn-truth (make truth)", a);
#endif
        else bad_usage("unknown option '%s'", a);
        /* a file name that is empty names no file (and would fail only
         * after all the computing) */
        if (!v[0] && listed("-f -z -o --hidden --dump --json --html", a)) bad_usage("%s: the file name is empty", a);
    }
    int mode = -1;
    for (int m = 0; m < N_MODES; m++)
        if (!strcmp(o->mode, MODES[m].mode)) mode = m;
    if (mode < 0) bad_usage("unknown mode '%s'", o->mode);
    for (int k = 0; k < n_given; k++) {
        if (!strcmp(given[k], "-m") || !strcmp(given[k], "-T") || listed(MODES[mode].options, given[k])) continue;
        char modes[128] = "";
        for (int m = 0; m < N_MODES; m++)
            if (listed(MODES[m].options, given[k]))
                snprintf(modes + strlen(modes), sizeof modes - strlen(modes), "%s-m %s", modes[0] ? ", " : "", MODES[m].mode);
        bad_usage("%s does not apply to -m %s (it is for %s)", given[k], o->mode, modes);
    }
    int sources = !!o->prompt + !!o->prompt_file + !!o->ids;
    if (sources > 1) bad_usage("give only one of -i, -f and --ids");
}

/* A model file truncated or rewritten while it is mapped: reading the
 * missing pages raises SIGBUS. One line and exit 1 instead of a bare crash. */
static char *sigbus_msg;
static void on_sigbus(int sig) {
    (void)sig;
    ssize_t r = write(STDERR_FILENO, sigbus_msg, strlen(sigbus_msg));
    (void)r;
    remove_temporaries();
    _exit(1);
}

/* Standard input, output and error open whatever the caller left closed,
 * so that no file raktn opens becomes one of them: a closed stdout gets
 * /dev/null read-only, so that writing to it fails (and is reported)
 * rather than landing in an output file. */
static void reserve_std_fds(void) {
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
            int got = open("/dev/null", fd == 2 ? O_WRONLY : O_RDONLY);
            if (got >= 0 && got != fd) { dup2(got, fd); close(got); }
        }
}

#ifndef RAKTN_NO_MAIN
int main(int argc, char **argv) {
    reserve_std_fds();
    catch_signals();
    Options o;
    parse_args(&o, argc, argv);
#ifndef RAKTN_PLAIN
    pool_start(o.threads); /* -T, else one thread per CPU this process may use */
#endif
    if (!strcmp(o.mode, "tokenize")) { run_tokenize(&o); check_stdout(); return 0; }
    if (!strcmp(o.mode, "detokenize")) { run_detokenize(&o); check_stdout(); return 0; }
    if (!o.model_path) bad_usage("MODEL.bin is required for -m %s", o.mode);

    Model m = {0};
    load_model(&m, o.model_path);
    note_input(o.model_path);
    const char *changed = ": the file changed (truncated?) while raktn was reading it\n";
    sigbus_msg = xcalloc(4 * strlen(o.model_path) + strlen(changed) + 16, 1);
    strcpy(sigbus_msg, "raktn: error: ");
    escape_into(sigbus_msg + strlen(sigbus_msg), o.model_path);
    strcat(sigbus_msg, changed);
    struct sigaction sa = {0};
    sa.sa_handler = on_sigbus;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
    const Config *c = &m.config;
    if (o.ctx > c->max_seq_len) bad_usage("-c %d exceeds the model's max_position_embeddings (%d)", o.ctx, c->max_seq_len);
    RunState s;
    init_state(&s, c, o.ctx ? o.ctx : c->max_seq_len);

    /* the tokenizer is needed unless the prompt comes as ids; then it is
     * still used, when it is there, to print text */
    Tokenizer *tok = NULL;
    if (!o.ids || !strcmp(o.mode, "chat") || o.tokenizer_path) {
        tok = open_tokenizer(&o);
    } else {
        char path[4096];   /* optional: used to print text if present */
        const char *slash = strrchr(o.model_path, '/');
        snprintf(path, sizeof path, "%.*stokenizer.bin", slash ? (int)(slash - o.model_path + 1) : 0, o.model_path);
        if (access(path, R_OK) == 0) tok = open_tokenizer(&o);
    }
    if (tok && tokenizer_vocab_size(tok) > c->vocab_size)
        die("tokenizer has %d pieces but the model's vocabulary is %d", tokenizer_vocab_size(tok), c->vocab_size);
    if (tok && tokenizer_vocab_size(tok) < c->vocab_size)
        fprintf(stderr, "raktn: warning: the tokenizer has %d pieces, the model's vocabulary %d: ids %d..%d have "
                "no text and print nothing\n", tokenizer_vocab_size(tok), c->vocab_size, tokenizer_vocab_size(tok),
                c->vocab_size - 1);

    /* -s 0 is a seed like any other; without -s, the clock (-v prints it) */
    unsigned long long seed = o.seed_given ? o.seed : (unsigned long long)time(NULL);
    if (o.verbose && (!strcmp(o.mode, "generate") || !strcmp(o.mode, "chat"))) fprintf(stderr, "seed: %llu\n", seed);
    Sampler sp = {.temperature = o.temperature, .top_p = o.top_p, .rng = seed};
    sp.rng = sp.rng * 0x9E3779B97F4A7C15ULL + 1; /* never 0: xorshift would stick */
    sp.idx = xcalloc((size_t)c->vocab_size, sizeof(int));

    if (!strcmp(o.mode, "generate")) run_generate(&m, &s, &o, tok, &sp);
    else if (!strcmp(o.mode, "chat")) run_chat(&m, &s, &o, tok, &sp);
    else if (!strcmp(o.mode, "logits")) run_logits(&m, &s, &o, tok);
    else if (!strcmp(o.mode, "explain")) run_explain(&m, &s, &o, tok);
    else if (!strcmp(o.mode, "ppl")) run_ppl(&m, &s, &o, tok);

    check_stdout();
    commit_outputs(); /* the outputs are renamed into place only now: the run has succeeded */
    free(sp.idx);
    if (tok) tokenizer_free(tok);
    free_state(&s);
    free_model(&m);
    return 0;
}
#endif
