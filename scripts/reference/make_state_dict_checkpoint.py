"""Saves vit-tiny as cn-clip's training loop saves checkpoints: `model.state_dict()` of the DDP-wrapped model, so the
keys carry `module.` and the OrderedDict carries PyTorch's `_metadata` attribute (as every released checkpoint does).

usage: python make_state_dict_checkpoint.py   (in the reference environment) → Tests/Fixtures/checkpoints/vit-tiny-ddp.pt
"""
import json, os
import torch
from cn_clip.clip.model import CLIP

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Fixtures")
cfg = json.load(open(os.path.join(root, "models", "vit-tiny.json")))
model = CLIP(**cfg).float()
sd = torch.load(os.path.join(root, "models", "vit-tiny.pt"), map_location="cpu")["state_dict"]
model.load_state_dict({k[len("module."):]: v for k, v in sd.items()})

class DDPLike(torch.nn.Module):  # what DistributedDataParallel's state_dict looks like: children under `module.`
    def __init__(self, m):
        super().__init__()
        self.module = m

state = DDPLike(model).state_dict()
assert hasattr(state, "_metadata") and all(k.startswith("module.") for k in state)
os.makedirs(os.path.join(root, "checkpoints"), exist_ok=True)
torch.save({"epoch": 1, "step": 10, "name": "ddp-like", "state_dict": state, "optimizer": None},
           os.path.join(root, "checkpoints", "vit-tiny-ddp.pt"))
print("written")
