"""Reference data for tapegrad's `qkv_attention` (issue 8): forward output + gradient.

Run by hand (never by CI):  python3 tools/reference/qkv_attention_reference.py
Writes tools/reference/qkv_attention_reference.json next to this script.

`qkv_attention(qkv, H, is_causal)` on `[..., T, 3E]` is nanoGPT's split into q, k, v,
view as heads, scaled_dot_product_attention, merge of the heads. Same format as
attention_reference.py: for every case the input, the output, a fixed random `weights`
tensor of the output's shape, and the gradient of (output * weights).sum() w.r.t. the
input. The head count and causality are part of the case name (hard-coded on the Rust
side). All float32.
"""
import json
import os

import torch
import torch.nn.functional as F

torch.manual_seed(0)
torch.set_default_dtype(torch.float32)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "qkv_attention_reference.json")
CASES = []


def tensor_json(t):
    t = t.detach()
    return {"shape": list(t.shape), "data": [float(v) for v in t.reshape(-1).tolist()]}


def qkv_attention(qkv, heads, causal):
    *lead, t, c = qkv.shape
    e = c // 3
    q, k, v = qkv.split(e, dim=-1)
    split = lambda x: x.reshape(*lead, t, heads, e // heads).transpose(-3, -2)
    y = F.scaled_dot_product_attention(split(q), split(k), split(v), is_causal=causal)
    return y.transpose(-3, -2).reshape(*lead, t, e)


def add(name, shape, heads, causal):
    x = torch.randn(*shape)
    xg = x.clone().requires_grad_(True)
    out = qkv_attention(xg, heads, causal)
    weights = torch.randn(out.shape)
    (out * weights).sum().backward()
    CASES.append({
        "name": name,
        "heads": heads,
        "causal": causal,
        "inputs": [tensor_json(x)],
        "output": tensor_json(out),
        "weights": tensor_json(weights),
        "grads": [tensor_json(xg.grad)],
    })


add("qkv_causal_b2_t5_h2_d4", (2, 5, 24), 2, True)
add("qkv_full_b2_t4_h3_d2", (2, 4, 18), 3, False)
add("qkv_causal_unbatched_t6_h1_d3", (6, 9), 1, True)
add("qkv_causal_lead2_t3_h2_d2", (2, 2, 3, 12), 2, True)
# Longer than one 64-row tile, so the online softmax crosses tiles.
add("qkv_causal_long_t70_h2_d2", (1, 70, 12), 2, True)

with open(OUT, "w") as f:
    json.dump({"torch_version": torch.__version__, "cases": CASES}, f, separators=(",", ":"))
print(f"wrote {len(CASES)} cases to {OUT}")
