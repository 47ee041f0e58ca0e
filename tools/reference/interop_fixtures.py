"""Interop fixtures: small PyTorch-trained models saved as safetensors + I/O pairs.

Run by hand (never by CI):  python3 tools/reference/interop_fixtures.py
Writes into tests/fixtures/interop/ (relative to the repo root):
  net.safetensors  - Net: fc1 = Linear(10,5), relu, fc2 = Linear(5,1); 200 SGD steps
  mlp.safetensors  - Sequential(Linear(64,128), ReLU(), Linear(128,10)); 50 Adam steps
  net_io.json, mlp_io.json - 8 inputs and PyTorch's outputs for the trained model:
      {"input": {"shape", "data"}, "output": {"shape", "data"}}  (row-major, float32)
tapegrad loads the safetensors and must reproduce the outputs.
"""
import json
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "interop")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(10, 5)
        self.fc2 = nn.Linear(5, 1)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


def tensor_json(t):
    t = t.detach()
    return {"shape": list(t.shape), "data": [float(v) for v in t.reshape(-1).tolist()]}


def save(model, stem, in_features):
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(OUT_DIR, f"{stem}.safetensors"))
    x = torch.randn(8, in_features)
    with torch.no_grad():
        y = model(x)
    with open(os.path.join(OUT_DIR, f"{stem}_io.json"), "w") as f:
        json.dump({"input": tensor_json(x), "output": tensor_json(y)}, f)
    print(stem, sorted(sd), "->", OUT_DIR)


def main():
    os.makedirs(OUT_DIR, exist_ok=True)

    # (a) Net: regression on a random linear-ish target, full-batch SGD.
    net = Net()
    x = torch.randn(64, 10)
    y = x[:, :3].sum(dim=1, keepdim=True) - 0.5 * x[:, 5:6]
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    for _ in range(200):
        opt.zero_grad()
        F.mse_loss(net(x), y).backward()
        opt.step()
    save(net, "net", 10)

    # (b) MLP: 10-class classification on random data, Adam.
    mlp = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    x = torch.randn(128, 64)
    labels = torch.randint(0, 10, (128,))
    opt = torch.optim.Adam(mlp.parameters(), lr=1e-3)
    for _ in range(50):
        opt.zero_grad()
        F.cross_entropy(mlp(x), labels).backward()
        opt.step()
    save(mlp, "mlp", 64)


if __name__ == "__main__":
    main()
