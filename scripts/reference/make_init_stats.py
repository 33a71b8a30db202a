"""Statistics of the reference's from-scratch initialisation (cn_clip.clip.model.CLIP(**config)), per parameter.

Writes Tests/Fixtures/init/init_stats.json: for the tiny ViT and RN configs, each state-dict key's shape and the
mean, standard deviation, minimum and maximum over SEEDS constructions (values pooled). Our initialisation is
compared with these: the same distributions, not the same random stream.

Run: ~/.cache/cnclip-ref/venv/bin/python scripts/reference/make_init_stats.py
"""
import json
import os

import torch
from cn_clip.clip.model import CLIP

SEEDS = 8
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "init", "init_stats.json")


def stats(config_path):
    with open(config_path) as f:
        config = json.load(f)
    pooled = {}
    for seed in range(SEEDS):
        torch.manual_seed(seed)
        model = CLIP(**config)
        for key, value in model.state_dict().items():
            if key.endswith("num_batches_tracked"):
                continue
            pooled.setdefault(key, []).append(value.detach().double().flatten())
    result = {}
    for key, values in pooled.items():
        v = torch.cat(values)
        result[key] = {
            "shape": list(model.state_dict()[key].shape),
            "mean": v.mean().item(),
            "std": v.std(unbiased=False).item(),
            "min": v.min().item(),
            "max": v.max().item(),
        }
    return result


def main():
    models = os.path.join(ROOT, "Tests", "Fixtures", "models")
    out = {"seeds": SEEDS, "vit-tiny": stats(os.path.join(models, "vit-tiny.json")),
           "rn-tiny": stats(os.path.join(models, "rn-tiny.json"))}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
