"""How far the reference's zero-shot predictions (and ours) are from the exact value of the same maths.

Runs the reference's zeroshot_evaluation.py maths on the fixture (vit-tiny, image batch 4) twice: in fp32, as
the fixture was made, and in float64 (cn_clip's LayerNorm, which forces fp32, run in the input's dtype), the
"exact" value. Prints the largest differences after rounding to 6 decimals, as the ELEVATER file stores them.
With OURS_DIR (a --save-dir of `cnclip zeroshot-eval` on the fixture for both datasets, see
Tests/CLITests/ZeroShotCLITests.swift for the arguments) it also compares ours.
usage: python probe_zeroshot_accuracy.py [OURS_DIR]   (in the reference environment)
Printed on this machine, 2026-11-29 (ours: the float64 classifier of Sources/Evaluation/ZeroShotClassifier.swift):
  fixture-objects: reference fp32 vs exact 1.7e-06 unrounded, 2.0e-06 rounded; ours vs exact 1.9e-07 unrounded
  (measured from the test's probabilities), 1.0e-06 rounded; ours vs fixture 2.0e-06 rounded.
  food-101: reference 1.3e-06 / 2.0e-06; ours 2.7e-07 / 1.0e-06; ours vs fixture 2.0e-06.
"""
import json, os, sys
import torch
import cn_clip.clip.model as cm
from cn_clip.clip.model import CLIP
from cn_clip.clip.utils import image_transform
from cn_clip.clip import tokenize
from cn_clip.eval.data import _preprocess_text
import cn_clip.eval.cvinw_zeroshot_templates as zt
import torchvision.datasets as tvd

cm.LayerNorm.forward = lambda self, x: torch.nn.LayerNorm.forward(self, x)  # fp32 stays fp32; float64 stays float64
F = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Fixtures")
cfg = json.load(open(f"{F}/models/vit-tiny.json"))
sd = torch.load(f"{F}/models/vit-tiny.pt", map_location="cpu")["state_dict"]
labels = [l.strip() for l in open(f"{F}/zeroshot/label_cn.txt", encoding="utf-8") if l.strip()]
ds = tvd.ImageFolder(f"{F}/zeroshot/test", transform=image_transform(64))

def run(dtype, templates):
    m = CLIP(**cfg).float().eval()
    m.load_state_dict({k[7:]: v for k, v in sd.items()})
    m = m.to(dtype)
    with torch.no_grad():
        W = []
        for c in labels:
            texts = tokenize([_preprocess_text(t(c)) for t in templates], context_length=52)
            e = m(None, texts); e /= e.norm(dim=-1, keepdim=True); e = e.mean(dim=0); e /= e.norm(); W.append(e)
        W = torch.stack(W, dim=1)
        imgs = torch.stack([ds[i][0] for i in range(len(ds))]).to(dtype)
        out = []
        for i in range(0, len(imgs), 4):
            f = m(imgs[i:i + 4], None); f /= f.norm(dim=-1, keepdim=True)
            out.append((100.0 * f @ W).softmax(dim=-1))
        return torch.cat(out).double()

rounded = lambda t: torch.tensor([[round(float(x), 6) for x in row] for row in t.tolist()], dtype=torch.float64)
for dataset, templates in (("fixture-objects", zt.openai_templates), ("food-101", zt.food_templates)):
    fixture = torch.tensor(json.load(open(f"{F}/zeroshot/{dataset}.json"))["predictions"][0], dtype=torch.float64)
    exact, ref = run(torch.float64, templates), run(torch.float32, templates)
    line = (f"{dataset}: reference fp32 vs exact {(ref - exact).abs().max():.1e} unrounded, "
            f"{(rounded(ref) - rounded(exact)).abs().max():.1e} rounded (fixture vs exact {(fixture - rounded(exact)).abs().max():.1e})")
    if len(sys.argv) > 1:
        ours = torch.tensor(json.load(open(os.path.join(sys.argv[1], f"{dataset}.json")))["predictions"][0], dtype=torch.float64)
        line += f"; ours vs exact {(ours - rounded(exact)).abs().max():.1e} rounded, ours vs fixture {(ours - fixture).abs().max():.1e}"
    print(line)
