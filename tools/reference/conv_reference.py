"""Reference data for tapegrad's convolution, pooling and batch-norm ops.

Run by hand (never by CI):  python3 tools/reference/conv_reference.py
Writes tools/reference/conv_reference.json next to this script, in the format of
ops_reference.py: for each case the inputs, the output, fixed random `weights` of the
output's shape and the gradients of (output * weights).sum() w.r.t. every input.
The op's non-tensor arguments are fixed here and repeated on the Rust side by case
name (crates/autograd/tests/conv_reference.rs). Batch-norm cases also record the
running statistics after the call.
"""
import json
import os

import torch
import torch.nn.functional as F

torch.manual_seed(0)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conv_reference.json")
CASES = []


def tensor_json(t):
    t = t.detach()
    return {"shape": list(t.shape), "data": [float(v) for v in t.reshape(-1).tolist()]}


def add(name, fn, *inputs, extra=None):
    xs = [x.clone().detach().float().requires_grad_(True) for x in inputs]
    out = fn(*xs)
    weights = torch.randn(out.shape)
    (out * weights).sum().backward()
    grads = [x.grad if x.grad is not None else torch.zeros_like(x) for x in xs]
    case = {
        "name": name,
        "inputs": [tensor_json(x) for x in inputs],
        "output": tensor_json(out),
        "weights": tensor_json(weights),
        "grads": [tensor_json(g) for g in grads],
    }
    if extra is not None:
        case["extra"] = {k: tensor_json(v) for k, v in extra().items()}
    CASES.append(case)


r = torch.randn
# ---- conv2d ----
add("conv2d_basic", lambda x, w, b: F.conv2d(x, w, b), r(2, 3, 6, 5), r(4, 3, 3, 3), r(4))
add("conv2d_stride_pad", lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
    r(2, 3, 7, 6), r(4, 3, 3, 3), r(4))
add("conv2d_same_even", lambda x, w: F.conv2d(x, w, padding="same"), r(1, 2, 5, 6), r(3, 2, 4, 2))
add("conv2d_dilation", lambda x, w, b: F.conv2d(x, w, b, padding=2, dilation=2),
    r(2, 2, 6, 6), r(3, 2, 3, 3), r(3))
add("conv2d_groups", lambda x, w, b: F.conv2d(x, w, b, groups=2, stride=(1, 2), padding=(1, 0)),
    r(2, 4, 5, 5), r(6, 2, 3, 2), r(6))
add("conv2d_depthwise", lambda x, w: F.conv2d(x, w, groups=3, padding=1), r(2, 3, 5, 5), r(3, 1, 3, 3))
add("conv2d_1x1", lambda x, w, b: F.conv2d(x, w, b), r(2, 5, 3, 4), r(2, 5, 1, 1), r(2))
# ---- conv1d ----
add("conv1d", lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=1), r(2, 3, 9), r(4, 3, 3), r(4))
add("conv1d_same_groups", lambda x, w: F.conv1d(x, w, padding="same", groups=2, dilation=2),
    r(2, 4, 8), r(4, 2, 3))
# ---- conv_transpose2d ----
add("conv_transpose2d", lambda x, w, b: F.conv_transpose2d(x, w, b), r(2, 3, 4, 3), r(3, 2, 3, 3), r(2))
add("conv_transpose2d_stride", lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1,
                                                                   output_padding=1),
    r(2, 3, 4, 4), r(3, 2, 3, 3), r(2))
add("conv_transpose2d_groups", lambda x, w: F.conv_transpose2d(x, w, stride=(2, 1), groups=2, dilation=2),
    r(1, 4, 3, 3), r(4, 3, 2, 2))
# ---- pooling ----
add("max_pool2d", lambda x: F.max_pool2d(x, 2), r(2, 3, 6, 5))
add("max_pool2d_stride_pad", lambda x: F.max_pool2d(x, 3, stride=2, padding=1), r(2, 2, 7, 6))
add("max_pool2d_ceil", lambda x: F.max_pool2d(x, 2, ceil_mode=True), r(1, 2, 5, 5))
# Ties: every element of each 2x2 window equal, so the first one gets the gradient.
add("max_pool2d_ties", lambda x: F.max_pool2d(x, 2),
    torch.arange(4.0).repeat_interleave(2).reshape(2, 4).repeat_interleave(2, dim=0).reshape(1, 1, 4, 4))
add("avg_pool2d", lambda x: F.avg_pool2d(x, 2), r(2, 3, 6, 5))
add("avg_pool2d_pad_include", lambda x: F.avg_pool2d(x, 3, stride=2, padding=1), r(2, 2, 7, 6))
add("avg_pool2d_pad_exclude", lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False),
    r(2, 2, 7, 6))
add("avg_pool2d_ceil", lambda x: F.avg_pool2d(x, 2, padding=1, ceil_mode=True, count_include_pad=False),
    r(1, 2, 6, 5))
add("adaptive_avg_pool2d", lambda x: F.adaptive_avg_pool2d(x, (3, 2)), r(2, 2, 7, 5))
add("adaptive_avg_pool2d_1", lambda x: F.adaptive_avg_pool2d(x, 1), r(2, 3, 4, 4))
add("flatten", lambda x: torch.flatten(x, 1), r(2, 3, 2, 2))
# ---- batch norm (momentum 0.1, eps 1e-5; running stats start at mean 0.5, var 2) ----
for name, shape, training in [("batch_norm_train_4d", (3, 2, 3, 2), True),
                              ("batch_norm_train_2d", (5, 3), True),
                              ("batch_norm_eval_3d", (2, 3, 4), False)]:
    c = shape[1]
    rm, rv = torch.full((c,), 0.5), torch.full((c,), 2.0)
    add(name, lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training=training, momentum=0.1, eps=1e-5),
        r(*shape) * 2 + 1, r(c), r(c), extra=lambda: {"running_mean": rm, "running_var": rv})

# ---- a 3x3 "same" conv2d with 8 input channels (tapegrad's Winograd path); last, so
# the random draws of the cases above stay as they were ----
add("conv2d_winograd", lambda x, w, b: F.conv2d(x, w, b, padding=1), r(2, 8, 6, 5), r(4, 8, 3, 3), r(4))

with open(OUT, "w") as f:
    json.dump({"torch": torch.__version__, "cases": CASES}, f)
print(f"wrote {len(CASES)} cases to {OUT}")
