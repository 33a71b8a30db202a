"""Golden output of cn-clip's eval/extract_features.py on the fixture dataset with the vit-tiny checkpoint.

Writes Tests/Fixtures/extract/{train_texts.txt_feat.jsonl, train_imgs.img_feat.jsonl}: the features the reference
script writes for the train split's texts and for the images of the train LMDB. The texts are copied beside them for
the run (so the reference's default output paths, derived from --text-data, are exercised) and the copy removed
after: the one copy of the texts stays Tests/Fixtures/dataset/train_texts.jsonl.

The script needs CUDA and only accepts released model names, so it runs on a private copy of the cn_clip package
(the shared environment is never modified) whose ViT-B-32 / RBT3-chinese configs are replaced by vit-tiny's, with
.cuda() patched to a no-op, as ../shared/reference/make_fixtures.py does for the other scripts.
usage: ~/.cache/cnclip-ref/venv/bin/python scripts/reference/make_extract_features_golden.py
"""
import json, os, runpy, shutil, sys, tempfile

root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
fixtures = os.path.join(root, "Tests", "Fixtures")
out = os.path.join(fixtures, "extract")
os.makedirs(out, exist_ok=True)

import cn_clip
tmp = tempfile.mkdtemp()
try:
    pkg = os.path.join(tmp, "cn_clip")
    shutil.copytree(os.path.dirname(cn_clip.__file__), pkg)
    vit = json.load(open(os.path.join(fixtures, "models", "vit-tiny.json")))
    vis_keys = ["embed_dim", "image_resolution", "vision_layers", "vision_width", "vision_patch_size", "vision_head_width"]
    cfg = os.path.join(pkg, "clip", "model_configs")
    json.dump({k: vit[k] for k in vis_keys}, open(os.path.join(cfg, "ViT-B-32.json"), "w"))
    json.dump({k: v for k, v in vit.items() if k not in vis_keys}, open(os.path.join(cfg, "RBT3-chinese.json"), "w"))
    for m in [m for m in sys.modules if m == "cn_clip" or m.startswith("cn_clip.")]:
        del sys.modules[m]
    sys.path.insert(0, tmp)

    import torch
    torch.cuda.set_device = lambda *a, **k: None
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self

    texts = os.path.join(out, "train_texts.jsonl")
    shutil.copyfile(os.path.join(fixtures, "dataset", "train_texts.jsonl"), texts)
    sys.argv = ["extract_features", "--extract-image-feats", "--extract-text-feats",
                "--image-data", os.path.join(fixtures, "dataset", "lmdb", "train", "imgs"), "--text-data", texts,
                "--img-batch-size", "4", "--text-batch-size", "4", "--context-length", "52",
                "--resume", os.path.join(fixtures, "models", "vit-tiny.pt"),
                "--vision-model", "ViT-B-32", "--text-model", "RBT3-chinese"]
    import cn_clip.eval.extract_features as mod
    assert mod.__file__.startswith(tmp), mod.__file__
    runpy.run_path(mod.__file__, run_name="__main__")
    os.remove(texts)
finally:
    shutil.rmtree(tmp)
print("written:", sorted(os.listdir(out)))
