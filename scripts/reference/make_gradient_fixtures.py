"""Golden gradients of the tensor primitives, computed by PyTorch's autograd (the reference's engine).

usage: python make_gradient_fixtures.py OUT.safetensors   (in the environment of ../shared/reference/setup_ref_env.sh)
Case NAME stores its inputs as `NAME.in.*`, the forward result as `NAME.out`, a fixed random upstream gradient
`NAME.g` of the output's shape, and for every floating input X the gradient of `sum(out * g)` as `NAME.grad.X`.
Integer inputs (ids, targets) are stored as int64 and have no gradient. Extra outputs (batch norm's running
statistics after the update) are `NAME.extra.*`.
"""
import sys
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.set_num_threads(1)  # the same sums in the same order on any machine
gen = torch.Generator().manual_seed(2718)
r = lambda *s: torch.randn(*s, generator=gen)
t = {}


def case(name, fn, **inputs):
    """Runs `fn(**inputs)`, back-propagates sum(out * g) and stores everything under `name`."""
    leaves = {}
    for k, v in inputs.items():
        v = v.clone().contiguous()
        t[f"{name}.in.{k}"] = v
        leaves[k] = v.clone().requires_grad_(v.is_floating_point())
    out = fn(**leaves)
    extra = {}
    if isinstance(out, tuple):
        out, extra = out
    g = torch.randn(out.shape, generator=gen)
    (out * g).sum().backward()
    t[f"{name}.out"] = out.detach().contiguous()
    t[f"{name}.g"] = g.contiguous()
    for k, v in leaves.items():
        if v.grad is not None:  # running statistics are used detached: no gradient
            t[f"{name}.grad.{k}"] = v.grad.contiguous()
    for k, v in extra.items():
        t[f"{name}.extra.{k}"] = v.detach().clone().contiguous()


def mha(q, k, v, H, D, bias=None):
    B, Lq, Lk = q.shape[0], q.shape[1], k.shape[1]
    sq = q.reshape(B, Lq, H, D).permute(0, 2, 1, 3)
    sk = k.reshape(B, Lk, H, D).permute(0, 2, 1, 3)
    sv = v.reshape(B, Lk, H, D).permute(0, 2, 1, 3)
    s = sq @ sk.transpose(-1, -2) / D ** 0.5
    if bias is not None:
        s = s + bias[:, None, None, :]
    return (torch.softmax(s, -1) @ sv).permute(0, 2, 1, 3).reshape(B, Lq, H * D)


# --- Matrix products
case("linear", lambda x, weight, bias: F.linear(x, weight, bias), x=r(3, 5, 7), weight=r(4, 7), bias=r(4))
case("linear_no_bias", lambda x, weight: F.linear(x, weight), x=r(3, 5, 7), weight=r(4, 7))
# large enough that the backward GEMMs are split across threads
case("linear_big", lambda x, weight, bias: F.linear(x, weight, bias), x=r(100, 240), weight=r(150, 240), bias=r(150))
case("matmul", lambda a, b: a @ b, a=r(2, 6, 9), b=r(9, 5))
case("matmul_transposed", lambda a, b: a @ b.T, a=r(9, 20), b=r(11, 20))

# --- Elementwise
case("add_broadcast", lambda a, b: a + b, a=r(3, 4, 5), b=r(5))
case("add_broadcast_rows", lambda a, b: a + b, a=r(3, 4, 5), b=r(4, 5))
case("add_same_shape", lambda a, b: a + b, a=r(3, 4, 5), b=r(3, 4, 5))
case("scaled", lambda x: x * -0.37, x=r(3, 4, 5))
case("scaled_by_variable", lambda x, s: x * s, x=r(6, 5), s=torch.tensor(1.7))
case("exp", lambda x: torch.exp(x), x=r(4, 7))
case("relu", lambda x: F.relu(x), x=r(5, 33) * 4)
case("gelu", lambda x: F.gelu(x), x=r(5, 33) * 4)
case("quick_gelu", lambda x: x * torch.sigmoid(1.702 * x), x=r(5, 33) * 4)
case("softmax", lambda x: torch.softmax(x, dim=-1), x=r(5, 13) * 3)

# --- Normalisation
x = r(4, 3, 16) * 3 + 1
case("layer_norm", lambda x, weight, bias: F.layer_norm(x, (16,), weight, bias, eps=1e-5), x=x, weight=r(16), bias=r(16))
case("layer_norm_bert", lambda x, weight, bias: F.layer_norm(x, (16,), weight, bias, eps=1e-12), x=x, weight=r(16), bias=r(16))
# many rows, so the weight/bias sums are split into per-thread partial sums
case("layer_norm_big", lambda x, weight, bias: F.layer_norm(x, (64,), weight, bias, eps=1e-5), x=r(700, 64), weight=r(64), bias=r(64))
case("l2_normalize", lambda x: x / x.norm(dim=-1, keepdim=True), x=r(5, 33))


def bn_train(x, weight, bias, running_mean, running_var):
    rm, rv = running_mean.detach().clone(), running_var.detach().clone()
    out = F.batch_norm(x, rm, rv, weight, bias, training=True, momentum=0.1, eps=1e-5)
    return out, {"running_mean": rm, "running_var": rv}


case("batch_norm_train", bn_train, x=r(2, 3, 5, 4) * 2 + 0.5, weight=r(3), bias=r(3), running_mean=r(3) * 0.1,
     running_var=torch.rand(3, generator=gen) + 0.5)
case("batch_norm_eval", lambda x, weight, bias, running_mean, running_var:
     F.batch_norm(x, running_mean.detach(), running_var.detach(), weight, bias, training=False, eps=1e-5),
     x=r(2, 3, 5, 4), weight=r(3), bias=r(3), running_mean=r(3) * 0.1, running_var=torch.rand(3, generator=gen) + 0.5)

# --- Cross-entropy (mean), the loss of CLIP's contrastive objective
case("cross_entropy", lambda logits, targets: F.cross_entropy(logits, targets), logits=r(6, 6) * 3,
     targets=torch.tensor([0, 1, 2, 3, 4, 5]))
case("cross_entropy_rect", lambda logits, targets: F.cross_entropy(logits, targets), logits=r(4, 7) * 3,
     targets=torch.tensor([6, 0, 3, 3]))

# --- Attention: separate q/k/v with BERT's key bias, packed qkv (ViT's in_proj), and cross-attention with
# offsets and lq != lk, big enough to split heads over threads.
B, L, H, D = 2, 6, 3, 4
mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.float32)
kb = (1 - mask) * -10000.0
case("attention", lambda q, k, v: mha(q, k, v, H, D, kb), q=r(B, L, H * D), k=r(B, L, H * D), v=r(B, L, H * D))
t["attention.key_bias"] = kb
B, L, H, D = 2, 5, 2, 8
W = H * D
case("attention_packed", lambda qkv: mha(qkv[..., :W], qkv[..., W:2 * W], qkv[..., 2 * W:], 2, 8), qkv=r(B, L, 3 * W))
# the class-token-only last layer: the first query against all keys of the packed buffer
case("attention_packed_first", lambda qkv: mha(qkv[:, :1, :W], qkv[..., W:2 * W], qkv[..., 2 * W:], 2, 8), qkv=r(B, L, 3 * W))
B, Lq, Lk, H, D = 2, 12, 20, 4, 16
W = H * D
m2 = torch.ones(B, Lk)
m2[0, 15:] = 0
kb2 = (1 - m2) * -10000.0
case("attention_cross", lambda q, kv: mha(q[..., 5:5 + W], kv[..., :W], kv[..., W:], H, D, kb2), q=r(B, Lq, W + 9), kv=r(B, Lk, 2 * W))
t["attention_cross.key_bias"] = kb2

# --- Lookup, views, concatenation
case("embedding", lambda table, ids: F.embedding(ids, table), table=r(10, 6), ids=torch.tensor([3, 0, 9, 3, 1, 3]))
case("first_rows", lambda x: x[:, :1, :], x=r(5, 3, 4))
case("rows", lambda x: x[1:4], x=r(5, 3, 4))
case("concatenate_axis0", lambda a, b, c: torch.cat([a, b, c], 0), a=r(2, 3, 4), b=r(1, 3, 4), c=r(3, 3, 4))
case("concatenate_axis1", lambda a, b: torch.cat([a, b], 1), a=r(2, 1, 4), b=r(2, 3, 4))
case("repeated", lambda x: x.expand(3, 2, 4), x=r(2, 4))

# --- Images
case("patches4", lambda x: F.unfold(x, 4, stride=4).transpose(1, 2), x=r(2, 3, 10, 13))
case("conv3x3_s2_p1", lambda x, weight: F.conv2d(x, weight, stride=2, padding=1), x=r(2, 3, 11, 9), weight=r(5, 3, 3, 3))
case("conv3x2_s2_p1", lambda x, weight: F.conv2d(x, weight, stride=2, padding=1), x=r(2, 3, 7, 10), weight=r(4, 3, 3, 2))
case("conv1x1", lambda x, weight: F.conv2d(x, weight), x=r(2, 3, 11, 9), weight=r(4, 3, 1, 1))
case("conv_patch4", lambda x, weight: F.conv2d(x, weight, stride=4), x=r(2, 3, 12, 12), weight=r(6, 3, 4, 4))
case("conv3x3_big", lambda x, weight: F.conv2d(x, weight, padding=1), x=r(1, 16, 24, 20), weight=r(32, 16, 3, 3) * 0.2)
case("avg_pool2", lambda x: F.avg_pool2d(x, 2), x=r(2, 3, 11, 9))
case("spatial_tokens", lambda x: torch.cat([x.flatten(2).mean(-1, keepdim=True), x.flatten(2)], 2).permute(0, 2, 1),
     x=r(2, 5, 3, 4))

save_file(t, sys.argv[1])
print(f"{len(t)} tensors written to {sys.argv[1]}")
