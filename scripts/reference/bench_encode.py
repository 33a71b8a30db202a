"""The reference's encoding throughput (cn_clip on PyTorch CPU), as ../shared/reference/bench_torch.py measures it,
plus what `cnclip bench` also reports: texts from a file (--texts, cycled to fill the batch; run i starts at line i × batch), one tower alone
(--img-batch 0 / --txt-batch 0), and the load time of a real checkpoint (--checkpoint: torch.load and
load_state_dict, as cn_clip's create_model does).
usage: bench_encode.py VISION TEXT [--img-batch N] [--txt-batch N] [--ctx N] [--iters N] [--threads N]
                       [--texts FILE] [--checkpoint PATH]"""
import argparse, json, resource, statistics, time
import torch
from cn_clip.clip.utils import create_model
import cn_clip.clip as clip

p = argparse.ArgumentParser()
p.add_argument("vision"); p.add_argument("text")
p.add_argument("--img-batch", type=int, default=8)
p.add_argument("--txt-batch", type=int, default=32)
p.add_argument("--ctx", type=int, default=52)
p.add_argument("--iters", type=int, default=5)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--texts")
p.add_argument("--checkpoint")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
out = {"torch": torch.__version__, "threads": a.threads, "model": f"{a.vision}@{a.text}"}
m = create_model(f"{a.vision}@{a.text}").float().eval()
if a.checkpoint:
    t = time.perf_counter()
    sd = torch.load(a.checkpoint, map_location="cpu")["state_dict"]
    m.load_state_dict({k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()})
    out["load_s"] = time.perf_counter() - t
def timeit(fn, n):
    """One warm-up run, then the median of n runs; run i is fn(i)."""
    fn(0)
    ts = []
    for i in range(n):
        t = time.perf_counter(); fn(i); ts.append(time.perf_counter() - t)
    return statistics.median(ts)
with torch.inference_mode():
    if a.img_batch > 0:
        res = m.visual.input_resolution if hasattr(m.visual, "input_resolution") else 224
        img = torch.randn(a.img_batch, 3, res, res)
        out["img_per_s"] = a.img_batch / timeit(lambda i: m.encode_image(img), a.iters)
    if a.txt_batch > 0:
        lines = [l for l in open(a.texts, encoding="utf-8").read().split("\n") if l] if a.texts else ["一只可爱的小猫在草地上玩耍"]
        # run i encodes the texts from line i*batch on (cycled), as `cnclip bench` does
        runs = [clip.tokenize([lines[(i * a.txt_batch + j) % len(lines)] for j in range(a.txt_batch)], context_length=a.ctx)
                for i in range(max(1, a.iters))]
        out["txt_per_s"] = a.txt_batch / timeit(lambda i: m.encode_text(runs[i]), a.iters)
        out["txt_positions"] = a.ctx
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
