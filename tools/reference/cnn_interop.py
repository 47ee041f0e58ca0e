"""Interop fixture: a small PyTorch-trained CNN with BatchNorm, saved as safetensors.

Run by hand (never by CI):  python3 tools/reference/cnn_interop.py
Writes into tests/fixtures/interop/:
  cnn_bn.safetensors - nn.Sequential(Conv2d(1,4,3,padding=1), BatchNorm2d(4), ReLU(),
      MaxPool2d(2), Conv2d(4,8,3,stride=2,padding=1,groups=2), BatchNorm2d(8), ReLU(),
      AdaptiveAvgPool2d(1), Flatten(), Linear(8,16), BatchNorm1d(16), ReLU(), Linear(16,10)),
      trained 30 Adam steps on random 8x8 images, so the running statistics are not
      their initial values; num_batches_tracked is int64, as PyTorch saves it.
  cnn_bn_io.json - 6 inputs and the model's eval-mode logits.
crates/io/tests/cnn_interop.rs builds the same Sequential in tapegrad, loads the file by
name and must reproduce the logits within 1e-5.
"""
import json
import os

import torch
import torch.nn as nn
from safetensors.torch import save_file

torch.manual_seed(0)
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "interop")


def tensor_json(t):
    t = t.detach()
    return {"shape": list(t.shape), "data": [float(v) for v in t.reshape(-1).tolist()]}


model = nn.Sequential(
    nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2), nn.BatchNorm2d(8), nn.ReLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(),
    nn.Linear(16, 10),
)
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
model.train()
for _ in range(30):
    x = torch.randn(16, 1, 8, 8) * 2 + 0.5
    y = torch.randint(0, 10, (16,))
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
model.eval()
sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
os.makedirs(OUT_DIR, exist_ok=True)
save_file(sd, os.path.join(OUT_DIR, "cnn_bn.safetensors"))
x = torch.randn(6, 1, 8, 8) * 2 + 0.5
with torch.no_grad():
    logits = model(x)
with open(os.path.join(OUT_DIR, "cnn_bn_io.json"), "w") as f:
    json.dump({"input": tensor_json(x), "output": tensor_json(logits)}, f)
print(sorted((k, str(v.dtype)) for k, v in sd.items() if "num_batches" in k))
