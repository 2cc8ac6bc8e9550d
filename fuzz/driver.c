/* fuzz/driver.c - replay inputs through a libFuzzer harness without libFuzzer.
 *
 *   replay_HARNESS FILE_OR_DIR...
 *
 * Calls LLVMFuzzerInitialize (if the harness has one) and then
 * LLVMFuzzerTestOneInput once per file, in name order within a directory.
 * Built with gcc (plain or with -fsanitize=address,undefined) by
 * `make fuzz-regress`, so the committed corpus and crash regressions run in
 * `make test` on machines without clang.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static long n_run;

static void run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "replay: cannot open %s\n", path); exit(2); }
    size_t cap = 1 << 16, n = 0, r;
    uint8_t *buf = malloc(cap);
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) buf = realloc(buf, cap *= 2);
    }
    if (!buf || ferror(f)) { fprintf(stderr, "replay: cannot read %s\n", path); exit(2); }
    fclose(f);
    /* an exact-size copy, so ASan sees reads one past the end */
    uint8_t *exact = malloc(n ? n : 1);
    memcpy(exact, buf, n);
    free(buf);
    if (getenv("REPLAY_VERBOSE")) fprintf(stderr, "replay: %s (%zu bytes)\n", path, n);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    n_run++;
}

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }

static void run_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) { fprintf(stderr, "replay: %s does not exist\n", path); exit(2); }
    if (!S_ISDIR(st.st_mode)) { run_file(path); return; }
    struct dirent **list;
    int n = scandir(path, &list, NULL, by_name);
    if (n < 0) { fprintf(stderr, "replay: cannot list %s\n", path); exit(2); }
    for (int i = 0; i < n; i++) {
        if (list[i]->d_name[0] != '.') {
            char *p;
            if (asprintf(&p, "%s/%s", path, list[i]->d_name) < 0) exit(2);
            run_path(p);
            free(p);
        }
        free(list[i]);
    }
    free(list);
}

int main(int argc, char **argv) {
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) run_path(argv[i]);
    fprintf(stdout, "replay: %ld inputs, no crash\n", n_run);
    return 0;
}
