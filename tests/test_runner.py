"""tests/test_runner.py - the test runner (tests/run.sh) itself.

`make test` is only as strict as tests/run.sh: a failing test must make it
exit non-zero, or CI passes a broken build (issue 17). Here, in a scratch
folder, run.sh runs Check programs that pass, fail, crash inside a test, die
before their summary, print no summary, or exit non-zero after a clean one,
and Python unittest files that pass, fail, raise, do not import or hold no
test; each run must end with the right "tests: N passed, M failed" line and
exit status (0 only when everything passed).

One small Check program plays every part, chosen by the name it is run
under, so it is compiled once. run.sh is given the Python files through
TEST_PY, so it never picks up the repository's own tests/test_*.py (this
file included): no recursion.
"""
import os
import shlex
import shutil
import subprocess
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_SH = os.path.join(ROOT, "tests", "run.sh")

CHECK_PROGRAM = r"""
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *role;
START_TEST(test_ok) { ck_assert_int_eq(1 + 1, 2); }
END_TEST
START_TEST(test_wrong) { ck_assert_msg(strcmp(role, "fail") != 0, "deliberate failure"); }
END_TEST
START_TEST(test_segv) { if (!strcmp(role, "segv_in_test")) raise(SIGSEGV); }
END_TEST

int main(int argc, char **argv) {
    (void)argc;
    role = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    if (!strcmp(role, "silent")) return 0;                 /* exit 0, no summary */
    if (!strcmp(role, "crash")) { puts("starting"); fflush(stdout); raise(SIGSEGV); }
    Suite *s = suite_create("runner");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_ok);
    tcase_add_test(tc, test_wrong);
    tcase_add_test(tc, test_segv);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (!strcmp(role, "exit3")) return 3;                  /* clean summary, then a bad exit */
    if (!strcmp(role, "die_after_summary")) { fflush(stdout); raise(SIGABRT); }
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
"""

PY_FILES = {
    "test_pypass.py": "import unittest\n"
                      "class T(unittest.TestCase):\n"
                      "    def test_a(self): self.assertEqual(1, 1)\n"
                      "    def test_b(self): self.assertTrue(True)\n",
    "test_pyfail.py": "import unittest\n"
                      "class T(unittest.TestCase):\n"
                      "    def test_a(self): self.assertEqual(1, 1)\n"
                      "    def test_b(self): self.assertEqual(1, 2, 'deliberate failure')\n",
    "test_pyerror.py": "import unittest\n"
                       "class T(unittest.TestCase):\n"
                       "    def test_a(self): raise RuntimeError('deliberate error')\n"
                       "    def test_b(self): self.fail('deliberate failure')\n"
                       "    def test_c(self): pass\n",
    "test_pysyntax.py": "import unittest\n"
                        "def broken(:\n",
    "test_pyempty.py": "import unittest\n",
    "test_pyexit.py": "import os, unittest\n"
                      "class T(unittest.TestCase):\n"
                      "    def test_a(self): os._exit(0)\n",
}

ROLES = ["pass", "fail", "segv_in_test", "crash", "silent", "exit3", "die_after_summary"]


def check_flags():
    try:
        out = subprocess.run(["pkg-config", "--cflags", "--libs", "check"], capture_output=True, text=True,
                             check=True).stdout
        return shlex.split(out)
    except (OSError, subprocess.CalledProcessError):
        return ["-lcheck", "-lsubunit", "-lrt", "-lm", "-pthread"]


class RunnerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="raktn-runner-")
        src = os.path.join(cls.tmp, "prog.c")
        with open(src, "w") as f:
            f.write(CHECK_PROGRAM)
        cc = os.environ.get("CC", "cc")
        exe = os.path.join(cls.tmp, "prog")
        r = subprocess.run([cc, "-O0", "-o", exe, src] + check_flags(), capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("cannot build the Check test program:\n" + r.stderr)
        os.mkdir(os.path.join(cls.tmp, "t"))
        for role in ROLES:
            os.link(exe, os.path.join(cls.tmp, "t", role))
        os.mkdir(os.path.join(cls.tmp, "tests"))
        for name, text in PY_FILES.items():
            with open(os.path.join(cls.tmp, "tests", name), "w") as f:
                f.write(text)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_sh(self, programs, py):
        """run.sh on Check programs t/NAME and Python files tests/NAME.py;
        returns (exit status, (passed, failed) from the last line, output)"""
        env = dict(os.environ, TEST_PY=" ".join("tests/%s.py" % p for p in py))
        r = subprocess.run(["sh", RUN_SH] + ["t/" + p for p in programs], cwd=self.tmp, env=env,
                           capture_output=True, text=True, timeout=120)
        last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
        parts = last.replace(",", "").split()
        self.assertEqual(parts[:1] + parts[2:3] + parts[4:5], ["tests:", "passed", "failed"],
                         "no summary line:\n" + r.stdout + r.stderr)
        return r.returncode, (int(parts[1]), int(parts[3])), r.stdout

    def expect(self, programs, py, passed, failed):
        rc, counts, out = self.run_sh(programs, py)
        self.assertEqual(counts, (passed, failed), out)
        if failed:
            self.assertNotEqual(rc, 0, "a failing run exited 0:\n" + out)
        else:
            self.assertEqual(rc, 0, out)

    # Check programs: "pass" runs 3 checks that pass (test_wrong and test_segv
    # do nothing under that name); "fail" one deliberate failure; a signal in
    # a forked test is an error in the summary.
    def test_all_pass_exits_0(self):
        self.expect(["pass", "pass"], ["test_pypass"], 3 + 3 + 2, 0)

    def test_check_failure(self):
        self.expect(["fail"], [], 2, 1)

    def test_check_failure_among_passes(self):
        self.expect(["pass", "fail", "pass"], ["test_pypass"], 3 + 2 + 3 + 2, 1)

    def test_signal_inside_a_test(self):
        self.expect(["segv_in_test"], [], 2, 1)

    def test_crash_before_the_summary(self):
        self.expect(["crash", "pass"], [], 3, 1)

    def test_no_summary_exit_0(self):
        self.expect(["silent"], [], 0, 1)

    def test_missing_program(self):
        self.expect(["no_such_program"], [], 0, 1)

    def test_bad_exit_after_clean_summary(self):
        self.expect(["exit3"], [], 3, 1)
        self.expect(["die_after_summary"], [], 3, 1)

    # Python unittest files
    def test_unittest_failure(self):
        self.expect([], ["test_pyfail"], 1, 1)

    def test_unittest_failure_and_error(self):
        self.expect([], ["test_pyerror"], 1, 2)

    def test_unittest_import_error(self):
        self.expect([], ["test_pysyntax"], 0, 1)

    def test_unittest_no_tests(self):
        self.expect([], ["test_pyempty"], 0, 1)

    def test_unittest_dies(self):
        self.expect([], ["test_pyexit"], 0, 1)

    def test_mixed_failures_add_up(self):
        self.expect(["pass", "fail", "crash"], ["test_pypass", "test_pyfail", "test_pyerror"],
                    3 + 2 + 0 + 2 + 1 + 1, 1 + 1 + 1 + 2)


if __name__ == "__main__":
    unittest.main()
