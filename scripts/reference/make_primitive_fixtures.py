"""Golden inputs and outputs of the tensor primitives, computed by PyTorch (the reference's engine).

usage: python make_primitive_fixtures.py OUT.safetensors   (in the environment of ../shared/reference/setup_ref_env.sh)
Each case `NAME` stores its inputs as `NAME.in.*` and its result as `NAME.out`.
"""
import sys
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

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
case("embedding", F.embedding(ids, table), table=table, ids=ids.to(torch.float32))
save_file(t, sys.argv[1])
print(f"{len(t)} tensors written to {sys.argv[1]}")
