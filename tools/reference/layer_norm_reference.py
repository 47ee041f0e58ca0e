"""Reference data for tapegrad's fused layer norm (`Tensor::layer_norm`, nn's LayerNorm).

Run by hand (never by CI):  python3 tools/reference/layer_norm_reference.py
Writes tools/reference/layer_norm_reference.json next to this script.

Each case: the inputs (x, then weight and bias when the case has them), eps, PyTorch's
F.layer_norm(x, [d], weight, bias, eps) over the last axis, a fixed random `weights`
tensor of the output's shape, and the gradients of (output * weights).sum() w.r.t.
every input. Widths 5, 19 and 128 exercise the 8-lane sums' remainders and the GPT's
width; 70 rows span several of the backward's 32-row blocks. Tensors are
{"shape", "data"} flattened row-major; all float32.
"""
import json
import os

import torch
import torch.nn.functional as F

torch.manual_seed(0)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "layer_norm_reference.json")


def tensor_json(t):
    t = t.detach()
    return {"shape": list(t.shape), "data": [float(v) for v in t.reshape(-1).tolist()]}


def case(name, x, weight, bias, eps):
    inputs = [t for t in (x, weight, bias) if t is not None]
    xs = [t.clone().requires_grad_(True) for t in inputs]
    it = iter(xs[1:])
    w = next(it) if weight is not None else None
    b = next(it) if bias is not None else None
    out = F.layer_norm(xs[0], [x.shape[-1]], w, b, eps)
    weights = torch.randn(out.shape)
    (out * weights).sum().backward()
    return {
        "name": name,
        "eps": eps,
        "has_weight": weight is not None,
        "has_bias": bias is not None,
        "inputs": [tensor_json(t) for t in inputs],
        "output": tensor_json(out),
        "weights": tensor_json(weights),
        "grads": [tensor_json(t.grad) for t in xs],
    }


CASES = [
    case("affine_3x5", torch.randn(3, 5) * 2 + 1, torch.randn(5), torch.randn(5), 1e-5),
    case("affine_2x3x19", torch.randn(2, 3, 19), torch.randn(19), torch.randn(19), 1e-5),
    case("no_affine_4x19", torch.randn(4, 19) * 3 - 2, None, None, 1e-5),
    case("weight_only_3x8", torch.randn(3, 8), torch.randn(8), None, 1e-5),
    case("bias_only_2x7", torch.randn(2, 7), None, torch.randn(7), 1e-5),
    case("blocks_70x19_eps", torch.randn(70, 19), torch.randn(19), torch.randn(19), 1e-3),
    case("gpt_width_2x4x128", torch.randn(2, 4, 128), torch.randn(128), torch.randn(128), 1e-5),
]

with open(OUT, "w") as f:
    json.dump({"torch_version": torch.__version__, "cases": CASES}, f)
print(f"wrote {len(CASES)} cases to {OUT}")
