"""PyTorch reference for bench:models (driven by bench/models.ts over stdin/stdout, one JSON per line).

The model is HF's Qwen2ForCausalLM as fixtures/models/make_qwen2_golden.py implements it in plain
PyTorch (eager attention with HF's additive 4-D mask; torch 1.13 has no SDPA), imported from
there so the golden test and the benchmark share one reference. Same weights and batch as the
MindsEye side (read from the safetensors file the driver writes); one step is forward, next-token
cross-entropy and backward, gradients set to None before each step, no optimizer step.
Run by the driver with Debian's PyTorch: /usr/bin/python3 bench/models_ref.py
The protocol (one JSON request and reply per line), the `threads` and `allocator` commands and the
safetensors reader are bench/ref_common.py's.
"""
import time

import torch
import torch.nn.functional as F

from ref_common import load_safetensors, self_cpu_table, serve
from make_qwen2_golden import Qwen2ForCausalLM  # fixtures/models, on sys.path by ref_common


state = {}


def cmd_init(msg):
    torch.set_num_threads(msg.get("threads", 1))
    cfg = msg["config"]  # HF config.json fields
    tensors, _ = load_safetensors(msg["weights"])
    model = Qwen2ForCausalLM(cfg)
    weights = {k: v for k, v in tensors.items() if k not in ("tokens", "targets")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    allowed = ["lm_head.weight"] if cfg["tie_word_embeddings"] else []
    if list(missing) != allowed or unexpected:
        raise ValueError(f"weights do not fit: missing {missing}, unexpected {unexpected}")
    model.train()
    state.update(model=model, vocab=cfg["vocab_size"], tokens=tensors["tokens"], targets=tensors["targets"])
    return {"threads": torch.get_num_threads(), "torch": torch.__version__, "parameters": sum(p.numel() for p in model.parameters())}


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
    table = self_cpu_table(prof, msg.get("rows", 25))
    return {"table": table}


if __name__ == "__main__":
    serve({"init": cmd_init, "steps": cmd_steps, "profile": cmd_profile})
