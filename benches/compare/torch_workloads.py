"""PyTorch side of the workload benchmark comparison with tapegrad.

Run by hand:  python3 benches/compare/torch_workloads.py [--json FILE]
Each workload runs with 1 and 2 intra-op threads; seeded synthetic data is made
once outside the timed loop; warm-up first, then the median time per iteration.
Workloads:
  w1_seed_step      Linear(10,5)-ReLU-Linear(5,1), MSELoss, SGD lr 0.01, batch 64, one full step
  w2_mlp_adam_step  Linear(784,512)-ReLU-Linear(512,512)-ReLU-Linear(512,10),
                    CrossEntropyLoss on int labels, Adam lr 1e-3, batch 128, one full step
  gemm_256, gemm_1024  square f32 matmul (also reports GFLOP/s)
  optimizer_step    Adam step on one 1M-element parameter with a fixed grad
  w3_gpt_step       character GPT (tools/reference/gpt_interop.py's model): vocab 67, context 64,
                    4 layers, 4 heads, width 128, batch 16, dropout 0; AdamW lr 3e-4 wd 0.1,
                    clip_grad_norm 1.0; one step = zero_grad, forward, cross-entropy, backward,
                    clip, step (also reports tokens/s)
  w4_digits_cnn_step  Conv2d(1,32,3,p1)-ReLU-Conv2d(32,64,3,p1)-ReLU-MaxPool2d(2)-Flatten-
                    Linear(1024,128)-ReLU-Linear(128,10), cross-entropy, Adam lr 1e-3, batch 32 of [1,8,8]
  w5_conv_step      Conv2d(3,32,3,p1)-BatchNorm2d-ReLU-MaxPool2d(2)-Conv2d(32,64,3,p1)-BatchNorm2d-
                    ReLU-MaxPool2d(2)-Flatten-Linear(4096,10), cross-entropy, SGD lr 0.01
                    momentum 0.9, batch 32 of [3,32,32]
Prints:  workload=<id> threads=<t> time_us=<median> [gflops=<x>]
"""
import argparse
import json
import statistics
import time

import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "reference"))


def median_us(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def train_step(model, loss_fn, opt, x, y):
    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    return step


def w1_seed_step():
    model = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 1))
    x, y = torch.randn(64, 10), torch.randn(64, 1)
    return train_step(model, nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.01), x, y), 50, 2000


def w2_mlp_adam_step():
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                          nn.Linear(512, 10))
    x, y = torch.randn(128, 784), torch.randint(0, 10, (128,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return train_step(model, nn.CrossEntropyLoss(), opt, x, y), 10, 100


def gemm(n):
    def make():
        a, b = torch.randn(n, n), torch.randn(n, n)
        out = torch.empty(n, n)
        return (lambda: torch.matmul(a, b, out=out)), 5, (200 if n <= 256 else 30)
    return make


def optimizer_step():
    p = torch.nn.Parameter(torch.randn(1_000_000))
    p.grad = torch.randn(1_000_000)  # fixed grad, never recomputed
    opt = torch.optim.Adam([p], lr=1e-3)
    return opt.step, 10, 200


GPT_BATCH, GPT_CONTEXT = 16, 64


def w3_gpt_step():
    from gpt_interop import Gpt

    config = dict(vocab_size=67, context=GPT_CONTEXT, n_layer=4, n_head=4, n_embd=128, dropout=0.0)
    model = Gpt(config)
    x = torch.randint(0, 67, (GPT_BATCH, GPT_CONTEXT))
    y = torch.randint(0, 67, (GPT_BATCH, GPT_CONTEXT))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x).view(-1, 67), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return step, 5, 30
def w4_digits_cnn_step():
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1024, 128), nn.ReLU(), nn.Linear(128, 10))
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return train_step(model, nn.CrossEntropyLoss(), opt, x, y), 10, 200


def w5_conv_step():
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4096, 10))
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return train_step(model, nn.CrossEntropyLoss(), opt, x, y), 5, 50


WORKLOADS = [
    ("w1_seed_step", w1_seed_step, None),
    ("w2_mlp_adam_step", w2_mlp_adam_step, None),
    ("gemm_256", gemm(256), 256),
    ("gemm_1024", gemm(1024), 1024),
    ("optimizer_step", optimizer_step, None),
    ("w3_gpt_step", w3_gpt_step, None),
    ("w4_digits_cnn_step", w4_digits_cnn_step, None),
    ("w5_conv_step", w5_conv_step, None),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()
    results = []
    for name, make, gemm_n in WORKLOADS:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            torch.manual_seed(0)
            fn, warmup, reps = make()  # data/model built outside the timed loop
            us = median_us(fn, warmup, reps)
            rec = {"workload": name, "threads": threads, "time_us": round(us, 3)}
            line = f"workload={name} threads={threads} time_us={us:.1f}"
            if gemm_n:
                rec["gflops"] = round(2 * gemm_n**3 / (us * 1e-6) / 1e9, 2)
                line += f" gflops={rec['gflops']:.1f}"
            if name == "w3_gpt_step":
                rec["tokens_per_s"] = round(GPT_BATCH * GPT_CONTEXT / (us * 1e-6), 1)
                line += f" tokens_per_s={rec['tokens_per_s']:.0f}"
            print(line, flush=True)
            results.append(rec)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch_version": torch.__version__, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
