"""Reference data for tapegrad's optimizers, LR schedulers and gradient clipping.

Run by hand (never by CI):  python3 tools/reference/optim_reference.py
Writes tools/reference/optim_reference.json next to this script.

Model: w [3,2], b [3] with fixed initial values; fixed x [4,2], y [4,3];
loss = ((x @ w.T + b - y) ** 2).mean().  For every optimizer configuration we
run 10 steps of zero_grad / backward / step and record the loss *before* each
step and the flattened (row-major) w and b *after* each step.  All float32.
"""
import json
import os

import torch

torch.manual_seed(0)
torch.set_default_dtype(torch.float32)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optim_reference.json")
STEPS = 10

W0 = torch.tensor([[0.5, -0.3], [0.1, 0.8], [-0.6, 0.2]])
B0 = torch.tensor([0.1, -0.2, 0.05])
X = torch.tensor([[1.0, 2.0], [-0.5, 0.3], [0.7, -1.2], [2.0, 0.5]])
Y = torch.tensor([[0.3, -1.0, 0.8], [0.0, 0.5, -0.2], [1.1, 0.2, 0.4], [-0.7, 1.5, 0.9]])


def flat(t):
    """Row-major list of Python floats (exact float32 values)."""
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def tensor_json(t):
    return {"shape": list(t.shape), "data": flat(t)}


def loss_fn(w, b):
    return ((X @ w.T + b - Y) ** 2).mean()


def fresh_params():
    return W0.clone().requires_grad_(True), B0.clone().requires_grad_(True)


# (name, optimizer label in JSON, torch class, full constructor kwargs)
# Every math-relevant constructor kwarg is spelled out (implementation-only kwargs
# foreach/fused/capturable/differentiable are left out of the JSON).
SGD_DEF = dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False)
ADAM_DEF = dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                maximize=False, decoupled_weight_decay=False)
ADAMW_DEF = dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, amsgrad=False, maximize=False)
RMS_DEF = dict(lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
               maximize=False)
ADAGRAD_DEF = dict(lr=0.1, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                   maximize=False)

CASES = [
    ("gradient_descent", "GradientDescent", torch.optim.SGD, dict(lr=0.1)),
    ("sgd", "SGD", torch.optim.SGD, dict(SGD_DEF)),
    ("sgd_momentum", "SGD", torch.optim.SGD, dict(SGD_DEF, momentum=0.9)),
    ("sgd_momentum_dampening", "SGD", torch.optim.SGD, dict(SGD_DEF, momentum=0.9, dampening=0.1)),
    ("sgd_momentum_nesterov", "SGD", torch.optim.SGD, dict(SGD_DEF, momentum=0.9, nesterov=True)),
    ("sgd_weight_decay", "SGD", torch.optim.SGD, dict(SGD_DEF, weight_decay=0.01)),
    ("sgd_momentum_nesterov_weight_decay", "SGD", torch.optim.SGD,
     dict(SGD_DEF, momentum=0.9, weight_decay=0.01, nesterov=True)),
    ("adam", "Adam", torch.optim.Adam, dict(ADAM_DEF)),
    ("adam_weight_decay", "Adam", torch.optim.Adam, dict(ADAM_DEF, weight_decay=0.1)),
    ("adam_amsgrad", "Adam", torch.optim.Adam, dict(ADAM_DEF, amsgrad=True)),
    ("adam_betas_eps", "Adam", torch.optim.Adam, dict(ADAM_DEF, betas=(0.8, 0.9), eps=1e-6)),
    ("adamw", "AdamW", torch.optim.AdamW, dict(ADAMW_DEF)),
    ("adamw_wd_amsgrad", "AdamW", torch.optim.AdamW, dict(ADAMW_DEF, weight_decay=0.1, amsgrad=True)),
    ("rmsprop", "RMSprop", torch.optim.RMSprop, dict(RMS_DEF)),
    ("rmsprop_momentum", "RMSprop", torch.optim.RMSprop, dict(RMS_DEF, momentum=0.9)),
    ("rmsprop_centered", "RMSprop", torch.optim.RMSprop, dict(RMS_DEF, centered=True)),
    ("rmsprop_centered_momentum_wd", "RMSprop", torch.optim.RMSprop,
     dict(RMS_DEF, centered=True, momentum=0.5, weight_decay=0.01)),
    ("adagrad", "Adagrad", torch.optim.Adagrad, dict(ADAGRAD_DEF)),
    ("adagrad_decay_wd_init", "Adagrad", torch.optim.Adagrad,
     dict(ADAGRAD_DEF, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1)),
]


def run_case(name, label, cls, cfg):
    w, b = fresh_params()
    # foreach=False: use the plain single-tensor loops (same math, simplest to mirror).
    if label == "GradientDescent":  # theta <- theta - lr * grad == SGD without momentum
        opt = cls([w, b], lr=cfg["lr"], momentum=0.0, foreach=False)
    else:
        opt = cls([w, b], **cfg, foreach=False)
    losses, ws, bs = [], [], []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = loss_fn(w, b)
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
        ws.append(flat(w))
        bs.append(flat(b))
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}
    return {"name": name, "optimizer": label, "config": config,
            "losses": losses, "w": ws, "b": bs}


# ---- LR schedulers: 21 lrs (initial + after each of 20 sched.step()) ----
# Note: lrs are Python (float64) numbers, and torch computes them *recursively*
# from the previous lr (chainable form), not from the closed-form formula.
SCHEDULERS = [
    ("step_lr", "StepLR", torch.optim.lr_scheduler.StepLR, dict(step_size=3, gamma=0.5, last_epoch=-1)),
    ("exponential_lr", "ExponentialLR", torch.optim.lr_scheduler.ExponentialLR, dict(gamma=0.9, last_epoch=-1)),
    ("cosine_annealing_lr_tmax10", "CosineAnnealingLR", torch.optim.lr_scheduler.CosineAnnealingLR,
     dict(T_max=10, eta_min=0.001, last_epoch=-1)),
    ("cosine_annealing_lr_tmax7", "CosineAnnealingLR", torch.optim.lr_scheduler.CosineAnnealingLR,
     dict(T_max=7, eta_min=0.0, last_epoch=-1)),
    ("linear_lr_warmup", "LinearLR", torch.optim.lr_scheduler.LinearLR,
     dict(start_factor=0.25, end_factor=1.0, total_iters=5, last_epoch=-1)),
    ("linear_lr_decay", "LinearLR", torch.optim.lr_scheduler.LinearLR,
     dict(start_factor=1.0, end_factor=0.1, total_iters=8, last_epoch=-1)),
]


def run_scheduler(name, label, cls, cfg):
    w, b = fresh_params()
    opt = torch.optim.SGD([w, b], lr=0.1)
    sched = cls(opt, **cfg)
    lrs = [float(sched.get_last_lr()[0])]
    for _ in range(20):
        opt.step()  # no grads -> no-op, but avoids the "sched before opt" warning
        sched.step()
        lrs.append(float(sched.get_last_lr()[0]))
    return {"name": name, "scheduler": label, "config": cfg, "base_lr": 0.1, "lrs": lrs}


# ---- Gradient clipping on the grads of one backward from (w0, b0) ----
def run_clipping():
    out = []
    w, b = fresh_params()
    loss_fn(w, b).backward()
    before = {"w": flat(w.grad), "b": flat(b.grad)}
    norm = torch.nn.utils.clip_grad_norm_([w, b], max_norm=0.5, norm_type=2.0, foreach=False)
    out.append({"name": "clip_grad_norm", "function": "clip_grad_norm_",
                "config": {"max_norm": 0.5, "norm_type": 2.0},
                "grads_before": before, "total_norm": float(norm),
                "grads_after": {"w": flat(w.grad), "b": flat(b.grad)}})

    w, b = fresh_params()
    loss_fn(w, b).backward()
    before = {"w": flat(w.grad), "b": flat(b.grad)}
    torch.nn.utils.clip_grad_value_([w, b], clip_value=0.05, foreach=False)
    out.append({"name": "clip_grad_value", "function": "clip_grad_value_",
                "config": {"clip_value": 0.05},
                "grads_before": before, "total_norm": None,
                "grads_after": {"w": flat(w.grad), "b": flat(b.grad)}})
    return out


def main():
    data = {
        "torch_version": torch.__version__,
        "x": tensor_json(X), "y": tensor_json(Y), "w0": tensor_json(W0), "b0": tensor_json(B0),
        "cases": [run_case(*c) for c in CASES],
        "schedulers": [run_scheduler(*s) for s in SCHEDULERS],
        "clipping": run_clipping(),
    }
    with open(OUT, "w") as f:
        json.dump(data, f, indent=1)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
