"""tests/test_outputs.py - every file raktn writes, read back by readers of
this file's own, for the three builds (./raktn, ./raktn-plain, ./raktn-truth),
each output alone and all of them together.

    python3 -m unittest tests/test_outputs.py      (after make test's builds)

The run: checkpoint `long` (window 100) over tests/fixtures/long.ids, 260 ids,
so every program goes through three prefill chunks (128 + 128 + 4) with the
window crossing the chunk boundaries. Each file is read twice:
  - by read_npy / read_raw below: plain Python (struct, ast, array), written
    from NumPy's format description (numpy.lib.format: magic, version, header
    length, a dict literal with exactly descr, fortran_order and shape, the
    whole header padded with spaces to a multiple of 64 and ended by '\\n',
    then the data), independently of raktn's writer;
  - by numpy.load, where numpy is installed (Debian: python3-numpy), which
    must agree bit for bit with the plain reader.
Then checked: the dtype (<f4 for raktn and raktn-plain, <f8 for raktn-truth:
float64 all the way), the shape, the size, and the values at every position
against transformers (tests/fixtures/long.logits.f32 and long.hidden.f32:
within 1e-4; raktn and raktn-plain are 7.5e-6 away, the truth build 3.8e-5,
all of it HF's float32 RoPE angles), the argmax at every position; in a
--dump, every module's shape, the modules HF's fixtures have, each layer's
attention weights (rows summing to 1, zero outside the causal window) and,
at the positions around the chunk and window boundaries, the dump's own
links: q_rope/k_rope = q_proj/k_proj rotated by RoPE at that row's position,
attn_weights = softmax(q_rope . k_rope / sqrt(head_dim)) over the window,
attn_output = attn_weights @ v_proj (grouped heads), computed here in
double. Together (-o, --hidden and --dump in one run) each file must equal
the same data in the others exactly (one forward pass) and HF's.
"""
import array
import ast
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

try:
    import numpy as np
except ImportError:  # the plain reader alone
    np = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
MODEL = os.path.join(ROOT, "tests", "work", "models", "long", "model.bin")
BUILDS = (("raktn", "<f4"), ("raktn-plain", "<f4"), ("raktn-truth", "<f8"))
N, V, L, D, H, KV, HD, F, WINDOW = 260, 256, 2, 64, 4, 2, 16, 160, 100
THETA = 10000.0
TOL = 1e-4  # |raktn - HF| on logits and hidden states
# the positions whose dump rows are recomputed here: around the chunk
# boundaries (128, 256), the window's (100, 228), the first and the last
CHECK_POS = sorted(set([0, 1, 2, 98, 99, 100, 101, 126, 127, 128, 129, 130, 199, 200, 227, 228, 229,
                        254, 255, 256, 257, 258, 259] + list(range(0, N, 17))))
MODULE_COLS = {"input_layernorm": D, "self_attn.q_proj": H * HD, "self_attn.k_proj": KV * HD,
               "self_attn.v_proj": KV * HD, "self_attn.q_rope": H * HD, "self_attn.k_rope": KV * HD,
               "self_attn.attn_output": H * HD, "self_attn.o_proj": D, "post_attention_layernorm": D,
               "mlp.gate_proj": F, "mlp.up_proj": F, "mlp.act_fn": F, "mlp.down_proj": D, "": D}


class Array:
    """What a reader found: dtype ('<f4'/'<f8'), shape, flat values"""

    def __init__(self, descr, shape, values):
        self.descr, self.shape, self.values = descr, tuple(shape), values

    def row(self, *index):
        """the last axis at the given leading indices, as a list"""
        off = 0
        for i, k in enumerate(index):
            stride = 1
            for s in self.shape[i + 1:]:
                stride *= s
            off += k * stride
        return self.values[off:off + self.shape[-1]]


def _floats(raw, descr, path):
    code = {"<f4": "f", "<f8": "d"}.get(descr)
    if code is None:
        raise AssertionError(f"{path}: dtype {descr!r} is neither '<f4' nor '<f8'")
    a = array.array(code)
    if len(raw) % a.itemsize:
        raise AssertionError(f"{path}: {len(raw)} bytes is not a whole number of {descr}")
    a.frombytes(raw)
    if sys.byteorder != "little":
        a.byteswap()
    return a


def read_npy(path):
    """A .npy file by NumPy's format description, without numpy"""
    with open(path, "rb") as f:
        data = f.read()
    if data[:6] != b"\x93NUMPY":
        raise AssertionError(f"{path}: no .npy magic")
    major = data[6]
    if major == 1:
        hlen, start = struct.unpack_from("<H", data, 8)[0], 10
    elif major in (2, 3):
        hlen, start = struct.unpack_from("<I", data, 8)[0], 12
    else:
        raise AssertionError(f"{path}: .npy version {major}.{data[7]}")
    header = data[start:start + hlen]
    if (start + hlen) % 64 or not header.endswith(b"\n"):
        raise AssertionError(f"{path}: header of {start + hlen} bytes, not padded to 64 and ended by a newline")
    d = ast.literal_eval(header.decode("latin1").strip())
    if not isinstance(d, dict) or set(d) != {"descr", "fortran_order", "shape"}:
        raise AssertionError(f"{path}: header {d!r}")
    if d["fortran_order"] is not False:
        raise AssertionError(f"{path}: fortran_order {d['fortran_order']!r}")
    shape = d["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise AssertionError(f"{path}: shape {shape!r}")
    values = _floats(data[start + hlen:], d["descr"], path)
    if len(values) != math.prod(shape):
        raise AssertionError(f"{path}: {len(values)} values for shape {shape}")
    return Array(d["descr"], shape, values)


def read_raw(path, descr, shape):
    with open(path, "rb") as f:
        values = _floats(f.read(), descr, path)
    if len(values) != math.prod(shape):
        raise AssertionError(f"{path}: {len(values)} values, wanted {shape} = {math.prod(shape)}")
    return Array(descr, shape, values)


def read_fixture(name, shape):
    return read_raw(os.path.join(FIX, name), "<f4", shape)


def max_abs_diff(a, b):
    worst = 0.0
    for x, y in zip(a, b):
        d = abs(x - y)
        if not d <= worst:   # NaN too
            worst = d
    return worst


def argmax(row):
    best = 0
    for i in range(1, len(row)):
        if row[i] > row[best]:
            best = i
    return best


class Outputs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for b, _ in BUILDS:
            if not os.access(os.path.join(ROOT, b), os.X_OK):
                raise AssertionError(f"./{b} is missing: run make test (it builds raktn, raktn-plain and raktn-truth)")
        if not os.path.exists(MODEL):
            raise AssertionError(f"{MODEL} is missing: run make test (tests/prepare.sh)")
        with open(os.path.join(FIX, "long.ids")) as f:
            cls.ids = f.read().split()
        assert len(cls.ids) == N
        cls.hf_logits = read_fixture("long.logits.f32", (N, V))
        cls.hf_hidden = read_fixture("long.hidden.f32", (L + 1, N, D))
        cls.tmp = tempfile.mkdtemp(prefix="raktn-outputs-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def raktn(self, build, *args):
        r = subprocess.run([os.path.join(ROOT, build), MODEL, "-m", "logits", "--ids", " ".join(self.ids), *args],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, f"./{build} {' '.join(args)}: {r.stderr}")
        return r

    def path(self, build, name):
        return os.path.join(self.tmp, f"{build}.{name}")

    def read(self, path, descr, shape):
        """read_npy (or read_raw), checked, and numpy's reading of the same file"""
        if path.endswith(".npy"):
            a = read_npy(path)
            if np is not None:
                x = np.load(path)
                self.assertEqual((x.dtype.str, x.shape), (a.descr, a.shape), f"{path}: numpy reads another dtype/shape")
                self.assertEqual(x.tobytes(), a.values.tobytes(), f"{path}: numpy reads other values")
        else:
            a = read_raw(path, descr, shape)
        self.assertEqual(a.descr, descr, f"{path}: dtype")
        self.assertEqual(a.shape, tuple(shape), f"{path}: shape")
        return a

    # ---- what each file must hold
    def check_logits(self, a, what):
        for p in range(N):
            got, want = a.row(p), self.hf_logits.row(p)
            d = max_abs_diff(got, want)
            self.assertLessEqual(d, TOL, f"{what}: position {p}: max |dlogit| {d:.3g} from HF")
            self.assertEqual(argmax(got), argmax(want), f"{what}: argmax at position {p}")

    def check_hidden(self, a, what):
        for k in range(L + 1):
            for p in range(N):
                d = max_abs_diff(a.row(k, p), self.hf_hidden.row(k, p))
                self.assertLessEqual(d, TOL, f"{what}: hidden state {k}, position {p}: {d:.3g} from HF")

    def check_dump(self, d, build, descr):
        """d: the dump folder. Returns {name: Array}."""
        names = ["model.embed_tokens", "model.norm", "lm_head"]
        for l in range(L):
            names += [f"model.layers.{l}" + (f".{m}" if m else "") for m in MODULE_COLS]
            names.append(f"model.layers.{l}.self_attn.attn_weights")
        self.assertEqual(sorted(os.listdir(d)), sorted(n + ".npy" for n in names), f"{build}: the dump's files")
        t = {}
        for n in names:
            if n.endswith("attn_weights"):
                shape = (H, N, N)
            elif n == "lm_head":
                shape = (N, V)
            elif n.startswith("model.layers."):
                module = n.split(".", 3)[3] if n.count(".") >= 3 else ""
                shape = (N, MODULE_COLS[module])
            else:
                shape = (N, D)
            t[n] = self.read(os.path.join(d, n + ".npy"), descr, shape)
        what = f"./{build} --dump"
        # the modules HF's fixtures have, at every position
        hid = lambda k: Array("<f4", (N, D), self.hf_hidden.values[k * N * D:(k + 1) * N * D])  # noqa: E731
        for name, ref in (("model.embed_tokens", hid(0)), ("model.layers.0", hid(1)), ("model.norm", hid(2)),
                          ("lm_head", self.hf_logits)):
            for p in range(N):
                e = max_abs_diff(t[name].row(p), ref.row(p))
                self.assertLessEqual(e, TOL, f"{what}: {name} at position {p}: {e:.3g} from HF")
        for l in range(L):
            pre = f"model.layers.{l}.self_attn."
            w = t[pre + "attn_weights"]
            for h in range(H):
                for p in range(N):
                    row = w.row(h, p)
                    first = max(0, p - WINDOW + 1)
                    if any(row[:first]) or any(row[p + 1:]):
                        outside = [k for k in range(N) if (k < first or k > p) and row[k] != 0]
                        self.fail(f"{what}: layer {l} head {h} position {p}: weight outside the window at keys "
                                  f"{outside[:5]}")
                    s = math.fsum(row)
                    self.assertLess(abs(s - 1), 1e-5, f"{what}: layer {l} head {h} position {p}: weights sum to {s}")
            self.check_links(t, l, what, exact_angles=descr == "<f8")
        return t

    def check_links(self, t, l, what, exact_angles):
        """q_rope, k_rope, attn_weights and attn_output at CHECK_POS, from the
        dump's own q_proj, k_proj and v_proj, in double. The RoPE angle is
        HF's float32 fl32(p * inv_freq), or exact for the truth build (the
        two differ by up to 1.5e-5 rad at these positions)."""
        pre = f"model.layers.{l}.self_attn."
        f32 = lambda x: struct.unpack("<f", struct.pack("<f", x))[0]  # noqa: E731
        inv = [1.0 / THETA ** (2 * i / HD) if exact_angles else f32(1.0 / THETA ** (2 * i / HD))
               for i in range(HD // 2)]

        def rotated(x, p):  # rotate_half by the angle of position p
            out = list(x)
            for base in range(0, len(x), HD):
                for i in range(HD // 2):
                    a = p * inv[i] if exact_angles else f32(p * inv[i])
                    x0, x1 = x[base + i], x[base + i + HD // 2]
                    out[base + i] = x0 * math.cos(a) - x1 * math.sin(a)
                    out[base + i + HD // 2] = x1 * math.cos(a) + x0 * math.sin(a)
            return out

        def close(got, want, msg, rel=1e-5):
            scale = math.sqrt(math.fsum(v * v for v in want) / len(want)) or 1.0
            e = max_abs_diff(got, want) / scale
            self.assertLessEqual(e, rel, f"{msg}: {e:.3g} of the row's RMS")

        group = H // KV
        for p in CHECK_POS:
            close(t[pre + "q_rope"].row(p), rotated(t[pre + "q_proj"].row(p), p), f"{what}: layer {l} q_rope[{p}]")
            close(t[pre + "k_rope"].row(p), rotated(t[pre + "k_proj"].row(p), p), f"{what}: layer {l} k_rope[{p}]")
            first = max(0, p - WINDOW + 1)
            q = t[pre + "q_rope"].row(p)
            out = t[pre + "attn_output"].row(p)
            krows = [t[pre + "k_rope"].row(k) for k in range(first, p + 1)]
            vrows = [t[pre + "v_proj"].row(k) for k in range(first, p + 1)]
            for h in range(H):
                kvh = h // group
                qh = q[h * HD:(h + 1) * HD]
                scores = []
                for kr in krows:
                    kk = kr[kvh * HD:(kvh + 1) * HD]
                    scores.append(sum(a * b for a, b in zip(qh, kk)) / math.sqrt(HD))
                m = max(scores)
                e = [math.exp(s - m) for s in scores]
                z = math.fsum(e)
                want = [0.0] * first + [x / z for x in e] + [0.0] * (N - p - 1)
                got = t[pre + "attn_weights"].row(h, p)
                self.assertLessEqual(max_abs_diff(got, want), 1e-5, f"{what}: layer {l} head {h}: attention "
                                     f"weights of position {p} are not softmax(q.k / sqrt(d)) of its window")
                o = [0.0] * HD
                for k in range(first, p + 1):
                    wk, vk = got[k], vrows[k - first]
                    for i in range(HD):
                        o[i] += wk * vk[kvh * HD + i]
                close(out[h * HD:(h + 1) * HD], o, f"{what}: layer {l} head {h} attn_output[{p}]")

    # ---- the tests: each build, each output alone, then all together
    def test_logits_alone(self):
        for build, descr in BUILDS:
            for ext in ("npy", "f32"):
                with self.subTest(build=build, ext=ext):
                    out = self.path(build, "logits." + ext)
                    self.raktn(build, "-o", out)
                    self.check_logits(self.read(out, descr, (N, V)), f"./{build} -o {ext}")

    def test_hidden_alone(self):
        for build, descr in BUILDS:
            for ext in ("npy", "f32"):
                with self.subTest(build=build, ext=ext):
                    out = self.path(build, "hidden." + ext)
                    self.raktn(build, "--hidden", out)
                    self.check_hidden(self.read(out, descr, (L + 1, N, D)), f"./{build} --hidden {ext}")

    def test_dump_alone(self):
        for build, descr in BUILDS:
            with self.subTest(build=build):
                d = self.path(build, "dump")
                shutil.rmtree(d, ignore_errors=True)
                self.raktn(build, "--dump", d)
                self.check_dump(d, build, descr)

    def test_all_together(self):
        for (build, descr), ext in zip(BUILDS, ("npy", "f32", "f32")):
            if True:
                with self.subTest(build=build, ext=ext):
                    lo, hi, d = self.path(build, "all-logits." + ext), self.path(build, "all-hidden." + ext), \
                        self.path(build, "all-dump")
                    shutil.rmtree(d, ignore_errors=True)
                    self.raktn(build, "-o", lo, "--hidden", hi, "--dump", d)
                    logits, hidden = self.read(lo, descr, (N, V)), self.read(hi, descr, (L + 1, N, D))
                    self.check_logits(logits, f"./{build} -o with --hidden --dump")
                    self.check_hidden(hidden, f"./{build} --hidden with -o --dump")
                    t = self.check_dump(d, build, descr)
                    # one forward pass: the same numbers in every file
                    self.assertEqual(logits.values, t["lm_head"].values, "-o differs from the dump's lm_head")
                    for k, name in enumerate(("model.embed_tokens", "model.layers.0", "model.norm")):
                        self.assertEqual(hidden.values[k * N * D:(k + 1) * N * D], t[name].values,
                                         f"--hidden's entry {k} differs from the dump's {name}")

    def test_explain_json(self):
        """-m explain --json over the same 260 ids (three chunks, the window
        crossing them), read back: the tokens are long.ids; `final` (= the
        last layer's lens) is softmax of HF's logits, its top ids in HF's
        order; each layer's attention is the --dump's attn_weights, exactly"""
        k = 5
        for build, descr in BUILDS:
            with self.subTest(build=build):
                out = self.path(build, "explain.json")
                r = subprocess.run([os.path.join(ROOT, build), MODEL, "-m", "explain", "--ids", " ".join(self.ids),
                                    "--json", out], capture_output=True, text=True, timeout=300)
                self.assertEqual(r.returncode, 0, r.stderr)
                with open(out) as f:
                    e = json.load(f)
                self.assertEqual([t["id"] for t in e["tokens"]], [int(i) for i in self.ids])
                self.assertEqual((e["k"], len(e["layers"]), len(e["final"])), (k, L, N))
                self.assertEqual(e["final"], e["layers"][-1]["lens"])
                for p in range(N):
                    z = self.hf_logits.row(p)
                    m = max(z)
                    ex = [math.exp(v - m) for v in z]
                    s = sum(ex)
                    order = sorted(range(V), key=lambda v: (-z[v], v))
                    got = e["final"][p]
                    for j, (i, pr) in enumerate(zip(got["ids"], got["probs"])):
                        # HF's order, but for logits closer than the fixtures' tolerance
                        self.assertTrue(i == order[j] or abs(z[i] - z[order[j]]) <= TOL, f"pos {p} guess {j}")
                        self.assertAlmostEqual(pr, ex[i] / s, delta=1e-4, msg=f"pos {p} id {i}")
                dump = self.path(build, "explain-dump")
                self.raktn(build, "--dump", dump)
                for l in range(L):
                    w = read_npy(os.path.join(dump, f"model.layers.{l}.self_attn.attn_weights.npy"))
                    self.assertEqual(w.shape, (H, N, N))
                    flat = array.array("d" if descr == "<f8" else "f",
                                       [x for head in e["layers"][l]["attention"] for row in head for x in row])
                    self.assertEqual(flat.tobytes(), w.values.tobytes(), f"layer {l}: attention != the dump's")


if __name__ == "__main__":
    unittest.main()
