"""Reference data for tapegrad's MultiheadAttention and TransformerBlock (issue 8).

Run by hand (never by CI):  python3 tools/reference/mha_reference.py
Writes tools/reference/mha_reference.json next to this script.

Each case: the module's parameters by state-dict name, its inputs, its output, a
random `weights` tensor of the output's shape, and the gradients of
(output * weights).sum() w.r.t. the inputs and every parameter (by name).
Bool masks are written as 0/1 floats in PyTorch MultiheadAttention's convention
(1 = masked out); the Rust side converts them.  All float32.
"""
import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mha_reference.json")
CASES = []


def tj(t):
    t = t.detach().float()
    return {"shape": list(t.shape), "data": [float(v) for v in t.reshape(-1).tolist()]}


def add(name, module, inputs, fn, extra=None):
    xs = [x.clone().requires_grad_(True) for x in inputs]
    module.zero_grad()
    out = fn(module, *xs)
    weights = torch.randn(out.shape)
    (out * weights).sum().backward()
    CASES.append({
        "name": name,
        "params": {k: tj(v) for k, v in module.named_parameters()},
        "inputs": [tj(x) for x in inputs],
        "output": tj(out),
        "weights": tj(weights),
        "input_grads": [tj(x.grad) for x in xs],
        "param_grads": {k: tj(v.grad) for k, v in module.named_parameters()},
        **(extra or {}),
    })


E, H = 8, 2
mha = nn.MultiheadAttention(E, H, batch_first=True)
# Non-zero biases, so that their gradients and layout are tested.
with torch.no_grad():
    mha.in_proj_bias.normal_(0, 0.1)
    mha.out_proj.bias.normal_(0, 0.1)
add("self", mha, [torch.randn(2, 5, E)],
    lambda m, x: m(x, x, x, need_weights=False)[0])
causal_masked = torch.ones(5, 5).triu(1).bool()  # True = not allowed (MHA's convention)
add("self_causal", mha, [torch.randn(2, 5, E)],
    lambda m, x: m(x, x, x, attn_mask=causal_masked, is_causal=True, need_weights=False)[0])
float_mask = torch.randn(4, 6)
add("cross_float_mask", mha, [torch.randn(2, 4, E), torch.randn(2, 6, E), torch.randn(2, 6, E)],
    lambda m, q, k, v: m(q, k, v, attn_mask=float_mask, need_weights=False)[0],
    {"mask": tj(float_mask)})

seq_first = nn.MultiheadAttention(E, H)  # batch_first=False: [L, N, E]
with torch.no_grad():
    seq_first.in_proj_bias.normal_(0, 0.1)
bool_mask = torch.rand(2 * H, 4, 6) < 0.3  # [N*H, L, S], True = masked
bool_mask[:, :, 0] = False  # every query keeps one key
add("seq_first_bool_mask", seq_first, [torch.randn(4, 2, E), torch.randn(6, 2, E), torch.randn(6, 2, E)],
    lambda m, q, k, v: m(q, k, v, attn_mask=bool_mask, need_weights=False)[0],
    {"mask": tj(bool_mask.float())})


class CausalSelfAttention(nn.Module):
    """nanoGPT's, with dropout 0."""

    def __init__(self, e, h):
        super().__init__()
        self.c_attn = nn.Linear(e, 3 * e)
        self.c_proj = nn.Linear(e, e)
        self.h = h

    def forward(self, x):
        b, t, e = x.shape
        q, k, v = self.c_attn(x).split(e, dim=2)
        q, k, v = (z.view(b, t, self.h, e // self.h).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, e))


class MLP(nn.Module):
    def __init__(self, e):
        super().__init__()
        self.c_fc = nn.Linear(e, 4 * e)
        self.c_proj = nn.Linear(4 * e, e)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, e, h):
        super().__init__()
        self.ln_1 = nn.LayerNorm(e)
        self.attn = CausalSelfAttention(e, h)
        self.ln_2 = nn.LayerNorm(e)
        self.mlp = MLP(e)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


block = Block(E, H)
with torch.no_grad():
    for ln in (block.ln_1, block.ln_2):
        ln.weight.normal_(1, 0.1)
        ln.bias.normal_(0, 0.1)
add("block", block, [torch.randn(2, 6, E)], lambda m, x: m(x))

with open(OUT, "w") as f:
    json.dump({"torch_version": torch.__version__, "cases": CASES}, f, separators=(",", ":"))
print(f"wrote {len(CASES)} cases to {OUT}")
