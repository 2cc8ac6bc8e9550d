"""Tests of export/compare.py on crafted inputs with known answers.

Run from the repository root:  python3 -m unittest tests/test_compare.py
Standard library only; when numpy is importable both code paths are tested.
"""
import contextlib
import io
import math
import os
import random
import struct
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "export"))
import compare  # noqa: E402

NUMPY = compare.np
BACKENDS = [("stdlib", None)] + ([("numpy", NUMPY)] if NUMPY is not None else [])


def write_f32(path, values):
    with open(path, "wb") as f:
        f.write(struct.pack(f"<{len(values)}f", *values))


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


class Base(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.addCleanup(setattr, compare, "np", NUMPY)

    def path(self, name, values=None):
        p = os.path.join(self.tmp.name, name)
        if values is not None:
            write_f32(p, values)
        return p

    def run_main(self, *args):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = compare.main(list(args))
        return rc, out.getvalue(), err.getvalue()


def logits_rows(n, vocab, seed):
    """n rows with a clear argmax (gap >= 1) at a known place, values exact in f32."""
    r = random.Random(seed)
    rows, top = [], []
    for p in range(n):
        row = [f32(r.uniform(-3, 3)) for _ in range(vocab)]
        t = r.randrange(vocab)
        row[t] = f32(5.0 + p)
        rows.append(row)
        top.append(t)
    return rows, top


class TestLogits(Base):
    N, V = 4, 300

    def make(self):
        rows, top = logits_rows(self.N, self.V, 7)
        return rows, top

    def test_identical(self):
        rows, top = self.make()
        flat = [x for r in rows for x in r]
        a, b = self.path("a.f32", flat), self.path("b.f32", flat)
        for name, mod in BACKENDS:
            with self.subTest(backend=name):
                compare.np = mod
                rc, out, err = self.run_main(a, b, "--vocab", str(self.V))
                self.assertEqual(rc, 0, out + err)
                self.assertIn("PASS", out)
                ok, s = compare.compare_logits(compare.read_f32(a), compare.read_f32(b), self.V,
                                               1e-4, None, 1.0, out=io.StringIO())
                self.assertTrue(ok)
                self.assertEqual(s["max_abs"], 0.0)
                self.assertEqual(s["mean_abs"], 0.0)
                self.assertEqual(s["argmax_agree"], self.N)
                self.assertEqual(s["min_top5"], 5)
                self.assertAlmostEqual(s["max_kl"], 0.0, delta=1e-12)

    def test_small_noise_passes(self):
        rows, top = self.make()
        r = random.Random(1)
        flat = [x for row in rows for x in row]
        noisy = [f32(x + r.choice((-1, 1)) * 2.0 ** -17) for x in flat]  # |d| ~ 7.6e-6
        a, b = self.path("a.f32", flat), self.path("b.f32", noisy)
        for name, mod in BACKENDS:
            with self.subTest(backend=name):
                compare.np = mod
                ok, s = compare.compare_logits(compare.read_f32(a), compare.read_f32(b), self.V,
                                               1e-4, None, 1.0, out=io.StringIO())
                self.assertTrue(ok)
                self.assertLess(s["max_abs"], 1e-5)
                self.assertGreater(s["max_abs"], 5e-6)
                self.assertEqual(s["argmax_agree"], self.N)
                self.assertLess(s["max_kl"], 1e-9)
                # a tolerance tighter than the noise fails
                rc, out, _ = self.run_main(a, b, "--vocab", str(self.V), "--tol-max", "1e-6")
                self.assertEqual(rc, 1)
                self.assertIn("FAIL", out)

    def test_swapped_argmax(self):
        rows, top = self.make()
        # position 2: a runner-up 0.5 below the top; the output lowers the top by
        # 0.3 and raises the runner-up by 0.3, so its argmax moves while
        # max|d| = 0.3 stays below a 0.4 tolerance: only the argmax check fails.
        other = (top[2] + 1) % self.V
        rows[2][other] = f32(rows[2][top[2]] - 0.5)
        flat = [x for row in rows for x in row]
        changed = [list(r) for r in rows]
        changed[2][top[2]] = f32(rows[2][top[2]] - 0.25)
        changed[2][other] = f32(rows[2][other] + 0.25 + 0.0625)
        a = self.path("a.f32", flat)
        b = self.path("b.f32", [x for row in changed for x in row])
        for name, mod in BACKENDS:
            with self.subTest(backend=name):
                compare.np = mod
                rc, out, _ = self.run_main(a, b, "--vocab", str(self.V), "--tol-max", "0.4")
                self.assertEqual(rc, 1)
                self.assertIn("FAIL: argmax agrees at 3/4 positions", out)
                self.assertIn("first mismatch at position 2", out)
                ok, s = compare.compare_logits(compare.read_f32(a), compare.read_f32(b), self.V,
                                               0.4, None, 1.0, out=io.StringIO())
                self.assertFalse(ok)
                self.assertEqual(s["max_abs"], 0.3125)
                self.assertEqual(s["worst_position"], 2)
                self.assertEqual(s["argmax_agree"], self.N - 1)
                self.assertEqual(s["argmax_ties"], 0)
                self.assertEqual(s["min_top5"], 5)  # same set, different order
                self.assertGreater(s["max_kl"], 0.0)
                # the default fp32 tolerance fails on max|d| as well
                rc, out, _ = self.run_main(a, b, "--vocab", str(self.V))
                self.assertEqual(rc, 1)
                self.assertIn("max|d| 3.125e-01 > 0.0001 (position 2)", out)
                # a looser argmax requirement accepts 3/4
                rc, out, _ = self.run_main(a, b, "--vocab", str(self.V), "--tol-max", "0.4", "--min-argmax", "0.75")
                self.assertEqual(rc, 0, out)

    def test_near_tie_is_not_a_mismatch(self):
        rows, top = self.make()
        other = (top[1] + 3) % self.V
        rows[1][other] = f32(rows[1][top[1]] - 2.0 ** -16)  # 1.5e-5 below the top
        flat = [x for row in rows for x in row]
        out_rows = [list(r) for r in rows]
        out_rows[1][other] = f32(rows[1][top[1]] + 2.0 ** -16)  # the output prefers it
        a = self.path("a.f32", flat)
        b = self.path("b.f32", [x for row in out_rows for x in row])
        rc, out, _ = self.run_main(a, b, "--vocab", str(self.V))
        self.assertEqual(rc, 0, out)
        self.assertIn("+1 ties", out)

    def test_kl_known_value(self):
        # P = softmax(0, 0) = (1/2, 1/2), Q = softmax(ln 3, 0) = (3/4, 1/4)
        # KL(P||Q) = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3)
        a = self.path("a.f32", [0.0, 0.0])
        b = self.path("b.f32", [math.log(3.0), 0.0])
        for name, mod in BACKENDS:
            with self.subTest(backend=name):
                compare.np = mod
                _, s = compare.compare_logits(compare.read_f32(a), compare.read_f32(b), 2,
                                              10.0, None, 0.0, out=io.StringIO())
                self.assertAlmostEqual(s["max_kl"], 0.5 * math.log(4 / 3), places=6)
                self.assertAlmostEqual(s["max_abs"], math.log(3.0), places=6)
                self.assertAlmostEqual(s["mean_abs"], math.log(3.0) / 2, places=6)

    def test_kl_tolerance(self):
        a = self.path("a.f32", [0.0, 0.0])
        b = self.path("b.f32", [math.log(3.0), 0.0])
        rc, out, _ = self.run_main(a, b, "--vocab", "2", "--tol-max", "10", "--min-argmax", "0",
                                   "--tol-kl", "0.1")
        self.assertEqual(rc, 1)
        self.assertIn("max KL", out)

    def test_nan_fails(self):
        rows, _ = self.make()
        flat = [x for row in rows for x in row]
        bad = list(flat)
        bad[5] = float("nan")
        a, b = self.path("a.f32", flat), self.path("b.f32", bad)
        for name, mod in BACKENDS:
            with self.subTest(backend=name):
                compare.np = mod
                rc, out, _ = self.run_main(a, b, "--vocab", str(self.V))
                self.assertEqual(rc, 1)
                self.assertIn("max|d| inf", out)

    def test_meta_sibling_gives_vocab(self):
        rows, _ = self.make()
        flat = [x for row in rows for x in row]
        a = self.path("ref.logits.f32", flat)
        b = self.path("out.f32", flat)
        with open(self.path("ref.json"), "w") as f:
            f.write('{"logits_shape": [%d, %d]}' % (self.N, self.V))
        rc, out, err = self.run_main(a, b)
        self.assertEqual(rc, 0, out + err)
        with open(self.path("ref.json"), "w") as f:
            f.write('{"logits_shape": [%d, %d]}' % (self.N + 1, self.V))
        rc, _, err = self.run_main(a, b)
        self.assertEqual(rc, 2)
        self.assertIn("logits_shape", err)


class TestHidden(Base):
    L, T, H = 3, 5, 8  # 4 entries

    def test_identical_and_diverging_layer(self):
        r = random.Random(3)
        n = (self.L + 1) * self.T * self.H
        ref = [f32(r.gauss(0, 1)) for _ in range(n)]
        got = list(ref)
        # entry 2 (= output of layer 1), position 3, dim 4 parts by 1e-3; later entries by more
        idx = lambda e, p, d: (e * self.T + p) * self.H + d  # noqa: E731
        got[idx(2, 3, 4)] = f32(got[idx(2, 3, 4)] + 1e-3)
        got[idx(2, 4, 0)] = f32(got[idx(2, 4, 0)] + 5e-4)
        for p in range(self.T):
            got[idx(3, p, 1)] = f32(got[idx(3, p, 1)] + 1e-2)
        a, b, c = self.path("a.f32", ref), self.path("b.f32", ref), self.path("c.f32", got)
        for name, mod in BACKENDS:
            with self.subTest(backend=name):
                compare.np = mod
                rc, out, err = self.run_main(a, b, "--hidden", "--layers", str(self.L), "--tokens", str(self.T))
                self.assertEqual(rc, 0, out + err)
                self.assertIn("PASS", out)
                rc, out, _ = self.run_main(a, c, "--hidden", "--layers", str(self.L), "--tokens", str(self.T))
                self.assertEqual(rc, 1)
                self.assertIn("first divergence at entry 2 (layer 1), position 3, dim 4", out)
                ok, s = compare.compare_hidden(compare.read_f32(a), compare.read_f32(c), self.L + 1, self.T,
                                               1e-4, out=io.StringIO())
                self.assertFalse(ok)
                self.assertEqual((s["first_entry"], s["first_position"]), (2, 3))
                t = s["table"]
                self.assertEqual([row["max_abs"] == 0 for row in t], [True, True, False, False])
                self.assertAlmostEqual(t[2]["max_abs"], 1e-3, delta=1e-6)
                self.assertAlmostEqual(t[3]["max_abs"], 1e-2, delta=1e-5)
                self.assertEqual(t[3]["what"], "final norm")
                # a tolerance above the layer-1 error moves the first divergence to the last entry
                rc, out, _ = self.run_main(a, c, "--hidden", "--layers", str(self.L), "--tokens", str(self.T),
                                           "--tol-max", "2e-3")
                self.assertEqual(rc, 1)
                self.assertIn("entry 3 (final norm), position 0, dim 1", out)

    def test_hidden_shape_mismatch(self):
        a = self.path("a.f32", [0.0] * 30)
        rc, _, err = self.run_main(a, a, "--hidden", "--layers", "3", "--tokens", "4")
        self.assertEqual(rc, 2)
        self.assertIn("not a multiple", err)


class TestUsage(Base):
    def test_errors_exit_2_one_line(self):
        good = self.path("g.f32", [0.0] * 12)
        other = self.path("o.f32", [0.0] * 8)
        odd = self.path("odd.f32")
        with open(odd, "wb") as f:
            f.write(b"\0" * 10)
        cases = [
            ([good, os.path.join(self.tmp.name, "missing.f32"), "--vocab", "4"], "No such file"),
            ([good, odd, "--vocab", "4"], "not a multiple of 4"),
            ([good, other, "--vocab", "4"], "sizes differ"),
            ([good, good, "--vocab", "5"], "not a multiple of vocab 5"),
            ([good, good], "--vocab"),
            ([good, good, "--vocab", "x"], "invalid int"),
            ([good, good, "--vocab", "4", "--min-argmax", "2"], "--min-argmax"),
            ([good], "required"),
        ]
        for args, msg in cases:
            with self.subTest(args=args):
                rc, out, err = self.run_main(*args)
                self.assertEqual(rc, 2)
                self.assertIn(msg, err)
                self.assertEqual(len(err.strip().splitlines()), 1, err)
                self.assertTrue(err.startswith("compare.py: error:"), err)


if __name__ == "__main__":
    unittest.main()
