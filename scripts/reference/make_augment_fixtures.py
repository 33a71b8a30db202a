"""Golden fixtures for `cnclip train --use-augment`: the reference's timm augmentation with FIXED parameters.

cn_clip's `LMDBDataset._build_transform` (split "train", use_augment) builds timm's
`create_transform(input_size=res, scale=(0.9, 1.0), is_training=True, color_jitter=None,
auto_augment='original', interpolation='bicubic', mean, std)` and inserts `_convert_to_rgb` before its
last three transforms.  This script takes the transforms from that very Compose and runs them with every
random choice pinned, so the Swift port can be checked byte for byte:

  ops       every AutoAugment op function of timm.data.auto_augment (shear_x, rotate, posterize, ...), called
            with the kwargs timm's AugmentOp passes (fillcolor=img_mean, resample=BICUBIC; BILINEAR for a few
            extra cases), at several magnitudes incl. negated ones, on small RGB sources and an L source.
  pipeline  RandomResizedCropAndInterpolation with `get_params` pinned to a box, RandomHorizontalFlip with
            p forced to 0 or 1, `_convert_to_rgb`, then AutoAugment ops taken from the policy (probability
            forced to 1, `_randomly_negate` pinned), MaybeToTensor and Normalize — on fixture images in their
            own modes (RGB JPEG, P, RGBA, L, CMYK), decoded from Tests/Fixtures/images.
  policy    timm's 'original' policy table: name, probability, magnitude and the resolved argument(s) for
            both signs of the random negation, plus the expected number of applications of each op per image.
  crop      statistics of timm's `get_params` (mean/std of i, j, h, w and the fallback rate) over 20,000
            draws per source size, for the Swift distribution test.

Output: Tests/Fixtures/augment/expected.safetensors (sources `src.NAME` uint8 [h, w, c]; op outputs
`op.NAME` uint8; pipeline outputs `pipe.NAME.rgb` uint8 [res, res, 3] after AutoAugment and
`pipe.NAME.tensor` float32 [3, res, res] after Normalize, for two cases) and Tests/Fixtures/augment/cases.json.

usage (repository root, with the reference environment's Python: cn_clip 1.6.0, timm 1.0.31, torchvision,
Pillow 13, numpy, safetensors):
    ~/.cache/cnclip-ref/venv/bin/python scripts/reference/make_augment_fixtures.py [OUT_DIR]
"""
import json
import math
import os
import random
import sys

import numpy as np
import PIL
import timm
import torch
from PIL import Image
from safetensors.numpy import save_file
from timm.data import auto_augment as aa
from timm.data.transforms import RandomResizedCropAndInterpolation

import cn_clip.training.data as cn_data

IMAGES = os.path.join("Tests", "Fixtures", "images")
FILL = (123, 117, 104)
BICUBIC = Image.Resampling.BICUBIC
BILINEAR = Image.Resampling.BILINEAR


def reference_transform(resolution):
    """The Compose cn_clip builds for the train split with use_augment."""

    class Split:
        split = "train"
        use_augment = True

    return cn_data.LMDBDataset._build_transform(Split(), resolution)


def op_cases():
    """(case, function, args, kwargs) for the op fixtures; kwargs as AugmentOp passes them."""
    tf = dict(fillcolor=FILL, resample=BICUBIC)
    cases = [("autocontrast", aa.auto_contrast, [], {}), ("equalize", aa.equalize, [], {}),
             ("invert", aa.invert, [], {})]
    for bits in (1, 4, 6, 7, 8):
        cases.append((f"posterize_{bits}", aa.posterize, [bits], {}))
    for t in (0, 76, 102, 128, 179, 204, 256):
        cases.append((f"solarize_{t}", aa.solarize, [t], {}))
    for deg in (27.0, -27.0, 24.0, -24.0, 9.0, -9.0, 90.0, 180.0, -90.0, 0.0, 33.3):
        cases.append((f"rotate_{deg:g}", aa.rotate, [deg], dict(tf)))
    for f in (0.15, -0.15, 0.3, -0.3):
        cases.append((f"shearx_{f:g}", aa.shear_x, [f], dict(tf)))
    for f in (0.15, -0.3):
        cases.append((f"sheary_{f:g}", aa.shear_y, [f], dict(tf)))
    for p in (11.7, -4.25):
        cases.append((f"translatex_{p:g}", aa.translate_x_abs, [p], dict(tf)))
        cases.append((f"translatey_{p:g}", aa.translate_y_abs, [p], dict(tf)))
    for f in (0.1, 0.46, 0.82, 1.0, 1.54, 1.9):
        cases.append((f"color_{f:g}", aa.color, [f], {}))
    for f in (0.1, 0.82, 1.54):
        cases.append((f"contrast_{f:g}", aa.contrast, [f], {}))
        cases.append((f"brightness_{f:g}", aa.brightness, [f], {}))
    for f in (0.1, 1.36, 1.9):
        cases.append((f"sharpness_{f:g}", aa.sharpness, [f], {}))
    cases.append(("rotate_27_bilinear", aa.rotate, [27.0], dict(fillcolor=FILL, resample=BILINEAR)))
    cases.append(("shearx_-0.3_bilinear", aa.shear_x, [-0.3], dict(fillcolor=FILL, resample=BILINEAR)))
    return cases


def sources(rng):
    """Small RGB sources (photo, palette photo, noise, square, few levels) and one L source."""
    photo = Image.open(os.path.join(IMAGES, "rgb.jpg")).convert("RGB").resize((27, 21), BICUBIC)
    pal = Image.open(os.path.join(IMAGES, "palette.png")).convert("RGB").resize((20, 24), BICUBIC)
    yy, xx = np.mgrid[0:23, 0:19]
    base = (xx * 255 // 18 + yy * 255 // 22) // 2
    noise = np.clip(base[:, :, None] + rng.integers(-60, 61, size=(23, 19, 3)), 0, 255).astype(np.uint8)
    square = Image.open(os.path.join(IMAGES, "rgb.png")).convert("RGB").resize((20, 20), BICUBIC)
    gray = Image.open(os.path.join(IMAGES, "gray.png")).resize((25, 20), BICUBIC)
    assert gray.mode == "L"
    # Four levels per band over 480 pixels: equalize's table exceeds 255 at the brightest used level, which
    # Pillow's point() clips; the assert keeps the fixture covering that.
    levels = np.sort(rng.choice(256, 4, replace=False))
    few = Image.fromarray(levels[rng.integers(0, 4, size=(20, 24, 3))].astype(np.uint8), "RGB")
    assert equalize_table_overflows(few)
    return {"photo": photo, "palette": pal, "noise": Image.fromarray(noise, "RGB"), "square": square, "gray": gray,
            "levels": few}


def equalize_table_overflows(im):
    """Whether ImageOps.equalize's table maps a level present in `im` above 255."""
    h = im.histogram()
    for b in range(0, len(h), 256):
        band = h[b:b + 256]
        used = [n for n in band if n]
        step = (sum(used) - used[-1]) // 255 if len(used) > 1 else 0
        if step:
            n = step // 2
            for i in range(256):
                if band[i] and n // step > 255:
                    return True
                n += band[i]
    return False


def run_ops(srcs):
    tensors, cases = {}, []
    for name, fn, args, kwargs in op_cases():
        for src_name, src in srcs.items():
            geometric = fn in (aa.rotate, aa.shear_x, aa.shear_y, aa.translate_x_abs, aa.translate_y_abs)
            if src_name == "square" and not name.startswith("rotate"):
                continue  # the square source is for rotate's transpose fast paths
            if src_name == "levels" and name not in ("equalize", "autocontrast", "solarize_128"):
                continue  # the few-levels source is for the histogram ops
            if src_name == "gray" and geometric:
                kwargs = dict(kwargs, fillcolor=FILL[0])  # one band, one fill value
            out = fn(src, *args, **dict(kwargs))
            assert out.mode == src.mode and out.size == src.size, name
            key = f"{name}.{src_name}"
            tensors[f"op.{key}"] = np.ascontiguousarray(np.asarray(out, dtype=np.uint8).reshape(src.size[1], src.size[0], -1))
            resample = kwargs.get("resample")
            cases.append({"name": key, "op": name.split("_")[0], "source": src_name, "args": args,
                          "filter": {BICUBIC: "bicubic", BILINEAR: "bilinear", None: None}[resample],
                          "fill": list(FILL) if src.mode == "RGB" else [FILL[0]]})
    return tensors, cases


# (name, file, box (i, j, h, w), flip, [(op name, magnitude, negated)], resolution)
PIPELINE = [
    ("rgb_jpeg", "rgb.jpg", (10, 20, 200, 260), True, [("Rotate", 8, True), ("Equalize", 7, False)], 32),
    ("palette", "palette.png", (5, 3, 90, 140), True, [("Solarize", 5, False), ("AutoContrast", 5, False)], 32),
    ("rgba", "rgba.png", (0, 12, 228, 221), False, [("PosterizeOriginal", 7, False), ("Rotate", 9, False)], 32),
    ("gray", "gray.png", (3, 1, 70, 96), True, [("Invert", 4, False), ("Equalize", 8, False)], 32),
    ("cmyk", "cmyk.jpg", (7, 0, 173, 170), False, [("Color", 4, False), ("Contrast", 8, False)], 32),
    ("wide_fallback", "wide.png", (0, 293, 40, 53), True, [("ShearX", 5, True), ("Sharpness", 7, False)], 24),
    ("tiny_no_resize", "tiny.png", (0, 1, 5, 5), True, [("Color", 0, False)], 5),
]


TENSOR_CASES = ("rgb_jpeg", "palette")


def run_pipeline():
    tensors, cases = {}, []
    for name, file, box, flip, ops, res in PIPELINE:
        compose = reference_transform(res)
        t = compose.transforms
        rrc, hflip, to_rgb, auto, to_tensor, normalize = t
        assert isinstance(rrc, RandomResizedCropAndInterpolation) and to_rgb is cn_data._convert_to_rgb
        assert isinstance(auto, aa.AutoAugment)
        by_name = {op.name: op for sp in auto.policy for op in sp}
        img = Image.open(os.path.join(IMAGES, file))
        mode = img.mode
        rrc.get_params = lambda im, scale, ratio, box=box: box
        hflip.p = 1.0 if flip else 0.0
        x = hflip(rrc(img))
        assert x.mode == mode, (name, x.mode)
        x = to_rgb(x)
        for op_name, magnitude, negated in ops:
            template = by_name[op_name]
            op = aa.AugmentOp(op_name, prob=1.0, magnitude=magnitude, hparams=template.hparams)
            assert op.kwargs == template.kwargs
            saved = aa._randomly_negate
            aa._randomly_negate = (lambda v: -v) if negated else (lambda v: v)
            try:
                x = op(x)
            finally:
                aa._randomly_negate = saved
        rgb = np.asarray(x, dtype=np.uint8)
        tensor = normalize(to_tensor(x)).numpy().astype(np.float32)
        tensors[f"pipe.{name}.rgb"] = np.ascontiguousarray(rgb)
        if name in TENSOR_CASES:  # the float tensor of two cases is enough to pin ToTensor + Normalize
            tensors[f"pipe.{name}.tensor"] = np.ascontiguousarray(tensor)
        cases.append({"name": name, "file": file, "mode": mode, "box": list(box), "flip": flip, "resolution": res,
                      "tensor": name in TENSOR_CASES,
                      "ops": [{"op": o, "magnitude": m, "negated": n} for o, m, n in ops]})
    return tensors, cases


def policy_table():
    compose = reference_transform(224)
    auto = compose.transforms[3]
    rows = []
    rate = {}
    for sp in auto.policy:
        row = []
        for op in sp:
            args = {}
            for sign, fn in (("plus", lambda v: v), ("minus", lambda v: -v)):
                saved = aa._randomly_negate
                aa._randomly_negate = fn
                try:
                    magnitude = max(0., min(op.magnitude, op.magnitude_max or aa._LEVEL_DENOM))
                    args[sign] = list(op.level_fn(magnitude, op.hparams)) if op.level_fn else []
                finally:
                    aa._randomly_negate = saved
            assert op.magnitude_std == 0
            row.append({"op": op.name, "probability": op.prob, "magnitude": op.magnitude,
                        "args": args["plus"], "negated_args": args["minus"]})
            rate[op.name] = rate.get(op.name, 0.0) + op.prob / len(auto.policy)
        rows.append(row)
    kwargs = auto.policy[0][0].kwargs
    return {"subpolicies": rows, "applications_per_image": rate,
            "fillcolor": list(kwargs["fillcolor"]), "resample": int(kwargs["resample"]),
            "translate_const": auto.policy[0][0].hparams["translate_const"],
            "hflip": compose.transforms[1].p, "scale": list(compose.transforms[0].scale),
            "ratio": list(compose.transforms[0].ratio)}


def crop_statistics():
    rrc = reference_transform(224).transforms[0]
    out = []
    for k, (w, h) in enumerate([(224, 224), (320, 240), (100, 300), (640, 40), (30, 200), (7, 5)]):
        random.seed(1000 + k)
        img = Image.new("L", (w, h))
        draws, fallback = [], 0
        for _ in range(20000):
            i, j, th, tw = rrc.get_params(img, rrc.scale, rrc.ratio)
            draws.append((i, j, th, tw))
        a = np.array(draws, dtype=np.float64)
        # get_params falls back to the centred crop after 10 failed tries; count boxes equal to it.
        in_ratio = w / h
        if in_ratio < min(rrc.ratio):
            fw, fh = w, int(round(w / min(rrc.ratio)))
        elif in_ratio > max(rrc.ratio):
            fw, fh = int(round(h * max(rrc.ratio))), h
        else:
            fw, fh = w, h
        fb = ((h - fh) // 2, (w - fw) // 2, fh, fw)
        fallback = int(sum(1 for d in draws if d == fb))
        out.append({"width": w, "height": h, "draws": len(draws), "mean": a.mean(axis=0).tolist(),
                    "std": a.std(axis=0).tolist(), "min": a.min(axis=0).tolist(), "max": a.max(axis=0).tolist(),
                    "fallback_box": list(fb), "fallback_count": fallback})
    return out


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join("Tests", "Fixtures", "augment")
    assert PIL.__version__.split(".")[0] == "13", f"needs Pillow 13, found {PIL.__version__}"
    assert timm.__version__ == "1.0.31", f"needs timm 1.0.31, found {timm.__version__}"
    rng = np.random.default_rng(20250101)
    torch.manual_seed(0)
    srcs = sources(rng)
    tensors = {f"src.{k}": np.ascontiguousarray(np.asarray(v, dtype=np.uint8).reshape(v.size[1], v.size[0], -1))
               for k, v in srcs.items()}
    t_ops, op_list = run_ops(srcs)
    t_pipe, pipe_list = run_pipeline()
    tensors.update(t_ops)
    tensors.update(t_pipe)
    os.makedirs(out_dir, exist_ok=True)
    meta = {"pillow": PIL.__version__, "timm": timm.__version__, "generator": "scripts/reference/make_augment_fixtures.py"}
    save_file(tensors, os.path.join(out_dir, "expected.safetensors"), metadata=meta)
    doc = dict(meta, sources={k: {"mode": v.mode, "size": list(v.size)} for k, v in srcs.items()},
               ops=op_list, pipeline=pipe_list, policy=policy_table(), crop=crop_statistics())
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    size = os.path.getsize(os.path.join(out_dir, "expected.safetensors"))
    print(f"{len(op_list)} op cases, {len(pipe_list)} pipeline cases, {size} bytes")
    assert size < 360_000


if __name__ == "__main__":
    main()
