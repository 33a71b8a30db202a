#!/usr/bin/env python3
"""Regenerates the seed corpora under Fuzz/corpus/ from small files in Tests/Fixtures (standard library only).

Each harness's input layout is described at the top of its Fuzz/<Harness>/<Harness>.swift; the seeds follow it
(e.g. a leading selector byte). Run from the repository root: python3 Fuzz/make_corpus.py. The output is
deterministic, so the committed corpora only change when this script or the fixtures do.
"""
import base64
import hashlib
import json
import os
import pickle
import shutil
import struct
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "Tests", "Fixtures")
OUT = os.path.join(ROOT, "Fuzz", "corpus")


def fixture(*parts):
    with open(os.path.join(FIX, *parts), "rb") as f:
        return f.read()


def write(corpus, seeds):
    d = os.path.join(OUT, corpus)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, data in seeds:
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def lines(data, n):
    return b"".join(data.splitlines(keepends=True)[:n])


def pickles_of(path):
    """The data.pkl entries of a torch.save zip."""
    with zipfile.ZipFile(os.path.join(FIX, path)) as z:
        return [z.read(n) for n in z.namelist() if n.endswith("data.pkl")]


captions = [json.loads(l) for l in fixture("dataset", "valid_texts.jsonl").splitlines() if l.strip()]
tiny_png = fixture("images", "tiny.png")

# --- pickle: torch pickles from the checkpoint fixtures, and LMDB pair records as Python pickles them.
seeds = [("torch_saved.pkl", pickles_of("checkpoints/torch_saved.pt")[0]), ("edge_cases.pkl", pickles_of("models/edge_cases.pt")[0])]
for i, c in enumerate(captions[:3]):
    for proto in (0, 2, 4, 5):
        seeds.append((f"pair{i}-p{proto}.pkl", pickle.dumps((c["image_ids"][0], c["text_id"], c["text"]), protocol=proto)))
seeds.append(("values-p4.pkl", pickle.dumps({"a": [1, 2.5, None, True, b"xy", (1 << 70), -3, "é"], "b": {"c": (1,)}}, protocol=4)))
seeds.append(("optimizer-p2.pkl", pickle.dumps({"state": {0: {"step": 3, "exp_avg": None}}, "param_groups": [
    {"lr": 1e-4, "betas": (0.9, 0.98), "eps": 1e-6, "weight_decay": 0.001, "amsgrad": False, "params": [0, 1]}]}, protocol=2)))
write("pickle", seeds)

# --- torchsave: the small torch.save fixtures as they are.
write("torchsave", [("torch_saved.pt", fixture("checkpoints", "torch_saved.pt")), ("edge_cases.pt", fixture("models", "edge_cases.pt"))])


# --- safetensors: the small fixture, and a few files written to the format's spec (dtypes, metadata, empty tensors).
def safetensors(tensors, metadata=None):
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


write("safetensors", [
    ("edge_cases.safetensors", fixture("models", "edge_cases.expected.safetensors")),
    ("dtypes.safetensors", safetensors([
        ("f32", "F32", [2, 2], struct.pack("<4f", 1, -2, 0.5, 3)), ("f16", "F16", [3], b"\x00\x3c\x00\xc0\x00\x00"),
        ("bf16", "BF16", [1], b"\x80\x3f"), ("f64", "F64", [], struct.pack("<d", 2.0)),
        ("i64", "I64", [2], struct.pack("<2q", 7, -1)), ("i8", "I8", [2, 2], b"\x01\xff\x7f\x80"),
        ("u8", "U8", [1], b"\x05"), ("bool", "BOOL", [2], b"\x00\x01"), ("empty", "F32", [0, 3], b""),
    ], {"format": "pt"})),
])

# --- hfconfig: byte 0 = Hugging Face config.json, byte 1 = cn-clip config JSON.
hf = {
    "architectures": ["ChineseCLIPModel"], "model_type": "chinese_clip", "projection_dim": 32,
    "text_config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
                    "vocab_size": 21128, "max_position_embeddings": 512, "type_vocab_size": 2, "hidden_act": "gelu",
                    "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02},
    "vision_config": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "patch_size": 16, "image_size": 64},
}
write("hfconfig", [
    ("hf-vit-tiny.json", b"\x00" + json.dumps(hf, indent=2).encode()),
    ("vit-tiny.json", b"\x01" + fixture("models", "vit-tiny.json")),
    ("rn-tiny.json", b"\x01" + fixture("models", "rn-tiny.json")),
])

# --- json: selector byte (see FuzzJSON.swift), then the document.
write("json", [
    ("0-output.json", b"\x00" + fixture("eval", "output.json")),
    ("0-values.json", b"\x00" + b'{"a": [1, -0.0, 1e300, 12345678901234567890123, "\\u00e9\\ud83d\\ude00", NaN, -Infinity], "a": null}'),
    ("1-valid_texts.jsonl", b"\x01" + lines(fixture("dataset", "valid_texts.jsonl"), 6)),
    ("2-img_feat.jsonl", b"\x02" + lines(fixture("extract", "train_imgs.img_feat.jsonl"), 3)),
    ("2-txt_feat.jsonl", b"\x02" + lines(fixture("extract", "train_texts.txt_feat.jsonl"), 2).replace(b'"text_id"', b'"image_id"')),
    ("3-eval.jsonl", b"\x03" + lines(fixture("eval", "valid_texts.jsonl"), 4) + b"\x00" + lines(fixture("eval", "valid_predictions.jsonl"), 4)),
    ("4-annotations.jsonl", b"\x04" + lines(fixture("eval", "valid_texts.jsonl"), 4)),
])

# --- tsv: image rows (image_id<TAB>base64), LF and CRLF, both alphabets, with the fixture's small images.
b64 = base64.b64encode(tiny_png)
write("tsv", [
    ("tiny.tsv", b"1000065\t" + b64 + b"\n1000072\t" + base64.urlsafe_b64encode(tiny_png) + b"\n"),
    ("crlf.tsv", b"7\t" + b64 + b"\r\n\r\n8\t" + base64.b64encode(tiny_png[:40]) + b"\r\n"),
    ("no-final-newline.tsv", b"  9\t" + b64 + b"  "),
    ("valid_imgs.tsv", lines(fixture("dataset", "valid_imgs.tsv"), 1)[:16384]),
])


# --- lmdb: selector byte (even: pairs, odd: imgs), then [klen][key][vlen LE16][value] records.
def records(pairs):
    out = b""
    for k, v in pairs:
        out += bytes([len(k)]) + k + struct.pack("<H", len(v)) + v
    return out


pairs = [(str(i).encode(), pickle.dumps((c["image_ids"][0], c["text_id"], c["text"]), protocol=4)) for i, c in enumerate(captions[:3])]
write("lmdb", [
    ("pairs", b"\x00" + records(pairs + [(b"num_samples", b"3")])),
    ("imgs", b"\x01" + records([(b"1000065", base64.b64encode(tiny_png)), (b"1000072", base64.urlsafe_b64encode(tiny_png)), (b"num_images", b"2")])),
])

# --- tokenizer: selector byte 0–2 = text (the byte also sets a context length), 3 = a vocab.txt.
cases = [json.loads(l)["text"] for l in fixture("tokenizer", "cases.jsonl").splitlines() if l.strip()]
seeds = []
for i, text in enumerate(cases[::max(1, len(cases) // 40)][:40]):
    seeds.append((f"text{i:02d}", bytes([i % 3 * 4]) + text.encode("utf-8", "surrogatepass")))
seeds.append(("vocab", b"\x03" + "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n一\n张\n猫\n的\n图\n片\na\nphoto\nof\n##s\ncat\n".encode()))
write("tokenizer", seeds)

# --- image: the fixture's small files (one per format and mode).
write("image", [(n, fixture("images", n)) for n in
                ["tiny.png", "gray.png", "palette.png", "lossy.webp", "gray.jpg", "progressive.jpg"]])

# --- server: selector byte (see FuzzServer.swift), then the query string or body.
write("server", [
    ("0-get-text", b"\x00q=%E7%9A%AE%E5%8D%A1%E4%B8%98&k=3"),
    ("1-post-text", b"\x01" + json.dumps({"query": "皮卡丘", "k": 3}, ensure_ascii=False).encode()),
    ("2-post-image", b"\x02" + tiny_png),
    ("3-classify", b"\x03" + json.dumps({"image": base64.b64encode(tiny_png).decode(), "labels": ["猫", "狗"], "template": "一张{}的图片。"}).encode()),
    ("3-classify-templates", b"\x03" + json.dumps({"image": base64.b64encode(tiny_png).decode(), "labels": ["猫"], "templates": ["{}", "a {}"]}).encode()),
    ("4-thumbnail", b"\x0412.jpg"),
    ("2-post-image-k", b"\x05k=2&captions=1\x00" + tiny_png),
])

total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
print(f"corpora written under {os.path.relpath(OUT, ROOT)}: {total} bytes")
