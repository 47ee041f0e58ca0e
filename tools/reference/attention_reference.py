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


def tensor_json(t):
    t = t.detach()
    return {"shape": list(t.shape), "data": [float(v) for v in t.reshape(-1).tolist()]}


def randn(*shape):
    return torch.randn(*shape)


def add(name, fn, *inputs, masks=()):
    """fn(*inputs); inputs at positions in `masks` are 0/1 floats passed as bool."""
    xs = []
    for i, x in enumerate(inputs):
        if i in masks:
            xs.append(x.clone().bool())
        else:
            xs.append(x.clone().detach().float().requires_grad_(True))
    out = fn(*xs)
    weights = torch.randn(out.shape)
    (out * weights).sum().backward()
    grads = [
        torch.zeros_like(inputs[i]) if i in masks or x.grad is None else x.grad
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

with open(OUT, "w") as f:
    json.dump({"torch_version": torch.__version__, "cases": CASES}, f, indent=1)
print(f"wrote {len(CASES)} cases to {OUT}")
