"""Times the reference's training step on PyTorch CPU, as `cnclip bench --train` times ours.

One step = CLIP(**config) forward in training mode (dropout on), the contrastive loss of cn_clip/training/train.py
(mean of the image→text and text→image cross-entropies over logit_scale · img @ txt.T), backward, AdamW with
main.py's two parameter groups, and the logit-scale clamp. Random images, the same captions as ours.
Prints one JSON line: samples/s, step seconds (median of --iters after one warm-up), peak RSS.

usage: python bench_train_step.py CONFIG.json [--batch 32] [--ctx 32] [--iters 5] [--threads 2]
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn.functional as F
from cn_clip.clip import tokenize
from cn_clip.clip.model import CLIP

CAPTIONS = ["左上角有一个红色的大圆形，中间有一个黑色的小三角形", "右下角有一个蓝色的小正方形",
            "中间有一个黄色的大星形", "左下角有一个紫色的小圆形，右上角有一个白色的大三角形"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--ctx", type=int, default=32)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    with open(a.config) as f:
        model = CLIP(**json.load(f))
    model.train()
    # main.py's groups: no weight decay for bn/ln/bias/logit_scale.
    exclude = lambda n: "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([
        {"params": [p for n, p in named if exclude(n)], "weight_decay": 0.},
        {"params": [p for n, p in named if not exclude(n)], "weight_decay": 0.2},
    ], lr=1e-4, betas=(0.9, 0.98), eps=1e-6)
    r = model.visual.input_resolution
    images = torch.randn(a.batch, 3, r, r)
    texts = tokenize([CAPTIONS[i % len(CAPTIONS)] for i in range(a.batch)], context_length=a.ctx)
    labels = torch.arange(a.batch)

    def step():
        optimizer.zero_grad()
        image_features, text_features, logit_scale = model(images, texts)
        logits_per_image = logit_scale * image_features @ text_features.t()
        logits_per_text = logits_per_image.t()
        loss = (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)

    step()
    times = []
    for _ in range(a.iters):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    s = statistics.median(times)
    print(json.dumps({"engine": "torch", "torch": torch.__version__, "threads": a.threads, "batch": a.batch,
                      "samples_per_s": a.batch / s, "step_s": s,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, sort_keys=True))


if __name__ == "__main__":
    main()
