"""Reference data for tapegrad's loss functions (forward value + input gradient).

Run by hand (never by CI):  python3 tools/reference/loss_reference.py
Writes tools/reference/loss_reference.json next to this script.

For every case: the loss module output (flattened row-major, with its shape; a
scalar has shape []) and the gradient of out.sum() w.r.t. the prediction.  Every
loss is run with every reduction it supports.  A grad that contains inf/nan is
stored as null.  All float32; integer class targets are stored as ints.
"""
import json
import math
import os
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "loss_reference.json")
REDUCTIONS = ["mean", "sum", "none"]


def tensor_json(t):
    t = t.detach()
    conv = int if not t.is_floating_point() else float
    return {"shape": list(t.shape), "data": [conv(v) for v in t.reshape(-1).tolist()]}


def finite(t):
    return bool(torch.isfinite(t).all())


CASES = []


def add(name, loss, options, inp, target, reductions=REDUCTIONS, ctor_extra=None):
    """Run loss `loss` (name of a torch.nn class) with `options` for every reduction.

    ctor_extra: constructor kwargs that are tensors (weight, pos_weight); stored
    in `options` as {"shape","data"} objects.
    """
    ctor_extra = ctor_extra or {}
    opts_json = dict(options)
    for k, v in ctor_extra.items():
        opts_json[k] = tensor_json(v)
    for red in reductions:
        x = inp.clone().detach().requires_grad_(True)
        mod = getattr(nn, loss)(**options, **ctor_extra, reduction=red)
        out = mod(x, target)
        out.sum().backward()
        grad = tensor_json(x.grad) if finite(x.grad) else None
        CASES.append({
            "name": f"{name}_{red}", "loss": loss, "options": opts_json, "reduction": red,
            "input": tensor_json(inp), "target": tensor_json(target),
            "output": tensor_json(out), "grad": grad,
        })


# ---- Regression losses: differences span both sides of beta/delta (0.5, 1, 2) ----
pred = torch.randn(4, 3) * 2.0
tgt = torch.randn(4, 3)
# force a few exact, well-placed differences: tiny, ~0.3, ~0.7, ~1.5, ~3
pred[0, 0], tgt[0, 0] = 0.1, 0.1 + 0.01
pred[0, 1], tgt[0, 1] = 0.3, 0.0
pred[0, 2], tgt[0, 2] = -0.75, 0.0
pred[1, 0], tgt[1, 0] = 1.5, 0.0
pred[1, 1], tgt[1, 1] = -3.0, 0.0
add("mse", "MSELoss", {}, pred, tgt)
add("l1", "L1Loss", {}, pred, tgt)
add("smooth_l1_beta1", "SmoothL1Loss", {"beta": 1.0}, pred, tgt)
add("smooth_l1_beta0.5", "SmoothL1Loss", {"beta": 0.5}, pred, tgt)
add("huber_delta1", "HuberLoss", {"delta": 1.0}, pred, tgt)
add("huber_delta2", "HuberLoss", {"delta": 2.0}, pred, tgt)

# ---- BCELoss on probabilities ----
prob = torch.sigmoid(torch.randn(4, 3) * 2.0)
btgt = torch.randint(0, 2, (4, 3)).float()
btgt[3, 2] = 0.3  # soft target also allowed
add("bce", "BCELoss", {}, prob, btgt)
bce_w = torch.tensor([0.5, 1.0, 2.0])  # broadcast over the batch
add("bce_weight", "BCELoss", {}, prob, btgt, ctor_extra={"weight": bce_w})
# exact 0.0 and 1.0 inputs: torch clamps log() at -100.  With matching targets
# (0 -> 0, 1 -> 1) the loss is finite; the grad divides by x(1-x) clamped at eps
# (1e-12), so whatever torch gives is recorded (null if inf/nan).
prob_edge = prob.clone()
btgt_edge = btgt.clone()
prob_edge[0, 0], btgt_edge[0, 0] = 0.0, 0.0
prob_edge[0, 1], btgt_edge[0, 1] = 1.0, 1.0
prob_edge[1, 0], btgt_edge[1, 0] = 0.0, 1.0  # -> loss 100 (log clamp)
add("bce_edge_0_1", "BCELoss", {}, prob_edge, btgt_edge)

# ---- BCEWithLogitsLoss ----
logit = torch.randn(4, 3) * 2.0
add("bce_logits", "BCEWithLogitsLoss", {}, logit, btgt)
add("bce_logits_pos_weight", "BCEWithLogitsLoss", {}, logit, btgt,
    ctor_extra={"pos_weight": torch.tensor([0.5, 2.0, 3.0])})
big = torch.tensor([[1000.0, -1000.0, 50.0], [-50.0, 1000.0, -1000.0],
                    [50.0, -50.0, 0.0], [1000.0, -50.0, 50.0]])
big_tgt = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
add("bce_logits_extreme", "BCEWithLogitsLoss", {}, big, big_tgt)

# ---- CrossEntropyLoss on logits [5,4] with class indices [5] ----
ce_logits = torch.randn(5, 4) * 1.5
ce_tgt = torch.tensor([0, 3, 1, 2, 2])
ce_w = torch.tensor([1.0, 0.5, 2.0, 1.5])
add("ce", "CrossEntropyLoss", {}, ce_logits, ce_tgt)
add("ce_weight", "CrossEntropyLoss", {}, ce_logits, ce_tgt, ctor_extra={"weight": ce_w})
add("ce_label_smoothing", "CrossEntropyLoss", {"label_smoothing": 0.1}, ce_logits, ce_tgt)
ce_tgt_ign = torch.tensor([0, -100, 1, 2, 2])
add("ce_ignore_default", "CrossEntropyLoss", {"ignore_index": -100}, ce_logits, ce_tgt_ign)
add("ce_ignore_class2", "CrossEntropyLoss", {"ignore_index": 2}, ce_logits, ce_tgt)
add("ce_weight_label_smoothing", "CrossEntropyLoss", {"label_smoothing": 0.2}, ce_logits, ce_tgt,
    ctor_extra={"weight": ce_w})
ce_big = ce_logits.clone()
ce_big[0, 0], ce_big[1, 2], ce_big[2, 1], ce_big[3, 3] = 1000.0, -1000.0, 1000.0, -1000.0
add("ce_extreme", "CrossEntropyLoss", {}, ce_big, ce_tgt)

# ---- NLLLoss on log_softmax output ----
logp = F.log_softmax(torch.randn(5, 4), dim=1)
add("nll", "NLLLoss", {}, logp, ce_tgt)
add("nll_weight", "NLLLoss", {}, logp, ce_tgt, ctor_extra={"weight": ce_w})
add("nll_ignore_index", "NLLLoss", {"ignore_index": 1}, logp, torch.tensor([0, 3, 1, 1, 2]))

# ---- KLDivLoss: input is log-probs; target probs (or log-probs with log_target) ----
kl_in = F.log_softmax(torch.randn(4, 3), dim=1)
kl_tgt = F.softmax(torch.randn(4, 3), dim=1)
KL_RED = ["batchmean", "sum", "mean", "none"]
# reduction="mean" is intentionally covered (divides by numel); silence its warning.
warnings.filterwarnings("ignore", message="reduction: 'mean' divides")
add("kl_div", "KLDivLoss", {"log_target": False}, kl_in, kl_tgt, reductions=KL_RED)
add("kl_div_log_target", "KLDivLoss", {"log_target": True}, kl_in, kl_tgt.log(), reductions=KL_RED)


def main():
    nulls = [c["name"] for c in CASES if c["grad"] is None]
    nonfinite_out = [c["name"] for c in CASES if not all(math.isfinite(v) for v in c["output"]["data"])]
    with open(OUT, "w") as f:
        json.dump({"torch_version": torch.__version__, "cases": CASES}, f, indent=1, allow_nan=False)
    print("wrote", OUT, "cases:", len(CASES))
    print("null grads:", nulls, "non-finite outputs:", nonfinite_out)


if __name__ == "__main__":
    main()
