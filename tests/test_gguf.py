"""Tests of export/gguf.py (GGUF in) and of llama.cpp dumps in export/compare.py.

Run from the repository root:  python3 -m unittest tests/test_gguf.py
Fixtures: tests/fixtures/gguf (tests/fixtures/README.md says how they were
made, with llama.cpp c392e509's converter, quantizer and tools/llama-dump).
The expectations are independent of export/gguf.py:
  - F32/BF16: the HF checkpoint the GGUF was converted from, regenerated
    here by tests/make_checkpoint.py and exported by export.py's own path;
  - quantized types: the sha256 of model.bin exported from ggml's OWN
    dequantization (llama-quantize --allow-requantize X.gguf D.gguf F32,
    which runs ggml's dequantize_row_* and leaves nothing to dequantize);
  - the block formulas: a scalar transcription of ggml-quants.c below;
  - the tokenizer: tokenizer_export.py on the tokenizer.model the GGUF was
    made from, and the HF ids of tests/tokenizer/expected.
"""
import contextlib
import hashlib
import io
import json
import math
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "export"))
import compare  # noqa: E402
import export  # noqa: E402
import gguf  # noqa: E402
import tokenizer_export as te  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_compare import close  # noqa: E402  (two JSON results, equal up to summation order)

FIX = os.path.join(ROOT, "tests", "fixtures", "gguf")
IDS = "1 100 200 300 400 500 600 50"
RAKTN, TRUTH = os.path.join(ROOT, "raktn"), os.path.join(ROOT, "raktn-truth")
NUMPY = compare.np
BACKENDS = [("stdlib", None)] + ([("numpy", NUMPY)] if NUMPY is not None else [])
# sha256 of model.bin exported from ggml's dequantization of each file
DEQUANT_SHA = {
    "g64-q8_0.gguf": "de71c49b8aac30c7a42cc448c2eb8b5bf95e376e1d3cc97041a9a29736637889",
    "g64-q4_0.gguf": "a3655baa0ef302468e84d8fdb774fc92a1b127f0eef8273cf39d10e5527bca8f",
    "q256-q4_k_m.gguf": "e792a51bf177abde4c6b5c6027e3bf3288c9a86e5c49d1f2a8ff3217a3c99a6a",
}
G64 = ["--hidden", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--intermediate", "160",
       "--vocab", "700", "--sliding-window", "none", "--dtype", "bf16", "--seed", "21", "--std", "0.16",
       "--tied"]


def run_export(*argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = export.main(list(argv))
    return rc, err.getvalue()


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def f16(lo, hi):
    return struct.unpack("<e", bytes([lo, hi]))[0]


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


# ggml-quants.c's dequantize_row_*, one value at a time (float32 arithmetic
# emulated by rounding after each operation ggml does in float)
def ref_q8_0(b):
    d = f16(b[0], b[1])
    return [f32(struct.unpack("b", bytes([b[2 + j]]))[0] * d) for j in range(32)]


def ref_q4_0(b):
    d = f16(b[0], b[1])
    out = [0.0] * 32
    for j in range(16):
        out[j] = f32(((b[2 + j] & 15) - 8) * d)
        out[j + 16] = f32(((b[2 + j] >> 4) - 8) * d)
    return out


def ref_q4_k(b):
    d, dmin, sc, q = f16(b[0], b[1]), f16(b[2], b[3]), b[4:16], b[16:144]

    def scale_min(j):
        if j < 4:
            return sc[j] & 63, sc[j + 4] & 63
        return (sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4), (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4)
    out = []
    for c in range(4):
        s1, m1 = scale_min(2 * c)
        s2, m2 = scale_min(2 * c + 1)
        d1, mm1, d2, mm2 = f32(d * s1), f32(dmin * m1), f32(d * s2), f32(dmin * m2)
        out += [f32(f32(d1 * (q[32 * c + l] & 15)) - mm1) for l in range(32)]
        out += [f32(f32(d2 * (q[32 * c + l] >> 4)) - mm2) for l in range(32)]
    return out


def ref_q6_k(b):
    ql, qh, sc = b[0:128], b[128:192], [struct.unpack("b", bytes([x]))[0] for x in b[192:208]]
    d = f16(b[208], b[209])
    y = [0.0] * 256
    for h in range(2):
        for l in range(32):
            i = l // 16
            a, c, hh = ql[64 * h + l], ql[64 * h + l + 32], qh[32 * h + l]
            q1 = ((a & 15) | ((hh & 3) << 4)) - 32
            q2 = ((c & 15) | (((hh >> 2) & 3) << 4)) - 32
            q3 = ((a >> 4) | (((hh >> 4) & 3) << 4)) - 32
            q4 = ((c >> 4) | (((hh >> 6) & 3) << 4)) - 32
            for k, qv in enumerate((q1, q2, q3, q4)):
                y[128 * h + l + 32 * k] = f32(f32(d * sc[8 * h + i + 2 * k]) * qv)
    return y


def random_blocks(kind, n, seed):
    """n random blocks whose float16 scales are finite (any other bytes are valid)."""
    r = random.Random(seed)
    size = {"q8_0": 34, "q4_0": 18, "q4_k": 144, "q6_k": 210}[kind]
    out = bytearray()
    for _ in range(n):
        b = bytearray(r.getrandbits(8) for _ in range(size))
        for at in {"q8_0": (0,), "q4_0": (0,), "q4_k": (0, 2), "q6_k": (208,)}[kind]:
            e = r.choice([r.uniform(-4, 4), r.uniform(-1e-3, 1e-3), 6e-8, -65504.0, 0.0])
            b[at:at + 2] = struct.pack("<e", e)
        out += b
    return bytes(out)


class TestDequant(unittest.TestCase):
    def test_blocks_match_ggml_formulas(self):
        """Every type on random blocks (subnormal, zero, huge and negative scales,
        all 6-bit scale packings of Q4_K) equals the scalar transcription."""
        for kind, fn, ref, n in (("q8_0", gguf.deq_q8_0, ref_q8_0, 40), ("q4_0", gguf.deq_q4_0, ref_q4_0, 40),
                                 ("q4_k", gguf.deq_q4_k, ref_q4_k, 12), ("q6_k", gguf.deq_q6_k, ref_q6_k, 12)):
            with self.subTest(kind=kind):
                raw = random_blocks(kind, n, kind)
                size = len(raw) // n
                want = []
                for i in range(n):
                    want += ref(raw[i * size:(i + 1) * size])
                got = struct.unpack(f"<{len(want)}f", fn(raw))
                self.assertEqual([struct.pack("<f", x) for x in got], [struct.pack("<f", x) for x in want])

    def test_c_helper_computes_the_same_bytes(self):
        """export/gguf_dequant.so (make builds it) against the Python path, on
        random blocks of every type and on a bad scale (refused: Python says why)."""
        so = os.path.join(ROOT, "export", "gguf_dequant.so")
        if gguf.C_DEQUANT is None:
            if os.path.exists(so) and not os.environ.get("RAKTN_GGUF_PYTHON"):
                self.fail("export/gguf_dequant.so exists but gguf.py did not load it")
            self.skipTest("export/gguf_dequant.so not built")
        for kind, gtype, fn in (("q8_0", gguf.Q8_0, gguf.deq_q8_0), ("q4_0", gguf.Q4_0, gguf.deq_q4_0),
                                ("q4_k", gguf.Q4_K, gguf.deq_q4_k), ("q6_k", gguf.Q6_K, gguf.deq_q6_k)):
            with self.subTest(kind=kind):
                raw = random_blocks(kind, 300, kind + "c")
                self.assertEqual(gguf.C_DEQUANT(gtype, raw), fn(raw))
        raw = bytearray(random_blocks("q4_k", 3, 5))
        raw[144 + 2:144 + 4] = struct.pack("<e", math.nan)
        self.assertIsNone(gguf.C_DEQUANT(gguf.Q4_K, bytes(raw)))
        with self.assertRaises(gguf.GGUFError):
            gguf.dequantize(gguf.Q4_K, bytes(raw), "t")

    def test_f16_bf16(self):
        raw = struct.pack("<4e", 1.5, -2.0, 6e-8, 65504.0)
        self.assertEqual(struct.unpack("<4f", gguf.deq_f16(raw)), (1.5, -2.0, 2.0 ** -24, 65504.0))
        bf = struct.pack("<2f", 1.25, -3.0)
        self.assertEqual(struct.unpack("<2f", gguf.deq_bf16(bf[2:4] + bf[6:8])), (1.25, -3.0))

    def test_nonfinite_scale_refused(self):
        raw = bytearray(random_blocks("q8_0", 2, 1))
        raw[34:36] = struct.pack("<e", math.inf)
        with self.assertRaises(gguf.GGUFError):
            gguf.deq_q8_0(bytes(raw), "t")

    def test_hf_row_order_inverts_the_converters_permute(self):
        """convert_hf_to_gguf.py's LlamaModel.permute: reshape(n_head, 2, hd/2, ...)
        .swapaxes(1, 2): GGUF row h*hd + 2i + j = HF row h*hd + j*hd/2 + i."""
        heads, hd = 3, 8
        hf_rows = list(range(heads * hd))
        gguf_rows = [None] * len(hf_rows)
        for h in range(heads):
            for j in range(2):
                for i in range(hd // 2):
                    gguf_rows[h * hd + 2 * i + j] = hf_rows[h * hd + j * hd // 2 + i]
        order = gguf.hf_row_order(len(hf_rows), hd)
        self.assertEqual([gguf_rows[g] for g in order], hf_rows)


class TestExport(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def p(self, *a):
        return os.path.join(self.tmp.name, *a)

    def test_round_trip_f32_bf16_bit_identical(self):
        """HF -> GGUF (llama.cpp's converter, F32 and BF16) -> export: the same
        model.bin as exporting the HF checkpoint, f32 and bf16 storage."""
        subprocess.run([sys.executable, os.path.join(ROOT, "tests", "make_checkpoint.py"), self.p("hf")] + G64,
                       check=True, stdout=subprocess.DEVNULL)
        for dtype in ("f32", "bf16"):
            self.assertEqual(run_export("--quiet", "--dtype", dtype, self.p("hf"), self.p("hf-" + dtype))[0], 0)
            want = sha(self.p("hf-" + dtype, "model.bin"))
            for src in ("g64-f32.gguf", "g64-bf16.gguf"):
                if dtype == "bf16" and src == "g64-f32.gguf":    # refused, as from an fp32 checkpoint
                    rc, err = run_export("--quiet", "--dtype", dtype, os.path.join(FIX, src), self.p("no"))
                    self.assertEqual(rc, 1)
                    self.assertIn("lossless only when every matrix is BF16", err)
                    continue
                with self.subTest(dtype=dtype, src=src):
                    out = self.p(src + dtype)
                    rc, err = run_export("--quiet", "--dtype", dtype, os.path.join(FIX, src), out)
                    self.assertEqual(rc, 0, err)
                    self.assertEqual(sha(os.path.join(out, "model.bin")), want)

    def test_quantized_equal_ggml_dequantization(self):
        for name, want in DEQUANT_SHA.items():
            with self.subTest(name=name):
                rc, err = run_export("--quiet", os.path.join(FIX, name), self.p(name))
                self.assertEqual(rc, 0, err)
                self.assertEqual(sha(self.p(name, "model.bin")), want)
                self.assertIn("from GGUF tensors", err)

    def test_header_from_metadata(self):
        rc, err = run_export("--quiet", "--sliding-window", "16", os.path.join(FIX, "q256-q4_k_m.gguf"),
                             self.p("q"))
        self.assertEqual(rc, 0, err)
        with open(self.p("q", "model.bin"), "rb") as f:
            h = f.read(256)
        (version, dtype, dim, hidden, layers, heads, kv, hd, vocab, ctx, window, bos, eos, tied, theta, eps,
         data_offset, size) = struct.unpack_from("<IIIIIIIIIIIiiIffQQ", h, 8)
        self.assertEqual((dim, hidden, layers, heads, kv, hd, vocab, window, bos, eos, tied),
                         (256, 256, 1, 4, 2, 64, 700, 16, 1, 2, 0))
        self.assertEqual(struct.unpack_from("<dd", h, 88), (10000.0, 1e-5))   # exactly config.json's
        self.assertEqual((theta, eps), (10000.0, f32(1e-5)))
        rc, err = run_export("--quiet", os.path.join(FIX, "g64-f32.gguf"), self.p("g"))
        with open(self.p("g", "model.bin"), "rb") as f:
            h = f.read(256)
        self.assertEqual(struct.unpack_from("<I", h, 48)[0], 0)      # no window unless asked
        self.assertEqual(struct.unpack_from("<I", h, 60)[0], 1)      # tied: no output.weight
        self.assertIn("no sliding window", err)

    def test_tokenizer_from_metadata(self):
        """The converter wrote tests/tokenizer/small-spm/tokenizer.model into the
        GGUF: tokenizer.bin is the one tokenizer_export makes from that file, and
        raktn with it gives HF's ids."""
        rc, err = run_export("--quiet", os.path.join(FIX, "g64-f32.gguf"), self.p("g"))
        self.assertEqual(rc, 0, err)
        spm = self.p("spm")
        os.makedirs(spm)
        for f in ("tokenizer.model", "tokenizer_config.json"):
            shutil.copy(os.path.join(ROOT, "tests", "tokenizer", "small-spm", f), spm)
        data, _, _ = te.build_tokenizer(spm)
        with open(self.p("g", "tokenizer.bin"), "rb") as f:
            self.assertEqual(f.read(), data)
        if not os.path.exists(RAKTN):
            self.skipTest("./raktn not built")
        checked = 0
        with open(os.path.join(ROOT, "tests", "tokenizer", "expected", "small_cases.tsv"), encoding="utf-8") as f:
            for line in f:
                ids, _, text = line.rstrip("\n").partition("\t")
                if not text.strip() or "\\" in text or checked >= 12:
                    continue
                out = subprocess.run([RAKTN, self.p("g", "model.bin"), "-m", "tokenize", "-z",
                                      self.p("g", "tokenizer.bin"), "-i", text],
                                     capture_output=True, text=True, check=True).stdout.split()
                self.assertEqual([int(x) for x in out][1:], [int(x) for x in ids.split()], text)
                checked += 1
        self.assertEqual(checked, 12)

    def corrupt(self, name, edit):
        path = self.p(name)
        with open(os.path.join(FIX, "g64-q8_0.gguf"), "rb") as f:
            data = bytearray(f.read())
        edit(data)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def test_refusals_one_line_nothing_written(self):
        meta, tensors, start, size = gguf.read_gguf(os.path.join(FIX, "g64-q8_0.gguf"))
        with open(os.path.join(FIX, "g64-q8_0.gguf"), "rb") as f:
            raw = f.read()
        arch_at = raw.index(b"general.architecture") + len("general.architecture") + 4 + 8
        name_at = raw.index(b"blk.0.attn_q.weight") + len(b"blk.0.attn_q.weight")
        type_at = name_at + 4 + 8 * 2           # after n_dims and the two dims

        def set_type(d, t=13):
            d[type_at:type_at + 4] = struct.pack("<I", t)
        cases = [
            ("truncated.gguf", lambda d: d.__delitem__(slice(len(d) - 100, None)), "outside the file"),
            ("q5k.gguf", set_type, "Q5_K"),
            ("arch.gguf", lambda d: d.__setitem__(slice(arch_at, arch_at + 5), b"gemma"), "architecture"),
            ("magic.gguf", lambda d: d.__setitem__(slice(4, 8), struct.pack("<I", 9)), "version 9"),
        ]
        for name, edit, words in cases:
            with self.subTest(name=name):
                out = self.p("out-" + name)
                rc, err = run_export("--quiet", self.corrupt(name, edit), out)
                self.assertEqual(rc, 1)
                self.assertEqual(err.count("\n"), 1, err)
                self.assertIn(words, err)
                self.assertFalse(os.path.exists(out))

    def test_truth_refuses_inconsistent_exact_fields(self):
        if not os.path.exists(TRUTH):
            self.skipTest("./raktn-truth not built")
        rc, err = run_export("--quiet", os.path.join(FIX, "g64-f32.gguf"), self.p("g"))
        mb = self.p("g", "model.bin")
        with open(mb, "r+b") as f:
            f.seek(96)
            f.write(struct.pack("<d", 2e-5))       # eps as float64 no longer rounds to the float32
        r = subprocess.run([TRUTH, mb, "-m", "logits", "--ids", "1 2", "--top", "1"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("does not round to its float32", r.stderr)


def cmp_main(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = compare.main(list(argv))
    return rc, out.getvalue(), err.getvalue()


@unittest.skipUnless(os.path.exists(TRUTH), "./raktn-truth not built (make test builds it)")
class TestLlamaDumps(unittest.TestCase):
    """The committed llama.cpp dumps against raktn-truth on the same GGUF's export."""
    CASES = {  # dump: (GGUF, preset, raktn-truth rounding)
        "g64-f32.dump": ("g64-f32.gguf", "fp32", []),
        "g64-f32-step.dump": ("g64-f32.gguf", "fp32", []),
        "g64-f16kv.dump": ("g64-f32.gguf", "f16kv", ["--kv", "f16"]),
        "g64-q8_0.dump": ("g64-q8_0.gguf", "q8", ["--round", "q8_0"]),
        "q256-q4_k_m.dump": ("q256-q4_k_m.gguf", "q4_k", ["--round", "q8_k"]),
    }

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.refs = {}
        for dump, (g, preset, rnd) in cls.CASES.items():
            mdir = os.path.join(cls.tmp.name, "m-" + g)
            if not os.path.exists(mdir):
                rc, err = run_export("--quiet", os.path.join(FIX, g), mdir)
                assert rc == 0, err
            ref = os.path.join(cls.tmp.name, "ref-" + dump)
            subprocess.run([TRUTH, os.path.join(mdir, "model.bin"), "-m", "logits", "--ids", IDS, "--dump", ref,
                            "-o", os.path.join(cls.tmp.name, dump + ".npy")] + rnd, check=True,
                           stderr=subprocess.DEVNULL)
            cls.refs[dump] = (ref, os.path.join(mdir, "model.bin"), preset)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def setUp(self):
        self.addCleanup(setattr, compare, "np", NUMPY)

    def copy_dump(self, dump):
        d = tempfile.mkdtemp(dir=self.tmp.name)
        shutil.rmtree(d)
        shutil.copytree(os.path.join(FIX, dump), d)
        return d

    def test_mapping_names_every_module(self):
        src, kind = compare.dump_names(os.path.join(FIX, "g64-f32.dump"))
        self.assertEqual(kind, "llama.cpp")
        want = {"model.embed_tokens", "model.norm", "lm_head"} | {
            f"model.layers.{l}" + (f".{s}" if s else "") for l in range(2) for s in compare.LAYER_ORDER}
        self.assertEqual(set(src), want)
        x, shape = src["model.layers.1.self_attn.attn_weights"]()
        self.assertEqual(shape, (4, 8, 8))          # n_kv 32 cropped to the 8 tokens
        x, shape = src["model.layers.0.self_attn.q_rope"]()
        self.assertEqual(shape, (8, 64))

    def test_correct_runs_pass_global_and_local(self):
        for name, mod in BACKENDS:
            compare.np = mod
            for dump, (ref, model, preset) in self.refs.items():
                if name == "stdlib" and dump != "g64-q8_0.dump" and dump != "g64-f32.dump":
                    continue            # the stdlib local checks are slow: two cases suffice
                with self.subTest(backend=name, dump=dump):
                    rc, out, err = cmp_main(ref, os.path.join(FIX, dump), "--preset", preset, "--model", model)
                    self.assertEqual(rc, 0, out + err)
                    self.assertIn("OUT is a llama.cpp dump", out)
                    self.assertIn("modules (local) within tolerance", out)
                    if not dump.startswith("q256"):     # (one layer: no growth to show)
                        self.assertIn("per-layer error growth", out)

    def test_planted_faults_named(self):
        """Faults in the llama.cpp dump's own nodes: the local check names the
        module, the position and what to suspect."""
        ref, model, preset = self.refs["g64-q8_0.dump"]
        cases = [
            ("ffn_out-1.npy", lambda a: scale_col(a, 8, 64, 5, 1.01),
             "local model.layers.1.mlp.down_proj (layer 1), position 0, dim 5", "row 5 of GGUF blk.1.ffn_down"),
            ("attn_norm-0.npy", lambda a: scale_all(a, 1.001),
             "local model.layers.0.input_layernorm (layer 0), position 0", "rms_norm_eps"),
            ("Qcur-1#2.npy", lambda a: scale_from_row(a, 8, 64, 3, 1.01),
             "local model.layers.1.self_attn.q_rope (layer 1), position 3", "rope_theta"),
        ]
        for name, mod in BACKENDS:
            compare.np = mod
            for node, edit, first, hint in cases:
                with self.subTest(backend=name, node=node):
                    d = self.copy_dump("g64-q8_0.dump")
                    edit_npy(os.path.join(d, node), edit)
                    rc, out, err = cmp_main(ref, d, "--preset", preset, "--model", model)
                    self.assertEqual(rc, 1, out)
                    local = out[out.index("local checks"):]
                    self.assertIn("FAIL: first " + first, local)
                    self.assertIn(hint, local)

    def test_window_fault_named_at_position_w(self):
        """The truth with a window of 5 against llama.cpp, which has none."""
        mdir = os.path.join(self.tmp.name, "w5")
        rc, err = run_export("--quiet", "--sliding-window", "5", os.path.join(FIX, "g64-f32.gguf"), mdir)
        self.assertEqual(rc, 0, err)
        ref = os.path.join(self.tmp.name, "ref-w5")
        subprocess.run([TRUTH, os.path.join(mdir, "model.bin"), "-m", "logits", "--ids", IDS, "--dump", ref,
                        "-o", os.path.join(self.tmp.name, "w5.npy")], check=True, stderr=subprocess.DEVNULL)
        rc, out, err = cmp_main(ref, os.path.join(FIX, "g64-f32.dump"), "--model", os.path.join(mdir, "model.bin"))
        self.assertEqual(rc, 1)
        self.assertIn("FAIL: first model.layers.0.self_attn.attn_weights (layer 0), position 5, head 0, key 0", out)
        self.assertIn("local model.layers.0.self_attn.attn_weights (layer 0), position 5", out)
        self.assertIn("sliding window", out)

    def test_same_figures_both_backends(self):
        if NUMPY is None:
            if os.environ.get("RAKTN_REQUIRE_NUMPY"):
                self.fail("RAKTN_REQUIRE_NUMPY is set but numpy is not importable")
            self.skipTest("numpy not installed: one backend only")
        ref, model, preset = self.refs["g64-q8_0.dump"]
        res = []
        for name, mod in BACKENDS:
            compare.np = mod
            rc, out, err = cmp_main(ref, os.path.join(FIX, "g64-q8_0.dump"), "--preset", preset, "--model",
                                    model, "--json")
            res.append((rc, json.loads(out)))
        self.assertEqual(res[0][0], res[1][0])
        close(self, res[0][1], res[1][1])


def edit_npy(path, edit):
    with open(path, "rb") as f:
        raw = f.read()
    shape, code, off = compare.parse_npy_header(raw, path)
    n = (len(raw) - off) // 4
    vals = list(struct.unpack(f"<{n}f", raw[off:]))
    edit(vals)
    with open(path, "wb") as f:
        f.write(raw[:off] + struct.pack(f"<{n}f", *vals))


def scale_col(a, rows, width, col, k):
    for r in range(rows):
        a[r * width + col] *= k


def scale_all(a, k):
    for i in range(len(a)):
        a[i] *= k


def scale_from_row(a, rows, width, row, k):
    for i in range(row * width, (row + 1) * width):
        a[i] *= k


if __name__ == "__main__":
    unittest.main()
