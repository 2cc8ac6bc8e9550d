"""tests/test_export.py - export/export.py on malformed checkpoints (issue #7).

    python3 -m unittest tests/test_export.py      (from the repository root)

Every case builds a tiny checkpoint in a temporary directory (stdlib only),
breaks one thing, runs the real exporter as a subprocess and checks:
  - exit status 1 and no traceback;
  - exactly one line on stderr, "export: error: ...", naming the file (and
    the tensor, where one is at fault);
  - no model.bin / tokenizer.bin / *.tmp left in the output directory, and a
    good model.bin that was already there is byte-for-byte untouched.
A full disk is simulated with RLIMIT_FSIZE in the child (Python ignores
SIGXFSZ, so the write fails with EFBIG as it would with ENOSPC).
"""
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORT = os.path.join(ROOT, "export", "export.py")

CONFIG = {
    "architectures": ["MistralForCausalLM"],
    "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2,
    "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 16,
    "max_position_embeddings": 32, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "hidden_act": "silu", "tie_word_embeddings": False, "sliding_window": None,
    "bos_token_id": 1, "eos_token_id": 2,
}


def shapes(cfg):
    D, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = D // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    out = [("model.embed_tokens.weight", [V, D])]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        out += [(p + "input_layernorm.weight", [D]), (p + "self_attn.q_proj.weight", [q, D]),
                (p + "self_attn.k_proj.weight", [kv, D]), (p + "self_attn.v_proj.weight", [kv, D]),
                (p + "self_attn.o_proj.weight", [D, q]), (p + "post_attention_layernorm.weight", [D]),
                (p + "mlp.gate_proj.weight", [F, D]), (p + "mlp.up_proj.weight", [F, D]),
                (p + "mlp.down_proj.weight", [D, F])]
    out += [("model.norm.weight", [D]), ("lm_head.weight", [V, D])]
    return out


def tensor_bytes(shape, seed):
    n = 1
    for s in shape:
        n *= s
    return struct.pack(f"<{n}f", *(((i * 7 + seed * 13) % 17 - 8) / 16.0 for i in range(n)))


def safetensors(tensors, header=None):
    """tensors: [(name, dtype, shape, data)] -> file bytes; header: override
    the JSON object before it is serialized (a function of the dict)."""
    h, data = {}, b""
    for name, dtype, shape, raw in tensors:
        h[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if header:
        h = header(h)
    hj = (h if isinstance(h, (bytes, bytearray)) else json.dumps(h).encode())
    return struct.pack("<Q", len(hj)) + hj + data


def good_tensors(cfg=CONFIG):
    return [(n, "F32", s, tensor_bytes(s, i)) for i, (n, s) in enumerate(shapes(cfg))]


class ExportRobustness(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="raktn-export-test-")
        self.hf = os.path.join(self.tmp, "hf")
        self.out = os.path.join(self.tmp, "out")
        os.makedirs(self.hf)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- building checkpoints
    def write_config(self, cfg=CONFIG, raw=None):
        with open(os.path.join(self.hf, "config.json"), "wb") as f:
            f.write(raw if raw is not None else json.dumps(cfg).encode())

    def write_st(self, data, name="model.safetensors"):
        with open(os.path.join(self.hf, name), "wb") as f:
            f.write(data)

    def good_checkpoint(self):
        self.write_config()
        self.write_st(safetensors(good_tensors()))

    # -- running the exporter
    def run_export(self, fsize_limit=None, extra=()):
        def limit():
            if fsize_limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))
        return subprocess.run([sys.executable, EXPORT, "--quiet", *extra, self.hf, self.out],
                              capture_output=True, text=True, preexec_fn=limit, timeout=120)

    def place_good_model(self):
        """Export the good checkpoint into out/, return its bytes; the caller then
        breaks the checkpoint and checks the file survives the failed export."""
        self.good_checkpoint()
        r = self.run_export()
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(self.out, "model.bin"), "rb") as f:
            return f.read()

    def assert_failure(self, r, *must_name, good=None):
        self.assertEqual(r.returncode, 1, f"stdout={r.stdout!r} stderr={r.stderr!r}")
        self.assertNotIn("Traceback", r.stderr)
        lines = r.stderr.splitlines()
        self.assertEqual(len(lines), 1, f"want one line on stderr, got {r.stderr!r}")
        self.assertTrue(lines[0].startswith("export: error: "), lines[0])
        for s in must_name:
            self.assertIn(s, lines[0])
        left = sorted(os.listdir(self.out)) if os.path.isdir(self.out) else []
        self.assertFalse([n for n in left if n.endswith(".tmp")], f"temporary files left: {left}")
        if good is None:
            self.assertNotIn("model.bin", left)
        else:
            with open(os.path.join(self.out, "model.bin"), "rb") as f:
                self.assertEqual(f.read(), good, "an existing good model.bin was changed")
        return lines[0]

    def fail_case(self, breaker, *must_name):
        """Run a failure twice: into an empty out/, and over a good model.bin."""
        good = self.place_good_model()
        breaker()
        self.assert_failure(self.run_export(), *must_name, good=good)
        shutil.rmtree(self.out)
        self.assert_failure(self.run_export(), *must_name)

    # -- the good path, so that the failures below fail for the stated reason
    def test_good_checkpoint_exports(self):
        self.good_checkpoint()
        r = self.run_export()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(os.listdir(self.out)), ["model.bin"])
        raktn = os.path.join(ROOT, "raktn")
        if os.access(raktn, os.X_OK):   # and raktn loads it
            p = subprocess.run([raktn, os.path.join(self.out, "model.bin"), "-m", "logits", "--ids", "1 2 3",
                                "--top", "1"], capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)

    # -- safetensors structure
    def test_header_length_past_eof(self):
        def br():
            data = bytearray(safetensors(good_tensors()))
            data[0:8] = struct.pack("<Q", len(data))
            self.write_st(bytes(data))
        self.fail_case(br, "model.safetensors", "header length")

    def test_file_shorter_than_length_field(self):
        self.fail_case(lambda: self.write_st(b"\x01\x02"), "model.safetensors", "too short")

    def test_bad_json(self):
        self.fail_case(lambda: self.write_st(safetensors(good_tensors(), header=lambda h: b"{not json")),
                       "model.safetensors", "not valid JSON")

    def test_json_not_utf8(self):
        self.fail_case(lambda: self.write_st(safetensors(good_tensors(), header=lambda h: b'{"\xff": 1}')),
                       "model.safetensors", "not valid JSON")

    def test_json_deeply_nested(self):
        deep = b"[" * 100000 + b"]" * 100000
        self.fail_case(lambda: self.write_st(safetensors(good_tensors(), header=lambda h: deep)),
                       "model.safetensors")

    def test_header_not_an_object(self):
        self.fail_case(lambda: self.write_st(safetensors(good_tensors(), header=lambda h: b"[1, 2]")),
                       "model.safetensors", "not a JSON object")

    def test_offsets_outside_data(self):
        def hdr(h):
            h["model.norm.weight"]["data_offsets"] = [10 ** 9, 10 ** 9 + 32]
            return h
        self.fail_case(lambda: self.write_st(safetensors(good_tensors(), header=hdr)),
                       "model.safetensors", "model.norm.weight", "past the end")

    def test_offsets_reversed(self):
        def hdr(h):
            b, e = h["model.norm.weight"]["data_offsets"]
            h["model.norm.weight"]["data_offsets"] = [e, b]
            return h
        self.fail_case(lambda: self.write_st(safetensors(good_tensors(), header=hdr)),
                       "model.safetensors", "model.norm.weight", "data_offsets")

    def test_offsets_negative_or_not_ints(self):
        def hdr(h):
            h["model.norm.weight"]["data_offsets"] = [-32, 0.5]
            return h
        self.fail_case(lambda: self.write_st(safetensors(good_tensors(), header=hdr)),
                       "model.safetensors", "model.norm.weight", "data_offsets")

    def test_overlapping_tensors(self):
        def hdr(h):
            # norm (8 floats) now starts half-way into the layer-1 down_proj before it
            e = h["model.layers.1.mlp.down_proj.weight"]["data_offsets"][1]
            h["model.norm.weight"]["data_offsets"] = [e - 16, e + 16]
            return h
        self.fail_case(lambda: self.write_st(safetensors(good_tensors(), header=hdr)),
                       "model.safetensors", "model.norm.weight", "overlap")

    def test_unknown_dtype(self):
        def br():
            t = good_tensors()
            t = [(n, "I32" if n == "model.layers.0.mlp.up_proj.weight" else d, s, raw) for n, d, s, raw in t]
            self.write_st(safetensors(t))
        self.fail_case(br, "model.safetensors", "model.layers.0.mlp.up_proj.weight", "I32")

    def test_dtype_not_a_string(self):
        def hdr(h):
            h["model.norm.weight"]["dtype"] = ["F32"]
            return h
        self.fail_case(lambda: self.write_st(safetensors(good_tensors(), header=hdr)),
                       "model.safetensors", "model.norm.weight")

    def test_size_does_not_match_shape(self):
        def hdr(h):
            h["model.layers.1.self_attn.k_proj.weight"]["shape"] = [4, 9]
            return h
        self.fail_case(lambda: self.write_st(safetensors(good_tensors(), header=hdr)),
                       "model.safetensors", "model.layers.1.self_attn.k_proj.weight", "bytes of data")

    def test_shape_does_not_match_config(self):
        def br():
            t = good_tensors()
            t = [(n, d, [8, 4] if n.endswith("0.self_attn.k_proj.weight") else s, raw) for n, d, s, raw in t]
            self.write_st(safetensors(t))
        self.fail_case(br, "model.safetensors", "model.layers.0.self_attn.k_proj.weight", "config implies")

    def test_missing_tensor(self):
        self.fail_case(lambda: self.write_st(safetensors([t for t in good_tensors() if t[0] != "model.norm.weight"])),
                       "model.norm.weight", "missing")

    def test_unexpected_tensor(self):
        self.fail_case(lambda: self.write_st(safetensors(good_tensors() + [("model.extra.bias", "F32", [2], b"\0" * 8)])),
                       "model.safetensors", "model.extra.bias")

    def test_no_weights_at_all(self):
        self.fail_case(lambda: os.unlink(os.path.join(self.hf, "model.safetensors")), self.hf, "no model.safetensors")

    # -- shards
    def write_sharded(self, drop_shard=None, index_raw=None):
        os.unlink(os.path.join(self.hf, "model.safetensors"))
        t = good_tensors()
        half = len(t) // 2
        shards = {"model-00001-of-00002.safetensors": t[:half], "model-00002-of-00002.safetensors": t[half:]}
        wmap = {}
        for fn, ts in shards.items():
            if fn != drop_shard:
                self.write_st(safetensors(ts), fn)
            wmap.update({n: fn for n, *_ in ts})
        with open(os.path.join(self.hf, "model.safetensors.index.json"), "wb") as f:
            f.write(index_raw if index_raw is not None else json.dumps({"weight_map": wmap}).encode())

    def test_sharded_good(self):
        self.good_checkpoint()
        self.write_sharded()
        r = self.run_export()
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_missing_shard(self):
        self.fail_case(lambda: self.write_sharded(drop_shard="model-00002-of-00002.safetensors"),
                       "model-00002-of-00002.safetensors", "missing")

    def test_bad_index(self):
        self.fail_case(lambda: self.write_sharded(index_raw=b"[]"), "model.safetensors.index.json")

    def test_shard_name_with_path(self):
        idx = json.dumps({"weight_map": {"model.norm.weight": "../x.safetensors"}}).encode()
        self.fail_case(lambda: self.write_sharded(index_raw=idx), "model.safetensors.index.json", "../x.safetensors")

    # -- config.json
    def test_missing_config(self):
        self.fail_case(lambda: os.unlink(os.path.join(self.hf, "config.json")), "config.json")

    def test_config_bad_json(self):
        self.fail_case(lambda: self.write_config(raw=b"{\"hidden_size\": "), "config.json", "not valid JSON")

    def test_config_missing_keys(self):
        for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                    "vocab_size", "max_position_embeddings", "rms_norm_eps"):
            with self.subTest(key=key):
                if os.path.isdir(self.out):
                    shutil.rmtree(self.out)
                cfg = dict(CONFIG)
                del cfg[key]
                self.fail_case(lambda: self.write_config(cfg), "config.json", key)

    def test_config_bad_values(self):
        for key, value in (("hidden_size", -8), ("num_attention_heads", 3), ("num_key_value_heads", 3),
                           ("vocab_size", "16"), ("rms_norm_eps", 0), ("rope_theta", 1e39),
                           ("rms_norm_eps", 2.0), ("hidden_act", "gelu"), ("bos_token_id", 99),
                           ("num_hidden_layers", True), ("sliding_window", -1)):
            with self.subTest(key=key, value=value):
                if os.path.isdir(self.out):
                    shutil.rmtree(self.out)
                cfg = dict(CONFIG)
                cfg[key] = value
                self.fail_case(lambda: self.write_config(cfg), "config.json", key)

    def test_config_infinity(self):
        # Python's json accepts Infinity/NaN; they must not reach model.bin
        for key in ("rope_theta", "rms_norm_eps"):
            with self.subTest(key=key):
                if os.path.isdir(self.out):
                    shutil.rmtree(self.out)
                raw = json.dumps(CONFIG).replace(f'"{key}": ', f'"{key}": Infinity, "x_{key}": ').encode()
                self.fail_case(lambda: self.write_config(raw=raw), "config.json", key)

    # -- a full disk
    def test_full_disk(self):
        good = self.place_good_model()
        os.unlink(os.path.join(self.out, "model.bin"))   # a fresh export first
        r = self.run_export(fsize_limit=4096)
        line = self.assert_failure(r, "model.bin.tmp")
        self.assertTrue("File too large" in line or "No space left" in line, line)
        self.assertIn("tensor", line)
        # and over an existing good model.bin
        with open(os.path.join(self.out, "model.bin"), "wb") as f:
            f.write(good)
        r = self.run_export(fsize_limit=4096)
        self.assert_failure(r, "model.bin.tmp", good=good)

    def test_full_disk_while_writing_tokenizer(self):
        tj = os.path.join(ROOT, "tests", "work", "tok", "src", "rakuten48k", "tokenizer.json")
        if not os.path.exists(tj):
            self.skipTest("run tests/prepare.sh first (needs tests/work/tok/src/rakuten48k/tokenizer.json)")
        self.good_checkpoint()
        with open(tj, "rb") as f:
            tok = f.read()
        with open(os.path.join(self.hf, "tokenizer.json"), "wb") as f:
            f.write(tok)
        # model.bin is a few KB, tokenizer.bin ~2.2 MB: only the first fits
        r = self.run_export(fsize_limit=1 << 20)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertNotIn("Traceback", r.stderr)
        last = r.stderr.splitlines()[-1]
        self.assertTrue(last.startswith("export: error: "), r.stderr)
        self.assertIn("tokenizer.bin", last)
        left = sorted(os.listdir(self.out))
        self.assertEqual(left, ["model.bin"], f"left behind: {left}")


if __name__ == "__main__":
    unittest.main()
