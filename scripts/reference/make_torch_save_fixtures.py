"""Golden `torch.save` file for the TorchSave/TorchCheckpoint tests: one dict holding every kind of value a
checkpoint holds, saved by PyTorch itself.

usage: python make_torch_save_fixtures.py OUT_DIR   (writes OUT_DIR/torch_saved.pt and OUT_DIR/expected.json)
expected.json lists the root's entries in order as tagged values: {"int": n}, {"float": x}, {"str": s},
{"bool": b}, {"none": null}, {"bytes": [..]}, {"list": [...]}, {"tuple": [...]},
{"dict": [[key, value], ...], "ordered": bool}, {"tensor": {"dtype", "shape", "values"}}.
"""
import collections
import json
import os
import sys

import torch

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
g = torch.Generator().manual_seed(20240601)

state_dict = collections.OrderedDict()
state_dict["visual.proj"] = torch.randn(3, 4, generator=g)
state_dict["ln.bias"] = torch.randn(4, generator=g)
state_dict["logit_scale"] = torch.tensor(4.6052)
state_dict["ids"] = torch.tensor([1, -2, 2**40, -(2**62)], dtype=torch.int64)
state_dict["bn.num_batches_tracked"] = torch.tensor(7, dtype=torch.int64)
state_dict["empty"] = torch.zeros(0, 3)

root = {
    "epoch": 3,
    "step": 1234567890123,
    "name": "实验-finetune",
    "lr": 1e-4,
    "neg": -5,
    "mid": 70000,
    "big_neg": -(2**40),
    "flag": True,
    "off": False,
    "nothing": None,
    "list": [1, 2.5, "x", [], ()],
    "tuple1": (9,),
    "tuple4": (1, 2, 3, 4),
    "nested": {"a": {"b": [None, -1.5]}},
    "int_keys": {0: "zero", 7: "seven"},
    "raw": b"\x00\xffab",
    "state_dict": state_dict,
}
torch.save(root, os.path.join(out, "torch_saved.pt"))


def tag(v):
    if isinstance(v, bool):
        return {"bool": v}
    if isinstance(v, int):
        return {"int": v}
    if isinstance(v, float):
        return {"float": v}
    if isinstance(v, str):
        return {"str": v}
    if v is None:
        return {"none": None}
    if isinstance(v, bytes):
        return {"bytes": list(v)}
    if isinstance(v, list):
        return {"list": [tag(x) for x in v]}
    if isinstance(v, tuple):
        return {"tuple": [tag(x) for x in v]}
    if isinstance(v, dict):
        return {"dict": [[tag(k), tag(x)] for k, x in v.items()], "ordered": isinstance(v, collections.OrderedDict)}
    if isinstance(v, torch.Tensor):
        return {"tensor": {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape),
                           "values": v.flatten().tolist()}}
    raise TypeError(type(v))


with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump(tag(root), f, ensure_ascii=False, indent=1)
    f.write("\n")
