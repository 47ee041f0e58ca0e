"""PyTorch side of examples/digits_cnn.rs: the same network, data, split and protocol.

Run by hand:  python3 tools/reference/digits_cnn.py [--seed N] [--threads T]
Conv2d(1,32,3,padding=1) -> ReLU -> Conv2d(32,64,3,padding=1) -> ReLU -> MaxPool2d(2)
-> Flatten -> Linear(1024,128) -> ReLU -> Linear(128,10); cross-entropy, Adam lr 1e-3,
batch 32 reshuffled each epoch, 30 epochs, on data/digits.csv with pixels / 16.
The 80/20 split is tapegrad's (train_test_split(n, 0.2, seed 0)), read from
tools/reference/digits_split.json, which
`cargo run --release --example digits_cnn -- --write-split tools/reference/digits_split.json`
wrote. The seed drives the initialisation and the shuffling (torch's generators, so
the runs are the same protocol, not the same numbers). Prints each epoch's loss and
test accuracy, then `test_accuracy=`.
"""
import argparse
import csv
import json
import os

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    with open(os.path.join(ROOT, "data", "digits.csv")) as f:
        rows = list(csv.reader(f))[1:]
    x = torch.tensor([[float(v) for v in r[:-1]] for r in rows]) / 16.0
    y = torch.tensor([int(float(r[-1])) for r in rows])
    with open(os.path.join(HERE, "digits_split.json")) as f:
        split = json.load(f)
    xtr, ytr = x[split["train"]].reshape(-1, 1, 8, 8), y[split["train"]]
    xte, yte = x[split["test"]].reshape(-1, 1, 8, 8), y[split["test"]]
    print(f"digits_cnn: {len(ytr)} train, {len(yte)} test, seed {args.seed}")

    net = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1024, 128), nn.ReLU(), nn.Linear(128, 10),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    accuracy = 0.0
    for epoch in range(1, 31):
        net.train()
        order = torch.randperm(len(ytr))
        total, batches = 0.0, 0
        for i in range(0, len(ytr), 32):
            idx = order[i:i + 32]
            opt.zero_grad()
            loss = loss_fn(net(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            total += loss.item()
            batches += 1
        net.eval()
        with torch.no_grad():
            accuracy = (net(xte).argmax(1) == yte).float().mean().item()
        print(f"epoch {epoch:2}  train loss {total / batches:.4f}  test accuracy {accuracy:.4f}")
    print(f"test_accuracy={accuracy:.4f}")


if __name__ == "__main__":
    main()
