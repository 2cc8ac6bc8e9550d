#define _GNU_SOURCE /* memmem */
/* tests/test_robust.c - ./raktn on hostile command lines and text (issue #7).
 *
 * Each case runs the real binary and checks the defined outcome: the exit
 * status, the message on stderr, that no signal ended it, and that no output
 * file (or PATH.tmp) is left behind. Texts with NUL bytes and invalid UTF-8
 * must reach the tokenizer byte for byte: their ids are compared with
 * tokenizer_encode() on the same bytes (tokenizer.c is #included).
 * Run from the repository root after tests/prepare.sh.
 */
/* tokenizer.c first: Check defines a macro named fail() */
#include "../tokenizer.c"
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include "testutil.h"

#define T48K "tests/work/models/t48k-bf16/model.bin"
#define TOK "tests/work/models/t48k-bf16/tokenizer.bin"
#define SW8 "tests/work/models/sw8/model.bin"
#define TMP "tests/work/robust"

#include "testrun.h"

static Result run(const char *const argv[]) { return run_in(NULL, 0, argv); }

/* exit status `status`, no signal, first stderr line "raktn: error: ..."
 * containing `msg`, nothing on stdout */
static void assert_failure(const Result *r, int status, const char *msg) {
    ck_assert_msg(r->status == status, "exit %d, wanted %d; stderr: %s", r->status, status, r->err);
    ck_assert_msg(strncmp(r->err, "raktn: error: ", 14) == 0, "stderr: %s", r->err);
    const char *nl = strchr(r->err, '\n');
    ck_assert_msg(nl && memmem(r->err, (size_t)(nl - r->err), msg, strlen(msg)), "first line lacks '%s': %s", msg,
                  r->err);
    ck_assert_msg(r->out_len == 0, "stdout not empty: %s", r->out);
}

/* A command line that must fail: its exit status and a piece of the error */
typedef struct { const char *argv[12]; int status; const char *msg; } FailCase;

static void assert_all_fail(const FailCase *cases, size_t n) {
    for (size_t i = 0; i < n; i++) {
        Result r = run(cases[i].argv);
        assert_failure(&r, cases[i].status, cases[i].msg);
        result_free(&r);
    }
}

static void assert_success(const Result *r) {
    ck_assert_msg(r->status == 0, "exit %d; stderr: %s", r->status, r->err);
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert(f && fwrite(data, 1, n, f) == n);
    fclose(f);
}

/* the ids `-m tokenize` prints must be tokenizer_encode(BOS + exact bytes) */
static void assert_tokenize_matches(const Result *r, const char *bytes, size_t n) {
    assert_success(r);
    char err[256];
    Tokenizer *t = tokenizer_load(TOK, err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    int *ids;
    size_t nids;
    ck_assert(tokenizer_encode(t, bytes, n, tokenizer_add_bos(t), &ids, &nids) == 0);
    char want[8192] = "";
    size_t off = 0;
    for (size_t i = 0; i < nids; i++) off += snprintf(want + off, sizeof want - off, i ? " %d" : "%d", ids[i]);
    snprintf(want + off, sizeof want - off, "\n");
    ck_assert_msg(strcmp(r->out, want) == 0, "raktn printed '%s', tokenizer_encode gives '%s'", r->out, want);
    free(ids);
    tokenizer_free(t);
}

/* -------------------------------------------------------------- numbers */

START_TEST(test_bad_numbers) {
    FailCase cases[] = {
        {{"./raktn", SW8, "-n", "", "--ids", "1"}, 2, "-n wants an integer"},
        {{"./raktn", SW8, "-n", "12abc", "--ids", "1"}, 2, "-n wants an integer"},
        {{"./raktn", SW8, "-n", "99999999999999999999999", "--ids", "1"}, 2, "-n wants an integer"},
        {{"./raktn", SW8, "-n", "16777217", "--ids", "1"}, 2, "-n must be in"},
        {{"./raktn", SW8, "-s", "-1", "--ids", "1"}, 2, "-s must be in"},
        {{"./raktn", SW8, "-s", "18446744073709551616", "--ids", "1"}, 2, "-s wants an integer"},
        {{"./raktn", SW8, "-c", "0", "--ids", "1"}, 2, "-c must be in"},
        {{"./raktn", SW8, "-c", "-4", "--ids", "1"}, 2, "-c must be in"},
        {{"./raktn", SW8, "-t", "inf", "--ids", "1"}, 2, "-t wants a number"},
        {{"./raktn", SW8, "-t", "1e999", "--ids", "1"}, 2, "-t wants a number"},
        {{"./raktn", SW8, "-t", "0x", "--ids", "1"}, 2, "-t wants a number"},
        {{"./raktn", SW8, "-p", "-0.1", "--ids", "1"}, 2, "-p must be in"},
        {{"./raktn", SW8, "-T", "0", "--ids", "1"}, 2, "-T must be in"},
        {{"./raktn", SW8, "-m", "logits", "--top", "0", "--ids", "1"}, 2, "--top must be in"},
        {{"./raktn", SW8, "-m", "logits", "--top", "1001", "--ids", "1"}, 2, "--top must be in"},
    };
    assert_all_fail(cases, sizeof cases / sizeof cases[0]);
}
END_TEST

/* A temperature so small that logits / T overflows to Inf: softmax gives NaN,
 * which once made top-p read sp->idx[-1] (fuzz/regress/model). Now: greedy
 * fallback, exit 0, the requested number of tokens. */
START_TEST(test_tiny_temperature) {
    const char *argv[] = {"./raktn", SW8, "--ids", "1 5 9", "-t", "1.2e-38", "-p", "0.9", "-n", "4", "-s", "3", NULL};
    Result r = run(argv);
    assert_success(&r);
    int n = 0;
    for (char *p = r.out; *p; p++) n += *p == ' ';
    ck_assert_msg(n == 4, "wanted 4 ids, got '%s'", r.out);
    result_free(&r);
}
END_TEST

START_TEST(test_zero_steps) {
    const char *argv[] = {"./raktn", SW8, "--ids", "1 5 9", "-n", "0", NULL};
    Result r = run(argv);
    assert_success(&r);
    ck_assert_msg(strcmp(r.out, "\n") == 0, "stdout '%s'", r.out);
    result_free(&r);
}
END_TEST

/* ------------------------------------------------------------ token ids */

START_TEST(test_bad_ids) {
    FailCase cases[] = {
        {{"./raktn", SW8, "--ids", "99999999999999999999"}, 2, "is not a token id"},
        {{"./raktn", SW8, "--ids", "1 2147483648"}, 2, "outside the vocabulary"},
        {{"./raktn", SW8, "--ids", "1;2"}, 2, "is not a token id"},
        {{"./raktn", SW8, "--ids", "1.5"}, 2, "is not a token id"},
        {{"./raktn", SW8, "--ids", " , ,\t"}, 1, "empty prompt"},
        {{"./raktn", SW8, "-m", "ppl", "--ids", ""}, 1, "at least 2 tokens"},
        {{"./raktn", "-m", "detokenize", "-z", TOK, "--ids", "1 48000"}, 2, "outside the vocabulary"},
        {{"./raktn", "-m", "detokenize", "-z", TOK, "--ids", "-1"}, 2, "outside the vocabulary"},
        {{"./raktn", "-m", "detokenize", "-z", TOK}, 2, "needs --ids"},
        {{"./raktn", "-m", "tokenize", "-z", TOK}, 2, "needs a prompt"},
        /* a tokenizer larger than the model's vocabulary */
        {{"./raktn", SW8, "-z", TOK, "-i", "hello"}, 1, "tokenizer has 48000 pieces"},
    };
    assert_all_fail(cases, sizeof cases / sizeof cases[0]);
}
END_TEST

/* ------------------------------------------------------ text and prompts */

/* An empty prompt is BOS alone (add_bos): it runs. With no BOS (--ids "")
 * there is nothing to run: a clear error. */
START_TEST(test_empty_prompts) {
    write_bytes(TMP "/empty.txt", "", 0);
    const char *a1[] = {"./raktn", T48K, "-i", "", "-n", "2", "-t", "0", NULL};
    const char *a2[] = {"./raktn", T48K, "-f", TMP "/empty.txt", "-n", "2", "-t", "0", NULL};
    const char *a3[] = {"./raktn", "-m", "tokenize", "-z", TOK, "-i", "", NULL};
    Result r1 = run(a1), r2 = run(a2), r3 = run(a3);
    assert_success(&r1);
    assert_success(&r2);
    ck_assert_str_eq(r1.out, r2.out);
    ck_assert_str_eq(r3.out, "1\n");
    result_free(&r1);
    result_free(&r2);
    result_free(&r3);
    const char *a4[] = {"./raktn", T48K, "-m", "logits", "--ids", "", "--top", "1", NULL};
    Result r4 = run(a4);
    assert_failure(&r4, 1, "empty sequence");
    result_free(&r4);
}
END_TEST

/* A prompt longer than the context: refused before any output file is made. */
START_TEST(test_prompt_longer_than_context) {
    char text[2048];
    for (int i = 0; i < 200; i++) memcpy(text + 5 * i, "word ", 5);
    text[1000] = 0;
    const char *a1[] = {"./raktn", T48K, "-i", text, "-c", "16", "-n", "1", NULL};
    Result r = run(a1);
    assert_failure(&r, 1, "context");
    result_free(&r);
    const char *a2[] = {"./raktn", T48K, "-m", "logits", "-i", text, "-c", "16", "-o", TMP "/long.f32", NULL};
    r = run(a2);
    assert_failure(&r, 1, "context");
    ck_assert(!file_exists(TMP "/long.f32") && !file_exists(TMP "/long.f32.tmp"));
    result_free(&r);
    const char *a3[] = {"./raktn", T48K, "-m", "ppl", "-i", text, "-c", "16", NULL};
    r = run(a3);
    assert_failure(&r, 1, "context");
    result_free(&r);
    /* chat: a turn that does not fit ends the chat with a message, exit 0 */
    const char *a4[] = {"./raktn", T48K, "-m", "chat", "-c", "16", "-n", "2", "-t", "0", NULL};
    r = run_in(text, strlen(text), a4);
    assert_success(&r);
    ck_assert_msg(strstr(r.err, "end of the context") != NULL, "stderr: %s", r.err);
    result_free(&r);
    /* exactly at the limit is fine; generation then stops at the context end */
    const char *a5[] = {"./raktn", T48K, "--ids", "1 2 3 4", "-c", "6", "-n", "50", "-t", "0", NULL};
    r = run(a5);
    assert_success(&r);
    ck_assert_msg(strstr(r.err, "reached the end of the context") != NULL || r.out_len > 0, "stderr: %s", r.err);
    result_free(&r);
}
END_TEST

/* NUL bytes and invalid UTF-8 in a -f file reach the tokenizer byte for byte */
START_TEST(test_nul_and_invalid_utf8_file) {
    static const char text[] = "a\0b \xff\xfe\xc3( \xed\xa0\x80 \xf4\x90\x80\x80 end\0";
    size_t n = sizeof text - 1;
    write_bytes(TMP "/nul.txt", text, n);
    const char *a1[] = {"./raktn", "-m", "tokenize", "-z", TOK, "-f", TMP "/nul.txt", NULL};
    Result r = run(a1);
    assert_tokenize_matches(&r, text, n);
    result_free(&r);
    /* and generation, ppl and logits run on it */
    const char *a2[] = {"./raktn", T48K, "-f", TMP "/nul.txt", "-n", "3", "-t", "0", NULL};
    r = run(a2);
    assert_success(&r);
    result_free(&r);
    const char *a3[] = {"./raktn", T48K, "-m", "ppl", "-f", TMP "/nul.txt", NULL};
    r = run(a3);
    assert_success(&r);
    ck_assert(strstr(r.out, "ppl ") != NULL);
    result_free(&r);
}
END_TEST

/* Invalid UTF-8 on the command line (-i) and in chat input */
START_TEST(test_invalid_utf8_text) {
    static const char text[] = "caf\xc3 \x80\x80 \xc0\xaf \xe2\x96";
    const char *a1[] = {"./raktn", "-m", "tokenize", "-z", TOK, "-i", text, NULL};
    Result r = run(a1);
    assert_tokenize_matches(&r, text, strlen(text));
    result_free(&r);
    static const char chat[] = "hi \xff\xfe\n\0\0\n\xe3\x81\n";
    const char *a2[] = {"./raktn", T48K, "-m", "chat", "-n", "2", "-t", "0", NULL};
    r = run_in(chat, sizeof chat - 1, a2);
    assert_success(&r);
    result_free(&r);
    /* detokenize of byte pieces that are not UTF-8 prints U+FFFD, not the raw bytes */
    const char *a3[] = {"./raktn", "-m", "detokenize", "-z", TOK, "--ids", "258 259", NULL};
    r = run(a3);
    assert_success(&r);
    result_free(&r);
}
END_TEST

/* -------------------------------------------------------------- files */

START_TEST(test_bad_paths) {
    unlink(TMP "/fifo");
    ck_assert(mkfifo(TMP "/fifo", 0600) == 0);
    char junk[300] = "RKTNTOK";
    write_bytes(TMP "/junk-tok.bin", junk, sizeof junk);
    size_t tlen;
    char *tok = tu_read_file(TOK, &tlen);
    ck_assert(tok);
    write_bytes(TMP "/short-tok.bin", tok, tlen / 2);
    free(tok);
    FailCase cases[] = {
        {{"./raktn", TMP "/fifo", "--ids", "1"}, 1, "not a regular file"},
        {{"./raktn", "tests", "--ids", "1"}, 1, "not a regular file"},
        {{"./raktn", "-m", "tokenize", "-z", TMP "/fifo", "-i", "a"}, 1, "not a regular file"},
        {{"./raktn", "-m", "tokenize", "-z", "tests", "-i", "a"}, 1, "not a regular file"},
        {{"./raktn", "-m", "tokenize", "-z", TMP "/junk-tok.bin", "-i", "a"}, 1, "junk-tok.bin"},
        {{"./raktn", "-m", "tokenize", "-z", TMP "/short-tok.bin", "-i", "a"}, 1, "short-tok.bin: "},
        {{"./raktn", "-m", "tokenize", "-z", TOK, "-f", TMP "/no-such.txt"}, 1, "cannot open"},
        {{"./raktn", "-m", "tokenize", "-z", TOK, "-f", "tests"}, 1, "tests"},
        {{"./raktn", SW8, "-m", "logits", "--ids", "1 2", "-o", TMP "/no-dir/x.f32"}, 1, "cannot create"},
        {{"./raktn", T48K, "-z", TMP "/junk-tok.bin", "-i", "a"}, 1, "junk-tok.bin"},
    };
    assert_all_fail(cases, sizeof cases / sizeof cases[0]);
    ck_assert(!file_exists(TMP "/no-dir"));
    unlink(TMP "/fifo");
}
END_TEST

/* A model file that is well-formed but full of NaN: runs, no signal. */
START_TEST(test_nan_weights) {
    size_t len;
    char *buf = tu_read_file(SW8, &len);
    ck_assert(buf);
    for (size_t i = 256; i + 4 <= len; i += 4) memcpy(buf + i, "\x00\x00\xc0\x7f", 4); /* NaN */
    write_bytes(TMP "/nan.bin", buf, len);
    free(buf);
    const char *a1[] = {"./raktn", TMP "/nan.bin", "--ids", "1 2", "-n", "3", "-t", "0.8", "-s", "1", NULL};
    Result r = run(a1);
    assert_success(&r);
    result_free(&r);
    const char *a2[] = {"./raktn", TMP "/nan.bin", "-m", "ppl", "--ids", "1 2 3", NULL};
    r = run(a2);
    assert_success(&r);
    result_free(&r);
}
END_TEST

/* ------------------------------------------------- nothing lost (#16) */

/* Run argv with stdout on /dev/full or closed, stdin from `stdin_text`;
 * returns the exit status (-signal) and stderr in *err. */
static int run_stdout(OutMode mode, const char *stdin_text, const char *const argv[], char **err) {
    Result r = run_mode(stdin_text, strlen(stdin_text), argv, mode);
    free(r.out);
    *err = r.err;
    return r.status;
}

/* Output that cannot be written (a full disk: /dev/full; a closed stdout)
 * is exit 1 and one line naming standard output, in every mode. */
START_TEST(test_stdout_lost) {
    static const char *const cases[][12] = {
        {"./raktn", SW8, "--ids", "1 5 9", "-n", "3", "-t", "0", NULL},
        {"./raktn", "-m", "tokenize", "-z", TOK, "-i", "hello", NULL},
        {"./raktn", "-m", "detokenize", "-z", TOK, "--ids", "1 22 333", NULL},
        {"./raktn", SW8, "-m", "ppl", "--ids", "1 5 9", NULL},
        {"./raktn", SW8, "-m", "logits", "--ids", "1 5 9", "--top", "2", NULL},
        {"./raktn", T48K, "-m", "chat", "-n", "3", "-t", "0", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (OutMode mode = OUT_FULL; mode <= OUT_CLOSED; mode++) {
            char *err;
            int status = run_stdout(mode, "hello\n", cases[i], &err);
            ck_assert_msg(status == 1 && strstr(err, "raktn: error: standard output: write failed"),
                          "case %zu (%s, stdout %s): exit %d, stderr: %s", i, cases[i][2],
                          mode == OUT_FULL ? "/dev/full" : "closed", status, err);
            free(err);
        }
}
END_TEST

/* Temporaries raktn left in TMP (PATH.raktn-XXXXXX) */
static int count_temporaries(void) {
    int n = 0;
    FILE *p = popen("ls " TMP " | grep -c 'raktn-'", "r");
    ck_assert(p && fscanf(p, "%d", &n) == 1);
    pclose(p);
    return n;
}

/* -o and --hidden never replace a file the run reads (the model, the
 * tokenizer) nor name one file twice; a --hidden that fails leaves the -o
 * file the user had as it was and no temporaries; a device is written in
 * place, not replaced. */
START_TEST(test_outputs_all_or_nothing) {
    size_t before_len, after_len;
    char *before = tu_read_file(SW8, &before_len);
    ck_assert(before);
    FailCase cases[] = {
        {{"./raktn", SW8, "-m", "logits", "--ids", "1 2", "-o", SW8}, 2, "a file this run reads"},
        {{"./raktn", SW8, "-m", "logits", "--ids", "1 2", "--hidden", SW8}, 2, "a file this run reads"},
        {{"./raktn", T48K, "-m", "logits", "-i", "a", "-o", TOK}, 2, "a file this run reads"},
        {{"./raktn", SW8, "-m", "logits", "--ids", "1 2", "-o", TMP "/x", "--hidden", TMP "/x"}, 2, "named twice"},
        {{"./raktn", SW8, "-m", "logits", "--ids", "0x10", "-o", TMP "/x"}, 2, "'0x10' is not a token id"},
    };
    assert_all_fail(cases, sizeof cases / sizeof cases[0]);
    char *after = tu_read_file(SW8, &after_len);
    ck_assert(after && after_len == before_len && memcmp(before, after, before_len) == 0);
    free(before), free(after);

    write_bytes(TMP "/keep.f32", "keep", 4);
    const char *a1[] = {"./raktn", SW8, "-m", "logits", "--ids", "1 2", "-o", TMP "/keep.f32", "--hidden",
                        TMP "/no-dir/h.f32", NULL};
    Result r = run(a1);
    assert_failure(&r, 1, "no-dir/h.f32");
    result_free(&r);
    size_t len;
    char *kept = tu_read_file(TMP "/keep.f32", &len);
    ck_assert_msg(kept && len == 4 && memcmp(kept, "keep", 4) == 0, "the -o file the user had was changed");
    free(kept);
    ck_assert_int_eq(count_temporaries(), 0);

    const char *a2[] = {"./raktn", SW8, "-m", "logits", "--ids", "1 2", "-o", "/dev/null", NULL};
    r = run(a2);
    assert_success(&r);
    result_free(&r);
    struct stat st;
    ck_assert(stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode));
}
END_TEST

/* SIGINT, SIGTERM or SIGHUP while the outputs are being written: the -o
 * temporary (complete, not yet renamed) is removed and the file the user
 * had stays. The run is held at a FIFO named by --hidden (written in place:
 * it blocks until a reader comes) after -o is written to its temporary. */
START_TEST(test_signal_removes_temporaries) {
    int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (int k = 0; k < 3; k++) {
        write_bytes(TMP "/keep.f32", "keep", 4);
        unlink(TMP "/hold");
        ck_assert(mkfifo(TMP "/hold", 0600) == 0);
        pid_t pid = fork();
        ck_assert(pid >= 0);
        if (pid == 0) {
            int null = open("/dev/null", O_RDWR);
            dup2(null, 1), dup2(null, 2);
            execl("./raktn", "./raktn", SW8, "-m", "logits", "--ids", "1 2 3", "-o", TMP "/keep.f32", "--hidden",
                  TMP "/hold", (char *)NULL);
            _exit(127);
        }
        int waited = 0;
        while (count_temporaries() == 0 && waited++ < 500) usleep(10000);
        ck_assert_msg(count_temporaries() == 1, "no temporary of -o appeared");
        usleep(50000);
        kill(pid, sigs[k]);
        int st;
        waitpid(pid, &st, 0);
        ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == sigs[k], "signal %d: status %d", sigs[k], st);
        ck_assert_int_eq(count_temporaries(), 0);
        size_t len;
        char *kept = tu_read_file(TMP "/keep.f32", &len);
        ck_assert(kept && len == 4 && memcmp(kept, "keep", 4) == 0);
        free(kept);
        unlink(TMP "/hold");
    }
}
END_TEST

/* The model file truncated under a running raktn (chat, waiting for its
 * second line): one line naming the file and exit 1, not a bare SIGBUS.
 * A read error on standard input (a folder) is an error, not the end. */
START_TEST(test_model_changes_under_raktn) {
    size_t len;
    char *buf = tu_read_file(T48K, &len);
    ck_assert(buf);
    mkdir(TMP "/trunc", 0755); /* its own folder: the tokenizer beside it is found by the model's path */
    write_bytes(TMP "/trunc/model.bin", buf, len);
    free(buf);
    char tok_copy[] = TMP "/trunc/tokenizer.bin";
    char *tb = tu_read_file(TOK, &len);
    write_bytes(tok_copy, tb, len);
    free(tb);
    int in[2], err[2], out[2];
    ck_assert(pipe(in) == 0 && pipe(err) == 0 && pipe(out) == 0);
    signal(SIGPIPE, SIG_IGN); /* raktn may be gone before the second line: a failed write, not a dead test */
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0), dup2(err[1], 2), dup2(out[1], 1);
        close(in[1]), close(err[0]), close(out[0]);
        execl("./raktn", "./raktn", TMP "/trunc/model.bin", "-m", "chat", "-n", "2", "-t", "0", (char *)NULL);
        _exit(127);
    }
    close(in[0]), close(err[1]), close(out[1]);
    ck_assert(write(in[1], "hello\n", 6) == 6);
    /* the first turn is answered (its line ends) before the file changes */
    char ans[4096];
    size_t seen = 0;
    ssize_t got_out;
    while (seen < sizeof ans - 1 && (got_out = read(out[0], ans + seen, sizeof ans - 1 - seen)) > 0) {
        seen += (size_t)got_out;
        ans[seen] = 0;
        if (strchr(ans, '\n')) break;
    }
    ck_assert(truncate(TMP "/trunc/model.bin", 4096) == 0);
    ssize_t w = write(in[1], "again\n", 6);
    (void)w;
    close(in[1]);
    char msg[4096] = {0};
    size_t got = 0;
    ssize_t r;
    while (got < sizeof msg - 1 && (r = read(err[0], msg + got, sizeof msg - 1 - got)) > 0) got += (size_t)r;
    close(err[0]), close(out[0]);
    int st;
    waitpid(pid, &st, 0);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1 && strstr(msg, "raktn: error: " TMP "/trunc/model.bin: the file changed"),
                  "status %d, stderr: %s", st, msg);
    unlink(TMP "/trunc/model.bin"), unlink(TMP "/trunc/tokenizer.bin"), rmdir(TMP "/trunc");

    int dir = open("tests", O_RDONLY);
    ck_assert(dir >= 0);
    pid = fork();
    if (pid == 0) {
        dup2(dir, 0);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1), dup2(null, 2);
        execl("./raktn", "./raktn", T48K, "-m", "chat", "-n", "2", (char *)NULL);
        _exit(127);
    }
    close(dir);
    waitpid(pid, &st, 0);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "chat with a folder on stdin: status %d", st);
}
END_TEST

/* Threads: the logits do not depend on the thread count (every output is
 * computed by the same operations whoever computes it), and a thread that
 * cannot be created is raktn's own one-line error (address space limited
 * so that the 4096 thread stacks -T asks for cannot all be mapped). */
START_TEST(test_threads) {
    static const char *models[] = {SW8, "tests/work/models/hd128/model.bin"};
    static const char *ids[] = {"1 5 9 13 200 7 7 7 3 1 44 45 46 47 48 49 50 51 52 53",
                                "1 5 9 13 200 7 7 7 3 1 44 45 46 47 48 49 50 51 52 53 54 55"};
    for (int m = 0; m < 2; m++) {
        char *first = NULL;
        size_t first_len = 0;
        static const char *threads[] = {"1", "2", "3", "7"};
        for (int k = 0; k < 4; k++) {
            const char *argv[] = {"./raktn", models[m], "-m", "logits", "--ids", ids[m], "-T", threads[k], "-o",
                                  TMP "/threads.f32", NULL};
            Result r = run(argv);
            assert_success(&r);
            result_free(&r);
            size_t len;
            char *got = tu_read_file(TMP "/threads.f32", &len);
            ck_assert(got);
            if (!first) first = got, first_len = len;
            else {
                ck_assert_msg(len == first_len && memcmp(got, first, len) == 0, "%s: -T %s changed the logits",
                              models[m], threads[k]);
                free(got);
            }
        }
        free(first);
    }
#if defined(__SANITIZE_ADDRESS__)
    return; /* AddressSanitizer's shadow memory needs far more address space */
#endif
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        struct rlimit lim = {(rlim_t)512 << 20, (rlim_t)512 << 20};
        setrlimit(RLIMIT_AS, &lim);
        int fe = open(TMP "/threads.err", O_WRONLY | O_CREAT | O_TRUNC, 0644), null = open("/dev/null", O_WRONLY);
        dup2(null, 1), dup2(fe, 2);
        execl("./raktn", "./raktn", SW8, "--ids", "1 2", "-n", "2", "-T", "4096", (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    char *err = tu_read_file(TMP "/threads.err", NULL);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1 && err && strncmp(err, "raktn: error: cannot start thread", 33) == 0,
                  "status %d, stderr: %s", st, err);
    free(err);
}
END_TEST

Suite *robust_suite(void) {
    Suite *s = suite_create("robust");
    TCase *tc = tcase_create("hostile input");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_bad_numbers);
    tcase_add_test(tc, test_tiny_temperature);
    tcase_add_test(tc, test_zero_steps);
    tcase_add_test(tc, test_bad_ids);
    tcase_add_test(tc, test_empty_prompts);
    tcase_add_test(tc, test_prompt_longer_than_context);
    tcase_add_test(tc, test_nul_and_invalid_utf8_file);
    tcase_add_test(tc, test_invalid_utf8_text);
    tcase_add_test(tc, test_bad_paths);
    tcase_add_test(tc, test_nan_weights);
    tcase_add_test(tc, test_stdout_lost);
    tcase_add_test(tc, test_outputs_all_or_nothing);
    tcase_add_test(tc, test_signal_removes_temporaries);
    tcase_add_test(tc, test_model_changes_under_raktn);
    tcase_add_test(tc, test_threads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    mkdir("tests/work", 0755);
    mkdir(TMP, 0755);
    SRunner *sr = srunner_create(robust_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
