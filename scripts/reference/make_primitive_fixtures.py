"""Golden inputs and outputs of the tensor primitives, computed by PyTorch (the reference's engine).

usage: python make_primitive_fixtures.py OUT.safetensors   (in the environment of ../shared/reference/setup_ref_env.sh)
Each case `NAME` stores its inputs as `NAME.in.*` and its result as `NAME.out`.
"""
import sys
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.set_num_threads(1)  # the same sums in the same order on any machine
g = torch.Generator().manual_seed(1129)
r = lambda *s: torch.randn(*s, generator=g)
t = {}
def case(name, out, **inputs):
    for k, v in inputs.items():
        t[f"{name}.in.{k}"] = v.clone().contiguous()
    t[f"{name}.out"] = out.contiguous()

x, w, b = r(3, 5, 7), r(4, 7), r(4)
case("linear", F.linear(x, w, b), x=x, weight=w, bias=b)
a, m = r(6, 9), r(9, 5)
case("matmul", a @ m, a=a, b=m)
x, w, b = r(4, 3, 16) * 3 + 1, r(16), r(16)
case("layer_norm", F.layer_norm(x, (16,), w, b, eps=1e-5), x=x, weight=w, bias=b)
case("layer_norm_bert", F.layer_norm(x, (16,), w, b, eps=1e-12), x=x, weight=w, bias=b)
x = r(5, 33) * 4
case("gelu", F.gelu(x), x=x)
case("quick_gelu", x * torch.sigmoid(1.702 * x), x=x)
case("relu", F.relu(x), x=x)
case("softmax", torch.softmax(x, dim=-1), x=x)
case("l2_normalize", x / x.norm(dim=-1, keepdim=True), x=x)
# multi-head attention with a key mask as BERT applies it: (1 - mask) * -10000 added to the scores
B, L, H, D = 2, 6, 3, 4
q, k, v = r(B, L, H * D), r(B, L, H * D), r(B, L, H * D)
mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.float32)
split = lambda z: z.view(B, L, H, D).permute(0, 2, 1, 3)
s = split(q) @ split(k).transpose(-1, -2) / D ** 0.5 + ((1 - mask) * -10000.0)[:, None, None, :]
o = (torch.softmax(s, -1) @ split(v)).permute(0, 2, 1, 3).reshape(B, L, H * D)
case("attention", o, q=q, k=k, v=v, key_bias=(1 - mask) * -10000.0)
x = r(2, 3, 11, 9)
w3 = r(5, 3, 3, 3)
case("conv3x3_s2_p1", F.conv2d(x, w3, stride=2, padding=1), x=x, weight=w3)
case("conv3x3_s1_p1", F.conv2d(x, w3, stride=1, padding=1), x=x, weight=w3)
w1 = r(4, 3, 1, 1)
case("conv1x1", F.conv2d(x, w1), x=x, weight=w1)
xp, wp = r(2, 3, 12, 12), r(6, 3, 4, 4)
case("conv_patch4", F.conv2d(xp, wp, stride=4), x=xp, weight=wp)
case("avg_pool2", F.avg_pool2d(x, 2), x=x)
w, b, rm, rv = r(3), r(3), r(3) * 0.1, torch.rand(3, generator=g) + 0.5
case("batch_norm", F.batch_norm(x, rm, rv, w, b, training=False, eps=1e-5), x=x, weight=w, bias=b, running_mean=rm, running_var=rv)
table = r(10, 6)
ids = torch.tensor([3, 0, 9, 3, 1])
case("embedding", F.embedding(ids, table), table=table, ids=ids)

# --- Layouts and sizes the cases above do not reach ---------------------------------------------------
x, w = r(3, 5, 7), r(4, 7)
case("linear_no_bias", F.linear(x, w), x=x, weight=w)
a, bt = r(9, 20), r(11, 20)
case("matmul_transposed", a @ bt.T, a=a, b=bt)
x = r(7, 13)
case("transposed", x.T, x=x)
x = r(5, 3, 4)
case("rows", x[1:4], x=x)
case("first_rows", x[:, :1, :], x=x)
parts = [r(2, 3, 4), r(1, 3, 4), r(3, 3, 4)]
case("concatenate_rows", torch.cat(parts, 0), a=parts[0], b=parts[1], c=parts[2])
a, b = r(3, 4, 5), r(5)
case("add_broadcast", a + b, a=a, b=b)
b2 = r(3, 4, 5)
case("add_same_shape", a + b2, a=a, b=b2)
case("scaled", a * -0.37, x=a)
# exp across its whole fp32 range (underflow to subnormals and 0 below about -87, inf above about 88.72),
# 1003 values so the 8-lane loop has a tail; the special values are at the end.
x = torch.cat([torch.linspace(-100, 100, 995), torch.tensor([-1e4, -104.0, -87.4, -87.3, 88.7, 88.8, 0.0, 1e-7])])
case("exp", torch.exp(x), x=x)
x = torch.linspace(-120, 120, 1001)
case("quick_gelu_wide", x * torch.sigmoid(1.702 * x), x=x)
# Softmax with BERT's -10000 on masked entries, rows of 13 (not a multiple of 8); the last row fully masked.
x = r(4, 13) * 3
x[0, 9:] -= 10000.0
x[1, :1] -= 10000.0
x[3, :] = -10000.0
case("softmax_masked", torch.softmax(x, dim=-1), x=x)
x = r(3, 77) * 5
case("softmax_wide", torch.softmax(x, dim=-1), x=x)

# Attention on packed projections: self-attention reading q, k, v from one [B, L, 3W] tensor (ViT's in_proj)
def mha(q, k, v, H, D, bias=None):
    B, Lq, Lk = q.shape[0], q.shape[1], k.shape[1]
    sq = q.reshape(B, Lq, H, D).permute(0, 2, 1, 3)
    sk = k.reshape(B, Lk, H, D).permute(0, 2, 1, 3)
    sv = v.reshape(B, Lk, H, D).permute(0, 2, 1, 3)
    s = sq @ sk.transpose(-1, -2) / D ** 0.5
    if bias is not None:
        s = s + bias[:, None, None, :]
    return (torch.softmax(s, -1) @ sv).permute(0, 2, 1, 3).reshape(B, Lq, H * D)
B, L, H, D = 2, 5, 2, 8
W = H * D
qkv = r(B, L, 3 * W)
case("attention_packed", mha(qkv[..., :W], qkv[..., W:2 * W], qkv[..., 2 * W:], H, D), qkv=qkv)
# ... and cross-attention with lq != lk: q at column 5 of a [B, lq, W + 9] buffer, k and v packed in a
# [B, lk, 2W] buffer (v at column W), a key mask; big enough (B·H·2·lq·lk·D ≥ 32768) to split heads over threads.
B, Lq, Lk, H, D = 2, 12, 20, 4, 16
W = H * D
qbuf, kv = r(B, Lq, W + 9), r(B, Lk, 2 * W)
mask = torch.ones(B, Lk)
mask[0, 15:] = 0
kb = (1 - mask) * -10000.0
case("attention_cross", mha(qbuf[..., 5:5 + W], kv[..., :W], kv[..., W:], H, D, kb), q=qbuf, kv=kv, key_bias=kb)

# Convolutions: a 3x2 kernel on a 7x10 image, a strided 1x1 (im2col path, not the direct one), and one
# big enough (oc·pixels·kdim ≥ 2^21) that the GEMM is split across threads.
x, w = r(2, 3, 7, 10), r(4, 3, 3, 2)
case("conv3x2_s2_p1", F.conv2d(x, w, stride=2, padding=1), x=x, weight=w)
w = r(5, 3, 1, 1)
case("conv1x1_s2", F.conv2d(x, w, stride=2), x=x, weight=w)
x, w = r(1, 16, 24, 20), r(32, 16, 3, 3) * 0.2
case("conv3x3_big", F.conv2d(x, w, padding=1), x=x, weight=w)
# Patch rows as a stride-p convolution reads them, on a 10x13 image (the ragged edge is dropped).
x = r(2, 3, 10, 13)
case("patches4", F.unfold(x, 4, stride=4).transpose(1, 2), x=x)

# GEMMs above 2^21 multiply-adds, which are split across threads: m < 32·threads splits the columns of C
# (n = 150 is not a multiple of 16), m ≥ 32·threads splits the rows.
a, b = r(60, 240), r(240, 150)
case("gemm_columns", a @ b, a=a, b=b)
x, w, bias = r(60, 240), r(150, 240), r(150)
case("linear_columns", F.linear(x, w, bias), x=x, weight=w, bias=bias)
a, b = r(100, 240), r(240, 90)
case("gemm_rows", a @ b, a=a, b=b)
x, w, bias = r(100, 240), r(90, 240), r(90)
case("linear_rows", F.linear(x, w, bias), x=x, weight=w, bias=bias)
at, bt = r(240, 100), r(90, 240)
case("gemm_rows_transposed", at.T @ bt.T, a=at, b=bt)
save_file(t, sys.argv[1])
print(f"{len(t)} tensors written to {sys.argv[1]}")
