"""Reference data for tapegrad's parameter groups and its SequentialLR, OneCycleLR,
LambdaLR and ReduceLROnPlateau schedulers.

Run by hand (never by CI):  python3 tools/reference/optim_groups_reference.py
Writes tools/reference/optim_groups_reference.json next to this script.

Same model as optim_reference.py: w [3,2], b [3]; loss = ((x @ w.T + b - y) ** 2).mean().
Every optimizer here has two parameter groups, [w] and [b], with different
hyper-parameters.  For each optimizer case we run 10 steps and record the loss before
each step and w, b after it.  For each scheduler case (SGD, lr 0.1 for w and 0.05 for b,
momentum 0.9) we record every group's lr (and momentum / beta1) after construction and
after each of 20 steps.  The "recipe" case is AdamW with two groups (weight decay on w
only) + SequentialLR(LinearLR warm-up, CosineAnnealingLR) + clip_grad_norm_, the
language-model recipe.  All float32; lrs are Python floats.
"""
import json
import math
import os

import torch

torch.set_default_dtype(torch.float32)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optim_groups_reference.json")
STEPS = 10
SCHED_STEPS = 20

W0 = torch.tensor([[0.5, -0.3], [0.1, 0.8], [-0.6, 0.2]])
B0 = torch.tensor([0.1, -0.2, 0.05])
X = torch.tensor([[1.0, 2.0], [-0.5, 0.3], [0.7, -1.2], [2.0, 0.5]])
Y = torch.tensor([[0.3, -1.0, 0.8], [0.0, 0.5, -0.2], [1.1, 0.2, 0.4], [-0.7, 1.5, 0.9]])


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def loss_fn(w, b):
    return ((X @ w.T + b - Y) ** 2).mean()


def fresh_params():
    return W0.clone().requires_grad_(True), B0.clone().requires_grad_(True)


def jsonable(cfg):
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}


# (name, label, class, group-0 config for [w], group-1 config for [b]); every
# math-relevant keyword is spelled out in both groups.
SGD = dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False)
ADAM = dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False)
ADAMW = dict(ADAM, weight_decay=0.01)
RMS = dict(lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False)
ADAGRAD = dict(lr=0.1, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10)
GROUP_CASES = [
    ("gd_two_groups", "GradientDescent", torch.optim.SGD, dict(lr=0.1), dict(lr=0.3)),
    ("sgd_two_groups", "SGD", torch.optim.SGD,
     dict(SGD, momentum=0.9, nesterov=True, weight_decay=0.01), dict(SGD, lr=0.05, momentum=0.5, dampening=0.1)),
    ("adam_two_groups", "Adam", torch.optim.Adam,
     dict(ADAM, weight_decay=0.1, amsgrad=True), dict(ADAM, lr=0.05, betas=(0.8, 0.9))),
    ("adamw_two_groups", "AdamW", torch.optim.AdamW,
     dict(ADAMW, lr=0.02, weight_decay=0.1), dict(ADAMW, lr=0.02, weight_decay=0.0)),
    ("adamw_two_groups_amsgrad_one", "AdamW", torch.optim.AdamW,
     dict(ADAMW, weight_decay=0.5, betas=(0.9, 0.95)), dict(ADAMW, lr=0.03, weight_decay=0.0, amsgrad=True)),
    ("rmsprop_two_groups", "RMSprop", torch.optim.RMSprop,
     dict(RMS, centered=True, momentum=0.5), dict(RMS, lr=0.02, weight_decay=0.01)),
    ("adagrad_two_groups", "Adagrad", torch.optim.Adagrad,
     dict(ADAGRAD, lr_decay=0.01, initial_accumulator_value=0.1),
     dict(ADAGRAD, lr=0.2, weight_decay=0.01, initial_accumulator_value=0.1)),
]


def run_group_case(name, label, cls, cfg_w, cfg_b):
    w, b = fresh_params()
    if label == "GradientDescent":
        opt = cls([dict(params=[w], lr=cfg_w["lr"]), dict(params=[b], lr=cfg_b["lr"])], momentum=0.0, foreach=False)
    else:
        # PyTorch's Adagrad fills every sum with the constructor's initial_accumulator_value,
        # ignoring the groups' own (tapegrad uses each group's): pass the same to both.
        extra = {}
        if label == "Adagrad":
            assert cfg_w["initial_accumulator_value"] == cfg_b["initial_accumulator_value"]
            extra["initial_accumulator_value"] = cfg_w["initial_accumulator_value"]
        opt = cls([dict(params=[w], **cfg_w), dict(params=[b], **cfg_b)], foreach=False, **extra)
    losses, ws, bs = [], [], []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = loss_fn(w, b)
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
        ws.append(flat(w))
        bs.append(flat(b))
    return {"name": name, "optimizer": label, "groups": [jsonable(cfg_w), jsonable(cfg_b)],
            "losses": losses, "w": ws, "b": bs}


# ---- Schedulers over two groups ----
def lambda_saw(e):
    return 0.9 ** e * (1 + e % 3)


def lambda_inverse(e):
    return 1.0 / (e + 1)


def lambda_pow(e):
    return 0.95 ** e


LAMBDAS = {"saw": lambda_saw, "inverse": lambda_inverse, "pow": lambda_pow}


def make_sequential(opt, parts, milestones):
    S = torch.optim.lr_scheduler
    built = []
    for kind, cfg in parts:
        built.append({"LinearLR": S.LinearLR, "CosineAnnealingLR": S.CosineAnnealingLR,
                      "ExponentialLR": S.ExponentialLR, "StepLR": S.StepLR}[kind](opt, **cfg))
    return S.SequentialLR(opt, built, milestones)


def momentum_of(group):
    return group["betas"][0] if "betas" in group else group["momentum"]


SCHED_CASES = [
    ("sequential_linear_cosine", "SequentialLR",
     dict(schedulers=[["LinearLR", dict(start_factor=0.1, end_factor=1.0, total_iters=5)],
                      ["CosineAnnealingLR", dict(T_max=15, eta_min=0.001)]], milestones=[5])),
    ("sequential_three", "SequentialLR",
     dict(schedulers=[["LinearLR", dict(start_factor=0.25, end_factor=1.0, total_iters=3)],
                      ["ExponentialLR", dict(gamma=0.9)],
                      ["StepLR", dict(step_size=3, gamma=0.5)]], milestones=[3, 8])),
    ("one_cycle_cos", "OneCycleLR", dict(max_lr=[1.0, 0.5], total_steps=20)),
    ("one_cycle_linear", "OneCycleLR",
     dict(max_lr=[1.0, 0.5], total_steps=20, anneal_strategy="linear", pct_start=0.25,
          div_factor=10.0, final_div_factor=100.0, base_momentum=0.8, max_momentum=0.9)),
    ("one_cycle_three_phase", "OneCycleLR",
     dict(max_lr=[0.4], total_steps=20, three_phase=True, pct_start=0.4)),
    ("one_cycle_no_momentum", "OneCycleLR", dict(max_lr=[0.2], total_steps=20, cycle_momentum=False)),
    ("one_cycle_adam", "OneCycleLR", dict(max_lr=[0.01, 0.02], total_steps=20, optimizer="Adam")),
    ("lambda_one", "LambdaLR", dict(lr_lambda=["saw"])),
    ("lambda_per_group", "LambdaLR", dict(lr_lambda=["inverse", "pow"])),
    ("plateau_min_rel", "ReduceLROnPlateau",
     dict(mode="min", factor=0.5, patience=2, threshold=0.01, threshold_mode="rel", cooldown=1,
          min_lr=[0.01, 0.0], eps=1e-8)),
    ("plateau_max_abs", "ReduceLROnPlateau",
     dict(mode="max", factor=0.2, patience=1, threshold=0.1, threshold_mode="abs", cooldown=0,
          min_lr=[0.0], eps=1e-8)),
]
# The metric fed to ReduceLROnPlateau at each of the 20 steps.
METRICS = [1.0, 0.9, 0.95, 0.899, 0.9, 0.91, 0.85, 0.86, 0.87, 0.8, 0.8, 0.81, 0.79, 0.795,
           0.8, 0.9, 0.7, 0.71, 0.72, 0.73]


def run_sched_case(name, label, cfg):
    w, b = fresh_params()
    use_adam = cfg.get("optimizer") == "Adam"
    if use_adam:
        opt = torch.optim.Adam([dict(params=[w], lr=0.1), dict(params=[b], lr=0.05)])
    else:
        opt = torch.optim.SGD([dict(params=[w], lr=0.1), dict(params=[b], lr=0.05)], momentum=0.9)
    S = torch.optim.lr_scheduler
    args = {k: v for k, v in cfg.items() if k != "optimizer"}
    if label == "SequentialLR":
        sched = make_sequential(opt, cfg["schedulers"], cfg["milestones"])
    elif label == "OneCycleLR":
        max_lr = args.pop("max_lr")
        sched = S.OneCycleLR(opt, max_lr=max_lr if len(max_lr) > 1 else max_lr[0], **args)
    elif label == "LambdaLR":
        fns = [LAMBDAS[n] for n in cfg["lr_lambda"]]
        sched = S.LambdaLR(opt, fns if len(fns) > 1 else fns[0])
    else:
        min_lr = args.pop("min_lr")
        sched = S.ReduceLROnPlateau(opt, min_lr=min_lr if len(min_lr) > 1 else min_lr[0], **args)
    lrs = [[g["lr"] for g in opt.param_groups]]
    moms = [[momentum_of(g) for g in opt.param_groups]]
    for i in range(SCHED_STEPS):
        opt.step()
        if label == "ReduceLROnPlateau":
            sched.step(METRICS[i])
        else:
            sched.step()
        lrs.append([g["lr"] for g in opt.param_groups])
        moms.append([momentum_of(g) for g in opt.param_groups])
    return {"name": name, "scheduler": label, "config": cfg, "optimizer": "Adam" if use_adam else "SGD",
            "group_lrs": [0.1, 0.05], "lrs": lrs, "momentum": moms}


def run_recipe():
    """AdamW, two groups, warm-up then cosine, gradient clipping: the LM recipe."""
    w, b = fresh_params()
    base = dict(lr=0.05, betas=(0.9, 0.95), eps=1e-8, amsgrad=False)
    opt = torch.optim.AdamW([dict(params=[w], weight_decay=0.1, **base),
                             dict(params=[b], weight_decay=0.0, **base)], foreach=False)
    S = torch.optim.lr_scheduler
    warm = S.LinearLR(opt, start_factor=0.1, end_factor=1.0, total_iters=3)
    cos = S.CosineAnnealingLR(opt, T_max=7, eta_min=0.005)
    sched = S.SequentialLR(opt, [warm, cos], milestones=[3])
    losses, ws, bs, lrs, norms = [], [], [], [], []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = loss_fn(w, b)
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_([w, b], max_norm=0.5, foreach=False)))
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
        losses.append(float(loss.item()))
        ws.append(flat(w))
        bs.append(flat(b))
    return {"name": "adamw_groups_warmup_cosine_clip",
            "groups": [dict(jsonable(base), weight_decay=0.1), dict(jsonable(base), weight_decay=0.0)],
            "warmup": dict(start_factor=0.1, end_factor=1.0, total_iters=3),
            "cosine": dict(T_max=7, eta_min=0.005), "milestones": [3], "max_norm": 0.5,
            "losses": losses, "w": ws, "b": bs, "lrs_used": lrs, "grad_norms": norms}


def main():
    data = {
        "torch_version": torch.__version__,
        "group_cases": [run_group_case(*c) for c in GROUP_CASES],
        "schedulers": [run_sched_case(*c) for c in SCHED_CASES],
        "metrics": METRICS,
        "recipe": run_recipe(),
    }
    with open(OUT, "w") as f:
        json.dump(data, f, indent=1)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
