"""tests/test_export_robust.py - the exporter's share of issue #24: nothing
lost, nothing silent (notes/robustness.md, "Issue 24").

    python3 -m unittest tests/test_export_robust.py      (from the repository root)

Each case runs the real tools as a user would (subprocesses) on the tiny
checkpoints of tests/fuzz_export.py and checks exit status, the message and
the files left; count_nonfinite is checked against struct's own reading of
the same bytes.
"""
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
EXPORT = os.path.join(ROOT, "export", "export.py")
TOK_EXPORT = os.path.join(ROOT, "export", "tokenizer_export.py")
RAKTN = os.path.join(ROOT, "raktn")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "export"))
import fuzz_export as fz  # noqa: E402
import export as ex  # noqa: E402


def run(argv, **kw):
    return subprocess.run([sys.executable] + argv, capture_output=True, text=True, timeout=120, **kw)


def listing(folder):
    return sorted(os.listdir(folder))


class Base(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="raktn-exp24-")
        self.hf = os.path.join(self.tmp, "hf")
        fz.write_checkpoint(self.hf, dict(fz.BASE_CONFIG))

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def one_error(self, p, *words):
        self.assertEqual(p.returncode, 1, p.stderr)
        lines = p.stderr.strip().split("\n")
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertNotIn("Traceback", p.stderr)
        self.assertNotIn("internal error", p.stderr)
        for w in words:
            self.assertIn(w, lines[0])


class StandaloneTokenizerTemporary(Base):
    """Item 1: tokenizer_export.py HF OUT.bin wrote through OUT.bin.tmp."""

    def test_symlink_at_the_old_temporary_name(self):
        precious = os.path.join(self.tmp, "precious.txt")
        with open(precious, "w") as f:
            f.write("precious")
        out = os.path.join(self.tmp, "te", "tok.bin")
        os.makedirs(os.path.dirname(out))
        os.symlink(precious, out + ".tmp")
        p = run([TOK_EXPORT, self.hf, out])
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(precious) as f:
            self.assertEqual(f.read(), "precious")
        self.assertTrue(os.path.islink(out + ".tmp"))
        import tokenizer_export as te
        with open(out, "rb") as f:
            self.assertEqual(f.read(), te.build_tokenizer(self.hf)[0])
        self.assertEqual(listing(os.path.dirname(out)), ["tok.bin", "tok.bin.tmp"])

    def test_users_file_at_the_old_temporary_name(self):
        out = os.path.join(self.tmp, "tok.bin")
        with open(out + ".tmp", "w") as f:
            f.write("mine")
        p = run([TOK_EXPORT, self.hf, out])
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(out + ".tmp") as f:
            self.assertEqual(f.read(), "mine")

    def test_empty_name(self):
        p = run([TOK_EXPORT, self.hf, ""])
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("empty name", p.stderr)


class OneExportPerFolder(Base):
    """Item 6: two exports into one folder could pair one's model.bin with
    the other's tokenizer.bin. The second is refused while the first holds
    the folder."""

    def test_second_export_refused(self):
        hf_b = os.path.join(self.tmp, "hf_b")
        cfg = dict(fz.BASE_CONFIG, vocab_size=800)     # another model: 800 ids, same tokenizer
        fz.write_checkpoint(hf_b, cfg, tokenizer="model")   # its tokenizer.bin differs too (scores)
        out = os.path.join(self.tmp, "OUT")
        env = dict(os.environ, RAKTN_EXPORT_TEST_PAUSE="between-renames:3")
        a = subprocess.Popen([sys.executable, EXPORT, "--quiet", self.hf, out], stderr=subprocess.PIPE,
                             text=True, env=env)
        line = a.stderr.readline()              # "export: test pause at between-renames"
        self.assertIn("test pause at between-renames", line)
        b = run([EXPORT, "--quiet", hf_b, out])
        self.one_error(b, "another export is writing into this folder")
        rest = a.stderr.read()
        a.stderr.close()
        self.assertEqual(a.wait(), 0, rest)
        with open(os.path.join(out, "model.bin"), "rb") as f:
            vocab = struct.unpack_from("<I", f.read(64), 40)[0]
        self.assertEqual(vocab, 704)            # A's model, with A's tokenizer beside it
        import tokenizer_export as te
        with open(os.path.join(out, "tokenizer.bin"), "rb") as f:
            tok = f.read()
        self.assertEqual(tok, te.build_tokenizer(self.hf)[0])
        self.assertNotEqual(tok, te.build_tokenizer(hf_b)[0])
        self.assertEqual(listing(out), ["model.bin", "tokenizer.bin"])
        # the folder is free again once A has finished
        self.assertEqual(run([EXPORT, "--quiet", hf_b, out]).returncode, 0)


class SingleFileBeforeShards(Base):
    """Item 7: with model.safetensors and an index of shards in one folder,
    transformers loads model.safetensors; so does the exporter, and says so."""

    def test_single_file_wins(self):
        # the index names a shard holding different weights (another seed)
        header, size = fz.st_header(fz.BASE_CONFIG)
        fz.write_file(os.path.join(self.hf, "model-00001-of-00001.safetensors"),
                      fz.st_bytes(header, fz.st_data(size, seed=3)))
        fz.write_file(os.path.join(self.hf, "model.safetensors.index.json"), json.dumps(
            {"weight_map": {name: "model-00001-of-00001.safetensors" for name in header}}).encode())
        alone = os.path.join(self.tmp, "alone")
        fz.write_checkpoint(alone, dict(fz.BASE_CONFIG))
        p = run([EXPORT, "--quiet", self.hf, os.path.join(self.tmp, "OUT")])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("model.safetensors was used, as transformers does", p.stderr)
        q = run([EXPORT, "--quiet", alone, os.path.join(self.tmp, "OUT2")])
        self.assertEqual(q.returncode, 0, q.stderr)
        with open(os.path.join(self.tmp, "OUT", "model.bin"), "rb") as f1, \
                open(os.path.join(self.tmp, "OUT2", "model.bin"), "rb") as f2:
            self.assertEqual(f1.read(), f2.read())


class NonFiniteWeights(Base):
    """Item 10: NaN or Inf weights are exported with a warning naming the
    tensor, the count and the first element."""

    def test_warning_names_the_tensor(self):
        path = os.path.join(self.hf, "model.safetensors")
        with open(path, "rb") as f:
            data = bytearray(f.read())
        n = struct.unpack_from("<Q", data, 0)[0]
        h = json.loads(data[8:8 + n])
        at = 8 + n + h["model.norm.weight"]["data_offsets"][0]
        for k, v in ((3, math.inf), (5, math.nan), (6, -math.inf)):
            struct.pack_into("<f", data, at + 4 * k, v)
        fz.write_file(path, bytes(data))
        p = run([EXPORT, "--quiet", self.hf, os.path.join(self.tmp, "OUT")])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("tensor 'model.norm.weight' holds 3 NaN or Inf values (the first at element 3)",
                      p.stderr)
        self.assertEqual(p.stderr.count("NaN or Inf"), 1)

    def test_count_nonfinite_against_struct(self):
        rng = random.Random(24)
        specials = [math.inf, -math.inf, math.nan, 0.0, -0.0, 1e-45, 3.4e38, -3.4e38, 1.0]
        for esize, fmt in ((4, "<f"), (2, None)):
            for trial in range(50):
                vals = [rng.choice(specials) if rng.random() < 0.05 else rng.uniform(-1e3, 1e3)
                        for _ in range(rng.randrange(1, 300))]
                raw = b"".join(struct.pack("<f", v) for v in vals)
                if esize == 2:      # bf16: the top half of each float32
                    raw = b"".join(raw[i + 2:i + 4] for i in range(0, len(raw), 4))
                    got_vals = [struct.unpack("<f", b"\0\0" + raw[i:i + 2])[0] for i in range(0, len(raw), 2)]
                else:
                    got_vals = [struct.unpack("<f", raw[i:i + 4])[0] for i in range(0, len(raw), 4)]
                bad = [i for i, v in enumerate(got_vals) if not math.isfinite(v)]
                self.assertEqual(ex.count_nonfinite(raw, esize), (len(bad), bad[0] if bad else None))


class HugeConfigNumbers(Base):
    """Item 15: a 401-digit integer is refused naming the field, not an
    internal error."""

    def test_401_digits(self):
        for key in ("rope_theta", "rms_norm_eps"):
            with open(os.path.join(self.hf, "config.json"), "w") as f:
                f.write(json.dumps(dict(fz.BASE_CONFIG))[:-1] + f', "{key}": ' + "9" * 401 + "}")
            p = run([EXPORT, "--quiet", self.hf, os.path.join(self.tmp, "OUT")])
            self.one_error(p, "config.json", f"'{key}'", "as a float32: inf")
            self.assertFalse(os.path.exists(os.path.join(self.tmp, "OUT")))


class EmptyNames(Base):
    """Item 18: an empty output folder name wrote into the current folder."""

    def test_empty_out_dir(self):
        cwd = os.path.join(self.tmp, "cwd")
        os.mkdir(cwd)
        for argv in ([EXPORT, self.hf, ""], [EXPORT, "", os.path.join(self.tmp, "OUT")]):
            p = run(argv, cwd=cwd)
            self.one_error(p, "is an empty name")
            self.assertEqual(listing(cwd), [])


if __name__ == "__main__":
    unittest.main()
