"""Golden fixtures for Pillow's `Image.resize(size)` (default BICUBIC), incl. Pillow 13's pass order.

Makes Tests/Fixtures/resize/expected.safetensors and Tests/Fixtures/resize/cases.json: about 60
deterministic cases (sizes 1x1 .. 700 px; modes L, RGB, RGBA, LA, CMYK and P).  For a case NAME the
safetensors file holds `NAME.src` (the source pixels, uint8 [h, w, channels]; P stores palette indices)
and `NAME.out` (Pillow's `src.resize((W, H)).convert("RGB")`, uint8 [H, W, 3]).  cases.json lists, per
case: name, mode, src [w, h], dst [W, H], palette (P only: flat RGB triples) and `order`, the pass order
Pillow was observed to take (see below).

Pillow 13 (PR #9549) may run the vertical pass before the horizontal one.  This script observes the
order for every case by emulating both orders with two one-axis resizes (a one-axis resize is a single
pass; RGBA/LA are emulated in premultiplied RGBa/La) and asserts the rule the Swift port implements:
    vertical first  <=>  H < h  and  (h - H) > 2 * (w - W)
`order` is "V" or "H" (only that order reproduces Pillow), "either" (both do), "one-pass" (one axis
unchanged), "copy" (same size) or "nearest" (P: Pillow always uses NEAREST).

usage (repository root, with the reference environment's Python, which has Pillow 13, numpy and
safetensors):
    ~/.cache/cnclip-ref/venv/bin/python scripts/reference/make_resize_fixtures.py [OUT_DIR]
OUT_DIR defaults to Tests/Fixtures/resize.
"""
import json
import os
import sys

import numpy as np
import PIL
from PIL import Image
from safetensors.numpy import save_file

BICUBIC = Image.Resampling.BICUBIC
CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4, "P": 1}
PREMULTIPLIED = {"RGBA": "RGBa", "LA": "La"}


def vertical_first(w, h, W, H):
    """The pass-order rule found for Pillow 13 (both passes needed)."""
    return H < h and (h - H) > 2 * (w - W)


def source(rng, mode, w, h):
    """Noise over a gradient; alpha channels get many exact 0 and 255 values."""
    c = CHANNELS[mode]
    yy, xx = np.mgrid[0:h, 0:w]
    base = (xx * 255 // max(w - 1, 1) + yy * 255 // max(h - 1, 1)) // 2
    noise = rng.integers(-90, 91, size=(h, w, c))
    a = np.clip(base[:, :, None] + noise, 0, 255)
    if mode in ("RGBA", "LA"):
        a[:, :, -1] = np.clip(rng.integers(-80, 336, size=(h, w)), 0, 255)
    return a.astype(np.uint8)


def to_image(mode, a, palette):
    im = Image.frombytes(mode, (a.shape[1], a.shape[0]), a.tobytes())
    if mode == "P":
        im.putpalette(palette, "RGB")
    return im


def observed_order(im, W, H):
    w, h = im.size
    if (w, h) == (W, H):
        return "copy"
    if im.mode == "P":
        return "nearest"
    if w == W or h == H:
        return "one-pass"
    real = im.resize((W, H)).tobytes()
    base = im.convert(PREMULTIPLIED[im.mode]) if im.mode in PREMULTIPLIED else im
    hf = base.resize((W, h), BICUBIC).resize((W, H), BICUBIC)
    vf = base.resize((w, H), BICUBIC).resize((W, H), BICUBIC)
    if im.mode in PREMULTIPLIED:
        hf, vf = hf.convert(im.mode), vf.convert(im.mode)
    h_ok, v_ok = hf.tobytes() == real, vf.tobytes() == real
    assert h_ok or v_ok, f"neither pass order reproduces Pillow for {im.mode} {w}x{h} -> {W}x{H}"
    return "either" if h_ok and v_ok else ("H" if h_ok else "V")


# (name, mode, w, h, W, H): the boundary of the rule and the shape classes around it.
FIXED = [
    # both shrink, at the boundary h - H == 2 (w - W) (horizontal first) and one past it (vertical first)
    ("edge_100x400_50x300_H", "L", 100, 400, 50, 300),
    ("edge_100x400_50x299_V", "L", 100, 400, 50, 299),
    ("edge_40x600_20x560_H", "RGBA", 40, 600, 20, 560),
    ("edge_40x600_20x559_V", "LA", 40, 600, 20, 559),
    ("edge_7x500_3x492_H", "CMYK", 7, 500, 3, 492),
    ("edge_7x500_3x491_V", "RGB", 7, 500, 3, 491),
    ("edge_500x30_499x28_H", "RGB", 500, 30, 499, 28),
    ("edge_500x30_499x27_V", "RGBA", 500, 30, 499, 27),
    ("edge_50x700_40x680_H", "L", 50, 700, 40, 680),
    ("edge_50x700_40x679_V", "LA", 50, 700, 40, 679),
    # equal scale factors: vertical first only when the height loses more than twice the width's pixels
    ("equal_50x200_25x100_V", "RGB", 50, 200, 25, 100),
    ("equal_80x160_40x80_H", "RGB", 80, 160, 40, 80),
    ("equal_90x90_30x30_H", "CMYK", 90, 90, 30, 30),
    ("equal_60x240_20x80_V", "RGBA", 60, 240, 20, 80),
    # height shrinks a lot more, but not by enough pixels
    ("tall_150x150_50x15_H", "RGB", 150, 150, 50, 15),
    ("tall_320x240_160x5_H", "L", 320, 240, 160, 5),
    # width grows while height shrinks: always vertical first
    ("grow_w_100x130_112x112_V", "RGB", 100, 130, 112, 112),
    ("grow_w_10x700_600x5_V", "LA", 10, 700, 600, 5),
    ("grow_w_3x300_40x299_V", "RGBA", 3, 300, 40, 299),
    ("grow_w_64x65_256x64_V", "CMYK", 64, 65, 256, 64),
    # height grows: always horizontal first
    ("grow_h_200x50_25x150_H", "RGB", 200, 50, 25, 150),
    ("grow_both_30x20_90x100_H", "RGBA", 30, 20, 90, 100),
    ("grow_both_1x1_7x5", "L", 1, 1, 7, 5),
    ("grow_both_5x3_9x5_H", "LA", 5, 3, 9, 5),
    # the preprocessing fixture's 200x260 -> 64x64, halved (its 224x224 case is grow_w_100x130 above)
    ("prep_100x130_32x32_H", "RGB", 100, 130, 32, 32),
    ("extreme_700x40_224x30_H", "RGB", 700, 40, 224, 30),
    # extreme ratios
    ("extreme_1x700_700x1", "L", 1, 700, 700, 1),
    ("extreme_700x2_2x700_H", "RGB", 700, 2, 2, 700),
    ("extreme_3x700_2x3_V", "RGBA", 3, 700, 2, 3),
    ("extreme_700x5_3x2_H", "CMYK", 700, 5, 3, 2),
    ("extreme_700x20_5x3_H", "RGB", 700, 20, 5, 3),
    ("small_6x6_5x2_V", "RGB", 6, 6, 5, 2),
    # one axis unchanged (single pass) and same size (copy)
    ("onepass_123x77_123x40", "RGBA", 123, 77, 123, 40),
    ("onepass_123x77_250x77", "LA", 123, 77, 250, 77),
    ("copy_33x21", "CMYK", 33, 21, 33, 21),
    ("copy_1x1", "L", 1, 1, 1, 1),
    # palette images: NEAREST whatever the filter
    ("pal_97x61_120x90", "P", 97, 61, 120, 90),
    ("pal_300x200_64x64", "P", 300, 200, 64, 64),
    ("pal_1x1_3x2", "P", 1, 1, 3, 2),
]


def random_cases(rng, count):
    modes = ["L", "RGB", "RGBA", "LA", "CMYK", "P"]
    out = []
    while len(out) < count:
        w, h = (int(v) for v in rng.integers(1, 701, size=2))
        if w * h > 12000:
            continue
        W, H = (int(v) for v in rng.integers(1, 401, size=2))
        if W * H > 12000:
            continue
        mode = modes[len(out) % len(modes)]
        out.append((f"rand{len(out):02d}_{w}x{h}_{W}x{H}", mode, w, h, W, H))
    return out


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join("Tests", "Fixtures", "resize")
    assert PIL.__version__.split(".")[0] == "13", f"needs Pillow 13, found {PIL.__version__}"
    rng = np.random.default_rng(20240913)
    tensors, cases = {}, []
    for name, mode, w, h, W, H in FIXED + random_cases(rng, 22):
        a = source(rng, mode, w, h)
        palette = None
        if mode == "P":
            entries = 48
            a = (a.astype(np.int64) * entries // 256).astype(np.uint8)
            palette = [int(v) for v in rng.integers(0, 256, size=3 * entries)]
        im = to_image(mode, a, palette)
        order = observed_order(im, W, H)
        if order in ("H", "V"):
            assert order == ("V" if vertical_first(w, h, W, H) else "H"), (name, order)
        expect = name.rsplit("_", 1)[-1]
        if expect in ("H", "V"):  # the named order must be the only one that reproduces Pillow
            assert order == expect, f"{name}: Pillow took {order}"
        res = np.asarray(im.resize((W, H)).convert("RGB"), dtype=np.uint8)
        assert res.shape == (H, W, 3)
        tensors[f"{name}.src"] = np.ascontiguousarray(a.reshape(h, w, CHANNELS[mode]))
        tensors[f"{name}.out"] = np.ascontiguousarray(res)
        case = {"name": name, "mode": mode, "src": [w, h], "dst": [W, H], "order": order}
        if palette is not None:
            case["palette"] = palette
        cases.append(case)
    os.makedirs(out_dir, exist_ok=True)
    save_file(tensors, os.path.join(out_dir, "expected.safetensors"),
              metadata={"pillow": PIL.__version__, "generator": "scripts/reference/make_resize_fixtures.py"})
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump({"pillow": PIL.__version__, "cases": cases}, f, indent=1)
        f.write("\n")
    size = os.path.getsize(os.path.join(out_dir, "expected.safetensors"))
    counts = {}
    for c in cases:
        counts[c["order"]] = counts.get(c["order"], 0) + 1
    print(f"{len(cases)} cases, {size} bytes, orders {counts}")
    assert size < 3_000_000


if __name__ == "__main__":
    main()
