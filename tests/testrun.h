/* tests/testrun.h - run ./raktn as a child process and capture what it does,
 * for the test programs that check the command line (test_cli, test_robust).
 * Define TMP (a folder for scratch files, created by the test) before
 * including. */
#ifndef RAKTN_TESTRUN_H
#define RAKTN_TESTRUN_H
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include "testutil.h"

typedef struct {
    int status; /* exit status, or -signal */
    char *out, *err;
    size_t out_len;
} Result;

/* Where the child's standard output goes */
typedef enum { OUT_CAPTURED, OUT_FULL /* /dev/full */, OUT_CLOSED } OutMode;

/* Run argv with stdin_text (stdin_len bytes) on standard input and standard
 * output as `mode` says, 60 s at most. */
static inline Result run_mode(const char *stdin_text, size_t stdin_len, const char *const argv[], OutMode mode) {
    char out_path[] = TMP "/outXXXXXX", err_path[] = TMP "/errXXXXXX", in_path[] = TMP "/inXXXXXX";
    int fo = mkstemp(out_path), fe = mkstemp(err_path), fi = mkstemp(in_path);
    ck_assert(fo >= 0 && fe >= 0 && fi >= 0);
    if (stdin_text) ck_assert(write(fi, stdin_text, stdin_len) == (ssize_t)stdin_len);
    lseek(fi, 0, SEEK_SET);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        dup2(fi, 0);
        dup2(fe, 2);
        if (mode == OUT_CAPTURED) {
            dup2(fo, 1);
        } else if (mode == OUT_FULL) {
            int f = open("/dev/full", O_WRONLY);
            dup2(f, 1);
            close(f);
        } else {
            close(1);
        }
        alarm(60); /* a hang is a failure (SIGALRM), not a stuck suite */
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    close(fo);
    close(fe);
    close(fi);
    Result r = {0};
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
    r.out = tu_read_file(out_path, &r.out_len);
    r.err = tu_read_file(err_path, NULL);
    unlink(out_path);
    unlink(err_path);
    unlink(in_path);
    return r;
}

/* Run argv with stdin_text on standard input, its output captured */
static inline Result run_in(const char *stdin_text, size_t stdin_len, const char *const argv[]) {
    return run_mode(stdin_text, stdin_len, argv, OUT_CAPTURED);
}

static inline void result_free(Result *r) {
    free(r->out);
    free(r->err);
}

static inline int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* Like run_mode (stdout captured), with setup(arg) called in the child just
 * before exec: limits, another user, signals, an environment variable. */
static inline Result run_setup(const char *stdin_text, size_t stdin_len, const char *const argv[],
                               void (*setup)(void *), void *arg) {
    char out_path[] = TMP "/outXXXXXX", err_path[] = TMP "/errXXXXXX", in_path[] = TMP "/inXXXXXX";
    int fo = mkstemp(out_path), fe = mkstemp(err_path), fi = mkstemp(in_path);
    ck_assert(fo >= 0 && fe >= 0 && fi >= 0);
    if (stdin_text) ck_assert(write(fi, stdin_text, stdin_len) == (ssize_t)stdin_len);
    lseek(fi, 0, SEEK_SET);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        dup2(fi, 0), dup2(fo, 1), dup2(fe, 2);
        alarm(120);
        if (setup) setup(arg);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    close(fo), close(fe), close(fi);
    Result r = {0};
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
    r.out = tu_read_file(out_path, &r.out_len);
    r.err = tu_read_file(err_path, NULL);
    unlink(out_path), unlink(err_path), unlink(in_path);
    return r;
}
#endif
