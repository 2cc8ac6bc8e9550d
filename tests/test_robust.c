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
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <time.h>
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

/* A model file that is well-formed but full of NaN, or with one +Inf in a
 * norm weight: logits that are not numbers are an error in every mode that
 * computes them (they printed as <unk>, "nll -nan", "-nan"), no signal. */
START_TEST(test_nan_weights) {
    size_t len;
    char *buf = tu_read_file(SW8, &len);
    ck_assert(buf);
    for (size_t i = 256; i + 4 <= len; i += 4) memcpy(buf + i, "\x00\x00\xc0\x7f", 4); /* NaN */
    write_bytes(TMP "/nan.bin", buf, len);
    free(buf);
    buf = tu_read_file(SW8, &len);
    /* sw8 (notes/format.md): fp32, dim 64, vocab 512: embed_tokens, then layer 0's input_layernorm */
    memcpy(buf + 256 + 512 * 64 * 4, "\x00\x00\x80\x7f", 4); /* +Inf */
    write_bytes(TMP "/inf.bin", buf, len);
    free(buf);
    FailCase cases[] = {
        {{"./raktn", TMP "/nan.bin", "--ids", "1 2", "-n", "3", "-t", "0.8", "-s", "1"}, 1, "are not numbers"},
        {{"./raktn", TMP "/nan.bin", "-m", "ppl", "--ids", "1 2 3"}, 1, "are not numbers"},
        {{"./raktn", TMP "/inf.bin", "--ids", "1 2", "-n", "3", "-t", "0"}, 1, "are not numbers"},
        {{"./raktn", TMP "/inf.bin", "-m", "ppl", "--ids", "1 2 3"}, 1, "are not numbers"},
        {{"./raktn", TMP "/inf.bin", "-m", "logits", "--ids", "1 2 3", "--top", "2"}, 1, "are not numbers"},
        {{"./raktn", TMP "/inf.bin", "-m", "logits", "--ids", "1 2 3", "-o", TMP "/nan.f32"}, 1, "are not numbers"},
    };
    assert_all_fail(cases, sizeof cases / sizeof cases[0]);
    ck_assert(!file_exists(TMP "/nan.f32"));
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

/* ------------------------------------ nothing lost, nothing silent (#24) */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "%s: cannot open", dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static void assert_file_is(const char *path, const char *want) {
    size_t len;
    char *got = tu_read_file(path, &len);
    ck_assert_msg(got && len == strlen(want) && memcmp(got, want, len) == 0, "%s: changed (%zu bytes)", path,
                  got ? len : 0);
    free(got);
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* One file under two names is one output named twice, whether it exists
 * yet or not: x.npy and ./x.npy; a file --dump will write; a folder reached
 * through a symlink. Nothing is computed and nothing is created. */
START_TEST(test_one_file_two_names) {
    ck_assert(system("rm -rf " TMP "/two && mkdir -p " TMP "/two/D && ln -s . " TMP "/two/sub") == 0);
    FailCase cases[] = {
        {{"./raktn", SW8, "-m", "logits", "--ids", "1 2", "-o", TMP "/two/x.npy", "--hidden", TMP "/two/./x.npy"}, 2,
         "named twice"},
        {{"./raktn", SW8, "-m", "logits", "--ids", "1 2", "-o", TMP "/two/D/model.norm.npy", "--dump", TMP "/two/D"},
         2, "named twice"},
        {{"./raktn", SW8, "-m", "logits", "--ids", "1 2", "-o", TMP "/two/x.f32", "--hidden", TMP "/two/sub/x.f32"}, 2,
         "named twice"},
    };
    assert_all_fail(cases, sizeof cases / sizeof cases[0]);
    ck_assert_int_eq(count_entries(TMP "/two"), 2); /* D and sub: nothing made */
    ck_assert_int_eq(count_entries(TMP "/two/D"), 0);
}
END_TEST

/* The prompt file is an input like the model: never an output */
START_TEST(test_prompt_file_not_an_output) {
    ck_assert(system("rm -rf " TMP "/pf && mkdir -p " TMP "/pf/D") == 0);
    write_bytes(TMP "/pf/p.txt", "1 2 3", 5);
    write_bytes(TMP "/pf/D/model.norm.npy", "1 2 3", 5);
    FailCase cases[] = {
        {{"./raktn", T48K, "-m", "logits", "-f", TMP "/pf/p.txt", "-o", TMP "/pf/p.txt"}, 2, "a file this run reads"},
        {{"./raktn", T48K, "-m", "logits", "-f", TMP "/pf/p.txt", "--hidden", TMP "/pf/./p.txt"}, 2,
         "a file this run reads"},
        {{"./raktn", T48K, "-m", "logits", "-f", TMP "/pf/D/model.norm.npy", "--dump", TMP "/pf/D"}, 2,
         "a file this run reads"},
    };
    assert_all_fail(cases, sizeof cases / sizeof cases[0]);
    assert_file_is(TMP "/pf/p.txt", "1 2 3");
    assert_file_is(TMP "/pf/D/model.norm.npy", "1 2 3");
}
END_TEST

/* The outputs are renamed into place only when the whole run succeeded,
 * standard output included: stdout on a full disk, or closed, leaves the
 * -o file the user had. */
START_TEST(test_failed_stdout_keeps_outputs) {
    const char *argv[] = {"./raktn", SW8, "-m", "logits", "--ids", "1 2 3", "--top", "2", "-o", TMP "/keep.f32", NULL};
    for (OutMode mode = OUT_FULL; mode <= OUT_CLOSED; mode++) {
        write_bytes(TMP "/keep.f32", "keep", 4);
        char *err;
        int status = run_stdout(mode, "", argv, &err);
        ck_assert_msg(status == 1 && strstr(err, "standard output: write failed"), "exit %d: %s", status, err);
        free(err);
        assert_file_is(TMP "/keep.f32", "keep");
        ck_assert_int_eq(count_temporaries(), 0);
    }
}
END_TEST

/* tests/rename_shim.so in the child, with `arg` (a variable) set */
static void preload_shim(void *arg) {
    setenv((const char *)arg, "1", 1);
    setenv("LD_PRELOAD", "tests/rename_shim.so", 1);
    setenv("ASAN_OPTIONS", "verify_asan_link_order=0", 1); /* the shim before ASan's runtime */
}

/* SIGINT sent to raktn (and its threads) between two of its renames: it
 * is held until the last rename is done, so the files are all new, none
 * left old (tests/rename_shim.c sends it), and raktn then ends by it. */
START_TEST(test_signal_during_renames) {
    write_bytes(TMP "/out.f32", "old", 3);
    write_bytes(TMP "/hid.f32", "old", 3);
    const char *argv[] = {"./raktn", SW8, "-m", "logits", "--ids", "1 2 3", "-T", "3", "-o", TMP "/out.f32",
                          "--hidden", TMP "/hid.f32", NULL};
    Result r = run_setup(NULL, 0, argv, preload_shim, "RAKTN_SHIM_SIGINT");
    ck_assert_msg(r.status == -SIGINT, "status %d, stderr: %s", r.status, r.err);
    result_free(&r);
    ck_assert_int_eq(file_size(TMP "/out.f32"), 3 * 512 * 4);     /* [3 positions][vocab 512] */
    ck_assert_int_eq(file_size(TMP "/hid.f32"), 4 * 3 * 64 * 4);  /* [3 layers + 1][3][dim 64] */
    ck_assert_int_eq(count_temporaries(), 0);
}
END_TEST

/* Each mode reads its own options; any other is refused, not ignored, and
 * an option given twice is refused. The table below is the usage's. */
START_TEST(test_options_per_mode) {
    static const struct { const char *opt, *value, *modes; } opts[] = {
        {"-i", "a", "generate logits ppl tokenize"},     {"-f", TMP "/p.txt", "generate logits ppl tokenize"},
        {"--ids", "1 2", "generate logits ppl detokenize"}, {"-z", TOK, "generate chat logits ppl tokenize detokenize"},
        {"-n", "1", "generate chat"},                      {"-t", "0", "generate chat"},
        {"-p", "0.5", "generate chat"},                    {"-s", "1", "generate chat"},
        {"-c", "8", "generate chat logits ppl"},           {"-y", "x", "chat"},
        {"-o", TMP "/o.f32", "logits"},                    {"--hidden", TMP "/h.f32", "logits"},
        {"--dump", TMP "/dd", "logits"},                   {"--top", "1", "logits"},
        {"-T", "1", "generate chat logits ppl tokenize detokenize"},
    };
    static const char *modes[] = {"generate", "chat", "logits", "ppl", "tokenize", "detokenize"};
    write_bytes(TMP "/p.txt", "a", 1);
    for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++)
        for (int m = 0; m < 6; m++) {
            const char *argv[] = {"./raktn", SW8, "-m", modes[m], opts[k].opt, opts[k].value, NULL};
            Result r = run(argv);
            char list[128], word[32];
            snprintf(list, sizeof list, " %s ", opts[k].modes);
            snprintf(word, sizeof word, " %s ", modes[m]);
            int applies = strstr(list, word) != NULL;
            int refused = strstr(r.err, "does not apply to -m") != NULL;
            ck_assert_msg(applies != refused, "%s with -m %s: exit %d, %s", opts[k].opt, modes[m], r.status, r.err);
            if (refused) assert_failure(&r, 2, opts[k].opt);
            result_free(&r);
        }
    FailCase twice[] = {
        {{"./raktn", SW8, "-m", "logits", "--ids", "1", "-o", TMP "/a.f32", "-o", TMP "/b.f32"}, 2, "-o is given twice"},
        {{"./raktn", SW8, "--ids", "1", "-n", "2", "-n", "3"}, 2, "-n is given twice"},
        {{"./raktn", SW8, "-i", "a", "--text", "b"}, 2, "given twice"},
    };
    assert_all_fail(twice, sizeof twice / sizeof twice[0]);
    ck_assert(!file_exists(TMP "/a.f32") && !file_exists(TMP "/b.f32"));
}
END_TEST

/* Generated ids, from -v's "generated ids: ..." line */
static char *generated_ids(const char *const argv[], char **seed_line) {
    Result r = run(argv);
    assert_success(&r);
    const char *g = strstr(r.err, "generated ids: "), *s = strstr(r.err, "seed: ");
    ck_assert_msg(g != NULL, "no generated ids: %s", r.err);
    char *ids = strndup(g, strcspn(g, "\n"));
    if (seed_line) *seed_line = s ? strndup(s + 6, strcspn(s + 6, "\n")) : NULL;
    result_free(&r);
    return ids;
}

/* -p is in (0, 1] (0 and what rounds to 0 are refused, not taken as "no
 * nucleus"); -s 0 is a seed like any other; without -s, -v prints the seed
 * the clock gave, and that seed given back repeats the run. */
START_TEST(test_top_p_and_seed) {
    FailCase cases[] = {
        {{"./raktn", SW8, "--ids", "1", "-p", "0"}, 2, "-p must be in (0, 1]"},
        {{"./raktn", SW8, "--ids", "1", "-p", "1e-400"}, 2, "-p must be in (0, 1]"},
        {{"./raktn", SW8, "--ids", "1", "-p", "1e-50"}, 2, "-p must be in (0, 1]"},
    };
    assert_all_fail(cases, sizeof cases / sizeof cases[0]);
    const char *a0[] = {"./raktn", SW8, "--ids", "1 5 9", "-n", "12", "-t", "1", "-p", "0.95", "-s", "0", "-v", NULL};
    char *x = generated_ids(a0, NULL), *y = generated_ids(a0, NULL);
    ck_assert_msg(!strcmp(x, y), "-s 0 twice: '%s' vs '%s'", x, y);
    const char *a1[] = {"./raktn", SW8, "--ids", "1 5 9", "-n", "12", "-t", "1", "-p", "0.95", "-s", "1", "-v", NULL};
    char *z = generated_ids(a1, NULL);
    ck_assert_msg(strcmp(x, z), "-s 0 and -s 1 gave the same ids: %s", x);
    const char *a2[] = {"./raktn", SW8, "--ids", "1 5 9", "-n", "12", "-t", "1", "-p", "0.95", "-v", NULL};
    char *seed, *w = generated_ids(a2, &seed);
    ck_assert_msg(seed != NULL, "-v printed no seed");
    const char *a3[] = {"./raktn", SW8, "--ids", "1 5 9", "-n", "12", "-t", "1", "-p", "0.95", "-s", seed, "-v", NULL};
    char *v = generated_ids(a3, NULL);
    ck_assert_msg(!strcmp(w, v), "the clock's seed %s given back: '%s' vs '%s'", seed, w, v);
    free(x), free(y), free(z), free(w), free(v), free(seed);
}
END_TEST

static void limit_memory(void *arg) {
    struct rlimit lim = {(rlim_t)(size_t)arg, (rlim_t)(size_t)arg};
    setrlimit(RLIMIT_AS, &lim);
}

/* Chat running out of memory while it reads a line (glibc's getline says
 * ENOMEM without the stream's error flag) is an error, not the end of the
 * conversation. The line: 300 MB of 'a' from a pipe, under 256 MB. */
START_TEST(test_chat_out_of_memory) {
#if defined(__SANITIZE_ADDRESS__)
    return; /* AddressSanitizer reserves terabytes of address space */
#endif
    int in[2];
    ck_assert(pipe(in) == 0);
    pid_t writer = fork();
    ck_assert(writer >= 0);
    if (writer == 0) {
        close(in[0]);
        static char block[1 << 16];
        memset(block, 'a', sizeof block);
        for (int i = 0; i < 300 * 16; i++)
            if (write(in[1], block, sizeof block) < 0) break;
        _exit(0);
    }
    close(in[1]);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0);
        int fe = open(TMP "/oom.err", O_WRONLY | O_CREAT | O_TRUNC, 0644), null = open("/dev/null", O_WRONLY);
        dup2(null, 1), dup2(fe, 2);
        limit_memory((void *)(size_t)(256 << 20));
        execl("./raktn", "./raktn", T48K, "-m", "chat", "-n", "2", "-T", "1", "-c", "16", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    int st;
    waitpid(pid, &st, 0);
    kill(writer, SIGKILL);
    waitpid(writer, NULL, 0);
    char *err = tu_read_file(TMP "/oom.err", NULL);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1 && err &&
                      strstr(err, "raktn: error: standard input: cannot read a line (Cannot allocate memory)"),
                  "status %d, stderr: %s", st, err);
    free(err);
}
END_TEST

static void limit_file_size(void *arg) {
    (void)arg;
    struct rlimit lim = {100 << 10, 100 << 10};
    setrlimit(RLIMIT_FSIZE, &lim);
    signal(SIGXFSZ, SIG_DFL); /* as a shell's ulimit -f leaves it */
}

/* A file-size limit (ulimit -f) is a write error like a full disk: exit 1
 * naming the file, no temporary left, the old file kept (it used to kill
 * raktn with SIGXFSZ and leave a 100 KB temporary). */
START_TEST(test_file_size_limit) {
    write_bytes(TMP "/keep.f32", "keep", 4);
    const char *argv[] = {"./raktn", T48K, "-m", "logits", "--ids", "1 5 9 11", "-o", TMP "/keep.f32", NULL};
    Result r = run_setup(NULL, 0, argv, limit_file_size, NULL);
    assert_failure(&r, 1, "keep.f32: write failed (File too large)");
    result_free(&r);
    assert_file_is(TMP "/keep.f32", "keep");
    ck_assert_int_eq(count_temporaries(), 0);
}
END_TEST

/* A reader that goes away (| head -1) ends raktn by SIGPIPE, as any Unix
 * tool, but no temporary is left: 300 positions, so that -o has written
 * its first chunk when the pipe breaks. */
START_TEST(test_sigpipe_removes_temporaries) {
    write_bytes(TMP "/keep.f32", "keep", 4);
    char ids[2000] = "1";
    for (int i = 0; i < 299; i++) strcat(ids, " 7");
    int out[2];
    ck_assert(pipe(out) == 0);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1), close(out[0]), close(out[1]);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 2);
        signal(SIGPIPE, SIG_DFL);
        execl("./raktn", "./raktn", SW8, "-m", "logits", "--ids", ids, "--top", "3", "-o", TMP "/keep.f32",
              (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char c;
    while (read(out[0], &c, 1) == 1 && c != '\n') {} /* head -1 */
    close(out[0]);
    int st;
    waitpid(pid, &st, 0);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGPIPE, "status %d", st);
    assert_file_is(TMP "/keep.f32", "keep");
    ck_assert_int_eq(count_temporaries(), 0);
}
END_TEST

/* A name of 250 and of 255 bytes (the usual limit): the temporary's name is
 * cut short to fit, the output lands under the name given. */
START_TEST(test_long_output_name) {
    for (int len = 250; len <= 255; len += 5) {
        char name[512] = TMP "/";
        size_t at = strlen(name);
        memset(name + at, 'x', (size_t)len - 4);
        strcpy(name + at + len - 4, ".f32");
        const char *argv[] = {"./raktn", SW8, "-m", "logits", "--ids", "1 2", "-o", name, NULL};
        Result r = run(argv);
        assert_success(&r);
        result_free(&r);
        ck_assert_int_eq(file_size(name), 2 * 512 * 4);
        unlink(name);
    }
    ck_assert_int_eq(count_temporaries(), 0);
}
END_TEST

/* A control character in a file name is written escaped: one line */
START_TEST(test_names_escaped) {
    const char *argv[] = {"./raktn", SW8, "-z", "bad\nname\x01", "-i", "hi", NULL};
    Result r = run(argv);
    assert_failure(&r, 1, "bad\\nname\\x01: cannot open");
    ck_assert_msg(strchr(r.err, '\n') == r.err + strlen(r.err) - 1, "more than one line: %s", r.err);
    result_free(&r);
}
END_TEST

/* Every output path is checked before the model computes anything (--top
 * prints nothing): empty names, --dump at a file or under a missing
 * folder, --hidden into a missing folder. */
START_TEST(test_paths_checked_before_computing) {
    write_bytes(TMP "/afile", "x", 1);
    FailCase cases[] = {
        {{"./raktn", SW8, "-m", "logits", "--ids", "1 2", "--top", "1", "-o", ""}, 2, "-o: the file name is empty"},
        {{"./raktn", SW8, "-m", "logits", "--ids", "1 2", "--top", "1", "--dump", ""}, 2, "the file name is empty"},
        {{"./raktn", "", "--ids", "1 2"}, 2, "the file name is empty"},
        {{"./raktn", SW8, "-m", "logits", "--ids", "1 2", "--top", "1", "--dump", TMP "/afile"}, 1, "wants a folder"},
        {{"./raktn", SW8, "-m", "logits", "--ids", "1 2", "--top", "1", "--dump", TMP "/no/parent/D"}, 1,
         "cannot create the folder"},
        {{"./raktn", SW8, "-m", "logits", "--ids", "1 2", "--top", "1", "--hidden", TMP "/nodir/h.f32"}, 1,
         "nodir/h.f32: cannot create a file there"},
        {{"./raktn", SW8, "-m", "logits", "--ids", "1 2", "--top", "1", "-o", TMP "/afile/x"}, 1,
         "cannot create a file there"},
    };
    assert_all_fail(cases, sizeof cases / sizeof cases[0]); /* (each: nothing on stdout) */
    ck_assert(!file_exists(TMP "/no"));
}
END_TEST

static void become_nobody(void *arg) {
    (void)arg;
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(126);
}

/* A replaced file keeps its mode (0600 stays 0600), and a file the user may
 * not write to (0444 of someone else) is refused, as the shell's > would
 * refuse it. As root the second part runs as nobody. */
START_TEST(test_replaced_file_keeps_mode) {
    write_bytes(TMP "/p600.f32", "a", 1);
    chmod(TMP "/p600.f32", 0600);
    const char *a1[] = {"./raktn", SW8, "-m", "logits", "--ids", "1 2", "-o", TMP "/p600.f32", NULL};
    Result r = run(a1);
    assert_success(&r);
    result_free(&r);
    struct stat st;
    ck_assert(stat(TMP "/p600.f32", &st) == 0 && st.st_size == 2 * 512 * 4);
    ck_assert_msg((st.st_mode & 07777) == 0600, "mode %o", st.st_mode & 07777);

    /* As root (CI) the run is nobody's, so raktn, the model and the folder
     * go where nobody can reach them whatever the checkout's permissions:
     * a folder of /tmp open to all */
    int root = geteuid() == 0;
    char dir[] = "/tmp/raktn-nobody-XXXXXX", bin[64], model[64], ro[64], file[80];
    ck_assert(mkdtemp(dir) != NULL);
    chmod(dir, 0755);
    snprintf(bin, sizeof bin, "%s/raktn", dir), snprintf(model, sizeof model, "%s/model.bin", dir);
    snprintf(ro, sizeof ro, "%s/ro", dir), snprintf(file, sizeof file, "%s/ro/r444.f32", dir);
    const char *copies[2][2] = {{"./raktn", bin}, {SW8, model}};
    for (int i = 0; i < 2; i++) {
        size_t len;
        char *data = tu_read_file(copies[i][0], &len);
        ck_assert(data);
        write_bytes(copies[i][1], data, len);
        free(data);
    }
    chmod(bin, 0755), chmod(model, 0644);
    mkdir(ro, 0777);
    chmod(ro, 0777); /* (whatever the umask) */
    write_bytes(file, "keep", 4);
    chmod(file, 0444);
    if (root) ck_assert(chown(file, 65534, 65534) == 0);
    const char *a2[] = {bin, model, "-m", "logits", "--ids", "1 2", "-o", file, NULL};
    r = run_setup(NULL, 0, a2, root ? become_nobody : NULL, NULL);
    assert_failure(&r, 1, "r444.f32: will not replace it (Permission denied)");
    result_free(&r);
    assert_file_is(file, "keep");
    unlink(file), rmdir(ro), unlink(bin), unlink(model), rmdir(dir);
}
END_TEST

/* A model of 600 layers (a few KB): --dump writes its 9,003 files (more
 * than the 8,192 raktn once allowed, refused only after computing). The
 * files are not fsync'ed here (tests/rename_shim.so): that part of writing
 * is the same for one file or thousands. */
START_TEST(test_many_dump_files) {
    /* dim 2, 600 layers, 1 head of 2, vocab 4, fp32, tied: notes/format.md */
    enum { L = 600 };
    size_t pad = 64, size = 256 + pad + (size_t)L * 9 * pad + pad;
    unsigned char *m = calloc(size, 1);
    ck_assert(m);
    uint32_t h[18] = {1, 0, 2, 2, L, 1, 1, 2, 4, 16, 0, (uint32_t)-1, (uint32_t)-1, 1};
    float theta = 10000, eps = 1e-5f;
    memcpy(m, "raktnMDL", 8);
    memcpy(m + 8, h, 14 * 4);
    memcpy(m + 64, &theta, 4), memcpy(m + 68, &eps, 4);
    uint64_t off = 256, fs = size;
    memcpy(m + 72, &off, 8), memcpy(m + 80, &fs, 8);
    for (size_t i = 256; i + 4 <= size; i += 64) { /* every tensor: small numbers */
        float v[4] = {0.5f, -0.25f, 0.125f, 1.0f};
        memcpy(m + i, v, sizeof v);
    }
    write_bytes(TMP "/deep.bin", m, size);
    free(m);
    ck_assert(system("rm -rf " TMP "/deepdump") == 0);
    const char *argv[] = {"./raktn", TMP "/deep.bin", "-m", "logits", "--ids", "1 2", "--dump", TMP "/deepdump", NULL};
    Result r = run_setup(NULL, 0, argv, preload_shim, "RAKTN_SHIM_NO_FSYNC"); /* fsync'ing 9,003 files: 30 s */
    assert_success(&r);
    result_free(&r);
    FILE *p = popen("ls " TMP "/deepdump | wc -l", "r");
    int n = 0;
    ck_assert(p && fscanf(p, "%d", &n) == 1);
    pclose(p);
    ck_assert_int_eq(n, 3 + 15 * L);
    ck_assert(system("rm -rf " TMP "/deepdump") == 0);
}
END_TEST

/* A tokenizer.bin whose every piece is an added token: the text is cut
 * at added tokens as before (the ids equal a plain longest-match over all
 * of them), and the cost does not grow with their number (it was text
 * length x added tokens: ~9 s for this text on a 2-core AMD EPYC, now ~0.1 s). */
START_TEST(test_many_added_tokens) {
    size_t len;
    unsigned char *t = (unsigned char *)tu_read_file(TOK, &len);
    ck_assert(t);
    uint32_t nv, nm, na;
    memcpy(&nv, t + 12, 4), memcpy(&nm, t + 16, 4), memcpy(&na, t + 20, 4);
    size_t off = 40;
    for (uint32_t i = 0; i < nv; i++) {
        uint32_t l;
        memcpy(&l, t + off, 4);
        off += 12 + l;
    }
    off += (size_t)nm * 16;
    ck_assert(off + (size_t)na * 8 == len);
    unsigned char *all = malloc(off + (size_t)nv * 8);
    memcpy(all, t, off);
    memcpy(all + 20, &nv, 4);
    for (uint32_t i = 0; i < nv; i++) {
        uint32_t rec[2] = {i, 0};
        memcpy(all + off + (size_t)i * 8, rec, 8);
    }
    write_bytes(TMP "/alladded.bin", all, off + (size_t)nv * 8);
    free(all), free(t);
    char err[256];
    Tokenizer *tk = tokenizer_load(TMP "/alladded.bin", err, sizeof err);
    ck_assert_msg(tk, "%s", err);
    const char *unit = "日本の首都は東京です。";
    size_t ulen = strlen(unit), n = 8000, tlen = ulen * n;
    char *text = malloc(tlen + 1);
    for (size_t i = 0; i < n; i++) memcpy(text + i * ulen, unit, ulen);
    text[tlen] = 0;
    double t0 = now_s();
    int *ids;
    size_t nids;
    ck_assert(tokenizer_encode(tk, text, tlen, 0, &ids, &nids) == 0);
    double dt = now_s() - t0;
    /* the reference, for the first repetition: at each point of the text,
     * the longest of all the pieces (every one an added token) */
    size_t at = 0;
    for (size_t k = 0; at < ulen; k++) {
        int best = -1;
        size_t bl = 0;
        for (int id = 0; id < tk->n_vocab; id++) {
            size_t l = tk->piece_len[id];
            if (l > bl && l <= tlen - at && memcmp(text + at, tk->piece[id], l) == 0) best = id, bl = l;
        }
        ck_assert_msg(best >= 0 && k < nids && ids[k] == best, "id %zu: %d, the longest added token there: %d", k,
                      k < nids ? ids[k] : -1, best);
        at += bl;
    }
    ck_assert_msg(dt < 2.0, "encoding %zu bytes took %.2f s", tlen, dt);
    free(ids), free(text);
    tokenizer_free(tk);
}
END_TEST

/* The threads a chat runs when it may use the first `ncpus` of our CPUs:
 * counted (Threads in /proc) once the first answer is out and it waits for
 * the second line. -1 if there are not that many. */
static int threads_when_pinned(int ncpus) {
    cpu_set_t mine, set;
    ck_assert(sched_getaffinity(0, sizeof mine, &mine) == 0);
    CPU_ZERO(&set);
    for (int cpu = 0, k = 0; cpu < CPU_SETSIZE && k < ncpus; cpu++)
        if (CPU_ISSET(cpu, &mine)) CPU_SET(cpu, &set), k++;
    if (CPU_COUNT(&set) < ncpus) return -1;
    int in[2], out[2];
    ck_assert(pipe(in) == 0 && pipe(out) == 0);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0), dup2(out[1], 1);
        close(in[1]), close(out[0]);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 2);
        sched_setaffinity(0, sizeof set, &set);
        execl("./raktn", "./raktn", T48K, "-m", "chat", "-n", "1", "-t", "0", (char *)NULL);
        _exit(127);
    }
    close(in[0]), close(out[1]);
    ck_assert(write(in[1], "hello\n", 6) == 6);
    char c;
    while (read(out[0], &c, 1) == 1 && c != '\n') {} /* the first answer */
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    int threads = 0;
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "Threads:", 8)) threads = atoi(line + 8);
    if (f) fclose(f);
    close(in[1]), close(out[0]);
    waitpid(pid, NULL, 0);
    return threads;
}

/* Threads at the process's CPUs: by default one per CPU it may run on (its
 * affinity, not the CPUs online), and far more threads than CPUs cost
 * little, never the machine (-T 256 on a tiny model: within 10x of -T 1;
 * it used to take minutes while every other program stalled). */
START_TEST(test_threads_and_cpus) {
    int one = threads_when_pinned(1), two = threads_when_pinned(2);
    ck_assert_msg(one == 1, "pinned to one CPU, raktn ran %d threads", one);
    ck_assert_msg(two == -1 || two == 2, "pinned to two CPUs, raktn ran %d threads", two);

    const char *t1[] = {"./raktn", SW8, "--ids", "1 5 9", "-n", "32", "-t", "0", "-T", "1", NULL};
    const char *tn[] = {"./raktn", SW8, "--ids", "1 5 9", "-n", "32", "-t", "0", "-T", "256", NULL};
    double a = now_s();
    Result r = run(t1);
    assert_success(&r);
    char *want = strdup(r.out);
    result_free(&r);
    double b = now_s();
    r = run(tn);
    double c = now_s();
    assert_success(&r);
    ck_assert_msg(!strcmp(r.out, want), "-T 256 changed the output");
    result_free(&r);
    free(want);
    ck_assert_msg(c - b < 10 * (b - a) + 2.0, "-T 1: %.2f s, -T 256: %.2f s", b - a, c - b);
}
END_TEST

/* raktn built with -ffast-math keeps its checks of numbers: a NaN
 * temperature or top-p, a header whose rope_theta is NaN (the compiler may
 * assume isfinite() is always true; raktn reads the bits). */
START_TEST(test_fast_math_keeps_checks) {
    FailCase cases[] = {
        {{"tests/raktn-fast-math", SW8, "--ids", "1", "-t", "nan"}, 2, "-t wants a number"},
        {{"tests/raktn-fast-math", SW8, "--ids", "1", "-p", "nan"}, 2, "-p wants a number"},
        {{"tests/raktn-fast-math", SW8, "--ids", "1", "-t", "inf"}, 2, "-t wants a number"},
    };
    assert_all_fail(cases, sizeof cases / sizeof cases[0]);
    size_t len;
    char *m = tu_read_file(SW8, &len);
    ck_assert(m);
    memcpy(m + 64, "\x00\x00\xc0\x7f", 4); /* rope_theta = NaN */
    write_bytes(TMP "/nantheta.bin", m, len);
    memcpy(m + 64, "\x00\x40\x1c\x46", 4); /* 10000 back; rms_norm_eps = NaN */
    memcpy(m + 68, "\x00\x00\xc0\x7f", 4);
    write_bytes(TMP "/naneps.bin", m, len);
    free(m);
    FailCase headers[] = {
        {{"tests/raktn-fast-math", TMP "/nantheta.bin", "--ids", "1"}, 1, "rope_theta is not a positive number"},
        {{"tests/raktn-fast-math", TMP "/naneps.bin", "--ids", "1"}, 1, "rms_norm_eps is not in (0, 1)"},
        {{"./raktn", TMP "/nantheta.bin", "--ids", "1"}, 1, "rope_theta is not a positive number"},
    };
    assert_all_fail(headers, sizeof headers / sizeof headers[0]);
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
    tcase_add_test(tc, test_one_file_two_names);
    tcase_add_test(tc, test_prompt_file_not_an_output);
    tcase_add_test(tc, test_failed_stdout_keeps_outputs);
    tcase_add_test(tc, test_signal_during_renames);
    tcase_add_test(tc, test_options_per_mode);
    tcase_add_test(tc, test_top_p_and_seed);
    tcase_add_test(tc, test_chat_out_of_memory);
    tcase_add_test(tc, test_file_size_limit);
    tcase_add_test(tc, test_sigpipe_removes_temporaries);
    tcase_add_test(tc, test_long_output_name);
    tcase_add_test(tc, test_names_escaped);
    tcase_add_test(tc, test_paths_checked_before_computing);
    tcase_add_test(tc, test_replaced_file_keeps_mode);
    tcase_add_test(tc, test_many_dump_files);
    tcase_add_test(tc, test_many_added_tokens);
    tcase_add_test(tc, test_threads_and_cpus);
    tcase_add_test(tc, test_fast_math_keeps_checks);
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
