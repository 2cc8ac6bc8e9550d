/* llama-dump: run llama.cpp on token ids and write what every graph node
 * computed, for export/compare.py.
 *
 *   make llama-dump LLAMA_CPP=/path/to/llama.cpp     (built with cmake first)
 *   ./llama-dump MODEL.gguf OUT_DIR --ids "1 415 2936" [--step] [--kv f32|f16]
 *                [--threads N]
 *
 * The ids are evaluated in ONE batch (every position's logits requested, so
 * llama.cpp keeps every row of the last layer too), or with --step one at a
 * time through the KV cache, as generation runs. OUT_DIR (new, or a folder
 * of an earlier dump) receives:
 *   NODE.npy      each named node of llama.cpp's graph (its ggml name, e.g.
 *                 attn_norm-3, Qcur-3, kq_soft_max_ext-3, l_out-3,
 *                 result_norm), float32, C order, the tokens as rows:
 *                 ggml's [ne0, n_tokens] becomes [n_tokens, ne0]; RoPE
 *                 outputs [n_tokens, n_head, head_dim]; the attention
 *                 weights [n_head, n_tokens, n_kv], n_kv being the padded
 *                 length of llama.cpp's KV cache (the keys past the last
 *                 token are masked: 0). A name met again in one graph
 *                 (Qcur-L and Kcur-L: the projection, then RoPE; norm-L:
 *                 both norms) gets NODE#2.npy, NODE#3.npy ...
 *   logits.npy    [n_tokens, n_vocab] from llama_get_logits_ith
 *   dump.json     the ids, settings, llama.cpp commit, and every node
 *                 written (file, ggml name, op, shape) in graph order.
 * export/compare.py REF_DUMP OUT_DIR maps the ggml names to Hugging Face
 * module names (notes/verification.md has the table) and compares.
 *
 * Flash attention is off (its fused kernel has no kq_soft_max_ext node),
 * the KV cache f32 by default (--kv f16 is llama.cpp's own default), CPU
 * only. Views, permutes and copies into the cache are not written (they
 * repeat what the nodes around them hold). Written for and checked against
 * llama.cpp c392e5094deaf2d1a7c18683214f007fad3fe42b (b4748): the C API
 * used here (llama_model_load_from_file, llama_init_from_model, cb_eval)
 * is that of early 2025. Little-endian hosts only (.npy '<f4').
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"

#ifndef LLAMA_CPP_COMMIT
#define LLAMA_CPP_COMMIT "unknown"
#endif

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("llama-dump: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p) die("out of memory (%zu bytes)", n);
    return p;
}

/* One node, accumulated over the evaluations (one in a batch, n with --step). */
typedef struct {
    char name[GGML_MAX_NAME + 16]; /* ggml name, #k for a repeat */
    char op[32];
    int kind;        /* 0: [tokens, ne0]; 1: RoPE [tokens, ne1, ne0]; 2: per head [ne2, tokens, ne0] */
    long ne0, ne1, ne2; /* per-token shape (attention weights: ne0 = n_kv grows to the widest) */
    long cap;        /* kind 2: room for ne0 */
    float *data;     /* kind 2: [ne2][n_total][cap] */
    int rows_seen;
} Node;

typedef struct {
    Node *nodes;
    int n_nodes;
    int n_total;      /* tokens of the whole run */
    int pos;          /* first position of the current evaluation */
    int n_cur;        /* tokens of the current evaluation */
    long kv_cap;      /* the KV cache's size: the widest an attention row can be */
    char (*seen)[GGML_MAX_NAME]; /* names met in the current evaluation */
    int *seen_count;
    int n_seen;
} Dump;

static int skipped_op(enum ggml_op op) {
    return op == GGML_OP_NONE || op == GGML_OP_VIEW || op == GGML_OP_PERMUTE || op == GGML_OP_RESHAPE ||
           op == GGML_OP_TRANSPOSE || op == GGML_OP_CPY;
}

/* a name the graph builder gave (attn_norm-3, result_norm), not ggml's own
 * ("node_17", "Qcur-0 (reshaped)") */
static int named(const char *s) {
    if (!*s || !strncmp(s, "node_", 5) || !strncmp(s, "leaf_", 5)) return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '-' || *s == '.')) return 0;
    return 1;
}

static int wanted(const struct ggml_tensor *t) {
    return named(t->name) && !skipped_op(t->op) &&
           (t->type == GGML_TYPE_F32 || t->type == GGML_TYPE_F16 || t->type == GGML_TYPE_BF16);
}

static float value_at(const struct ggml_tensor *t, const char *base, long i0, long i1, long i2, long i3) {
    const char *p = base + i0 * t->nb[0] + i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3];
    switch (t->type) {
    case GGML_TYPE_F32: {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    case GGML_TYPE_F16: {
        ggml_fp16_t h;
        memcpy(&h, p, 2);
        return ggml_fp16_to_fp32(h);
    }
    default: {
        ggml_bf16_t h;
        memcpy(&h, p, 2);
        return ggml_bf16_to_fp32(h);
    }
    }
}

static Node *node_for(Dump *d, const struct ggml_tensor *t) {
    /* the k-th node of this name in this evaluation */
    int k = 0, i;
    for (i = 0; i < d->n_seen; i++)
        if (!strcmp(d->seen[i], t->name)) break;
    if (i == d->n_seen) {
        d->seen = xrealloc(d->seen, (size_t)(d->n_seen + 1) * sizeof *d->seen);
        d->seen_count = xrealloc(d->seen_count, (size_t)(d->n_seen + 1) * sizeof *d->seen_count);
        snprintf(d->seen[i], GGML_MAX_NAME, "%s", t->name);
        d->seen_count[i] = 0;
        d->n_seen++;
    }
    k = ++d->seen_count[i];
    char key[GGML_MAX_NAME + 16];
    if (k == 1) snprintf(key, sizeof key, "%s", t->name);
    else snprintf(key, sizeof key, "%s#%d", t->name, k);
    for (i = 0; i < d->n_nodes; i++)
        if (!strcmp(d->nodes[i].name, key)) return &d->nodes[i];
    d->nodes = xrealloc(d->nodes, (size_t)(d->n_nodes + 1) * sizeof *d->nodes);
    Node *n = &d->nodes[d->n_nodes++];
    memset(n, 0, sizeof *n);
    snprintf(n->name, sizeof n->name, "%s", key);
    snprintf(n->op, sizeof n->op, "%s", ggml_op_desc(t));
    /* RoPE: [head_dim, heads, tokens]; the attention's own nodes (kq,
     * kq_soft_max_ext, kqv): [n_kv or head_dim, tokens, heads] */
    n->kind = t->op == GGML_OP_ROPE ? 1 : t->ne[2] > 1 ? 2 : 0;
    size_t floats;
    if (n->kind == 2) {
        n->ne2 = t->ne[2];
        n->cap = t->ne[0] > d->kv_cap ? t->ne[0] : d->kv_cap;
        floats = (size_t)n->ne2 * d->n_total * n->cap;
    } else if (n->kind == 1) {
        n->ne0 = t->ne[0], n->ne1 = t->ne[1];
        floats = (size_t)d->n_total * n->ne1 * n->ne0;
    } else {
        n->ne0 = t->ne[0];
        floats = (size_t)d->n_total * n->ne0;
    }
    n->data = calloc(floats ? floats : 1, sizeof(float));
    if (!n->data) die("out of memory for node %s", key);
    return n;
}

static bool callback(struct ggml_tensor *t, bool ask, void *user) {
    Dump *d = user;
    if (ask) return wanted(t);
    if (!wanted(t)) return true;
    Node *n = node_for(d, t);
    /* the tensor's bytes, wherever its backend keeps them */
    size_t bytes = ggml_nbytes(t);
    char *buf = NULL;
    const char *base = t->data;
    if (!t->buffer || !ggml_backend_buffer_is_host(t->buffer)) {
        buf = xrealloc(NULL, bytes);
        ggml_backend_tensor_get(t, buf, 0, bytes);
        base = buf;
    }
    if (n->kind == 2) { /* [n_kv, tokens, heads] */
        if (t->ne[1] != d->n_cur || t->ne[2] != n->ne2 || t->ne[0] > n->cap)
            die("node %s: shape [%lld, %lld, %lld] unexpected", t->name, (long long)t->ne[0], (long long)t->ne[1],
                (long long)t->ne[2]);
        if (t->ne[0] > n->ne0) n->ne0 = t->ne[0];
        for (long h = 0; h < t->ne[2]; h++)
            for (long q = 0; q < t->ne[1]; q++)
                for (long k = 0; k < t->ne[0]; k++)
                    n->data[((size_t)h * d->n_total + d->pos + q) * n->cap + k] = value_at(t, base, k, q, h, 0);
    } else if (n->kind == 1) { /* [ne0, ne1, tokens] */
        if (t->ne[2] != d->n_cur || t->ne[1] != n->ne1 || t->ne[0] != n->ne0)
            die("node %s: shape changed between evaluations", t->name);
        for (long q = 0; q < t->ne[2]; q++)
            for (long j = 0; j < t->ne[1]; j++)
                for (long i = 0; i < t->ne[0]; i++)
                    n->data[((size_t)(d->pos + q) * n->ne1 + j) * n->ne0 + i] = value_at(t, base, i, j, q, 0);
    } else { /* [ne0, tokens] */
        if (t->ne[0] != n->ne0 || t->ne[2] * t->ne[3] != 1)
            die("node %s: shape [%lld, %lld, %lld] unexpected", t->name, (long long)t->ne[0], (long long)t->ne[1],
                (long long)t->ne[2]);
        if (t->ne[1] != d->n_cur) { /* e.g. the last layer's rows when some logits are not asked for */
            free(buf);
            return true;
        }
        for (long q = 0; q < t->ne[1]; q++)
            for (long i = 0; i < t->ne[0]; i++) n->data[(size_t)(d->pos + q) * n->ne0 + i] = value_at(t, base, i, q, 0, 0);
    }
    n->rows_seen += d->n_cur;
    free(buf);
    return true;
}

static FILE *open_out(const char *dir, const char *name, const char *ext) {
    size_t len = strlen(dir) + strlen(name) + strlen(ext) + 2;
    char *path = xrealloc(NULL, len);
    snprintf(path, len, "%s/%s%s", dir, name, ext);
    FILE *f = fopen(path, "wb");
    if (!f) die("%s: cannot write (%s)", path, strerror(errno));
    free(path);
    return f;
}

static void close_out(FILE *f, const char *name) {
    if (ferror(f) | fclose(f)) die("%s: write failed", name);
}

/* .npy 1.0, '<f4', C order; rows of a strided source (stride >= width) */
static void write_npy(const char *dir, const char *name, const long *shape, int nd, const float *data, long width,
                      long stride) {
    char hdr[256], dims[160] = "";
    for (int i = 0; i < nd; i++) {
        size_t l = strlen(dims);
        snprintf(dims + l, sizeof dims - l, "%ld%s", shape[i], nd == 1 ? "," : i + 1 < nd ? ", " : "");
    }
    int h = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", dims);
    int total = 10 + h + 1, pad = (64 - total % 64) % 64;
    FILE *f = open_out(dir, name, ".npy");
    unsigned short hl = (unsigned short)(h + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc(hl & 255, f), fputc(hl >> 8, f);
    fwrite(hdr, 1, (size_t)h, f);
    for (int i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    long rows = 1;
    for (int i = 0; i < nd; i++) rows *= shape[i];
    rows /= width;
    for (long r = 0; r < rows; r++) fwrite(data + (size_t)r * stride, sizeof(float), (size_t)width, f);
    close_out(f, name);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* OUT_DIR must be new, empty, or an earlier dump (it has dump.json) */
static void prepare_dir(const char *dir) {
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (mkdir(dir, 0777) != 0) die("%s: cannot create (%s)", dir, strerror(errno));
        return;
    }
    if (!S_ISDIR(st.st_mode)) die("%s: exists and is not a folder", dir);
    DIR *dp = opendir(dir);
    if (!dp) die("%s: cannot read (%s)", dir, strerror(errno));
    int files = 0, ours = 0;
    struct dirent *e;
    while ((e = readdir(dp))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        files++;
        if (!strcmp(e->d_name, "dump.json")) ours = 1;
    }
    closedir(dp);
    if (files && !ours) die("%s: not empty and not an earlier llama-dump folder (no dump.json); refusing to write into it", dir);
    if (ours) { /* remove the earlier dump's .npy files, so no stale node stays */
        dp = opendir(dir);
        while (dp && (e = readdir(dp))) {
            size_t l = strlen(e->d_name);
            if ((l > 4 && !strcmp(e->d_name + l - 4, ".npy")) || !strcmp(e->d_name, "dump.json")) {
                char path[4096];
                snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
                unlink(path);
            }
        }
        if (dp) closedir(dp);
    }
}

static void usage(void) {
    fprintf(stderr, "usage: llama-dump MODEL.gguf OUT_DIR (--ids \"1 2 3\" | --ids-file FILE) [--step] "
                    "[--kv f32|f16] [--threads N]\n");
    exit(2);
}

static void quiet_log(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *out_dir = NULL, *ids_text = NULL, *ids_file = NULL, *kv = "f32";
    int step = 0, threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ids") && i + 1 < argc) ids_text = argv[++i];
        else if (!strcmp(argv[i], "--ids-file") && i + 1 < argc) ids_file = argv[++i];
        else if (!strcmp(argv[i], "--kv") && i + 1 < argc) kv = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--step")) step = 1;
        else if (argv[i][0] == '-' && argv[i][1]) usage();
        else if (!model_path) model_path = argv[i];
        else if (!out_dir) out_dir = argv[i];
        else usage();
    }
    if (!model_path || !out_dir || !!ids_text == !!ids_file) usage();
    if (strcmp(kv, "f32") && strcmp(kv, "f16")) die("--kv must be f32 or f16");
    if (threads < 1) threads = 1;

    /* the ids */
    char *text = NULL;
    if (ids_file) {
        FILE *f = fopen(ids_file, "r");
        if (!f) die("%s: cannot open (%s)", ids_file, strerror(errno));
        size_t cap = 0, len = 0;
        int c;
        while ((c = fgetc(f)) != EOF) {
            if (len + 2 > cap) text = xrealloc(text, cap = cap * 2 + 256);
            text[len++] = (char)c;
        }
        fclose(f);
        if (!text) die("%s: empty", ids_file);
        text[len] = 0;
        ids_text = text;
    }
    int n = 0, cap = 0;
    llama_token *ids = NULL;
    for (const char *p = ids_text;;) {
        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == ',' || *p == '\r') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > 0x7fffffff) die("--ids: not a token id at \"%.20s\"", p);
        if (n == cap) ids = xrealloc(ids, (size_t)(cap = cap * 2 + 64) * sizeof *ids);
        ids[n++] = (llama_token)v;
        p = end;
    }
    if (n == 0) die("no token ids");

    llama_log_set(quiet_log, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(model_path, mp);
    if (!model) die("%s: llama.cpp could not load it", model_path);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int n_vocab = llama_vocab_n_tokens(vocab);
    for (int i = 0; i < n; i++)
        if (ids[i] >= n_vocab) die("id %d is outside the vocabulary (%d tokens)", ids[i], n_vocab);

    Dump d = {0};
    d.n_total = n;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n < 32 ? 32 : n);
    cp.n_batch = cp.n_ubatch = (uint32_t)(step ? 1 : n); /* one graph per evaluation */
    cp.n_threads = cp.n_threads_batch = threads;
    cp.type_k = cp.type_v = strcmp(kv, "f16") ? GGML_TYPE_F32 : GGML_TYPE_F16;
    cp.flash_attn = false;
    cp.no_perf = true;
    cp.cb_eval = callback;
    cp.cb_eval_user_data = &d;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) die("llama.cpp could not create a context for %d tokens", n);
    d.kv_cap = (long)llama_n_ctx(ctx);

    prepare_dir(out_dir);
    float *logits = calloc((size_t)n * n_vocab, sizeof(float));
    if (!logits) die("out of memory for the logits");
    int per = step ? 1 : n;
    for (int pos = 0; pos < n; pos += per) {
        struct llama_batch b = llama_batch_init(per, 0, 1);
        for (int i = 0; i < per; i++) {
            b.token[i] = ids[pos + i];
            b.pos[i] = pos + i;
            b.n_seq_id[i] = 1;
            b.seq_id[i][0] = 0;
            b.logits[i] = 1;
        }
        b.n_tokens = per;
        d.pos = pos, d.n_cur = per, d.n_seen = 0;
        if (llama_decode(ctx, b) != 0) die("llama_decode failed at position %d", pos);
        for (int i = 0; i < per; i++) {
            const float *row = llama_get_logits_ith(ctx, i);
            if (!row) die("no logits for position %d", pos + i);
            memcpy(logits + (size_t)(pos + i) * n_vocab, row, (size_t)n_vocab * sizeof(float));
        }
        llama_batch_free(b);
    }

    long shape[3];
    shape[0] = n, shape[1] = n_vocab;
    write_npy(out_dir, "logits", shape, 2, logits, n_vocab, n_vocab);
    FILE *j = open_out(out_dir, "dump", ".json");
    fprintf(j, "{\n \"tool\": \"llama-dump\",\n \"llama_cpp_commit\": ");
    json_str(j, LLAMA_CPP_COMMIT);
    fprintf(j, ",\n \"model\": ");
    json_str(j, model_path);
    fprintf(j, ",\n \"mode\": \"%s\",\n \"kv\": \"%s\",\n \"threads\": %d,\n \"flash_attn\": false,\n \"n_vocab\": %d,\n"
               " \"n_embd\": %d,\n \"n_layer\": %d,\n \"n_head\": %d,\n \"kv_size\": %ld,\n \"ids\": [",
            step ? "step" : "batch", kv, threads, n_vocab, llama_model_n_embd(model), llama_model_n_layer(model),
            llama_model_n_head(model), d.kv_cap);
    for (int i = 0; i < n; i++) fprintf(j, "%s%d", i ? ", " : "", ids[i]);
    fprintf(j, "],\n \"logits\": {\"file\": \"logits.npy\", \"shape\": [%d, %d]},\n \"nodes\": [", n, n_vocab);
    int written = 0;
    for (int i = 0; i < d.n_nodes; i++) {
        Node *nd = &d.nodes[i];
        if (nd->rows_seen != n) continue; /* not computed for every position */
        int dims;
        if (nd->kind == 2) {
            shape[0] = nd->ne2, shape[1] = n, shape[2] = nd->ne0, dims = 3;
            write_npy(out_dir, nd->name, shape, 3, nd->data, nd->ne0, nd->cap);
        } else if (nd->kind == 1) {
            shape[0] = n, shape[1] = nd->ne1, shape[2] = nd->ne0, dims = 3;
            write_npy(out_dir, nd->name, shape, 3, nd->data, nd->ne0, nd->ne0);
        } else {
            shape[0] = n, shape[1] = nd->ne0, dims = 2;
            write_npy(out_dir, nd->name, shape, 2, nd->data, nd->ne0, nd->ne0);
        }
        fprintf(j, "%s\n  {\"file\": ", written++ ? "," : "");
        char file[GGML_MAX_NAME + 24];
        snprintf(file, sizeof file, "%s.npy", nd->name);
        json_str(j, file);
        fprintf(j, ", \"op\": ");
        json_str(j, nd->op);
        fprintf(j, ", \"shape\": [%ld, %ld", shape[0], shape[1]);
        if (dims == 3) fprintf(j, ", %ld", shape[2]);
        fprintf(j, "]}");
    }
    fprintf(j, "\n ]\n}\n");
    close_out(j, "dump.json");
    fprintf(stderr, "llama-dump: %d positions (%s), %d nodes and logits.npy written to %s\n", n,
            step ? "one at a time" : "one batch", written, out_dir);
    for (int i = 0; i < d.n_nodes; i++) free(d.nodes[i].data);
    free(d.nodes), free(d.seen), free(d.seen_count), free(logits), free(ids), free(text);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
