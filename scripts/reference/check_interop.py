"""Checks, with clients no one on this project wrote, the models `cnclip convert` and `cnclip export onnx` write.

For each model it takes `cnclip encode --unnormalized` on the original checkpoint as "ours" and compares with it:
  cn-clip       the original checkpoint (a sanity row), and `convert --to pt`'s file: torch.load (weights_only, as
                cn-clip loads), `module.` stripped, CLIP(**config) in fp32, load_state_dict(strict=True),
                encode_image / encode_text;
  safetensors   `convert --to safetensors`'s file read by the safetensors package: original key names, tensors equal
                to the checkpoint's, the architecture in its metadata; `cnclip encode --resume FILE` alone;
  transformers  `convert --to hf`'s directory (ViT models; RN has no Hugging Face layout):
                ChineseCLIPModel.from_pretrained (FAIL on any missing / unexpected / mismatched key or any warning it
                logs), get_image_features / get_text_features; ChineseCLIPProcessor.from_pretrained: its tokenizer's
                ids equal cn_clip.clip.tokenize's, its image processor's pixels equal image_transform's (<= 1e-5);
                `cnclip encode --resume DIR` alone;
  onnxruntime   `export onnx` (fp32, and --fp16 in its own directory) on the CPU: batch and sequence dimensions
                symbolic in the graph (onnx package), inputs / outputs float32 / int64, batches 1, 3 and 16, texts of
                5 and of 52 tokens, and 10 runs of one session on one input bit-identical;
  round trip    pt -> hf -> pt and pt -> safetensors -> pt with cnclip itself: the same keys (after `module.`),
                torch.equal tensors.
Features are compared as max|a - b| / max(max|b|, 1e-12) per feature matrix, b being ours: 1e-4 for fp32 clients,
2e-3 for the fp16 ONNX export. Inputs: 16 PNG images of exactly the model's resolution (resizing is the identity, so
preprocessing cannot differ), and three sets of 16 texts: three-character words (5 tokens, encoded at
--context-length 5), long texts truncated at 52 tokens, and texts of 1 to 40 tokens padded to 52.

Models: the fixture models Tests/Fixtures/models/{vit-tiny,rn-tiny}.pt with their .json configs; with --full also
ViT-B-16@RoBERTa-wwm-ext-base-chinese with random weights, made here with cn_clip (the model_configs JSONs merged as
create_model merges them, fp32, every parameter perturbed by a seeded generator) and given to cnclip by
--vision-model / --text-model.

Prints one row per check (model | client | case | max abs diff | relative | limit | result), progress on stderr,
then a summary line; exits 1 if anything failed. Works in a temporary directory, removed at the end unless --keep
(with --work DIR, only what the script wrote there is removed).

usage (reference environment: ../shared/reference/setup_ref_env.sh):
    ~/.cache/cnclip-ref/venv/bin/python scripts/reference/check_interop.py --cnclip .build/release/cnclip \\
        [--work DIR] [--keep] [--full]
"""
import argparse
import ast
import gc
import glob
import importlib.metadata
import io
import json
import logging
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings

import numpy as np
import torch
from PIL import Image

import cn_clip.clip as clip
from cn_clip.clip.model import CLIP
from cn_clip.clip.utils import image_transform

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures", "models")
CLIP_DIR = os.path.dirname(clip.__file__)
VOCAB = os.path.join(CLIP_DIR, "vocab.txt")

FP32_LIMIT = 1e-4
FP16_LIMIT = 2e-3
PIXEL_LIMIT = 1e-5
SAME_TOOL_LIMIT = 1e-6  # ours on a converted file against ours on the original: the same weights, the same code
N = 16

# ---------------------------------------------------------------- the table

ROWS = []
WIDTHS = (9, 16, 40, 12, 10, 11, 6)


def _line(cells):
    return " | ".join(str(c).ljust(w) for c, w in zip(cells, WIDTHS)).rstrip()


def header():
    print(_line(("model", "client", "case", "max abs diff", "relative", "limit", "result")))
    print("-+-".join("-" * w for w in WIDTHS))
    sys.stdout.flush()


def row(model, client, case, ok, diff=None, rel=None, limit="-", detail=None):
    """One line of the table; detail (a string or lines) follows indented when given."""
    fmt = lambda v: "-" if v is None else (f"{v:.3e}" if isinstance(v, float) else str(v))
    ROWS.append((model, client, case, ok))
    print(_line((model, client, case, fmt(diff), fmt(rel), limit, "PASS" if ok else "FAIL")))
    if detail:
        for d in ([detail] if isinstance(detail, str) else detail):
            print(f"{'':{WIDTHS[0]}}     {d}")
    sys.stdout.flush()


def compare(model, client, case, got, ours, limit):
    got = np.asarray(got, np.float64)
    ours = np.asarray(ours, np.float64)
    if got.shape != ours.shape:
        return row(model, client, case, False, limit=f"{limit:.0e} rel", detail=f"shape {got.shape}, ours {ours.shape}")
    if not np.isfinite(got).all():
        return row(model, client, case, False, limit=f"{limit:.0e} rel", detail="non-finite values")
    diff = float(np.abs(got - ours).max())
    rel = diff / max(float(np.abs(ours).max()), 1e-12)
    row(model, client, case, rel <= limit, diff, rel, f"{limit:.0e} rel")


def progress(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _one_line(e):
    where = traceback.extract_tb(e.__traceback__)[-1]
    msg = " ".join(f"{type(e).__name__}: {e}".split())
    return f"{msg[:500]} (at {os.path.basename(where.filename)}:{where.lineno})"


def need(path):
    if not os.path.exists(path):
        raise FileNotFoundError(2, "not written", path)


def guarded(model, client, fn, *args):
    """Runs one client's checks; an exception becomes a FAIL row instead of ending the run."""
    try:
        fn(*args)
    except FileNotFoundError as e:  # what cnclip should have written is not there (its row says why)
        row(model, client, "not checked", False, detail=f"missing: {e.filename}")
    except Exception as e:
        row(model, client, "error", False, detail=_one_line(e))
    gc.collect()


# ---------------------------------------------------------------- inputs

SHORT = ["皮卡丘", "杰尼龟", "小火龙", "红苹果", "大熊猫", "长颈鹿", "向日葵", "自行车",
         "电冰箱", "足球场", "火车站", "图书馆", "洗衣机", "机器人", "巧克力", "游泳池"]
COMMON = ("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后"
          "多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因"
          "由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问"
          "意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山")
FIXED_MIXED = ["一只可爱的小猫在草地上玩耍", "iPhone 15 Pro Max 手机壳", "A photo of a dog 一张狗的照片", "夏季新款连衣裙女",
               "红色的圆形", "高级感托特包斜挎", "猫", "你好，世界！Hello, World!"]


def make_texts(seed):
    """(name, case label, texts, context length) for the three text sets."""
    g = np.random.default_rng(seed)
    pick = lambda n: "".join(COMMON[i] for i in g.integers(0, len(COMMON), n))
    long = []
    for i in range(N):
        t = pick(int(g.integers(56, 90)))
        if i % 4 == 1:  # some Latin words and digits among the characters
            t = t[:10] + " Chinese CLIP 2024年 " + t[10:]
        long.append(t)
    mixed = FIXED_MIXED + [pick(int(n)) for n in g.integers(1, 41, N - len(FIXED_MIXED))]
    sets = [("short", "text seq 5 (3 chars)", SHORT, 5), ("long", "text seq 52 (truncated)", long, 52),
            ("mixed", "text seq 52 (padded)", mixed, 52)]
    lengths = {name: (clip.tokenize(texts, context_length=ctx) != 0).sum(1) for name, _, texts, ctx in sets}
    assert (lengths["short"] == 5).all(), "a short text is not [CLS] + 3 + [SEP]"
    assert (lengths["long"] == 52).all(), "a long text is not truncated at 52"
    assert (lengths["mixed"] < 52).all() and len(set(lengths["mixed"].tolist())) > 8, "the padded set is not varied"
    return sets


def synth_image(res, seed):
    g = np.random.default_rng(seed)
    kind = seed % 4
    y, x = np.mgrid[0:res, 0:res].astype(np.float32)
    if kind == 3:  # plain noise
        return Image.fromarray(g.integers(0, 256, (res, res, 3), dtype=np.uint8), "RGB")
    img = np.zeros((res, res, 3), np.float32)
    for c in range(3):
        a, b, ph = g.uniform(0.01, 0.3, 3)
        img[..., c] = 127 + 100 * np.sin(a * x + b * y + ph * 10)
    for _ in range(int(g.integers(2, 9))):
        cx, cy, rad = g.uniform(0, res, 2).tolist() + [g.uniform(2, res / 3)]
        img[(x - cx) ** 2 + (y - cy) ** 2 < rad ** 2] = g.uniform(0, 255, 3)
    if kind == 2:  # a dark, low-contrast one
        img = img * 0.2 + 10
    img += g.normal(0, 4 + 8 * (kind == 1), img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def make_images(directory, res, seed):
    """16 PNG files of exactly res x res; returns their paths and image_transform(res) of each, stacked."""
    os.makedirs(directory, exist_ok=True)
    paths, pixels = [], []
    for i in range(N):
        p = os.path.join(directory, f"image-{i:02d}.png")
        synth_image(res, seed * 100 + i).save(p, format="PNG")
        paths.append(p)
        with Image.open(p) as im:
            pixels.append(image_transform(res)(im))
    return paths, torch.stack(pixels)


# ---------------------------------------------------------------- models

def preset_config(vision, text):
    """CLIP keyword arguments as cn_clip.clip.utils.create_model merges them."""
    cfg = json.load(open(os.path.join(CLIP_DIR, "model_configs", f"{vision}.json")))
    cfg.update(json.load(open(os.path.join(CLIP_DIR, "model_configs", f"{text}.json"))))
    if isinstance(cfg["vision_layers"], str):
        cfg["vision_layers"] = ast.literal_eval(cfg["vision_layers"])
    return cfg


def make_random_checkpoint(path, cfg, seed):
    """A cn-clip training checkpoint of CLIP(**cfg) in fp32, every parameter moved off its init by seeded noise."""
    torch.manual_seed(seed)
    m = CLIP(**cfg).float()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in m.named_parameters():
            p.add_(torch.randn(p.shape, generator=g) * (0.02 if p.dim() > 1 else 0.1))
    sd = {"module." + k: v for k, v in m.state_dict().items()}
    torch.save({"epoch": 0, "step": 0, "name": "random", "state_dict": sd}, path)
    del m, sd
    gc.collect()


def strip_module(sd):
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}


def load_state_dict_file(path):
    """The state dict of a cn-clip .pt, `module.` stripped, loaded as cn-clip's torch.load does (weights_only)."""
    ck = torch.load(path, map_location="cpu")
    missing = [k for k in ("epoch", "step", "name", "state_dict") if k not in ck]
    if missing:
        raise ValueError(f"{os.path.basename(path)} lacks {missing} (has {sorted(ck)})")
    return strip_module(ck["state_dict"])


def state_dict_rows(model, client, case, reference, got):
    missing = sorted(set(reference) - set(got))
    extra = sorted(set(got) - set(reference))
    unequal, diff = [], 0.0
    for k in sorted(set(reference) & set(got)):
        a, b = reference[k], got[k]
        if a.dtype != b.dtype or a.shape != b.shape:
            unequal.append(f"{k}: {b.dtype} {tuple(b.shape)}, original {a.dtype} {tuple(a.shape)}")
        elif not torch.equal(a, b):
            d = (a.double() - b.double()).abs().max().item() if a.is_floating_point() else float("nan")
            diff = max(diff, d)
            unequal.append(f"{k}: max abs diff {d:.3e}")
    detail = []
    if missing: detail.append(f"{len(missing)} missing: {', '.join(missing[:5])}")
    if extra: detail.append(f"{len(extra)} unexpected: {', '.join(extra[:5])}")
    if unequal: detail.append(f"{len(unequal)} unequal: {'; '.join(unequal[:5])}")
    ok = not (missing or extra or unequal)
    row(model, client, f"{case} ({len(got)} tensors)", ok, diff if unequal else 0.0, None, "identical", detail or None)


# ---------------------------------------------------------------- cnclip

class Ours:
    def __init__(self, exe):
        self.exe = exe

    def run(self, args, what):
        progress(f"cnclip {args[0]} {what}")
        t = time.time()
        r = subprocess.run([self.exe] + args, capture_output=True, text=True)
        if r.returncode != 0:
            tail = [l.strip() for l in (r.stderr.strip() or r.stdout.strip()).splitlines()[-3:]]
            raise RuntimeError(f"cnclip {args[0]} exited {r.returncode}: " + " / ".join(tail))
        return r.stdout, time.time() - t

    def encode(self, resume, flags, images, texts, ctx):
        args = ["encode", "--resume", resume] + flags + ["--unnormalized", "--context-length", str(ctx)]
        for p in images:
            args += ["--image", p]
        for t in texts:
            args += ["--text", t]
        out, _ = self.run(args, f"{len(images)} images, {len(texts)} texts at {ctx} ({os.path.basename(resume)})")
        lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
        want = [("image", p) for p in images] + [("text", t) for t in texts]
        if len(lines) != len(want):
            raise ValueError(f"encode printed {len(lines)} lines for {len(want)} inputs")
        for l, (key, value) in zip(lines, want):
            if l.get(key) != value:
                raise ValueError(f"encode's line {l.get('image', l.get('text'))!r} where {key} {value!r} was expected")
        feats = np.array([l["feature"] for l in lines], np.float32)
        return feats[:len(images)], feats[len(images):]

    def encode_all(self, resume, flags, images, sets):
        """Ours for the 16 images and every text set: {"image": [16, E], set name: [16, E]}."""
        out = {}
        at52 = [s for s in sets if s[3] == 52]
        img, txt = self.encode(resume, flags, images, [t for s in at52 for t in s[2]], 52)
        out["image"] = img
        for i, s in enumerate(at52):
            out[s[0]] = txt[i * N:(i + 1) * N]
        for name, _, texts, ctx in sets:
            if ctx != 52:
                out[name] = self.encode(resume, flags, [], texts, ctx)[1]
        return out


def feature_rows(model, client, got, ours, sets, limit):
    """Compares a client's {"image": ..., set name: ...} with ours."""
    for key, case in [("image", f"image b{N}")] + [(name, f"{label} b{N}") for name, label, _, _ in sets]:
        compare(model, client, case, got[key], ours[key], limit)


# ---------------------------------------------------------------- clients

def check_cnclip_pt(m, ctx):
    """cn-clip itself on the original checkpoint (a sanity row for ours) and on `convert --to pt`'s file."""
    model = CLIP(**m["config"]).float().eval()
    for label, path in (("original .pt", m["ckpt"]), ("convert --to pt", m["pt"])):
        sd = load_state_dict_file(path)
        if label == "convert --to pt":
            state_dict_rows(m["name"], "cn-clip", "convert --to pt: tensors", ctx["original_sd"], sd)
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            row(m["name"], "cn-clip", f"{label}: load_state_dict strict", False, detail=str(e).splitlines()[:6])
            continue
        finally:
            del sd
        row(m["name"], "cn-clip", f"{label}: load_state_dict strict", True)
        got = {}
        with torch.no_grad():
            got["image"] = model.encode_image(ctx["pixels"]).numpy()
            for name, _, texts, c in ctx["sets"]:
                got[name] = model.encode_text(clip.tokenize(texts, context_length=c)).numpy()
        feature_rows(m["name"], "cn-clip" if label != "original .pt" else "cn-clip (orig)", got, ctx["ours"], ctx["sets"],
                     FP32_LIMIT)
    del model


def _norm(v):
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            return v
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    return v


def _dicts(v):
    """Every JSON object in a metadata value (itself parsed when it is a JSON string), nested ones included."""
    v = _norm(v)
    if isinstance(v, dict):
        yield v
        for x in v.values():
            yield from _dicts(x)


def check_safetensors(m, ctx, ours_tool):
    from safetensors import safe_open
    need(m["safetensors"])
    with safe_open(m["safetensors"], "pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    prefixed = [k for k in tensors if k.startswith("module.")]
    state_dict_rows(m["name"], "safetensors", "tensors vs checkpoint", ctx["original_sd"], strip_module(tensors))
    if prefixed:
        row(m["name"], "safetensors", "original key names", False, detail=f"{len(prefixed)} keys start with module.")
    del tensors
    cfg = m["config"]
    candidates = [{k: _norm(v) for k, v in meta.items()}] + [d for v in meta.values() for d in _dicts(v)]
    same = lambda d: all(_norm(d.get(k)) == _norm(v) for k, v in cfg.items())
    ok = any(same(d) for d in candidates)
    row(m["name"], "safetensors", "metadata holds the config", ok,
        detail=None if ok else f"metadata: {json.dumps(meta, ensure_ascii=False)[:300]}")
    got = ours_tool.encode_all(m["safetensors"], [], ctx["paths"], ctx["sets"])
    feature_rows(m["name"], "ours safetensors", got, ctx["ours"], ctx["sets"], SAME_TOOL_LIMIT)


def _features(out, names):
    if isinstance(out, torch.Tensor):
        return out
    for n in names:
        if getattr(out, n, None) is not None:
            return getattr(out, n)
    raise TypeError(f"no features in {type(out).__name__}")


def check_transformers(m, ctx, ours_tool):
    import transformers
    from transformers import ChineseCLIPModel, ChineseCLIPProcessor
    need(m["hf"])
    transformers.utils.logging.set_verbosity_warning()
    transformers.utils.logging.disable_progress_bar()
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    handler.setLevel(logging.WARNING)
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model, info = ChineseCLIPModel.from_pretrained(m["hf"], output_loading_info=True)
            processor = ChineseCLIPProcessor.from_pretrained(m["hf"])
    finally:
        logger.removeHandler(handler)
    model.eval()
    problems = [f"{k}: {sorted(map(str, v))[:6]}" for k, v in info.items() if v]
    problems += [f"logged: {l}" for l in re.sub(r"\x1b\[[0-9;]*m", "", log.getvalue()).splitlines() if l.strip()]
    problems += [f"{w.category.__name__}: {w.message}" for w in caught]
    if model.dtype != torch.float32:
        problems.append(f"loaded in {model.dtype}")
    classes = f"{type(model).__name__}, {type(processor.tokenizer).__name__}, {type(processor.image_processor).__name__}"
    row(m["name"], "transformers", "from_pretrained: keys, warnings", not problems,
        detail=[p[:300] for p in problems] or classes)

    for name, label, texts, c in ctx["sets"]:
        ref = clip.tokenize(texts, context_length=c).numpy()
        enc = processor.tokenizer(texts, padding="max_length", max_length=c, truncation=True, return_tensors="np")
        ids, mask = np.asarray(enc["input_ids"]), np.asarray(enc["attention_mask"])
        if ids.shape != ref.shape:
            row(m["name"], "transformers", f"tokenizer ids, {label}", False, limit="identical",
                detail=f"shape {ids.shape}, cn-clip {ref.shape}")
            continue
        bad = [i for i in range(len(texts)) if not (np.array_equal(ids[i], ref[i]) and np.array_equal(mask[i], ref[i] != 0))]
        row(m["name"], "transformers", f"tokenizer ids, {label}", not bad, float(np.abs(ids - ref).max()), None,
            "identical", detail=[f"{texts[i]!r}: {ids[i].tolist()} vs cn-clip {ref[i].tolist()}"[:300] for i in bad[:3]])

    images = []
    for p in ctx["paths"]:
        with Image.open(p) as im:
            images.append(im.copy())
    pix = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
    if tuple(pix.shape) != tuple(ctx["pixels"].shape):
        row(m["name"], "transformers", "image processor pixels", False, limit=f"{PIXEL_LIMIT:.0e} abs",
            detail=f"shape {tuple(pix.shape)}, cn-clip {tuple(ctx['pixels'].shape)}")
    else:
        d = (pix.double() - ctx["pixels"].double()).abs().max().item()
        row(m["name"], "transformers", "image processor pixels", d <= PIXEL_LIMIT, d, None, f"{PIXEL_LIMIT:.0e} abs")

    if m["name"] == "vit-tiny":
        preprocessing_gaps(processor)

    got = {}
    with torch.no_grad():
        got["image"] = _features(model.get_image_features(pixel_values=ctx["pixels"]), ("image_embeds", "pooler_output")).numpy()
        for name, _, texts, c in ctx["sets"]:
            tok = clip.tokenize(texts, context_length=c)
            out = model.get_text_features(input_ids=tok, attention_mask=(tok != 0).long(), token_type_ids=torch.zeros_like(tok))
            got[name] = _features(out, ("text_embeds", "pooler_output")).numpy()
    del model
    feature_rows(m["name"], "transformers", got, ctx["ours"], ctx["sets"], FP32_LIMIT)
    got = ours_tool.encode_all(m["hf"], [], ctx["paths"], ctx["sets"])
    feature_rows(m["name"], "ours hf dir", got, ctx["ours"], ctx["sets"], SAME_TOOL_LIMIT)


def preprocessing_gaps(processor):
    """Reported, not judged: where transformers' own preprocessing differs from cn-clip's beyond what the checks feed it
    (the fixture's 400 tokenizer texts at three lengths; its 13 images, which need resizing, in their own modes)."""
    fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Fixtures")
    cases = [json.loads(line) for line in open(os.path.join(fixtures, "tokenizer", "cases.jsonl"), encoding="utf-8")]
    same = total = 0
    for c in cases:
        for n in (52, 24, 5):
            got = processor.tokenizer([c["text"]], padding="max_length", truncation=True, max_length=n)["input_ids"][0]
            same += got == clip.tokenize([c["text"]], context_length=n)[0].tolist()
            total += 1
    lines = [f"info: tokenizer on the fixture's texts at 52, 24 and 5 tokens: {same} of {total} give cn-clip's ids"]
    r = processor.image_processor.size["height"]
    transform = image_transform(r)
    for path in sorted(glob.glob(os.path.join(fixtures, "images", "*"))):
        with Image.open(path) as im:
            ref = transform(im).numpy()
            got = processor.image_processor(images=[im.copy()], return_tensors="np")["pixel_values"][0]
        lines.append(f"info: image processor vs image_transform({r}), {os.path.basename(path)} "
                     f"({Image.open(path).mode}): max |difference| {float(np.abs(got - ref).max()):.4f}")
    for line in lines:
        print(f"{'':{WIDTHS[0]}}     {line}")


def _graph_signature(path):
    """{name: (element type, [dims])} of the graph's inputs and outputs; a dim is a str when symbolic."""
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        g = onnx.load(path, load_external_data=False).graph
        sig = {}
        for v in list(g.input) + list(g.output):
            t = v.type.tensor_type
            dims = [d.dim_param if d.HasField("dim_param") and d.dim_param else (d.dim_value if d.HasField("dim_value") else None)
                    for d in t.shape.dim]
            sig[v.name] = (onnx.TensorProto.DataType.Name(t.elem_type), dims)
        return sig, "onnx"
    import onnxruntime as ort
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    types = {"tensor(float)": "FLOAT", "tensor(int64)": "INT64", "tensor(float16)": "FLOAT16"}
    return {v.name: (types.get(v.type, v.type), list(v.shape)) for v in s.get_inputs() + s.get_outputs()}, "onnxruntime"


def _fp16_share(path):
    import onnx
    g = onnx.load(path).graph
    tensors = list(g.initializer) + [a.t for n in g.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
    size = lambda t: int(np.prod(t.dims)) if len(t.dims) else 1
    total = sum(size(t) for t in tensors)
    return sum(size(t) for t in tensors if t.data_type == onnx.TensorProto.FLOAT16) / max(total, 1)


def check_onnx(m, ctx, directory, fp16):
    import onnxruntime as ort
    client = "onnxruntime fp16" if fp16 else "onnxruntime"
    limit = FP16_LIMIT if fp16 else FP32_LIMIT
    R, E = m["config"]["image_resolution"], m["config"]["embed_dim"]
    vision, text = os.path.join(directory, "vision.onnx"), os.path.join(directory, "text.onnx")
    need(vision)
    need(text)
    sym = lambda d: isinstance(d, str) and d != ""
    fits = lambda d, n: d == n or sym(d)
    for path, want in ((vision, {"image": ("FLOAT", lambda s: len(s) == 4 and sym(s[0]) and fits(s[1], 3) and fits(s[2], R) and fits(s[3], R)),
                                 "unnorm_image_features": ("FLOAT", lambda s: len(s) == 2 and sym(s[0]) and fits(s[1], E))}),
                       (text, {"text": ("INT64", lambda s: len(s) == 2 and sym(s[0]) and sym(s[1])),
                               "attention_mask": ("INT64", lambda s: len(s) == 2 and sym(s[0]) and sym(s[1])),
                               "unnorm_text_features": ("FLOAT", lambda s: len(s) == 2 and sym(s[0]) and fits(s[1], E))})):
        sig, by = _graph_signature(path)
        bad = [n for n, (t, ok) in want.items() if n not in sig or sig[n][0] != t or not ok(sig[n][1])]
        bad += [n for n in sig if n not in want]
        shown = ", ".join(f"{n}: {t}{d}" for n, (t, d) in sig.items())
        row(m["name"], client, f"{os.path.basename(path)}: names, types, dims", not bad,
            detail=[f"({by}) {shown}"] + ([f"wrong: {bad}"] if bad else []))
        if fp16:
            share = _fp16_share(path)
            row(m["name"], client, f"{os.path.basename(path)}: fp16 weights", share >= 0.5, limit=">= 50%",
                detail=f"{share:.1%} of the weights' elements are float16")
    extra = []
    v = os.path.join(directory, "vocab.txt")
    if not os.path.exists(v) or open(v, "rb").read().splitlines() != open(VOCAB, "rb").read().splitlines():
        extra.append("vocab.txt missing or not cn-clip's vocabulary")
    try:
        pre = json.load(open(os.path.join(directory, "preprocessing.json")))
        if not isinstance(pre, dict):
            extra.append("preprocessing.json is not a JSON object")
    except (OSError, ValueError) as e:
        extra.append(f"preprocessing.json: {e}")
    row(m["name"], client, "vocab.txt, preprocessing.json", not extra, detail=extra)

    so = ort.SessionOptions()
    sv = ort.InferenceSession(vision, so, providers=["CPUExecutionProvider"])
    st = ort.InferenceSession(text, so, providers=["CPUExecutionProvider"])
    pixels = ctx["pixels"].numpy().astype(np.float32)
    run_v = lambda b: sv.run(["unnorm_image_features"], {"image": pixels[:b]})[0]
    tokens = {name: clip.tokenize(texts, context_length=c).numpy().astype(np.int64) for name, _, texts, c in ctx["sets"]}
    run_t = lambda name, b: st.run(["unnorm_text_features"], {"text": tokens[name][:b],
                                                              "attention_mask": (tokens[name][:b] != 0).astype(np.int64)})[0]
    for b in (1, 3, N):
        compare(m["name"], client, f"image b{b}", run_v(b), ctx["ours"]["image"][:b], limit)
    for name, label, _, _ in ctx["sets"]:
        for b in ((1, 3, N) if name != "mixed" else (N,)):
            compare(m["name"], client, f"{label} b{b}", run_t(name, b), ctx["ours"][name][:b], limit)
    for case, fn in ((f"image b{N}: 10 runs", lambda: run_v(N)), (f"text seq 52 (padded) b{N}: 10 runs", lambda: run_t("mixed", N))):
        outs = [fn() for _ in range(10)]
        same = all(o.tobytes() == outs[0].tobytes() for o in outs)
        diff = max(float(np.abs(o.astype(np.float64) - outs[0]).max()) for o in outs)
        row(m["name"], client, case, same, diff, None, "identical")
    del sv, st


# ---------------------------------------------------------------- one model

def check_model(m, ours_tool, work, seed):
    name, R = m["name"], m["config"]["image_resolution"]
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    ctx = {"sets": make_texts(seed)}
    ctx["paths"], ctx["pixels"] = make_images(os.path.join(d, "images"), R, seed)
    flags = m["flags"]
    ctx["ours"] = ours_tool.encode_all(m["ckpt"], flags, ctx["paths"], ctx["sets"])
    ctx["original_sd"] = load_state_dict_file(m["ckpt"])

    m["pt"], m["safetensors"] = os.path.join(d, "model.pt"), os.path.join(d, "model.safetensors")
    m["hf"] = os.path.join(d, "hf") if m["hf_layout"] else None
    m["onnx"], m["onnx16"] = os.path.join(d, "onnx"), os.path.join(d, "onnx-fp16")
    commands = [("convert --to pt", ["convert", "--resume", m["ckpt"]] + flags + ["--to", "pt", "--output", m["pt"], "--force"]),
                ("convert --to safetensors",
                 ["convert", "--resume", m["ckpt"]] + flags + ["--to", "safetensors", "--output", m["safetensors"], "--force"])]
    if m["hf"]:
        commands.append(("convert --to hf", ["convert", "--resume", m["ckpt"]] + flags + ["--to", "hf", "--output", m["hf"], "--force"]))
    commands += [("export onnx", ["export", "onnx", "--resume", m["ckpt"]] + flags + ["--output", m["onnx"], "--force"]),
                 ("export onnx --fp16", ["export", "onnx", "--resume", m["ckpt"]] + flags + ["--output", m["onnx16"], "--fp16", "--force"])]
    for label, args in commands:
        try:
            _, secs = ours_tool.run(args, f"{label} ({name})")
            row(name, "ours", f"{label} ({secs:.1f} s)", True)
        except Exception as e:
            row(name, "ours", label, False, detail=" ".join(str(e).split())[:500])

    progress(f"{name}: cn-clip")
    guarded(name, "cn-clip", check_cnclip_pt, m, ctx)
    progress(f"{name}: safetensors")
    guarded(name, "safetensors", check_safetensors, m, ctx, ours_tool)
    if m["hf"]:
        progress(f"{name}: transformers")
        guarded(name, "transformers", check_transformers, m, ctx, ours_tool)
    progress(f"{name}: onnxruntime")
    guarded(name, "onnxruntime", check_onnx, m, ctx, m["onnx"], False)
    progress(f"{name}: onnxruntime fp16")
    guarded(name, "onnxruntime fp16", check_onnx, m, ctx, m["onnx16"], True)

    progress(f"{name}: round trips")
    trips = [("pt -> safetensors -> pt", m["safetensors"], os.path.join(d, "back-from-safetensors.pt"))]
    if m["hf"]:
        trips.append(("pt -> hf -> pt", m["hf"], os.path.join(d, "back-from-hf.pt")))
    for label, source, back in trips:
        def trip():
            ours_tool.run(["convert", "--resume", source, "--to", "pt", "--output", back, "--force"], f"{label} ({name})")
            state_dict_rows(name, "round trip", label, ctx["original_sd"], load_state_dict_file(back))
        guarded(name, "round trip", trip)
    del ctx


def run_all(a, exe, work):
    """Every model's checks; returns the number of failed rows."""
    start = time.time()
    ours_tool = Ours(exe)

    models = []
    for name, hf_layout in (("vit-tiny", True), ("rn-tiny", False)):
        cfg_path = os.path.join(FIXTURES, f"{name}.json")
        models.append({"name": name, "ckpt": os.path.join(FIXTURES, f"{name}.pt"), "config": json.load(open(cfg_path)),
                       "flags": ["--config", cfg_path], "hf_layout": hf_layout})
    if a.full:
        vision, text = "ViT-B-16", "RoBERTa-wwm-ext-base-chinese"
        cfg = preset_config(vision, text)
        ckpt = os.path.join(work, "vit-b-16-random.pt")
        progress(f"making {vision}@{text} with random weights")
        t = time.time()
        make_random_checkpoint(ckpt, cfg, a.seed)
        progress(f"  {time.time() - t:.1f} s, {os.path.getsize(ckpt) / 2 ** 20:.0f} MiB")
        models.append({"name": "ViT-B-16", "ckpt": ckpt, "config": cfg, "hf_layout": True,
                       "flags": ["--vision-model", vision, "--text-model", text]})

    print(f"cnclip interop: {exe}")
    print(f"torch {torch.__version__}, cn-clip {_version('cn_clip')}, "
          f"transformers {_version('transformers')}, onnxruntime {_version('onnxruntime')}, onnx {_version('onnx')}, "
          f"safetensors {_version('safetensors')}")
    print()
    header()
    for m in models:
        t = time.time()
        try:
            check_model(m, ours_tool, work, a.seed)
        except Exception as e:
            row(m["name"], "-", "error", False, detail=_one_line(e))
        progress(f"{m['name']}: {time.time() - t:.0f} s")
        gc.collect()

    failed = [r for r in ROWS if not r[3]]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print()
    print(f"interop: {len(ROWS) - len(failed)} of {len(ROWS)} checks passed, {len(failed)} failed "
          f"({', '.join(m['name'] for m in models)}; {time.time() - start:.0f} s; peak RSS of this script "
          f"{peak:.0f} MiB)")
    return len(failed)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cnclip", required=True, help="the cnclip executable")
    ap.add_argument("--work", help="working directory (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep what was written")
    ap.add_argument("--full", action="store_true", help="also ViT-B-16@RoBERTa-wwm-ext-base-chinese with random weights")
    ap.add_argument("--seed", type=int, default=20240611)
    a = ap.parse_args()
    exe = os.path.abspath(a.cnclip)
    if not os.access(exe, os.X_OK):
        sys.exit(f"no executable at {exe}")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if a.work:
        os.makedirs(a.work, exist_ok=True)
        work = tempfile.mkdtemp(prefix="check_interop-", dir=os.path.abspath(a.work))
    else:
        work = tempfile.mkdtemp(prefix="check_interop-")
    try:
        failed = run_all(a, exe, work)
    finally:
        if a.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failed else 0)


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    main()
