"""ONNX Runtime's encoding throughput on the CPU, fp32 or dynamic int8, with the arguments of bench_encode.py, as
../shared/reference/bench_ort.py measures it: the towers of cn-clip's model with random weights (torch.manual_seed(0))
exported with a dynamic batch (opset 17), `quantize_dynamic(per_channel=True, weight_type=QInt8)` for --int8, one
warm-up and the median of --iters runs; run i takes the texts from line i × batch on, as `cnclip bench` does.
Exports are cached in --cache (default $TMPDIR/cnclip-ort-cache), since exporting ViT-B-16 takes longer than timing it.
peak_rss_mb is the session's own: measured in a fresh process that only loads the .onnx files and runs them.
usage: bench_ort_encode.py VISION TEXT [--img-batch N] [--txt-batch N] [--ctx N] [--iters N] [--threads N]
                           [--texts FILE] [--int8]"""
import argparse, json, os, resource, statistics, subprocess, sys, tempfile, time

p = argparse.ArgumentParser()
p.add_argument("vision"); p.add_argument("text")
p.add_argument("--img-batch", type=int, default=8)
p.add_argument("--txt-batch", type=int, default=32)
p.add_argument("--ctx", type=int, default=52)
p.add_argument("--iters", type=int, default=5)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--texts")
p.add_argument("--int8", action="store_true")
p.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "cnclip-ort-cache"))
p.add_argument("--run", action="store_true", help=argparse.SUPPRESS)  # the timing process itself
a = p.parse_args()
d = os.path.join(a.cache, f"{a.vision}@{a.text}")
suffix = "8" if a.int8 else ""

if not a.run:
    if not all(os.path.exists(f"{d}/{n}{s}.onnx") for n in ("img", "txt") for s in ("", "8")):
        import torch
        from cn_clip.clip.utils import create_model
        import cn_clip.clip as clip
        import onnx_towers  # beside this script
        os.makedirs(d, exist_ok=True)
        torch.manual_seed(0)
        m = create_model(f"{a.vision}@{a.text}").float().eval()
        res = m.visual.input_resolution
        onnx_towers.export(m, torch.randn(2, 3, res, res), clip.tokenize(["一只可爱的小猫在草地上玩耍"] * 2, context_length=a.ctx), d)
        onnx_towers.quantize(d)
        with open(f"{d}/resolution", "w") as f: f.write(str(res))
    # Time in a fresh process, so that its peak memory is ONNX Runtime's alone.
    sys.exit(subprocess.call([sys.executable] + sys.argv + ["--run"]))

import numpy as np
import onnxruntime as ort
import cn_clip.clip as clip
so = ort.SessionOptions(); so.intra_op_num_threads = a.threads; so.inter_op_num_threads = 1
out = {"ort": ort.__version__, "threads": a.threads, "model": f"{a.vision}@{a.text}", "precision": "int8" if a.int8 else "fp32"}
def timeit(fn, n):
    fn(0)
    ts = []
    for i in range(n):
        t = time.perf_counter(); fn(i); ts.append(time.perf_counter() - t)
    return statistics.median(ts)
if a.img_batch > 0:
    res = int(open(f"{d}/resolution").read())
    s = ort.InferenceSession(f"{d}/img{suffix}.onnx", so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((a.img_batch, 3, res, res), dtype=np.float32)
    out["img_per_s"] = a.img_batch / timeit(lambda i: s.run(None, {"image": x}), a.iters)
if a.txt_batch > 0:
    s = ort.InferenceSession(f"{d}/txt{suffix}.onnx", so, providers=["CPUExecutionProvider"])
    lines = [l for l in open(a.texts, encoding="utf-8").read().split("\n") if l] if a.texts else ["一只可爱的小猫在草地上玩耍"]
    runs = [clip.tokenize([lines[(i * a.txt_batch + j) % len(lines)] for j in range(a.txt_batch)], context_length=a.ctx).numpy()
            for i in range(max(1, a.iters))]
    out["txt_per_s"] = a.txt_batch / timeit(lambda i: s.run(None, {"text": runs[i]}), a.iters)
    out["txt_positions"] = a.ctx
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
