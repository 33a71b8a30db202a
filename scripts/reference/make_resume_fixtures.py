"""Training checkpoints as cn-clip's own training code writes them, and what its `main.py` does when it resumes each.

Writes Tests/Fixtures/resume/ (run with the environment of ../shared/reference/setup_ref_env.sh):

  python scripts/reference/make_resume_fixtures.py Tests/Fixtures/resume            # phase A
  python scripts/reference/make_resume_fixtures.py Tests/Fixtures/resume --ours DIR # phase B

Phase A, for a tiny ViT and a tiny RN50-style model (`vit.json`, `rn.json`; text vocab 21128, narrow):
- `{arch}/init.pt`: the model's first weights, as `{"epoch": 0, "step": 0, "name", "state_dict"}` with `module.` keys.
- `{arch}/epoch1.pt`: the reference's training loop (DistributedDataParallel on gloo, world size 1; the
  LMDBDataset, DistributedSampler and DataLoader of cn_clip.training.data over Tests/Fixtures/dataset/lmdb/train;
  AdamW with main.py's two groups; cosine_lr; the logit-scale clamp of train.py) run for one epoch (4 steps at
  batch 4) from init.pt and saved as main.py saves at the end of an epoch.
- `{arch}/after8.safetensors`: the weights after main.py resumes epoch1.pt (without reset flags) and trains the
  second epoch (steps 4..7); `expected.json` has the losses and learning rates.
- `forms/{arch}-{prefix|bare}-{real|empty|none|absent|foreign}.pt`: one state dict (small vocab `*-forms.json`)
  saved with the optimizer entry in every form a user meets (`optimizer.state_dict()`, `{}`, `None`, no key, another
  model's optimizer state), with and without the `module.` prefix; `forms.json` records, for each file and each of
  the four combinations of --reset-data-offset / --reset-optimizer, what main.py's resume block does with it:
  "accepted" or the exception it raises.

Phase B (`--ours DIR`): DIR holds `{arch}/epoch1.pt` written by `cnclip train` from init.pt with the same flags
(`--resume init.pt --reset-data-offset --reset-optimizer --batch-size 4 --context-length 24 --lr 1e-3 --beta1 0.9
--beta2 0.98 --eps 1e-6 --wd 0.2 --warmup 2 --max-steps 8 --seed 123 --config {arch}.json`), copied here as
`{arch}/ours-epoch1.pt`. main.py's resume block loads each (strict `load_state_dict`, `optimizer.load_state_dict`)
and trains the second epoch: `{arch}/ours-after8.safetensors`, and the losses in `expected.json`.
"""
import argparse, json, logging, math, os, sys
from argparse import Namespace
from collections import OrderedDict

import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from cn_clip.clip.model import CLIP, resize_pos_embed
from cn_clip.training.data import LMDBDataset, pad_dataset
from cn_clip.training.scheduler import cosine_lr

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--ours", help="phase B: a folder with {vit,rn}/epoch1.pt written by cnclip train")
ap.add_argument("--seed", type=int, default=20261206)
args = ap.parse_args()
OUT = args.out
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_LMDB = os.path.join(ROOT, "Tests/Fixtures/dataset/lmdb/train")
os.makedirs(OUT, exist_ok=True)

TEXT = dict(vocab_size=21128, text_attention_probs_dropout_prob=0.0, text_hidden_act="gelu", text_hidden_dropout_prob=0.0,
            text_hidden_size=16, text_initializer_range=0.02, text_intermediate_size=32, text_max_position_embeddings=64,
            text_num_attention_heads=2, text_num_hidden_layers=1, text_type_vocab_size=2)
CONFIGS = {
    "vit": dict(embed_dim=16, image_resolution=32, vision_layers=1, vision_width=32, vision_patch_size=8,
                vision_head_width=16, **TEXT),
    # 96 px: the last stage's BatchNorm sees 3×3 positions × 4 images. At 32 px (one position) the run from init is
    # so ill-conditioned that moving every initial weight by one ulp moves cn-clip's own weights by 3e-4 in 4 steps.
    "rn": dict(embed_dim=16, image_resolution=96, vision_layers=[1, 1, 1, 1], vision_width=4, vision_patch_size=None,
               vision_head_width=16, **TEXT),
}
# The training flags, as `cnclip train` is given them in Tests/TrainingTests/ResumeInteropTests.swift.
HP = dict(lr=1e-3, beta1=0.9, beta2=0.98, eps=1e-6, wd=0.2, warmup=2, batch_size=4, context_length=24, max_steps=8, seed=123)

os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
os.environ.setdefault("MASTER_PORT", "29533")
dist.init_process_group("gloo", rank=0, world_size=1)
logging.basicConfig(level=logging.WARNING)


def ddp(cfg, seed):
    torch.manual_seed(seed)
    m = CLIP(**cfg).float()
    return torch.nn.parallel.DistributedDataParallel(m)


def optimizer_of(model):
    # main.py: two groups over the DDP model's named parameters that require gradients
    exclude = lambda n: "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n
    named = list(model.named_parameters())
    return torch.optim.AdamW([
        {"params": [p for n, p in named if exclude(n) and p.requires_grad], "weight_decay": 0.},
        {"params": [p for n, p in named if not exclude(n) and p.requires_grad], "weight_decay": HP["wd"]},
    ], lr=HP["lr"], betas=(HP["beta1"], HP["beta2"]), eps=HP["eps"])


def loader(resolution, epoch):
    # get_dataset() without fetch_resolution (it reads the resolution of a released model's config)
    ds = LMDBDataset(TRAIN_LMDB, split="train", max_txt_length=HP["context_length"], use_augment=False, resolution=resolution)
    pad_dataset(ds, HP["batch_size"] * dist.get_world_size())
    sampler = DistributedSampler(ds, shuffle=True, seed=HP["seed"])
    sampler.set_epoch(epoch)
    return DataLoader(ds, batch_size=HP["batch_size"], pin_memory=False, num_workers=0, sampler=sampler), \
        ds.dataset_len // HP["batch_size"]


def train_epoch(model, optimizer, scheduler, cfg, epoch, losses, lrs):
    # train.py's loop for accum_freq 1, fp32, with the default aggregate (world size 1: the local features)
    model.train()
    dl, num_batches = loader(cfg["image_resolution"], epoch)
    for i, (images, texts, _) in enumerate(dl):
        step = num_batches * epoch + i
        if step >= HP["max_steps"]:
            break
        lrs.append(float(scheduler(step)))
        optimizer.zero_grad()
        fi, ft, scale = model(images, texts, 0.0)
        scale = scale.mean()
        lpi = scale * fi @ ft.t()
        lpt = lpi.t()
        gt = torch.arange(len(lpi)).long()
        loss = (F.cross_entropy(lpi, gt) + F.cross_entropy(lpt, gt)) / 2
        loss.backward()
        optimizer.step()
        m = model.module
        m.logit_scale.data = torch.clamp(m.logit_scale.data, 0, 4.6052)
        losses.append(float(loss.detach()))
    return num_batches


def resume(model, optimizer, path, reset_data_offset=False, reset_optimizer=False, weights_only=False):
    # main.py's resume block, line for line. main.py calls torch.load(path, map_location="cpu"), whose default was
    # weights_only=False up to torch 2.5 (the versions cn-clip 1.6.0 was written for); from 2.6 the default refuses
    # every checkpoint saved after the warmup: cosine_lr stores np.cos(...)-computed learning rates, numpy scalars.
    checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only)
    sd = {k: v for k, v in checkpoint["state_dict"].items() if "bert.pooler" not in k}
    resize_pos_embed(sd, model, prefix="module.")
    model.load_state_dict(sd)
    start_epoch, steps = 0, 0
    if not reset_data_offset:
        start_epoch = checkpoint["epoch"]
        steps = checkpoint["step"]
    if not reset_optimizer and optimizer is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
    _ = f"=> loaded checkpoint '{path}' (epoch {checkpoint['epoch']} @ {steps} steps)"
    return start_epoch, steps


def save(model, optimizer, epoch, steps, name, path):
    torch.save({"epoch": epoch, "step": steps, "name": name, "state_dict": model.state_dict(),
                "optimizer": optimizer.state_dict()}, path)


def continue_from(cfg, path):
    """A fresh process's main.py: model, optimizer, schedule, resume from `path`, train to max_steps."""
    model = ddp(cfg, args.seed + 1)  # other random weights: the checkpoint must overwrite all of them
    optimizer = optimizer_of(model)
    scheduler = cosine_lr(optimizer, HP["lr"], HP["warmup"], HP["max_steps"])
    start_epoch, steps = resume(model, optimizer, path)
    losses, lrs = [], []
    train_epoch(model, optimizer, scheduler, cfg, start_epoch, losses, lrs)
    return model, losses, lrs


def plain(model):
    return OrderedDict((k[len("module."):], v.detach().clone().contiguous()) for k, v in model.state_dict().items())


def max_rel_diff(a, b):
    worst = 0.0
    for k, v in a.items():
        if "num_batches_tracked" in k:
            continue
        scale = max(1.0, float(b[k].abs().max())) if b[k].numel() else 1.0
        worst = max(worst, float((v.float() - b[k].float()).abs().max()) / scale if v.numel() else 0.0)
    return worst


expected_path = os.path.join(OUT, "expected.json")
if args.ours:
    import shutil
    expected = json.load(open(expected_path))
    for arch, cfg in CONFIGS.items():
        ours = os.path.join(OUT, arch, "ours-epoch1.pt")
        shutil.copyfile(os.path.join(args.ours, arch, "epoch1.pt"), ours)
        model, losses, _ = continue_from(cfg, ours)
        save_file(plain(model), os.path.join(OUT, arch, "ours-after8.safetensors"))
        # From init, cnclip's first four steps and cn-clip's differ by float rounding, which Adam's first steps
        # amplify where a gradient is near eps (and the RN more than the ViT); this distance is recorded, not checked.
        d = max_rel_diff(plain(model), load_file(os.path.join(OUT, arch, "after8.safetensors")))
        print(f"{arch}: cn-clip resumed cnclip's epoch1.pt; after 8 steps its weights are {d:.3g} (relative) from after8")
        expected[arch]["from_cnclip_checkpoint"] = {"accepted": True, "losses": losses, "max_rel_diff_vs_after8": d}
    json.dump(expected, open(expected_path, "w"), indent=1)
    sys.exit(0)

expected = {"hyperparameters": HP, "tolerance": "1e-4 x max(1, max |expected|) per tensor"}
for arch, cfg in CONFIGS.items():
    d = os.path.join(OUT, arch)
    os.makedirs(d, exist_ok=True)
    json.dump(cfg, open(os.path.join(OUT, f"{arch}.json"), "w"), indent=1)
    model = ddp(cfg, args.seed)
    torch.save({"epoch": 0, "step": 0, "name": f"{arch}-init", "state_dict": model.state_dict()}, os.path.join(d, "init.pt"))
    optimizer = optimizer_of(model)
    scheduler = cosine_lr(optimizer, HP["lr"], HP["warmup"], HP["max_steps"])
    losses, lrs = [], []
    num_batches = train_epoch(model, optimizer, scheduler, cfg, 0, losses, lrs)
    assert num_batches == 4
    save(model, optimizer, 1, num_batches, f"{arch}-resume", os.path.join(d, "epoch1.pt"))
    straight_losses = list(losses)
    train_epoch(model, optimizer, scheduler, cfg, 1, straight_losses, [])
    resumed, later, later_lrs = continue_from(cfg, os.path.join(d, "epoch1.pt"))
    # resuming in a new process gives what the uninterrupted run gives
    assert max_rel_diff(plain(resumed), plain(model)) == 0.0, "resume is not exact in the reference"
    save_file(plain(resumed), os.path.join(d, "after8.safetensors"))
    expected[arch] = {"config": f"{arch}.json", "losses": losses + later, "lrs": lrs + later_lrs,
                      "num_batches_tracked_in_state_dict": [k for k in model.state_dict() if "num_batches_tracked" in k][:3]}

# ---------------------------------------------------------------- every form of the optimizer entry
forms_dir = os.path.join(OUT, "forms")
os.makedirs(forms_dir, exist_ok=True)
SMALL = dict(vocab_size=64, text_max_position_embeddings=32)
small = {arch: {**cfg, **SMALL} for arch, cfg in CONFIGS.items()}
for arch, cfg in small.items():
    json.dump(cfg, open(os.path.join(OUT, f"{arch}-forms.json"), "w"), indent=1)
stepped = {}
for arch, cfg in small.items():
    model = ddp(cfg, args.seed + 2)
    optimizer = optimizer_of(model)
    model.train()
    images = torch.randn(4, 3, cfg["image_resolution"], cfg["image_resolution"])
    texts = torch.randint(1, 64, (4, 8))
    fi, ft, scale = model(images, texts, 0.0)
    (scale * fi @ ft.t()).logsumexp(1).mean().backward()
    optimizer.step()
    stepped[arch] = (model, optimizer)

outcomes = {}
for arch, (model, optimizer) in stepped.items():
    other = stepped["rn" if arch == "vit" else "vit"][1]
    optimizers = {"real": optimizer.state_dict(), "empty": {}, "none": None, "foreign": other.state_dict()}
    for prefix in ("prefix", "bare"):
        sd = model.state_dict() if prefix == "prefix" else OrderedDict((k[7:], v) for k, v in model.state_dict().items())
        for form in ("real", "empty", "none", "absent", "foreign"):
            obj = {"epoch": 2, "step": 7, "name": f"{arch}-forms", "state_dict": sd}
            if form != "absent":
                obj["optimizer"] = optimizers[form]
            name = f"{arch}-{prefix}-{form}.pt"
            torch.save(obj, os.path.join(forms_dir, name))
            outcomes[name] = {}
            for rd in (False, True):
                for ro in (False, True):
                    fresh = ddp(small[arch], args.seed + 3)
                    try:
                        resume(fresh, optimizer_of(fresh), os.path.join(forms_dir, name), reset_data_offset=rd, reset_optimizer=ro)
                        result = "accepted"
                    except Exception as e:  # what main.py would die with
                        result = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
                    outcomes[name][f"reset_data_offset={rd},reset_optimizer={ro}"] = result

# What torch >= 2.6's default torch.load (weights_only=True) makes of main.py resuming its own epoch checkpoint.
for arch in CONFIGS:
    fresh = ddp(CONFIGS[arch], args.seed + 3)
    try:
        resume(fresh, optimizer_of(fresh), os.path.join(OUT, arch, "epoch1.pt"), weights_only=True)
        expected[arch]["torch_2_6_default_load"] = "accepted"
    except Exception as e:
        expected[arch]["torch_2_6_default_load"] = f"{type(e).__name__}: " + str(e).split("WeightsUnpickler error: ")[-1].splitlines()[0][:200]
json.dump(outcomes, open(os.path.join(OUT, "forms.json"), "w"), indent=1, ensure_ascii=False)
json.dump(expected, open(expected_path, "w"), indent=1)
for name, o in outcomes.items():
    print(name, o)
