"""int8 accuracy on the same weights and inputs: our `--precision int8` against ONNX Runtime's dynamic int8
(`quantize_dynamic`, per-channel QInt8 weights, what a deployment-minded cn-clip user reaches for), each feature's
cosine with cn-clip's own fp32 feature (PyTorch). Our fp32 is reported too, as the floor of what rounding alone gives.

Weights: the reference's random initialisation (torch.manual_seed(0), as bench_torch.py / bench_ort.py), or
--checkpoint. Inputs: the 13 fixture images (cn-clip's own preprocessing for PyTorch and ONNX Runtime, ours for
cnclip; they agree to 1e-6) and 65 texts (the MUGE-like queries and the full-context caption of scripts/bench-texts).

usage: int8_accuracy.py VISION TEXT [--cnclip .build/release/cnclip] [--threads 2] [--checkpoint CKPT]
prints one JSON line per tower: min and mean cosine of ours int8, ONNX Runtime int8 and ours fp32."""
import argparse, glob, json, os, subprocess, tempfile
import numpy as np
import torch
import onnxruntime as ort
from PIL import Image
import cn_clip.clip as clip
from cn_clip.clip.utils import create_model, image_transform
import onnx_towers  # beside this script

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
p = argparse.ArgumentParser()
p.add_argument("vision"); p.add_argument("text")
p.add_argument("--cnclip", default=os.path.join(root, ".build/release/cnclip"))
p.add_argument("--threads", type=int, default=2)
p.add_argument("--checkpoint")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
m = create_model(f"{a.vision}@{a.text}").float().eval()
d = tempfile.mkdtemp()
if a.checkpoint:
    sd = torch.load(a.checkpoint, map_location="cpu", weights_only=False)
    sd = sd.get("state_dict", sd)
    m.load_state_dict({k[7:] if k.startswith("module.") else k: v for k, v in sd.items()})
    ckpt = a.checkpoint
else:
    ckpt = f"{d}/random.pt"
    torch.save({"epoch": 0, "step": 0, "name": "random", "state_dict": {"module." + k: v for k, v in m.state_dict().items()}}, ckpt)
res = m.visual.input_resolution
images = sorted(glob.glob(os.path.join(root, "Tests/Fixtures/images/*")))
texts = [l for l in open(os.path.join(root, "scripts/bench-texts/muge-like-queries.txt"), encoding="utf-8").read().split("\n") if l]
texts += [l for l in open(os.path.join(root, "scripts/bench-texts/full-context-caption.txt"), encoding="utf-8").read().split("\n") if l]
pix = torch.stack([image_transform(res)(Image.open(f)) for f in images])
tok = clip.tokenize(texts, context_length=52)

with torch.inference_mode():
    ref_i = m.encode_image(pix).numpy(); ref_t = m.encode_text(tok).numpy()

onnx_towers.export(m, pix[:2], tok[:2], d)
ort_ops = onnx_towers.quantize(d)
so = ort.SessionOptions(); so.intra_op_num_threads = a.threads; so.inter_op_num_threads = 1
ort_i = ort.InferenceSession(f"{d}/img8.onnx", so, providers=["CPUExecutionProvider"]).run(None, {"image": pix.numpy()})[0]
ort_t = ort.InferenceSession(f"{d}/txt8.onnx", so, providers=["CPUExecutionProvider"]).run(None, {"text": tok.numpy()})[0]

def ours(precision):
    args = [a.cnclip, "encode", "--resume", ckpt, "--vision-model", a.vision, "--text-model", a.text,
            "--precision", precision, "--unnormalized"]
    for f in images: args += ["--image", f]
    for t in texts: args += ["--text", t]
    lines = [json.loads(l) for l in subprocess.run(args, check=True, capture_output=True, text=True).stdout.splitlines()]
    return (np.array([l["feature"] for l in lines if "image" in l], dtype=np.float32),
            np.array([l["feature"] for l in lines if "text" in l], dtype=np.float32))

def cos(x, y):
    x = x / np.linalg.norm(x, axis=-1, keepdims=True); y = y / np.linalg.norm(y, axis=-1, keepdims=True)
    return (x * y).sum(-1)

ours_i8, ours_t8 = ours("int8")
ours_i32, ours_t32 = ours("fp32")
for tower, ref, o8, r8, o32 in (("images", ref_i, ours_i8, ort_i, ours_i32), ("texts", ref_t, ours_t8, ort_t, ours_t32)):
    c8, co, c32 = cos(o8, ref), cos(r8, ref), cos(o32, ref)
    print(json.dumps({"model": f"{a.vision}@{a.text}", "tower": tower, "n": len(ref),
                      "ours_int8_min": float(c8.min()), "ours_int8_mean": float(c8.mean()),
                      "ort_int8_min": float(co.min()), "ort_int8_mean": float(co.mean()),
                      "ours_fp32_min": float(c32.min()), "ort": ort.__version__,
                      "ort_quantized": ort_ops["img" if tower == "images" else "txt"]}))
