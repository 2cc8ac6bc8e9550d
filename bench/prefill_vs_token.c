/* bench/prefill_vs_token.c - the same prompt through raktn's forward pass
 * two ways, in one run: as one batch (chunks of CHUNK positions, each weight
 * row read once per chunk) and one token at a time (each weight read once per
 * token). Prints both rates, their ratio, and how far the last logits of the
 * two differ (two kernels, two summation orders: ~1e-5).
 *
 *   make bench/prefill_vs_token
 *   ./bench/prefill_vs_token MODEL.bin [N_TOKENS=128]
 */
#define RAKTN_NO_MAIN
#pragma GCC diagnostic ignored "-Wunused-function"
#include "../raktn.c"

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s MODEL.bin [N_TOKENS]\n", argv[0]); return 2; }
    int n = argc > 2 ? atoi(argv[2]) : 128;
    if (n < 1 || n > 100000) { fprintf(stderr, "bad N_TOKENS\n"); return 2; }
    Model m = {0};
    load_model(&m, argv[1]);
    const Config *c = &m.config;
    int *ids = xcalloc((size_t)n, sizeof(int));
    uint64_t rng = 12345;
    ids[0] = c->bos_id >= 0 ? c->bos_id : 0;
    for (int i = 1; i < n; i++) ids[i] = (int)(random_u32(&rng) % (uint32_t)c->vocab_size);
    float *a = xcalloc((size_t)c->vocab_size, sizeof(float));
    RunState s;
    init_state(&s, c, n);

    forward(&m, &s, ids, n < 8 ? n : 8, 0); /* warm the page cache */
    double t0 = now_s();
    float *logits = forward(&m, &s, ids, n, 0);
    double batched = now_s() - t0;
    memcpy(a, logits, (size_t)c->vocab_size * sizeof(float));

    t0 = now_s();
    for (int i = 0; i < n; i++) logits = forward(&m, &s, &ids[i], 1, i);
    double single = now_s() - t0;

    float maxd = 0;
    for (int v = 0; v < c->vocab_size; v++) maxd = fmaxf(maxd, fabsf(a[v] - logits[v]));
    int same = maxd <= 1e-4f;
    printf("prompt %d tok: batched %.2f tok/s, token-by-token %.2f tok/s, ratio %.2fx; last logits max |diff| %.2g\n",
           n, n / batched, n / single, single / batched, maxd);
    free(a);
    free(ids);
    free_state(&s);
    free_model(&m);
    return same ? 0 : 1;
}
