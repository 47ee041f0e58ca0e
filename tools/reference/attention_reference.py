"""Reference data for tapegrad's attention ops (issue 8): forward output + input gradients.

Run by hand (never by CI):  python3 tools/reference/attention_reference.py
Writes tools/reference/attention_reference.json next to this script.

Same format as ops_reference.py: for every case the inputs, the op output, a fixed
random `weights` tensor of the output's shape, and the gradient of
(output * weights).sum() w.r.t. every float input.  Masks and conditions are
inputs too, written as 0.0/1.0 floats (tapegrad's mask representation); here
they are turned into bool tensors before the op and get no gradient (their
`grads` entry is zeros).  Integer arguments are fixed here and hard-coded on the
Rust side by case name.  All float32.
"""
import json
import math
import os

import torch
import torch.nn.functional as F

torch.manual_seed(0)
torch.set_default_dtype(torch.float32)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "attention_reference.json")
CASES = []


def number(v):
    """JSON has no infinities: -inf (in additive masks) is written as the string "-inf"."""
    v = float(v)
    if v == float("-inf"):
        return "-inf"
    assert math.isfinite(v), v
    return v


def tensor_json(t):
    t = t.detach()
    return {"shape": list(t.shape), "data": [number(v) for v in t.reshape(-1).tolist()]}


def randn(*shape):
    return torch.randn(*shape)


def add(name, fn, *inputs, masks=(), consts=()):
    """fn(*inputs); inputs at positions in `masks` are 0/1 floats passed as bool, those
    in `consts` are float constants (an additive mask): neither takes a gradient."""
    xs = []
    for i, x in enumerate(inputs):
        if i in masks:
            xs.append(x.clone().bool())
        elif i in consts:
            xs.append(x.clone())
        else:
            xs.append(x.clone().detach().float().requires_grad_(True))
    out = fn(*xs)
    weights = torch.randn(out.shape)
    (out * weights).sum().backward()
    grads = [
        torch.zeros_like(inputs[i]) if i in masks or i in consts or x.grad is None else x.grad
        for i, x in enumerate(xs)
    ]
    for g in grads:
        assert torch.isfinite(g).all(), name
    CASES.append({
        "name": name,
        "inputs": [tensor_json(x) for x in inputs],
        "output": tensor_json(out),
        "weights": tensor_json(weights),
        "grads": [tensor_json(g) for g in grads],
    })


def bits(*shape, p=0.5):
    return (torch.rand(*shape) < p).float()


# ---- Movement ----
add("permute_0213", lambda a: a.permute(0, 2, 1, 3), randn(2, 3, 2, 4))
add("permute_201", lambda a: a.permute(2, 0, 1), randn(2, 3, 4))
add("narrow_1_1_2", lambda a: a.narrow(1, 1, 2), randn(2, 4, 3))
add("expand", lambda a: a.expand(2, 3, 4), randn(3, 1))
add("stack_1", lambda a, b: torch.stack([a, b], 1), randn(2, 3), randn(2, 3))
add("chunk_3_0", lambda a: torch.cat([c * (i + 1) for i, c in enumerate(a.chunk(3, 0))], 0), randn(5, 2))
add("split_1_2_1", lambda a: torch.cat([c * (i + 1) for i, c in enumerate(a.split([1, 2, 1], 1))], 1), randn(2, 4))

# ---- Masks ----
add("tril_0", lambda a: a.tril(0), randn(2, 3, 4))
add("triu_1", lambda a: a.triu(1), randn(4, 3))
add("tril_neg1", lambda a: a.tril(-1), randn(3, 3))
add("masked_fill", lambda a, m: a.masked_fill(m, -2.5), randn(2, 3, 4), bits(3, 1), masks=(1,))
add("where", lambda c, a, b: torch.where(c, a, b), bits(3, 1), randn(3, 4), randn(4), masks=(0,))

# ---- N-d batched matmul ----
add("matmul_4d", torch.matmul, randn(2, 3, 4, 5), randn(2, 3, 5, 4))
add("matmul_4d_bcast", torch.matmul, randn(1, 2, 3, 4), randn(3, 1, 4, 2))
add("matmul_4d_2d", torch.matmul, randn(2, 2, 3, 4), randn(4, 5))

# ---- Softmax along inner axes ----
add("softmax_axis_1_of_3", lambda a: a.softmax(1), randn(2, 3, 4))
add("log_softmax_axis_2_of_4", lambda a: a.log_softmax(2), randn(2, 2, 3, 2))

# ---- Activations (inputs include the softplus threshold region) ----
act_in = torch.tensor([[-3.0, -1.0, -0.2, 0.3], [1.5, 4.0, 12.0, 25.0]])
add("silu", F.silu, act_in)
add("elu", lambda a: F.elu(a, alpha=0.7), act_in)
add("softplus", F.softplus, act_in)
add("softplus_beta2_thr5", lambda a: F.softplus(a, beta=2.0, threshold=5.0), act_in)

# ---- Fused scaled dot-product attention (scale 1/sqrt(D)) ----
sdpa = F.scaled_dot_product_attention
add("sdpa", sdpa, randn(2, 2, 5, 4), randn(2, 2, 6, 4), randn(2, 2, 6, 3))
add("sdpa_causal", lambda q, k, v: sdpa(q, k, v, is_causal=True),
    randn(2, 2, 5, 4), randn(2, 2, 5, 4), randn(2, 2, 5, 4))
add("sdpa_causal_tall", lambda q, k, v: sdpa(q, k, v, is_causal=True),
    randn(2, 5, 4), randn(2, 3, 4), randn(2, 3, 2))
add("sdpa_causal_wide", lambda q, k, v: sdpa(q, k, v, is_causal=True),
    randn(2, 3, 4), randn(2, 5, 4), randn(2, 5, 2))
additive = randn(5, 6)
additive[1, 2] = float("-inf")
additive[3, 0] = float("-inf")
add("sdpa_additive", lambda q, k, v, m: sdpa(q, k, v, attn_mask=m),
    randn(2, 2, 5, 4), randn(2, 2, 6, 4), randn(2, 2, 6, 3), additive, consts=(3,))
keep = bits(2, 1, 5, 6, p=0.6)
keep[0, 0, 2] = 0.0  # a query with every key masked out: PyTorch gives zeros
keep[1, 0, 4] = 1.0
add("sdpa_bool", lambda q, k, v, m: sdpa(q, k, v, attn_mask=m),
    randn(2, 2, 5, 4), randn(2, 2, 6, 4), randn(2, 2, 6, 3), keep, masks=(3,))
# PyTorch refuses attn_mask together with is_causal; tapegrad applies both, so the
# reference folds the causal mask into the explicit one.
causal = torch.ones(5, 5).tril().bool()
keep_sq = bits(2, 1, 5, 5, p=0.7)
add("sdpa_bool_and_causal", lambda q, k, v, m: sdpa(q, k, v, attn_mask=m & causal),
    randn(2, 2, 5, 4), randn(2, 2, 5, 4), randn(2, 2, 5, 3), keep_sq, masks=(3,))
add("sdpa_additive_and_causal",
    lambda q, k, v, m: sdpa(q, k, v, attn_mask=m.masked_fill(~causal, float("-inf"))),
    randn(2, 5, 4), randn(2, 5, 4), randn(2, 5, 4), randn(5, 5), consts=(3,))
# Longer than one 64-key tile, so the online softmax crosses tiles.
add("sdpa_causal_long", lambda q, k, v: sdpa(q, k, v, is_causal=True),
    randn(1, 150, 4), randn(1, 150, 4), randn(1, 150, 4))
add("sdpa_cross_long", sdpa, randn(70, 3), randn(130, 3), randn(130, 2))
add("sdpa_bcast", sdpa, randn(2, 3, 4, 4), randn(1, 3, 5, 4), randn(2, 1, 5, 4))

with open(OUT, "w") as f:
    json.dump({"torch_version": torch.__version__, "cases": CASES}, f, separators=(",", ":"))
print(f"wrote {len(CASES)} cases to {OUT}")
