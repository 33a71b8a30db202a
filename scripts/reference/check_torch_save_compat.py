"""Loads a torch.save file with torch.load(weights_only=True) and (weights_only=False) and prints a JSON
summary: the object's tagged values (as make_torch_save_fixtures.py tags them; float tensors as the exact
float32 bit patterns so nothing is lost), whether both loads agree, and the archive's entries with their
data offsets (to check 64-byte alignment). Exits non-zero when the loads disagree or fail.

usage: python check_torch_save_compat.py PATH
"""
import collections
import json
import struct
import sys
import zipfile

import torch

path = sys.argv[1]


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
        flat = v.detach().contiguous().flatten()
        values = flat.view(torch.int32).tolist() if v.dtype == torch.float32 else flat.tolist()
        return {"tensor": {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape),
                           "requires_grad": v.requires_grad, "contiguous": v.is_contiguous(),
                           "values" if v.dtype != torch.float32 else "float32_bits": values}}
    raise TypeError(type(v))


safe = tag(torch.load(path, weights_only=True))
full = tag(torch.load(path, weights_only=False))
mmapped = tag(torch.load(path, weights_only=True, mmap=True))
entries = []
raw = open(path, "rb").read()
with zipfile.ZipFile(path) as z:
    bad = z.testzip()  # reads every entry and checks its CRC
    for i in z.infolist():
        name_len, extra_len = struct.unpack("<HH", raw[i.header_offset + 26:i.header_offset + 30])
        entries.append({"name": i.filename, "size": i.file_size, "data_offset": i.header_offset + 30 + name_len + extra_len,
                        "compress_type": i.compress_type})
summary = {"torch": torch.__version__, "weights_only_equals_full": safe == full, "mmap_equals": safe == mmapped,
           "crc_ok": bad is None, "entries": entries, "value": safe}
print(json.dumps(summary, ensure_ascii=False))
sys.exit(0 if safe == full == mmapped and bad is None else 1)
