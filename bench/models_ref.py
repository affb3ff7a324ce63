"""PyTorch reference for bench:models (driven by bench/models.ts over stdin/stdout, one JSON per line).

The model is HF's Qwen2ForCausalLM as fixtures/models/make_qwen2_golden.py implements it in plain
PyTorch (eager attention with HF's additive 4-D mask; torch 1.13 has no SDPA), imported from
there so the golden test and the benchmark share one reference. Same weights and batch as the
MindsEye side (read from the safetensors file the driver writes); one step is forward, next-token
cross-entropy and backward, gradients set to None before each step, no optimizer step.
Run by the driver with Debian's PyTorch: /usr/bin/python3 bench/models_ref.py
"""
import json
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "models"))
from make_qwen2_golden import Qwen2ForCausalLM  # noqa: E402

DTYPES = {"F32": torch.float32, "I64": torch.int64}


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[b:e]), dtype=DTYPES[info["dtype"]]).reshape(info["shape"]).clone()
    return out


state = {}


def cmd_init(msg):
    torch.set_num_threads(msg.get("threads", 1))
    cfg = msg["config"]  # HF config.json fields
    tensors = load_safetensors(msg["weights"])
    model = Qwen2ForCausalLM(cfg)
    weights = {k: v for k, v in tensors.items() if k not in ("tokens", "targets")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    allowed = ["lm_head.weight"] if cfg["tie_word_embeddings"] else []
    if list(missing) != allowed or unexpected:
        raise ValueError(f"weights do not fit: missing {missing}, unexpected {unexpected}")
    model.train()
    state.update(model=model, vocab=cfg["vocab_size"], tokens=tensors["tokens"], targets=tensors["targets"])
    return {"threads": torch.get_num_threads(), "torch": torch.__version__, "parameters": sum(p.numel() for p in model.parameters())}


def cmd_threads(msg):
    torch.set_num_threads(msg["threads"])
    return {"threads": torch.get_num_threads()}


def cmd_allocator(msg):
    """The same glibc malloc tuning MindsEye applies (packages/torch/src/runtime.ts)."""
    import ctypes
    libc = ctypes.CDLL("libc.so.6")
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    ok = all(libc.mallopt(k, v) == 1 for k, v in ((M_MMAP_THRESHOLD, msg["mmap"]), (M_TRIM_THRESHOLD, msg["trim"]), (M_TOP_PAD, msg["topPad"])))
    return {"ok": ok}


def step():
    model, V = state["model"], state["vocab"]
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    logits, _ = model(state["tokens"])
    loss = F.cross_entropy(logits.view(-1, V), state["targets"].view(-1))
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    return (t2 - t0) * 1000, (t1 - t0) * 1000, (t2 - t1) * 1000, loss.item()


def cmd_steps(msg):
    out = {"ms": [], "forward_ms": [], "backward_ms": [], "losses": []}
    for _ in range(msg["n"]):
        ms, f, b, loss = step()
        out["ms"].append(ms)
        out["forward_ms"].append(f)
        out["backward_ms"].append(b)
        out["losses"].append(loss)
    return out


def cmd_profile(msg):
    """Self CPU time per op over n steps (torch.autograd.profiler), for comparing with MindsEye's."""
    step()
    with torch.autograd.profiler.profile() as prof:
        for _ in range(msg["n"]):
            step()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=msg.get("rows", 25))
    return {"table": table}


COMMANDS = {"init": cmd_init, "threads": cmd_threads, "allocator": cmd_allocator, "steps": cmd_steps, "profile": cmd_profile}

for line in sys.stdin:
    msg = json.loads(line)
    if msg["cmd"] == "exit":
        break
    try:
        reply = COMMANDS[msg["cmd"]](msg)
    except Exception as e:
        reply = {"error": f"{type(e).__name__}: {e}"}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
