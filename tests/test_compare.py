"""Tests of export/compare.py on crafted inputs with known answers.

Run from the repository root:  python3 -m unittest tests/test_compare.py
Standard library only; when numpy is importable both code paths are tested.
The .npy files are written here by a small stdlib writer (write_npy), and
tests/fixtures/dump-sw8 is a real module dump from transformers.
"""
import contextlib
import io
import json
import math
import os
import random
import shutil
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


def write_npy(path, shape, values, descr="<f4", version=1, fortran=False):
    """NumPy .npy by hand: magic, version, header length, a dict literal padded to 64."""
    shp = "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"
    hdr = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shp)
    pre = 10 if version == 1 else 12
    hdr += " " * (-(pre + len(hdr) + 1) % 64) + "\n"
    code = {"<f4": "<%df", "<f8": "<%dd"}.get(descr)
    data = struct.pack(code % len(values), *values) if code else bytes(4 * len(values))
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY" + bytes([version, 0]))
        f.write(struct.pack("<H" if version == 1 else "<I", len(hdr)))
        f.write(hdr.encode("latin1") + data)


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
                self.assertIn("FAIL: first position 2: argmax", out)
                self.assertIn("argmax agrees at 3/4 positions", out)
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
                self.assertIn("FAIL: first position 2: max|d| 3.125e-01 > 0.0001", out)
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



def gauss_rows(rows, width, seed, scale=1.0):
    r = random.Random(seed)
    return [f32(r.gauss(0, scale)) for _ in range(rows * width)]


def rms(v):
    return math.sqrt(math.fsum(x * x for x in v) / len(v))


class TestPresets(Base):
    """The presets measured with llama.cpp (notes/verification.md, "Presets")."""

    def test_values(self):
        P = compare.PRESETS
        self.assertEqual(P["fp32"], {"tol_max": 1e-4, "tol_kl": None, "min_argmax": 1.0, "tol_rel": 2e-4,
                                     "tol_local": 1e-4})
        self.assertEqual(P["f16kv"], {"tol_max": 1e-2, "tol_kl": 2e-6, "min_argmax": 1.0, "tol_rel": 2e-2,
                                      "tol_local": 1e-4})
        self.assertEqual(P["bf16"], {"tol_max": 0.25, "tol_kl": 1e-3, "min_argmax": 0.85, "tol_rel": 0.4,
                                     "tol_local": 1e-4})
        self.assertEqual(P["q8"], {"tol_max": 1.6, "tol_kl": 6e-2, "min_argmax": 0.6, "tol_rel": 2.5,
                                   "tol_local": 1e-4})
        self.assertEqual(P["q4_k"], {"tol_max": 0.6, "tol_kl": 6e-3, "min_argmax": 0.85, "tol_rel": 1.0,
                                     "tol_local": 1e-4})
        self.assertEqual(compare.TIE_MARGIN, 1e-3)

    def test_ladder(self):
        # REF: 4 rows of 300 zeros with a top logit 5 (p = 1/(299 + e^5)
        # elsewhere); OUT adds d to one other logit of every row, so max|d| = d,
        # the argmax stays and KL = -p d + ln(1 - p + p e^d) is small (1.6e-3
        # at d = 1, 7.2e-3 at d = 1.8): each preset's max|d| decides.
        N, V = 4, 300
        ref = [[0.0] * V for _ in range(N)]
        for r in range(N):
            ref[r][(37 * r) % V] = 5.0
        a = self.path("ref.f32", [x for row in ref for x in row])
        # (KL: 1.6e-3 at d = 1 fails q4_k's 6e-3? no: 1.6e-3 passes; max|d| 1 > 0.6 fails it)
        expect = {0.005: {"f16kv", "bf16", "q8", "q4_k"}, 0.25: {"bf16", "q8", "q4_k"},
                  0.5: {"q8", "q4_k"}, 1.0: {"q8"}, 2.5: set()}
        for d, passing in expect.items():
            out = [list(row) for row in ref]
            for r in range(N):
                out[r][(37 * r + 1) % V] = f32(d)
            b = self.path(f"out{d}.f32", [x for row in out for x in row])
            for name, mod in BACKENDS:
                compare.np = mod
                for preset in ("fp32", "f16kv", "bf16", "q8", "q4_k"):
                    with self.subTest(d=d, backend=name, preset=preset):
                        rc, out_text, _ = self.run_main(a, b, "--vocab", str(V), "--preset", preset)
                        self.assertEqual(rc, 0 if preset in passing else 1, out_text)
                        if preset not in passing:
                            self.assertIn("max|d|", out_text.splitlines()[-1])


class TestHidden(Base):
    L, T, H = 3, 5, 8  # 4 entries: embeddings, layer 0, layer 1, final norm

    def idx(self, e, p, d):
        return (e * self.T + p) * self.H + d

    def test_identical_and_diverging_layer(self):
        ref = gauss_rows((self.L + 1) * self.T, self.H, 3)
        got = list(ref)
        # entry 2 (= output of layer 1), position 3: one element moved by 1e-3 x the row's RMS;
        # entry 2 position 4 by 5e-4 x RMS; the final norm everywhere by 1e-2 x RMS
        row = lambda e, p: ref[self.idx(e, p, 0):self.idx(e, p, self.H)]  # noqa: E731
        got[self.idx(2, 3, 4)] = f32(got[self.idx(2, 3, 4)] + 1e-3 * rms(row(2, 3)))
        got[self.idx(2, 4, 0)] = f32(got[self.idx(2, 4, 0)] + 5e-4 * rms(row(2, 4)))
        for p in range(self.T):
            got[self.idx(3, p, 1)] = f32(got[self.idx(3, p, 1)] + 1e-2 * rms(row(3, p)))
        a, b, c = self.path("a.f32", ref), self.path("b.f32", ref), self.path("c.f32", got)
        args = ("--hidden", "--layers", str(self.L), "--tokens", str(self.T))
        for name, mod in BACKENDS:
            with self.subTest(backend=name):
                compare.np = mod
                rc, out, err = self.run_main(a, b, *args)
                self.assertEqual(rc, 0, out + err)
                self.assertIn("PASS", out)
                rc, out, _ = self.run_main(a, c, *args)
                self.assertEqual(rc, 1)
                self.assertIn("FAIL: first layer 1, position 3, dim 4: rel 1.000e-03 > 0.0002; "
                              "worst final norm, position ", out)
                self.assertIn(", dim 1: rel 1.000e-02 > 0.0002 (2/4 entries", out)
                tol = compare.Tol(1e-4, None, 1.0, 2e-4)
                ok, items = compare.compare_hidden(compare.read_f32(a), compare.read_f32(c), self.L + 1, self.T,
                                                   tol, out=io.StringIO())
                self.assertFalse(ok)
                self.assertEqual([it["what"] for it in items], ["embeddings", "layer 0", "layer 1", "final norm"])
                self.assertEqual([it["layer"] for it in items], [None, 0, 1, None])
                self.assertEqual([it["first"] is None for it in items], [True, True, False, False])
                self.assertAlmostEqual(items[2]["value"], 1e-3, delta=1e-6)
                self.assertEqual(items[2]["first"]["position"], 3)
                self.assertAlmostEqual(items[3]["value"], 1e-2, delta=1e-5)
                # a tolerance above the layer-1 error moves the first divergence to the final norm
                rc, out, _ = self.run_main(a, c, *args, "--tol-rel", "2e-3")
                self.assertEqual(rc, 1)
                self.assertIn("FAIL: first final norm, position 0, dim 1", out)
                rc, out, _ = self.run_main(a, c, *args, "--tol-rel", "2e-2")
                self.assertEqual(rc, 0, out)

    def test_relative_not_absolute(self):
        # a big residual stream (RMS 100) with 1e-5-relative noise passes although |d| ~ 1e-3;
        # a small vector (RMS 0.01) with a 1e-3-relative fault fails although |d| ~ 1e-5
        T, H = 4, 64
        big = gauss_rows(T, H, 5, 100.0)
        small = gauss_rows(T, H, 6, 0.01)
        ref = big + small  # entries: embeddings = big, final norm = small
        r = random.Random(7)
        got = [f32(x * (1 + r.choice((-1, 1)) * 1e-5)) for x in big] + list(small)
        j = 2 * H + 5  # position 2 of the small entry
        got[len(big) + j] = f32(small[j] + 1e-3 * rms(small[2 * H:3 * H]))
        a, b = self.path("a.f32", ref), self.path("b.f32", got)
        for name, mod in BACKENDS:
            with self.subTest(backend=name):
                compare.np = mod
                rc, out, _ = self.run_main(a, b, "--hidden", "--layers", "1", "--tokens", str(T), "--json")
                self.assertEqual(rc, 1)
                res = json.loads(out)
                emb, fin = res["items"]
                self.assertGreater(emb["max_abs"], 1e-4)   # an absolute 1e-4 would cry wolf here
                self.assertTrue(emb["pass"])
                self.assertLess(fin["max_abs"], 1e-4)      # ... and miss this
                self.assertFalse(fin["pass"])
                self.assertEqual((res["first"]["name"], res["first"]["position"], res["first"]["dim"]),
                                 ("final norm", 2, 5))

    def test_tol_max_is_for_logits(self):
        a = self.path("a.f32", [1.0] * 16)
        rc, _, err = self.run_main(a, a, "--hidden", "--layers", "1", "--tokens", "2", "--tol-max", "1")
        self.assertEqual(rc, 2)
        self.assertIn("--tol-rel", err)

    def test_every_preset_has_a_measured_tol_rel(self):
        a = self.path("a.f32", [1.0] * 16)
        for preset in ("f16kv", "bf16", "q8", "q4_k"):
            with self.subTest(preset=preset):
                rc, out, err = self.run_main(a, a, "--hidden", "--layers", "1", "--tokens", "2",
                                             "--preset", preset)
                self.assertEqual(rc, 0, out + err)
                self.assertIn(f"tol-rel {compare.PRESETS[preset]['tol_rel']:g}", out)

    def test_hidden_shape_mismatch(self):
        a = self.path("a.f32", [0.0] * 30)
        rc, _, err = self.run_main(a, a, "--hidden", "--layers", "3", "--tokens", "4")
        self.assertEqual(rc, 2)
        self.assertIn("not a multiple", err)


class TestNpy(Base):
    def test_read_versions_and_dtypes(self):
        vals = [0.5, -1.25, 3.0, 1e-3, 7.0, -2.0]
        for version in (1, 2):
            for descr in ("<f4", "<f8"):
                p = self.path(f"x{version}{descr[1:]}.npy")
                write_npy(p, (2, 3), vals, descr=descr, version=version)
                for name, mod in BACKENDS:
                    with self.subTest(version=version, descr=descr, backend=name):
                        compare.np = mod
                        data, shape = compare.read_npy(p)
                        self.assertEqual(shape, (2, 3))
                        self.assertEqual([float(x) for x in data], [f32(v) if descr == "<f4" else v for v in vals])

    def test_f8_precision_kept(self):
        p = self.path("x.npy")
        write_npy(p, (1, 2), [1.0 + 2 ** -40, 1.0], descr="<f8")
        for name, mod in BACKENDS:
            with self.subTest(backend=name):
                compare.np = mod
                data, _ = compare.read_npy(p)
                self.assertEqual(float(data[0]) - float(data[1]), 2 ** -40)

    def test_bad_files_exit_2(self):
        good = self.path("good.npy")
        write_npy(good, (2, 2), [1.0, 2.0, 3.0, 4.0])
        cases = {
            "be.npy": (dict(descr=">f4"), "not supported"),
            "int.npy": (dict(descr="<i4"), "not supported"),
            "fortran.npy": (dict(fortran=True), "Fortran"),
        }
        for fn, (kw, msg) in cases.items():
            p = self.path(fn)
            write_npy(p, (2, 2), [1.0, 2.0, 3.0, 4.0], **kw)
            with self.subTest(fn=fn):
                rc, _, err = self.run_main(good, p)
                self.assertEqual(rc, 2)
                self.assertIn(msg, err)
                self.assertEqual(len(err.strip().splitlines()), 1, err)
        trunc = self.path("trunc.npy")
        with open(good, "rb") as f:
            raw = f.read()
        with open(trunc, "wb") as f:
            f.write(raw[:-4])
        nomagic = self.path("nomagic.npy")
        with open(nomagic, "wb") as f:
            f.write(b"\0" * 64)
        for p, msg in ((trunc, "data bytes"), (nomagic, "not a .npy")):
            rc, _, err = self.run_main(good, p)
            self.assertEqual(rc, 2)
            self.assertIn(msg, err)

    def test_logits_npy_shape_from_file(self):
        rows, _ = logits_rows(3, 50, 11)
        flat = [x for r in rows for x in r]
        a, b = self.path("ref.logits.npy"), self.path("out.logits.npy")
        write_npy(a, (3, 50), flat)
        write_npy(b, (3, 50), flat)
        rc, out, err = self.run_main(a, b)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("positions 3, vocab 50", out)
        # the same numbers read as [5, 30]: a shape mismatch, exit 2, one line
        c = self.path("c.npy")
        write_npy(c, (5, 30), flat)
        rc, _, err = self.run_main(a, c)
        self.assertEqual(rc, 2)
        self.assertIn("shapes differ", err)
        self.assertIn("[3, 50]", err)
        self.assertEqual(len(err.strip().splitlines()), 1)
        # a wrong --vocab against a file that knows its shape
        rc, _, err = self.run_main(a, b, "--vocab", "25")
        self.assertEqual(rc, 2)
        self.assertIn("--vocab 25", err)
        # .npy reference, raw output: the raw side must have the same size
        raw = self.path("out.f32", flat)
        rc, out, _ = self.run_main(a, raw)
        self.assertEqual(rc, 0, out)
        short = self.path("short.f32", flat[:-50])
        rc, _, err = self.run_main(a, short)
        self.assertEqual(rc, 2)
        self.assertIn("sizes differ", err)

    def test_hidden_npy(self):
        E, T, H = 3, 4, 16
        ref = gauss_rows(E * T, H, 12)
        got = list(ref)
        got[(1 * T + 2) * H + 7] = f32(ref[(1 * T + 2) * H + 7] + 1e-3 * rms(ref[(T + 2) * H:(T + 3) * H]))
        a, b = self.path("ref.hidden.npy"), self.path("out.hidden.npy")
        write_npy(a, (E, T, H), ref)
        write_npy(b, (E, T, H), got)
        rc, out, _ = self.run_main(a, b)
        self.assertEqual(rc, 1)
        self.assertIn("FAIL: first layer 0, position 2, dim 7", out)
        rc, _, err = self.run_main(a, b, "--layers", "3")
        self.assertEqual(rc, 2)
        self.assertIn("--layers 3", err)


# ------------------------------------------------------------- dump folders
NAMES_IN_LAYER = compare.LAYER_ORDER


def dump_names(layers):
    names = ["model.embed_tokens"]
    for layer in range(layers):
        names += [f"model.layers.{layer}" + (f".{s}" if s else "") for s in NAMES_IN_LAYER]
    return names + ["model.norm", "lm_head"]


class TestDump(Base):
    """Synthetic dumps with every name of the spec (2 layers, 6 positions)."""
    L, N, HID, HEADS, KV, HD, INTER, V = 2, 6, 16, 2, 1, 8, 24, 40

    def shape(self, name):
        n, sub = self.N, name.split(".", 3)[-1] if name.startswith("model.layers.") else name
        width = {"self_attn.q_proj": self.HEADS * self.HD, "self_attn.q_rope": self.HEADS * self.HD,
                 "self_attn.attn_output": self.HEADS * self.HD,
                 "self_attn.k_proj": self.KV * self.HD, "self_attn.v_proj": self.KV * self.HD,
                 "self_attn.k_rope": self.KV * self.HD,
                 "mlp.gate_proj": self.INTER, "mlp.up_proj": self.INTER, "mlp.act_fn": self.INTER,
                 "lm_head": self.V}.get(sub, self.HID)
        if sub == "self_attn.attn_weights":
            return (self.HEADS, n, n)
        return (n, width)

    def values(self, name, seed):
        shp = self.shape(name)
        if len(shp) == 3:  # causal softmax rows
            r = random.Random(seed)
            out = []
            for _ in range(shp[0]):
                for q in range(shp[1]):
                    w = [math.exp(r.gauss(0, 2)) if k <= q else 0.0 for k in range(shp[2])]
                    s = sum(w)
                    out += [f32(x / s) for x in w]
            return out
        return gauss_rows(shp[0], shp[1], seed, 3.0 if name == "lm_head" else 1.0)

    def make(self, folder, fault=None, names=None):
        """fault: (name, position, head or None, how) applied to that module, and
        (1e-2 x RMS) to every later module at that position and after, like a real fault."""
        os.makedirs(folder, exist_ok=True)
        order = names or dump_names(self.L)
        hit = False
        for i, name in enumerate(order):
            shp = self.shape(name)
            vals = self.values(name, f"{name}")
            if fault and name == fault[0]:
                hit = True
                _, pos, head, how = fault
                w = shp[-1]
                base = ((head or 0) * shp[-2] + pos) * w if len(shp) == 3 else pos * w
                row = vals[base:base + w]
                if how == "row":
                    vals[base:base + w] = [f32(x * (1 + 1e-3)) for x in row]
                else:
                    j = max(range(w), key=lambda k: abs(row[k]))
                    vals[base + j] = f32(row[j] * (1 + 1e-3))
            elif hit and len(shp) == 2 and name != "lm_head":
                w = shp[-1]
                for p in range(fault[1], shp[0]):
                    vals[p * w] = f32(vals[p * w] + 1e-2 * rms(vals[p * w:(p + 1) * w]))
            write_npy(os.path.join(folder, name + ".npy"), shp, vals)
        return folder

    def test_names_sort_in_forward_order(self):
        names = dump_names(12)
        shuffled = list(names)
        random.Random(1).shuffle(shuffled)
        self.assertEqual(sorted(shuffled, key=lambda n: compare.module_info(n)[3]), names)
        self.assertEqual(compare.module_info("model.layers.11.mlp.up_proj")[:3], ("layer 11", 11, "rel"))
        self.assertEqual(compare.module_info("model.layers.0.self_attn.attn_weights")[2], "prob")
        self.assertEqual(compare.module_info("lm_head")[:3], ("logits", None, "logits"))
        self.assertEqual(compare.module_info("model.norm")[0], "final norm")
        self.assertEqual(compare.module_info("model.embed_tokens")[0], "embeddings")

    def test_identical_pass_and_fault_named(self):
        ref = self.make(self.path("ref"))
        same = self.make(self.path("same"))
        for fault, want in [
            (("model.layers.1.mlp.up_proj", 3, None, "row"),
             "FAIL: first model.layers.1.mlp.up_proj (layer 1), position 3, dim "),
            (("model.layers.0.self_attn.k_rope", 4, None, "max"),
             "FAIL: first model.layers.0.self_attn.k_rope (layer 0), position 4, dim "),
            (("model.layers.1.self_attn.attn_weights", 5, 1, "row"),
             "FAIL: first model.layers.1.self_attn.attn_weights (layer 1), position 5, head 1, key "),
            (("model.embed_tokens", 0, None, "max"), "FAIL: first model.embed_tokens (embeddings), position 0"),
            (("model.norm", 2, None, "max"), "FAIL: first model.norm (final norm), position 2"),
        ]:
            bad = self.make(self.path("bad-" + fault[0] + str(fault[1])), fault)
            for name, mod in BACKENDS:
                with self.subTest(fault=fault[0], backend=name):
                    compare.np = mod
                    rc, out, err = self.run_main(ref, same)
                    self.assertEqual(rc, 0, out + err)
                    self.assertIn(f"PASS: {len(dump_names(self.L))} modules within tolerance", out)
                    rc, out, err = self.run_main(ref, bad)
                    self.assertEqual(rc, 1, out + err)
                    self.assertIn(want, out)
                    rc, out, _ = self.run_main(ref, bad, "--json")
                    self.assertEqual(rc, 1)
                    res = json.loads(out)
                    self.assertFalse(res["pass"])
                    self.assertEqual(res["mode"], "dump")
                    self.assertEqual((res["first"]["name"], res["first"]["position"]), (fault[0], fault[1]))
                    self.assertEqual(res["first"]["head"], fault[2])
                    if fault[2] is not None:  # a probability row x (1 + 1e-3): 1e-3 of its largest
                        self.assertAlmostEqual(res["first"]["value"], 1e-3, delta=2e-5)
                    else:  # the largest element moves by 1e-3 x max|x| >= 1e-3 x rms
                        self.assertGreater(res["first"]["value"], 0.999e-3)
                        self.assertLess(res["first"]["value"], 5e-3)
                    self.assertEqual(len(res["items"]), len(dump_names(self.L)))

    def test_later_modules_worse_first_still_named(self):
        ref = self.make(self.path("ref"))
        bad = self.make(self.path("bad"), ("model.layers.0.self_attn.v_proj", 2, None, "row"))
        rc, out, _ = self.run_main(ref, bad)
        self.assertEqual(rc, 1)
        last = [ln for ln in out.strip().splitlines() if ln.startswith("FAIL")][-1]
        self.assertTrue(last.startswith("FAIL: first model.layers.0.self_attn.v_proj (layer 0), position 2"), last)
        self.assertRegex(last, r"; worst \S+ \([a-z0-9 ]+\), position 2, dim \d+: rel 1\.0\d\de-02 > 0\.0002")

    def test_tol_rel_flag(self):
        ref = self.make(self.path("ref"))
        bad = self.make(self.path("bad"), ("model.layers.1.mlp.act_fn", 1, None, "row"))
        rc, out, _ = self.run_main(ref, bad, "--tol-rel", "0.5")
        self.assertEqual(rc, 0, out)

    def test_logits_in_dump_judged_absolutely(self):
        ref = self.make(self.path("ref"))
        bad = self.make(self.path("bad"))
        shp = self.shape("lm_head")
        vals = self.values("lm_head", "lm_head")
        vals[3 * shp[1] + 1] = f32(vals[3 * shp[1] + 1] + 2e-4)
        write_npy(os.path.join(bad, "lm_head.npy"), shp, vals)
        rc, out, _ = self.run_main(ref, bad)
        self.assertEqual(rc, 1)
        self.assertIn("FAIL: first lm_head (logits), position 3: max|d| 2.", out)
        rc, out, _ = self.run_main(ref, bad, "--tol-max", "1e-3")
        self.assertEqual(rc, 0, out)

    def test_missing_files_listed_not_failed(self):
        names = dump_names(self.L)
        ref = self.make(self.path("ref"))
        part = self.make(self.path("part"), names=[n for n in names if "q_rope" not in n and "k_rope" not in n])
        rc, out, _ = self.run_main(ref, part)
        self.assertEqual(rc, 0, out)
        self.assertIn("only in REF (not compared): 4: model.layers.0.self_attn.q_rope", out)
        rc, out, _ = self.run_main(ref, part, "--json")
        self.assertEqual(len(json.loads(out)["only_in_ref"]), 4)

    def test_dump_errors_exit_2(self):
        ref = self.make(self.path("ref"))
        bad = self.make(self.path("bad"))
        write_npy(os.path.join(bad, "model.layers.1.mlp.up_proj.npy"), (self.N, self.INTER + 1),
                  [0.0] * (self.N * (self.INTER + 1)))
        rc, _, err = self.run_main(ref, bad)
        self.assertEqual(rc, 2)
        self.assertIn("model.layers.1.mlp.up_proj: shapes differ", err)
        self.assertEqual(len(err.strip().splitlines()), 1)
        f = self.path("one.f32", [0.0] * 4)
        rc, _, err = self.run_main(ref, f)
        self.assertEqual(rc, 2)
        self.assertIn("is a folder", err)
        empty = self.path("empty")
        os.makedirs(empty)
        rc, _, err = self.run_main(empty, ref)
        self.assertEqual(rc, 2)
        self.assertIn("no .npy", err)

    def test_single_module_file(self):
        ref = self.make(self.path("ref"))
        bad = self.make(self.path("bad"), ("model.layers.1.mlp.down_proj", 4, None, "max"))
        name = "model.layers.1.mlp.down_proj.npy"
        rc, out, _ = self.run_main(os.path.join(ref, name), os.path.join(bad, name))
        self.assertEqual(rc, 1)
        self.assertIn("FAIL: first model.layers.1.mlp.down_proj (layer 1), position 4", out)
        name = "model.layers.0.self_attn.attn_weights.npy"
        rc, out, _ = self.run_main(os.path.join(ref, name), os.path.join(bad, name))
        self.assertEqual(rc, 0, out)


FIXTURE_DUMP = os.path.join(ROOT, "tests", "fixtures", "dump-sw8")


@unittest.skipUnless(os.path.isdir(FIXTURE_DUMP), "tests/fixtures/dump-sw8 missing")
class TestBackendsAndPatterns(TestDump):
    """Issue 23 item 6 and the FAIL hints: both backends give the same verdicts
    and figures; a zero reference row; attention faults named by position."""

    def both(self, *args):
        """compare.main under each backend: [(rc, json)]."""
        res = []
        for name, mod in BACKENDS:
            compare.np = mod
            rc, out, err = self.run_main(*args, "--json")
            res.append((rc, json.loads(out)))
        return res

    def assert_same(self, res):
        if len(res) < 2:
            if os.environ.get("RAKTN_REQUIRE_NUMPY"):
                self.fail("RAKTN_REQUIRE_NUMPY is set but numpy is not importable")
            return
        (ra, ja), (rb, jb) = res
        self.assertEqual(ra, rb)
        close(self, ja, jb)

    def test_same_verdicts_and_figures(self):
        ref = self.make(self.path("ref"))
        bad = self.make(self.path("bad"), ("model.layers.1.mlp.up_proj", 3, None, "row"))
        self.assert_same(self.both(ref, ref))
        self.assert_same(self.both(ref, bad))
        rows, top = logits_rows(5, 200, 3)
        flat = [x for r in rows for x in r]
        a = self.path("a.f32", flat)
        b = self.path("b.f32", [f32(x + 0.01 * math.sin(i)) for i, x in enumerate(flat)])
        for preset in ("fp32", "bf16", "q8"):
            self.assert_same(self.both(a, b, "--vocab", "200", "--preset", preset))
        h = self.path("h.f32", gauss_rows(3 * 4, 16, 9))
        h2 = self.path("h2.f32", [f32(x * 1.0003) for x in gauss_rows(3 * 4, 16, 9)])
        self.assert_same(self.both(h, h2, "--hidden", "--layers", "2", "--tokens", "4"))

    def test_zero_reference_row(self):
        """A reference row of zeros: any nonzero output fails (rel inf), zeros pass."""
        for name, mod in BACKENDS:
            compare.np = mod
            with self.subTest(backend=name):
                ref = [0.0] * 8 + gauss_rows(3, 8, 1)
                os.makedirs(self.path("r"), exist_ok=True)
                os.makedirs(self.path("o"), exist_ok=True)
                a = self.path("r/model.layers.0.mlp.up_proj.npy")
                write_npy(a, (4, 8), ref)
                b = self.path("o/model.layers.0.mlp.up_proj.npy")
                write_npy(b, (4, 8), [0.0] * 7 + [1e-6] + ref[8:])
                rc, out, _ = self.run_main(a, b, "--tol-rel", "0.5")
                self.assertEqual(rc, 1, out)
                self.assertIn("position 0", out.strip().splitlines()[-1])
                write_npy(b, (4, 8), ref)
                rc, out, _ = self.run_main(a, b, "--tol-rel", "0.5")
                self.assertEqual(rc, 0, out)

    def test_attention_faults_named_by_position(self):
        """Faults at (head 1, query 2) and (head 0, query 4): the first in forward
        order is position 2 (head 1), not head 0's row."""
        ref = self.make(self.path("ref"))
        bad = self.make(self.path("bad"), ("model.layers.0.self_attn.attn_weights", 4, 0, "row"))
        name = "model.layers.0.self_attn.attn_weights.npy"
        vals, shape = compare.read_npy(os.path.join(bad, name))
        vals = list(vals)
        base = (1 * shape[1] + 2) * shape[2]
        for k in range(shape[2]):
            vals[base + k] = f32(vals[base + k] * (1 + 1e-3))
        write_npy(os.path.join(bad, name), shape, vals)
        for bname, mod in BACKENDS:
            compare.np = mod
            with self.subTest(backend=bname):
                rc, out, _ = self.run_main(ref, bad)
                self.assertEqual(rc, 1)
                self.assertIn("FAIL: first model.layers.0.self_attn.attn_weights (layer 0), position 2, head 1, key",
                              out)

    def test_ties_use_a_fixed_margin(self):
        """A flipped argmax is a tie only when REF's top two are within 1e-3,
        whatever the preset's tol-max; the raw count is always printed."""
        V = 10
        ref = [0.0] * V
        ref[3], ref[7] = 2.0, 2.0 - 0.5          # gap 0.5: a real flip
        out_row = list(ref)
        out_row[7] = 2.2
        a, b = self.path("t.f32", ref), self.path("u.f32", out_row)
        rc, out, _ = self.run_main(a, b, "--vocab", str(V), "--preset", "q8", "--min-argmax", "1")
        self.assertEqual(rc, 1, out)
        self.assertIn("argmax 0/1 raw", out)
        ref[7] = 2.0 - 5e-4                       # gap 5e-4: a tie
        out_row = list(ref)
        out_row[7] = 2.001
        a, b = self.path("t2.f32", ref), self.path("u2.f32", out_row)
        rc, out, _ = self.run_main(a, b, "--vocab", str(V), "--preset", "q8", "--min-argmax", "1")
        self.assertEqual(rc, 0, out)
        self.assertIn("argmax 0/1 raw (+1 ties within 0.001)", out)

    def hint_for(self, fault_name, pos, cols=None, from_pos=None, k=1.01):
        ref = self.make(self.path("ref"))
        bad = self.make(self.path("bad"))
        vals, shape = compare.read_npy(os.path.join(bad, fault_name + ".npy"))
        vals, w = list(vals), shape[-1]
        rows = range(shape[0]) if len(shape) == 2 else range(shape[0] * shape[1])
        for r in rows:
            p = r if len(shape) == 2 else r % shape[1]
            if (from_pos is not None and p >= from_pos) or (from_pos is None and p >= pos):
                for c in (cols if cols is not None else range(w)):
                    vals[r * w + c] = f32(vals[r * w + c] * k)
        write_npy(os.path.join(bad, fault_name + ".npy"), shape, vals)
        rc, out, _ = self.run_main(ref, bad)
        self.assertEqual(rc, 1)
        return [ln for ln in out.splitlines() if ln.startswith("hint: ")][0]

    def test_hints(self):
        self.assertIn("RoPE itself", self.hint_for("model.layers.0.self_attn.q_rope", 1))
        self.assertIn("q/k row permutation", self.hint_for("model.layers.0.self_attn.k_proj", 0))
        self.assertIn("one weight row, row 5 of model.layers.1.mlp.up_proj's weight (GGUF blk.1.ffn_up.weight)",
                      self.hint_for("model.layers.1.mlp.up_proj", 0, cols=[5], k=1.1))
        self.assertIn("sliding window (window 3",
                      self.hint_for("model.layers.0.self_attn.attn_weights", 3, from_pos=3))
        self.assertIn("its input (post_attention_layernorm) passes",
                      self.hint_for("model.layers.1.mlp.gate_proj", 0))


def close(t, a, b, path="$"):
    """Two JSON results: the same keys, texts and verdicts; numbers equal up to
    the last bits of two summation orders."""
    if isinstance(a, float) or isinstance(b, float):
        t.assertTrue(isinstance(a, (int, float)) and isinstance(b, (int, float)), path)
        t.assertLessEqual(abs(a - b), 1e-9 * max(abs(a), abs(b)) + 1e-15, path)
    elif isinstance(a, dict):
        t.assertEqual(sorted(a), sorted(b), path)
        for k in a:
            close(t, a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        t.assertEqual(len(a), len(b), path)
        for i, (x, y) in enumerate(zip(a, b)):
            close(t, x, y, f"{path}[{i}]")
    else:
        t.assertEqual(a, b, path)


class TestFixtureDump(Base):
    """The committed transformers dump (sw8, 20 positions, window 8)."""

    def test_names_and_shapes_follow_the_spec(self):
        with open(os.path.join(FIXTURE_DUMP, "dump.json")) as f:
            meta = json.load(f)
        names = dump_names(meta["n_layers"])
        self.assertEqual(meta["dump_names"], names)
        self.assertEqual(sorted(f[:-4] for f in os.listdir(FIXTURE_DUMP) if f.endswith(".npy")), sorted(names))
        n = meta["n_tokens"]
        for name in names:
            _, shape = compare.read_npy(os.path.join(FIXTURE_DUMP, name + ".npy"))
            if name.endswith("attn_weights"):
                self.assertEqual(shape, (4, n, n), name)
            else:
                self.assertEqual(shape[0], n, name)
        # window 8: query 12 gives keys 0..4 probability exactly 0, keys 5..12 more than 0
        w, shape = compare.read_npy(os.path.join(FIXTURE_DUMP, "model.layers.0.self_attn.attn_weights.npy"))
        row = [float(x) for x in w[12 * n:13 * n]]
        self.assertEqual(row[:5], [0.0] * 5)
        self.assertTrue(all(x > 0 for x in row[5:13]))
        self.assertEqual(row[13:], [0.0] * (n - 13))

    def test_planted_fault_in_real_dump(self):
        out = self.path("out")
        shutil.copytree(FIXTURE_DUMP, out)
        name = "model.layers.2.self_attn.q_rope"
        data, shape = compare.read_npy(os.path.join(out, name + ".npy"))
        vals = [float(x) for x in data]
        w = shape[1]
        row = vals[9 * w:10 * w]
        j = max(range(w), key=lambda k: abs(row[k]))
        vals[9 * w + j] = row[j] * (1 + 1e-3)
        write_npy(os.path.join(out, name + ".npy"), shape, vals)
        rc, txt, err = self.run_main(FIXTURE_DUMP, out)
        self.assertEqual(rc, 1, txt + err)
        self.assertIn(f"FAIL: first {name} (layer 2), position 9, dim {j}: rel ", txt)
        rc, txt, _ = self.run_main(FIXTURE_DUMP, FIXTURE_DUMP)
        self.assertEqual(rc, 0, txt)


    def test_raktn_dump_matches_transformers(self):
        """./raktn --dump of the same checkpoint and ids against the committed
        transformers dump: every module within 1e-4 (absolute, in every
        element) and compare.py's verdict PASS. Needs tests/prepare.sh's sw8."""
        model = os.path.join(ROOT, "tests", "work", "models", "sw8", "model.bin")
        with open(os.path.join(FIXTURE_DUMP, "dump.json")) as f:
            meta = json.load(f)
        out = self.path("raktn-dump")
        import subprocess
        p = subprocess.run([os.path.join(ROOT, "raktn"), model, "-m", "logits", "--ids",
                            " ".join(map(str, meta["ids"])), "--dump", out], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        names = dump_names(meta["n_layers"])
        self.assertEqual(sorted(f[:-4] for f in os.listdir(out)), sorted(names))
        for name in names:
            ref, rshape = compare.read_npy(os.path.join(FIXTURE_DUMP, name + ".npy"))
            got, gshape = compare.read_npy(os.path.join(out, name + ".npy"))
            self.assertEqual(rshape, gshape, name)
            worst = max(abs(float(a) - float(b)) for a, b in zip(ref, got))
            self.assertLessEqual(worst, 1e-4, name)
        rc, txt, err = self.run_main(FIXTURE_DUMP, out)
        self.assertEqual(rc, 0, txt + err)
        self.assertIn("PASS: 48 modules within tolerance", txt)


class TestReferenceSide(unittest.TestCase):
    """export/reference.py's torch-free parts: the dump names and the version check."""

    @classmethod
    def setUpClass(cls):
        import reference  # noqa: E402  (imports torch only when run)
        cls.ref = reference

    def test_same_names_as_compare(self):
        self.assertEqual(self.ref.LAYER_DUMP, compare.LAYER_ORDER)
        self.assertEqual(self.ref.dump_names(3), dump_names(3))
        self.assertEqual(len(self.ref.dump_names(32)), 1 + 32 * 15 + 2)

    def test_version_check(self):
        class T:
            pass
        for v, refused in (("4.38.2", False), ("4.39.0", True), ("4.40.2", True), ("4.41.2", True),
                           ("4.41.0.dev0", True), ("4.42.0", False), ("4.44.2", False), ("5.0.0", False)):
            T.__version__ = v
            with self.subTest(version=v):
                err = io.StringIO()
                with contextlib.redirect_stderr(err):
                    if refused:
                        with self.assertRaises(SystemExit) as cm:
                            self.ref.check_version(T, False)
                        self.assertEqual(cm.exception.code, 2)
                        self.assertIn("W+1 keys", err.getvalue())
                        self.assertIsNotNone(self.ref.check_version(T, True))  # --allow-broken-window
                    else:
                        self.assertIsNone(self.ref.check_version(T, False))


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
            ([good, good, "--vocab", "4", "--tol-rel", "-1"], "tolerances"),
            ([good], "required"),
        ]
        for args, msg in cases:
            with self.subTest(args=args):
                rc, out, err = self.run_main(*args)
                self.assertEqual(rc, 2)
                self.assertIn(msg, err)
                self.assertEqual(len(err.strip().splitlines()), 1, err)
                self.assertTrue(err.startswith("compare.py: error:"), err)

    def test_executable_and_usage_says_ref_first(self):
        path = os.path.join(ROOT, "export", "compare.py")
        self.assertTrue(os.access(path, os.X_OK), "export/compare.py is not executable")
        self.assertIn("compare.py REF OUT", compare.__doc__)

    def test_json_logits(self):
        rows, _ = logits_rows(3, 20, 4)
        flat = [x for r in rows for x in r]
        a = self.path("a.f32", flat)
        bad = list(flat)
        bad[25] = f32(bad[25] + 1e-3)
        b = self.path("b.f32", bad)
        rc, out, _ = self.run_main(a, b, "--vocab", "20", "--json")
        self.assertEqual(rc, 1)
        res = json.loads(out)
        self.assertEqual(res["mode"], "logits")
        self.assertFalse(res["pass"])
        self.assertEqual(res["first"]["position"], 1)
        item = res["items"][0]
        self.assertEqual(item["positions"], 3)
        self.assertEqual(item["argmax_agree"], 3)
        self.assertEqual(len(item["per_position"]), 3)
        rc, out, _ = self.run_main(a, a, "--vocab", "20", "--json")
        self.assertEqual(rc, 0)
        self.assertTrue(json.loads(out)["pass"])


if __name__ == "__main__":
    unittest.main()
