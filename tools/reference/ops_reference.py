"""Reference data for tapegrad's tensor ops (forward output + input gradients).

Run by hand (never by CI):  python3 tools/reference/ops_reference.py
Writes tools/reference/ops_reference.json next to this script.

For every case: the inputs, the op output, a fixed random `weights` tensor of the
output's shape, and the gradient of (output * weights).sum() w.r.t. every input
(all inputs require grad).  Tensors are {"shape", "data"} with data flattened
row-major; a scalar has shape [].  Integer index arguments are not inputs: they
are fixed here and hard-coded on the Rust side by case name.  All float32.
"""
import json
import os

import torch
import torch.nn.functional as F

torch.manual_seed(0)
torch.set_default_dtype(torch.float32)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ops_reference.json")
CASES = []


def tensor_json(t):
    t = t.detach()
    return {"shape": list(t.shape), "data": [float(v) for v in t.reshape(-1).tolist()]}


def randn(*shape):
    return torch.randn(*shape)


def positive(*shape):
    return torch.rand(*shape) * 1.5 + 0.5


def away(t, kinks=(0.0,), margin=0.05):
    """Push every element at least `margin` away from each kink (moved to kink +- 0.1)."""
    t = t.clone()
    for k in kinks:
        d = t - k
        near = d.abs() < margin
        t[near] = k + 0.1 * torch.where(d[near] < 0, -1.0, 1.0)
    return t


def add(name, fn, *inputs):
    """Evaluate fn(*inputs), draw weights, backprop (out * weights).sum()."""
    xs = [x.clone().detach().float().requires_grad_(True) for x in inputs]
    out = fn(*xs)
    weights = torch.randn(out.shape)
    (out * weights).sum().backward()
    grads = [x.grad if x.grad is not None else torch.zeros_like(x) for x in xs]
    for g in grads:
        if not torch.isfinite(g).all():
            print(f"WARNING: non-finite grad in {name}")
    if not torch.isfinite(out).all():
        print(f"WARNING: non-finite output in {name}")
    CASES.append({
        "name": name,
        "inputs": [tensor_json(x) for x in inputs],
        "output": tensor_json(out),
        "weights": tensor_json(weights),
        "grads": [tensor_json(g) for g in grads],
    })


# ---- Binary ops, with broadcasting ----
add("add_bcast", lambda a, b: a + b, randn(3, 4), randn(4))
add("sub_bcast", lambda a, b: a - b, randn(2, 3, 4), randn(3, 1))
add("mul_bcast", lambda a, b: a * b, randn(3, 1), randn(1, 4))
add("div", lambda a, b: a / b, randn(3, 4), positive(3, 4))
add("div_bcast", lambda a, b: a / b, randn(2, 3), positive(3))

# ---- Scalar ops ----
add("add_scalar", lambda a: a + 1.5, randn(3, 4))
add("mul_scalar", lambda a: a * -2.5, randn(3, 4))
add("div_scalar", lambda a: a / 3.0, randn(3, 4))
add("rsub_scalar", lambda a: 3.0 - a, randn(3, 4))
add("rdiv_scalar", lambda a: 3.0 / a, positive(3, 4))

# ---- Unary / elementwise (kinked ops keep inputs >= 0.05 from the kinks) ----
add("neg", lambda a: -a, randn(3, 4))
add("exp", torch.exp, randn(3, 4))
add("abs", torch.abs, away(randn(3, 4)))
add("relu", torch.relu, away(randn(3, 4)))
add("sigmoid", torch.sigmoid, randn(3, 4))
add("tanh", torch.tanh, randn(3, 4))
add("log", torch.log, positive(3, 4))
add("sqrt", torch.sqrt, positive(3, 4))
add("pow_3", lambda a: a ** 3, randn(3, 4))
add("pow_neg_half", lambda a: a ** -0.5, positive(3, 4))
add("leaky_relu", lambda a: F.leaky_relu(a, 0.1), away(randn(3, 4)))
add("gelu_none", F.gelu, randn(3, 4) * 2)  # *2 so the tails are exercised
add("gelu_tanh", lambda a: F.gelu(a, approximate="tanh"), randn(3, 4) * 2)
add("clamp", lambda a: a.clamp(-0.5, 0.5), away(randn(3, 4), kinks=(-0.5, 0.5)))

# ---- Linear algebra ----
add("matmul_2d", torch.matmul, randn(3, 4), randn(4, 5))
add("matmul_bcast", torch.matmul, randn(1, 3, 4), randn(2, 4, 5))
add("matmul_3d_2d", torch.matmul, randn(2, 3, 4), randn(4, 5))
add("matmul_3d", torch.matmul, randn(2, 3, 4), randn(2, 4, 5))
add("linear", F.linear, randn(4, 3), randn(5, 3), randn(5))

# ---- Movement ----
add("transpose_0_2", lambda a: a.transpose(0, 2), randn(2, 3, 4))
add("reshape", lambda a: a.reshape(6, 4), randn(2, 3, 4))
add("broadcast_to", lambda a: a.broadcast_to(2, 3, 4), randn(3, 1))

# ---- Reductions ----
add("sum", lambda a: a.sum(), randn(3, 4))
add("mean", lambda a: a.mean(), randn(3, 4))
add("sum_axis_1", lambda a: a.sum(1), randn(2, 3, 4))
add("mean_axis_0_keepdim", lambda a: a.mean(0, keepdim=True), randn(2, 3, 4))
m = randn(3, 4)
assert all(len(set(r)) == len(r) for r in m.tolist()), "max_axis_1 input has ties"
add("max_axis_1", lambda a: a.max(1).values, m)

# ---- Softmax family (extreme input checks numerical stability) ----
add("softmax_1", lambda a: a.softmax(1), randn(3, 4))
add("softmax_0", lambda a: a.softmax(0), randn(3, 4))
add("log_softmax_1", lambda a: a.log_softmax(1), randn(3, 4))
extreme = torch.tensor([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, 1000.0]])
add("log_softmax_extreme", lambda a: a.log_softmax(1), extreme)
add("softmax_extreme", lambda a: a.softmax(1), extreme)

# ---- Indexing / joining (fixed integer indices, hard-coded on the Rust side) ----
add("index_select_0", lambda a: a.index_select(0, torch.tensor([4, 0, 4, 2])), randn(5, 3))
add("gather_1", lambda a: a.gather(1, torch.tensor([[2], [0], [1], [1]])), randn(4, 3))
add("concat_1", lambda a, b: torch.cat([a, b], dim=1), randn(2, 3), randn(2, 2))
add("unsqueeze_1", lambda a: a.unsqueeze(1), randn(2, 3))

with open(OUT, "w") as f:
    json.dump({"torch_version": torch.__version__, "cases": CASES}, f, indent=1)
print(f"wrote {len(CASES)} cases to {OUT}")
