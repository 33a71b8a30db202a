"""Writes Sources/Evaluation/Resources/zeroshot_templates.json from the installed reference (cn-clip 1.6.0).

Each prompt template of `cn_clip/eval/cvinw_zeroshot_templates.py` is a function of the class name; calling
it with the placeholder "{}" gives its text, which the Swift side fills in again with the label. The file is
data only: which set a dataset uses is decided in Sources/Evaluation/ZeroShotTemplates.swift.

usage (repository root): ~/.cache/cnclip-ref/venv/bin/python scripts/reference/make_zeroshot_templates.py
"""
import json
import os

import cn_clip.eval.cvinw_zeroshot_templates as module

sets = {}
for name in sorted(vars(module)):
    value = getattr(module, name)
    if name.endswith("_templates") and isinstance(value, list) and value and callable(value[0]):
        texts = [template("{}") for template in value]
        # A template must carry the class name exactly once, or filling "{}" back in would not recreate it.
        for text in texts:
            assert text.count("{}") == 1, (name, text)
        sets[name] = texts

out = os.path.join("Sources", "Evaluation", "Resources", "zeroshot_templates.json")
with open(out + ".tmp", "w", encoding="utf-8") as f:
    json.dump(sets, f, ensure_ascii=False, indent=1)
    f.write("\n")
os.replace(out + ".tmp", out)
print(f"{out}: {len(sets)} template sets, {sum(map(len, sets.values()))} templates")
