"""Writes a randomly initialised cn_clip checkpoint in the training format (`{"epoch", "step", "name",
"state_dict"}` with DDP's `module.` prefix, as cn_clip/training/main.py saves it) for the load-time benchmark.
ViT-B-16@RoBERTa-wwm-ext-base-chinese in fp32 is about 750 MB.
usage: make_bench_checkpoint.py VISION TEXT OUT.pt"""
import sys
import torch
from cn_clip.clip.utils import create_model

vision, text, path = sys.argv[1:4]
torch.manual_seed(0)
m = create_model(f"{vision}@{text}").float()
torch.save({"epoch": 1, "step": 1, "name": "bench",
            "state_dict": {"module." + k: v for k, v in m.state_dict().items()}}, path)
