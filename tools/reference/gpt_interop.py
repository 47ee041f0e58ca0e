"""Interop fixture for the GPT: a tiny character-level GPT trained a few steps in PyTorch.

Run by hand (never by CI):  python3 tools/reference/gpt_interop.py
Writes into tests/fixtures/interop/ (relative to the repo root):
  gpt.safetensors - the trained model's state dict, under tapegrad's `Gpt` names
                    (wte, wpe, h.{i}.ln_1, h.{i}.attn.c_attn, h.{i}.attn.c_proj, h.{i}.ln_2,
                    h.{i}.mlp.c_fc, h.{i}.mlp.c_proj, ln_f, lm_head; nanoGPT's without
                    its `transformer.` prefix; the head is not tied to wte)
  gpt_io.json     - {"config": {...}, "ids": {"shape", "data"}, "logits": {"shape", "data"},
                     "loss": float}: two windows of data/shakespeare.txt's validation split,
                    PyTorch's logits for them and the mean cross-entropy against the next chars.
tests/gpt.rs loads the safetensors into tapegrad's Gpt and must reproduce the logits within 1e-5.
"""
import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "interop")
CONFIG = dict(vocab_size=67, context=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0)


class CausalSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.n_head = c["n_head"]
        self.c_attn = nn.Linear(c["n_embd"], 3 * c["n_embd"])
        self.c_proj = nn.Linear(c["n_embd"], c["n_embd"])

    def forward(self, x):
        b, t, e = x.shape
        q, k, v = self.c_attn(x).split(e, dim=2)
        q, k, v = (z.view(b, t, self.n_head, e // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, e))


class Mlp(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_fc = nn.Linear(c["n_embd"], 4 * c["n_embd"])
        self.c_proj = nn.Linear(4 * c["n_embd"], c["n_embd"])

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c["n_embd"])
        self.attn = CausalSelfAttention(c)
        self.ln_2 = nn.LayerNorm(c["n_embd"])
        self.mlp = Mlp(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Gpt(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.wte = nn.Embedding(c["vocab_size"], c["n_embd"])
        self.wpe = nn.Embedding(c["context"], c["n_embd"])
        self.h = nn.ModuleList([Block(c) for _ in range(c["n_layer"])])
        self.ln_f = nn.LayerNorm(c["n_embd"])
        self.lm_head = nn.Linear(c["n_embd"], c["vocab_size"], bias=False)
        # GPT-2's initialisation, as tapegrad's Gpt::new_with_rng.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * c["n_layer"]))
            elif p.dim() == 2:
                nn.init.normal_(p, 0.0, 0.02)
            elif name.endswith("bias") and "ln" not in name:
                nn.init.zeros_(p)

    def forward(self, ids):
        t = ids.shape[1]
        x = self.wte(ids) + self.wpe(torch.arange(t))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def tensor_json(t):
    t = t.detach()
    return {"shape": list(t.shape), "data": [float(v) for v in t.reshape(-1).tolist()]}


def main():
    torch.manual_seed(0)
    os.makedirs(OUT_DIR, exist_ok=True)
    text = open(os.path.join(ROOT, "data", "shakespeare.txt")).read()
    chars = sorted(set(text))
    assert len(chars) == CONFIG["vocab_size"], len(chars)
    data = torch.tensor([chars.index(ch) for ch in text[:200_000]] + [0], dtype=torch.long)[:-1]
    val = torch.tensor([chars.index(ch) for ch in text[-20_000:]], dtype=torch.long)

    model = Gpt(CONFIG)
    t = CONFIG["context"]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    for step in range(30):
        starts = torch.randint(0, len(data) - t - 1, (16,))
        x = torch.stack([data[s : s + t] for s in starts])
        y = torch.stack([data[s + 1 : s + t + 1] for s in starts])
        loss = F.cross_entropy(model(x).view(-1, CONFIG["vocab_size"]), y.view(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    print("train loss after 30 steps:", loss.item())

    ids = torch.stack([val[100 : 100 + t], val[5000 : 5000 + t]])
    targets = torch.stack([val[101 : 101 + t], val[5001 : 5001 + t]])
    with torch.no_grad():
        logits = model(ids)
        loss = F.cross_entropy(logits.view(-1, CONFIG["vocab_size"]), targets.view(-1))
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    path = os.path.join(OUT_DIR, "gpt.safetensors")
    save_file(sd, path)
    with open(os.path.join(OUT_DIR, "gpt_io.json"), "w") as f:
        json.dump(
            {
                "config": CONFIG,
                "ids": tensor_json(ids.float()),
                "targets": tensor_json(targets.float()),
                "logits": tensor_json(logits),
                "loss": float(loss),
            },
            f,
        )
    print(sorted(sd), os.path.getsize(path), "bytes ->", OUT_DIR, "loss", float(loss))


if __name__ == "__main__":
    main()
