"""PyTorch reference for bench:engine (driven by bench/engine.ts over stdin/stdout, one JSON per line).

The model is the engine's ReferenceDecoder (packages/torch/src/testing/decoder.ts), defined
identically here: same parameter names, same initial weights (read from the safetensors file the
driver writes), same batch, AdamW with the same hyperparameters.
Run by the driver with Debian's PyTorch: /usr/bin/python3 bench/engine_ref.py
The protocol (one JSON request and reply per line), the `threads` and `allocator` commands and the
safetensors reader are bench/ref_common.py's.
"""
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from ref_common import gflops, load_safetensors, serve


class Attention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x):
        B, T, D = x.shape
        hd = D // self.heads
        q, k, v = (t.view(B, T, self.heads, hd).transpose(1, 2) for t in self.qkv(x).split(D, 2))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        return self.proj((att @ v).transpose(1, 2).reshape(B, T, D))


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 4 * width)
        self.out = nn.Linear(4 * width, width)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class Decoder(nn.Module):
    def __init__(self, vocab, width, layers, heads, max_seq):
        super().__init__()
        self.vocab = vocab
        self.tok_emb = nn.Embedding(vocab, width)
        self.pos_emb = nn.Embedding(max_seq, width)
        self.blocks = nn.ModuleList([Block(width, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(width)

    def loss(self, tokens, targets):
        T = tokens.shape[1]
        x = self.tok_emb(tokens) + self.pos_emb(torch.arange(T))
        for b in self.blocks:
            x = b(x)
        logits = F.linear(self.ln_f(x), self.tok_emb.weight)
        return F.cross_entropy(logits.view(-1, self.vocab), targets.view(-1))


state = {}


def cmd_init(msg):
    cfg = msg["config"]
    torch.set_num_threads(msg.get("threads", 1))
    tensors, _ = load_safetensors(msg["weights"])
    model = Decoder(cfg["vocabSize"], cfg["width"], cfg["layers"], cfg["heads"], cfg["maxSeq"])
    model.load_state_dict({k: v for k, v in tensors.items() if k not in ("tokens", "targets")})
    state["model"] = model
    state["tokens"], state["targets"] = tensors["tokens"], tensors["targets"]
    state["opt"] = torch.optim.AdamW(model.parameters(), lr=msg["lr"], weight_decay=msg["weightDecay"])
    return {"threads": torch.get_num_threads(), "torch": torch.__version__}


def cmd_steps(msg):
    model, opt = state["model"], state["opt"]
    times, losses = [], []
    for _ in range(msg["n"]):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model.loss(state["tokens"], state["targets"])
        loss.backward()
        opt.step()
        times.append((time.perf_counter() - t0) * 1000)
        losses.append(loss.item())
    return {"ms": times, "losses": losses}


def cmd_overhead(msg):
    a, b = torch.ones(1), torch.ones(1)
    n = msg["n"]
    for _ in range(1000):
        a + b
    t0 = time.perf_counter()
    for _ in range(n):
        a + b
    add_us = (time.perf_counter() - t0) / n * 1e6
    x = torch.ones(4, 8)
    t0 = time.perf_counter()
    for _ in range(n):
        x.view(8, 4)
    view_us = (time.perf_counter() - t0) / n * 1e6
    return {"add_us": add_us, "view_us": view_us}


def cmd_matmul(msg):
    n = msg["n"]
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = {"torch_gflops": gflops(lambda: a @ b, n, msg["reps"])}
    try:
        import numpy as np
        an, bn = a.numpy(), b.numpy()
        out["numpy_gflops"] = gflops(lambda: an @ bn, n, msg["reps"])
        out["numpy_blas"] = np.__config__.get_info("blas_opt_info").get("libraries", ["?"]) if hasattr(np.__config__, "get_info") else "?"
    except Exception as e:  # numpy missing: report, do not fail the benchmark
        out["numpy_error"] = str(e)
    return out


if __name__ == "__main__":
    serve({"init": cmd_init, "steps": cmd_steps, "overhead": cmd_overhead, "matmul": cmd_matmul})
